/* Data curation's pieces against what they replace: the Aho-Corasick matcher
 * against a substring search for every pattern, MetaCLIP's spacing against
 * strings worked out by hand from MetaCLIP's substr_matching.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/rng.h"
#include "curate/balance.h"
#include "curate/matcher.h"
#include "curate/select.h"
#include "curate/semdedup.h"
#include <math.h>

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* random strings over a small alphabet, so patterns overlap, nest, repeat */
static void random_string(rng64 *r, char *s, int len, const char *alphabet) {
    int k = (int)strlen(alphabet);
    for (int i = 0; i < len; i++) s[i] = alphabet[rng64_u64(r) % (uint64_t)k];
    s[len] = '\0';
}

static void test_matcher_equals_brute_force(void **state) {
    (void)state;
    rng64 r = {12345};
    const char *alphabets[] = {"ab", "abc ", "a\xc3\xa9 .\xff"}; /* bytes above 127 too */
    for (int trial = 0; trial < 60; trial++) {
        const char *alpha = alphabets[trial % 3];
        int np = 1 + (int)(rng64_u64(&r) % 40);
        char **pats = malloc(sizeof(char *) * (size_t)np);
        for (int p = 0; p < np; p++) {
            pats[p] = malloc(8);
            random_string(&r, pats[p], 1 + (int)(rng64_u64(&r) % 6), alpha);
        }
        if (np > 2) strcpy(pats[np - 1], pats[0]); /* an entry listed twice: both reported */
        matcher *m;
        vlp_error err = {0};
        check(matcher_create(&m, (const char *const *)pats, np, &err), &err);
        uint32_t *scratch = calloc((size_t)np, sizeof(uint32_t)), stamp = 0;
        int32_t ids[64];
        for (int t = 0; t < 50; t++) {
            char text[128];
            random_string(&r, text, (int)(rng64_u64(&r) % 100), alpha);
            int n;
            matcher_find(m, text, strlen(text), ids, 64, &n, scratch, &stamp);
            int k = 0;
            for (int p = 0; p < np; p++)
                if (strstr(text, pats[p])) {
                    if (k >= n || ids[k] != p)
                        fail_msg("trial %d text '%s': pattern %d '%s' occurs, the matcher's %d-th id is %d", trial,
                                 text, p, pats[p], k, k < n ? ids[k] : -1);
                    k++;
                }
            assert_int_equal(n, k);
        }
        /* too little room: the count is still right, and the id given is one of them */
        const char *all = "abcabcab";
        int n_full, n_cut;
        matcher_find(m, all, strlen(all), ids, 64, &n_full, scratch, &stamp);
        int32_t full[64];
        memcpy(full, ids, sizeof full);
        matcher_find(m, all, strlen(all), ids, 1, &n_cut, scratch, &stamp);
        assert_int_equal(n_cut, n_full);
        bool among = n_full == 0;
        for (int k = 0; k < n_full && k < 64; k++) among = among || full[k] == ids[0];
        assert_true(among);
        free(scratch);
        matcher_free(m);
        for (int p = 0; p < np; p++) free(pats[p]);
        free(pats);
    }
}

static void test_matcher_refuses_empty(void **state) {
    (void)state;
    const char *pats[] = {"cat", ""};
    matcher *m;
    vlp_error err = {0};
    assert_int_equal(matcher_create(&m, pats, 2, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "pattern 1 is empty"));
    assert_null(m);
}

/* MetaCLIP: " text " with , . ; : ? ! ` wrapped, tab CR LF spaced; entries as " entry " */
static void test_metaclip_spacing(void **state) {
    (void)state;
    size_t n;
    char *s = metaclip_spacing("A cat, sitting.\tOn\r\nmat!", &n);
    assert_string_equal(s, " A cat ,  sitting .  On  mat !  "); /* Python's result, checked */
    assert_int_equal(n, strlen(s));
    free(s);
    char *e = metaclip_entry("cat");
    assert_string_equal(e, " cat ");
    /* whole words only: "cat" is in "A cat, ..." but not in "concatenate" or "cats" */
    const char *pats[] = {e};
    matcher *m;
    vlp_error err = {0};
    check(matcher_create(&m, pats, 1, &err), &err);
    uint32_t scratch[1] = {0}, stamp = 0;
    int32_t ids[4];
    int k;
    const char *texts[] = {"A cat, sitting", "concatenate", "two cats", "cat", "the cat."};
    int want[] = {1, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        s = metaclip_spacing(texts[i], &n);
        matcher_find(m, s, n, ids, 4, &k, scratch, &stamp);
        if (k != want[i]) fail_msg("'%s' spaced '%s': %d matches, want %d", texts[i], s, k, want[i]);
        free(s);
    }
    matcher_free(m);
    free(e);
}

/* MetaCLIP's rule: an entry with c <= t keeps all its samples; with c > t each
 * is kept with probability t/c, so the kept count is Binomial(c, t/c): mean t,
 * within 5 standard deviations; a sample matching nothing is dropped unless
 * asked; the same seed keeps the same samples, another seed others. */
static void test_balance_keeps_min_c_t(void **state) {
    (void)state;
    const char *entries[] = {"cat", "dog", "red car", "tree", "bird"};
    int counts[] = {40, 120000, 3000, 1000, 1};
    double t = 1000;
    balance *b;
    vlp_error err = {0};
    check(balance_create(&b, entries, 5, NULL, &err), &err);
    char cap[64];
    int64_t total = 0;
    for (int e = 0; e < 5; e++) total += counts[e];
    /* pass 1: sample i has entry e's name alone (plus punctuation, to be spaced) */
    int64_t i = 0;
    for (int e = 0; e < 5; e++)
        for (int k = 0; k < counts[e]; k++, i++) {
            snprintf(cap, sizeof cap, "a photo of a %s, k%d.", entries[e], k % 7);
            assert_int_equal(balance_count(b, cap), 1);
        }
    assert_int_equal(balance_count(b, "nothing here: cats and redcar"), 0);
    for (int e = 0; e < 5; e++) assert_int_equal(balance_count_of(b, e), counts[e]);
    /* pass 2 */
    bool *first = calloc((size_t)total, 1);
    for (int pass = 0; pass < 2; pass++) {
        i = 0;
        int64_t kept = 0, differ = 0;
        for (int e = 0; e < 5; e++)
            for (int k = 0; k < counts[e]; k++, i++) {
                snprintf(cap, sizeof cap, "a photo of a %s, k%d.", entries[e], k % 7);
                bool keep = balance_keep(b, cap, i, t, pass == 0 ? 7 : 8, false, NULL);
                kept += keep;
                if (pass == 0) first[i] = keep;
                else differ += keep != first[i];
            }
        if (pass == 1) assert_true(differ > 100); /* another seed, other samples */
        assert_true(kept > 2800 && kept < 3300); /* 40 + ~1000 + ~1000 + 1000 + 1 */
    }
    free(first);
    for (int e = 0; e < 5; e++) {
        double c = counts[e], want = c < t ? c : t, p = c < t ? 1 : t / c;
        double sd = sqrt(c * p * (1 - p));
        if (c <= t) assert_int_equal(balance_kept_of(b, e), 2 * counts[e]); /* every one, both passes */
        else { /* the seed-7 pass's draws for this entry */
            int64_t k7 = 0;
            int64_t base = 0;
            for (int f = 0; f < e; f++) base += counts[f];
            for (int k = 0; k < counts[e]; k++) k7 += balance_draw(7, base + k, e) < p;
            if (fabs((double)k7 - want) > 5 * sd)
                fail_msg("entry %s: c %g, kept %lld, want %g +- %g", entries[e], c, (long long)k7, want, 5 * sd);
        }
    }
    /* unmatched: dropped, or kept when asked */
    bool matched = true;
    assert_false(balance_keep(b, "no entry", 0, t, 7, false, &matched));
    assert_false(matched);
    assert_true(balance_keep(b, "no entry", 0, t, 7, true, NULL));
    balance_free(b);
}

/* the draws are uniform: their mean and their share below 0.1 */
static void test_balance_draw_uniform(void **state) {
    (void)state;
    double sum = 0;
    int below = 0, n = 200000;
    for (int i = 0; i < n; i++) {
        double u = balance_draw(3, i, i % 11);
        assert_true(u >= 0 && u < 1);
        sum += u, below += u < 0.1;
    }
    assert_true(fabs(sum / n - 0.5) < 0.005);
    assert_true(fabs((double)below / n - 0.1) < 0.005);
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* the k-th largest from the file equals a sort's, for every k, with ties,
 * negatives, zeros of both signs and a NaN (ranked lowest); keeping "above,
 * then the first `ties` equal ones" keeps exactly k */
static void test_select_top_k_exact(void **state) {
    (void)state;
    enum { N = 301 };
    float v[N], sorted[N];
    rng64 r = {99};
    for (int i = 0; i < N; i++) v[i] = (float)((int)(rng64_u64(&r) % 41) - 20) / 20.0f; /* many ties */
    v[5] = -0.0f, v[6] = 0.0f, v[7] = NAN, v[8] = 1e-30f, v[9] = -1e-30f;
    FILE *fp = tmpfile();
    assert_int_equal(fwrite(v, sizeof(float), N, fp), N);
    fflush(fp);
    int m = 0;
    for (int i = 0; i < N; i++)
        if (!isnan(v[i])) sorted[m++] = v[i];
    qsort(sorted, (size_t)m, sizeof(float), cmp_desc);
    for (int64_t k = 1; k <= N; k++) {
        float thr;
        int64_t ties;
        vlp_error err = {0};
        check(select_top_k(fp, N, k, &thr, &ties, &err), &err);
        if (k <= m) assert_true(thr == sorted[k - 1]); /* -0 == 0 as floats: one key each, compared as values */
        else assert_true(isnan(thr));
        int64_t kept = 0, left = ties;
        for (int i = 0; i < N; i++) {
            bool above = select_key(v[i]) > select_key(thr), equal = select_key(v[i]) == select_key(thr);
            if (above || (equal && left > 0)) kept++, left -= equal;
        }
        if (kept != k) fail_msg("k %lld: kept %lld (threshold %g, ties %lld)", (long long)k, (long long)kept, thr, (long long)ties);
    }
    float thr;
    int64_t ties;
    vlp_error err = {0};
    assert_int_equal(select_top_k(fp, N, 0, &thr, &ties, &err), VLP_ERR_ARG);
    fclose(fp);
}

static void unit(float *v, int d) {
    double n = 0;
    for (int t = 0; t < d; t++) n += (double)v[t] * v[t];
    for (int t = 0; t < d; t++) v[t] = (float)(v[t] / sqrt(n));
}

/* 4 well-separated groups of 30 points in 32-d (each a direction plus noise),
 * and 12 planted near-duplicates (a point plus noise of 1e-3): k-means finds
 * the groups; SemDeDup at eps 1e-3 removes exactly the 12 planted copies or
 * their originals (one of each pair, the one nearer the centroid), nothing
 * else; at eps 0.5 it removes most of each group */
static void test_semdedup_planted(void **state) {
    (void)state;
    enum { D = 32, G = 4, PER = 30, DUPS = 12, N = G * PER + DUPS };
    float *x = malloc(sizeof(float) * N * D), dir[G][D];
    rng64 r = {2024};
    for (int g = 0; g < G; g++) {
        for (int t = 0; t < D; t++) dir[g][t] = rng64_normal(&r);
        unit(dir[g], D);
    }
    for (int i = 0; i < G * PER; i++) {
        for (int t = 0; t < D; t++) x[i * D + t] = dir[i / PER][t] + 0.1f * rng64_normal(&r);
        unit(x + i * D, D);
    }
    int original[DUPS];
    for (int j = 0; j < DUPS; j++) {
        int o = original[j] = 7 * j + 3, i = G * PER + j;
        for (int t = 0; t < D; t++) x[i * D + t] = x[o * D + t] + 1e-3f * rng64_normal(&r);
        unit(x + i * D, D);
    }
    float cent[G * D];
    int32_t assign[N];
    int iters;
    vlp_error err = {0};
    check(kmeans_spherical(x, N, D, G, 50, 1, cent, assign, &iters, &err), &err);
    for (int i = 0; i < N; i++) { /* each group one cluster, a copy with its original */
        int g = i < G * PER ? i / PER : original[i - G * PER] / PER;
        assert_int_equal(assign[i], assign[g * PER]);
    }
    for (int g = 1; g < G; g++) assert_true(assign[g * PER] != assign[0]);
    int removed_total = 0, removed_loose = 0;
    for (int c = 0; c < G; c++) {
        int64_t rows[N];
        int m = 0;
        for (int i = 0; i < N; i++)
            if (assign[i] == c) rows[m++] = i;
        const double eps[] = {1e-3, 0.5};
        uint8_t rm[2 * N];
        check(semdedup_cluster(x, D, rows, m, cent + c * D, eps, 2, rm, &err), &err);
        for (int k = 0; k < m; k++) {
            removed_total += rm[k], removed_loose += rm[m + k];
            if (!rm[k]) continue;
            int i = (int)rows[k], twin = -1; /* the removed one must be one of a planted pair */
            for (int j = 0; j < DUPS; j++) {
                if (i == G * PER + j) twin = original[j];
                if (i == original[j]) twin = G * PER + j;
            }
            if (twin < 0) fail_msg("row %d removed, not a planted duplicate", i);
            /* the survivor is the twin, the one less similar to the centroid */
            double di = 0, dt = 0;
            for (int t = 0; t < D; t++) di += x[i * D + t] * cent[c * D + t], dt += x[twin * D + t] * cent[c * D + t];
            assert_true(dt <= di);
            int kt = -1;
            for (int q = 0; q < m; q++)
                if (rows[q] == twin) kt = q;
            assert_true(kt >= 0 && !rm[kt]);
        }
    }
    assert_int_equal(removed_total, DUPS);
    assert_true(removed_loose > N / 2);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matcher_equals_brute_force),
        cmocka_unit_test(test_matcher_refuses_empty),
        cmocka_unit_test(test_metaclip_spacing),
        cmocka_unit_test(test_balance_keeps_min_c_t),
        cmocka_unit_test(test_balance_draw_uniform),
        cmocka_unit_test(test_select_top_k_exact),
        cmocka_unit_test(test_semdedup_planted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
