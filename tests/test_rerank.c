/* Two-stage retrieval (vlp eval --rerank K) and the ITM score of the C API
 * (vlp_itm_scores):
 * - retrieval_eval_reranked on hand-made cosines: an own item in the top K
 *   ranks by its score among the top K (ties against it), one past them
 *   keeps its cosine place behind them; the multi-owner rule of text->image;
 * - vlp_eval on a set of 10 images and 8 distinct captions with a model
 *   that has a fusion encoder (random weights, saved and loaded as a user's
 *   file): --rerank 1 gives the dual encoder's figures, --rerank at least
 *   the set gives the ranks of the ITM probabilities alone (from
 *   vlp_itm_scores on every pair), --rerank 3 the two-stage ranks worked out
 *   here from the cosines and the ITM probabilities, both directions;
 * - vlp_itm_scores on chosen pairs equals the same pairs of every pair (to
 *   1e-6: pairs in other company go through GEMMs of other shapes); bad
 *   pairs and a model without a fusion encoder are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "eval/eval.h"
#include "model/clip_io.h"
#include "model/config_registry.h"
#include "testutil.h"
#include "vlp.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* unit vectors at these angles (degrees): cosines ordered by angle */
static void at_angles(float *v, const double *deg, int n) {
    for (int i = 0; i < n; i++) v[2 * i] = (float)cos(deg[i] * M_PI / 180), v[2 * i + 1] = (float)sin(deg[i] * M_PI / 180);
}

static double rank_of(const int *target, const int *owner, int nq, const float *q, const float *g, int ng, const int *top,
                      const float *score, int K) {
    retrieval_result r;
    vlp_error err = {0};
    check(retrieval_eval_reranked(q, g, target, owner, nq, ng, 2, top, score, K, &r, &err), &err);
    return r.mean_rank;
}

static void test_reranked_ranks(void **state) {
    const double deg[] = {0, 10, 20, 30, 40}; /* the gallery: cosine to the query at 0 falls with the index */
    float g[10], q[2];
    at_angles(g, deg, 5);
    at_angles(q, (const double[]){0}, 1);
    int target = 3; /* cosine rank 4 */
    int top5[] = {0, 1, 2, 3, 4};
    float s5[] = {0.1f, 0.2f, 0.3f, 0.9f, 0.4f};
    assert_true(rank_of(&target, NULL, 1, q, g, 5, top5, s5, 5) == 1); /* its score is the best */
    int top2[] = {0, 1};
    float s2[] = {0.9f, 0.1f};
    assert_true(rank_of(&target, NULL, 1, q, g, 5, top2, s2, 2) == 4); /* past the top 2: behind them, after item 2 */
    int top4[] = {0, 1, 2, 3};
    float s4[] = {0.9f, 0.1f, 0.5f, 0.7f};
    assert_true(rank_of(&target, NULL, 1, q, g, 5, top4, s4, 4) == 2); /* item 0 scores more */
    float s4tie[] = {0.7f, 0.1f, 0.5f, 0.7f};
    assert_true(rank_of(&target, NULL, 1, q, g, 5, top4, s4tie, 4) == 2); /* a tie counts against it */
    /* text->image: query 0 owns items 2 and 4, query 1 (at 90°: the order reversed) owns 0, 1 and 3 */
    float qs[4];
    at_angles(qs, (const double[]){0, 90}, 2);
    int owner[] = {1, 1, 0, 1, 0};
    int topm[] = {0, 1, 2, 4, 3, 2};
    float sm[] = {0.2f, 0.9f, 0.5f, 0.9f, 0.1f, 0.3f};
    /* query 0: own item 2 (0.5) behind item 1 (0.9): 2; query 1: own item 3 (0.1) behind 4 and 2: 3 */
    assert_true(rank_of(NULL, owner, 2, qs, g, 5, topm, sm, 3) == 2.5);
    int topm2[] = {0, 1, 4, 3};
    float sm2[] = {0.2f, 0.9f, 0.9f, 0.1f};
    /* query 0: no own item in its top 2, its best (item 2) next: 3; query 1: item 3 behind item 4: 2 */
    assert_true(rank_of(NULL, owner, 2, qs, g, 5, topm2, sm2, 2) == 2.5);
    retrieval_result r;
    vlp_error err = {0};
    assert_int_not_equal(retrieval_eval_reranked(q, g, &target, NULL, 1, 5, 2, top5, s5, 6, &r, &err), VLP_OK);
}

/* ---- with a model ------------------------------------------------------------------------------ */

#define N 10  /* images */
#define S 32  /* their side */

/* a 24-bit BMP of smooth random colour */
static void write_bmp(const char *path, uint64_t seed) {
    uint8_t h[54] = {'B', 'M'};
    int row = S * 3, size = 54 + row * S;
    uint32_t v[] = {(uint32_t)size, 0, 54, 40, S, S};
    memcpy(h + 2, &v[0], 4), memcpy(h + 10, &v[2], 4), memcpy(h + 14, &v[3], 4), memcpy(h + 18, &v[4], 4);
    memcpy(h + 22, &v[5], 4);
    h[26] = 1, h[28] = 24;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(h, 1, 54, f);
    rng g = {seed};
    float c[6];
    fill_normal(&g, c, 6, 1.0f, 0.0f);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int k = 0; k < 3; k++) {
                double t = 128 + 100 * sin(c[k] * x / 4.0 + c[k + 3] * y / 5.0 + k);
                fputc((int)t, f);
            }
    fclose(f);
}

typedef struct world {
    char dir[64], model[128], tsv[128], images[N][128];
    const char *caption[N];
    vlp_model *m;
} world;

static const char *const captions[N] = {"a red cat", "the blue dog", "a red cat", "two green birds", "a yellow car",
                                        "the blue dog", "an old tree", "a small boat", "a big house", "one white cup"};

static int setup(void **state) {
    world *w = calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/vlp-rerank-XXXXXX");
    if (!mkdtemp(w->dir)) return -1;
    char cfgpath[128];
    snprintf(cfgpath, sizeof cfgpath, "%s/fusion.json", w->dir);
    FILE *f = fopen(cfgpath, "w");
    fprintf(f, "{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"width\": 32, "
               "\"layers\": 1, \"heads\": 2}, \"text_cfg\": {\"context_length\": 12, \"vocab_size\": 516, "
               "\"width\": 32, \"heads\": 2, \"layers\": 1}, \"fusion_cfg\": {\"width\": 32, \"heads\": 2, "
               "\"layers\": 1}}\n");
    fclose(f);
    clip_config cfg;
    vlp_error err = {0};
    check(clip_config_resolve(cfgpath, &cfg, NULL, 0, &err), &err);
    clip_model cm;
    check(clip_init(&cm, &cfg, &err), &err);
    clip_init_weights(&cm, 11);
    /* the ITM head's N(0, 0.02) barely moves the probability: larger, so ranks by it differ from the cosine's */
    for (int i = 0; i < 2 * cfg.fusion.width; i++) cm.views.fus.itm_w[i] *= 5;
    snprintf(w->model, sizeof w->model, "%s/fusion.safetensors", w->dir);
    check(clip_save(&cm, w->model, NULL, 0, &err), &err);
    clip_free(&cm);
    snprintf(w->tsv, sizeof w->tsv, "%s/set.tsv", w->dir);
    f = fopen(w->tsv, "w");
    fprintf(f, "filepath\ttitle\n");
    char dir[sizeof w->dir]; /* a copy: not the object the names are written into (-Wrestrict) */
    memcpy(dir, w->dir, sizeof dir);
    for (int i = 0; i < N; i++) {
        snprintf(w->images[i], sizeof w->images[i], "%s/%d.bmp", dir, i);
        write_bmp(w->images[i], 100 + i);
        w->caption[i] = captions[i];
        fprintf(f, "%s\t%s\n", w->images[i], captions[i]);
    }
    fclose(f);
    vlp_model_opts o = vlp_model_opts_default();
    o.vocab = ref_path("api_merges.txt");
    o.batch = 3; /* pairs over several fusion forwards */
    check(vlp_model_load(&w->m, w->model, &o, &err), &err);
    *state = w;
    return 0;
}

static int teardown(void **state) {
    world *w = *state;
    vlp_model_free(w->m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    if (system(cmd)) return -1;
    free(w);
    return 0;
}

static vlp_eval_result evaluate(world *w, int rerank) {
    vlp_eval_opts o = vlp_eval_opts_default();
    o.data = w->tsv, o.retrieval = true, o.rerank = rerank;
    vlp_eval_result r;
    vlp_error err = {0};
    check(vlp_eval(w->m, &o, &r, &err), &err);
    vlp_eval_result_free(&r);
    return r;
}

/* the distinct captions (sorted, as vlp_eval has them: the order only names them) and each image's */
static int distinct(const world *w, const char **d, int *cap_of) {
    int n = 0;
    for (int i = 0; i < N; i++) {
        int j = 0;
        while (j < n && strcmp(d[j], w->caption[i])) j++;
        if (j == n) d[n++] = w->caption[i];
        cap_of[i] = j;
    }
    return n;
}

typedef struct ranks {
    double r1, r5, r10, mean;
} ranks;

static ranks summary(const int *rank, int n) {
    ranks s = {0};
    for (int i = 0; i < n; i++)
        s.r1 += rank[i] <= 1, s.r5 += rank[i] <= 5, s.r10 += rank[i] <= 10, s.mean += rank[i];
    s.r1 /= n, s.r5 /= n, s.r10 /= n, s.mean /= n;
    return s;
}

/* For each query (i2t: image i over the distinct texts; t2i: text q over the
 * images) its gallery in cosine order, the first K re-ordered by ITM (a
 * stable sort: the cosine's order among equals), and the place of its first
 * own item. */
static ranks two_stage(bool i2t, int K, const float *itm /* (N, nt) */, const float *ie, const float *te, int nt,
                       const int *cap_of) {
    int nq = i2t ? N : nt, ng = i2t ? nt : N, rank[N], order[N];
    for (int q = 0; q < nq; q++) {
        double cos[N];
        for (int j = 0; j < ng; j++) {
            const float *a = i2t ? ie + q * 32 : te + q * 32, *b = i2t ? te + j * 32 : ie + j * 32;
            cos[j] = 0;
            for (int e = 0; e < 32; e++) cos[j] += (double)a[e] * b[e];
            order[j] = j;
        }
        for (int a = 1; a < ng; a++) /* insertion sorts: stable */
            for (int b = a; b > 0 && cos[order[b]] > cos[order[b - 1]]; b--) {
                int t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
        int k = K < ng ? K : ng;
        for (int a = 1; a < k; a++)
            for (int b = a; b > 0; b--) {
                float sb = i2t ? itm[q * nt + order[b]] : itm[order[b] * nt + q];
                float sa = i2t ? itm[q * nt + order[b - 1]] : itm[order[b - 1] * nt + q];
                if (!(sb > sa)) break;
                int t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
        rank[q] = 0;
        for (int p = 0; p < ng && !rank[q]; p++)
            if (i2t ? order[p] == cap_of[q] : cap_of[order[p]] == q) rank[q] = p + 1;
    }
    return summary(rank, nq);
}

static void assert_ranks(const char *what, ranks want, double r1, double r5, double r10, double mean) {
    if (fabs(want.r1 - r1) > 1e-12 || fabs(want.r5 - r5) > 1e-12 || fabs(want.r10 - r10) > 1e-12 ||
        fabs(want.mean - mean) > 1e-9)
        fail_msg("%s: R@1/5/10 %.3f %.3f %.3f mean rank %.2f; the two-stage ranks give %.3f %.3f %.3f %.2f", what, r1,
                 r5, r10, mean, want.r1, want.r5, want.r10, want.mean);
}

static void test_eval_rerank(void **state) {
    world *w = *state;
    const char *d[N];
    int cap_of[N], nt = distinct(w, d, cap_of);
    assert_int_equal(nt, 8);
    float *px = falloc((size_t)N * 3 * S * S), itm[N * N], ie[N * 32], te[N * 32];
    vlp_error err = {0};
    for (int i = 0; i < N; i++) check(vlp_preprocess_image_file(w->m, w->images[i], px + (size_t)i * 3 * S * S, &err), &err);
    check(vlp_itm_scores(w->m, px, N, d, nt, NULL, 0, itm, &err), &err);
    check(vlp_encode_images(w->m, px, N, ie, &err), &err);
    check(vlp_encode_texts(w->m, d, nt, te, &err), &err);
    float lo = 1, hi = 0;
    for (int i = 0; i < N * nt; i++) lo = fminf(lo, itm[i]), hi = fmaxf(hi, itm[i]);
    if (!(lo > 0 && hi < 1 && hi - lo > 0.05)) fail_msg("ITM probabilities %g .. %g", lo, hi); /* they differ */

    vlp_eval_result base = evaluate(w, 0), one = evaluate(w, 1), all = evaluate(w, 100), three = evaluate(w, 3);
    assert_int_equal(base.rerank, 0);
    assert_int_equal(all.rerank, 100);
    assert_int_equal(three.texts, nt);
    /* top 1: nothing to re-order */
    assert_ranks("rerank 1, image->text", (ranks){base.i2t_r1, base.i2t_r5, base.i2t_r10, base.i2t_mean_rank},
                 one.rr_i2t_r1, one.rr_i2t_r5, one.rr_i2t_r10, one.rr_i2t_mean_rank);
    assert_ranks("rerank 1, text->image", (ranks){base.t2i_r1, base.t2i_r5, base.t2i_r10, base.t2i_mean_rank},
                 one.rr_t2i_r1, one.rr_t2i_r5, one.rr_t2i_r10, one.rr_t2i_mean_rank);
    /* the dual encoder alone, worked out here (K 0: the cosine order) */
    assert_ranks("no rerank, image->text", two_stage(true, 0, itm, ie, te, nt, cap_of), base.i2t_r1, base.i2t_r5,
                 base.i2t_r10, base.i2t_mean_rank);
    assert_ranks("no rerank, text->image", two_stage(false, 0, itm, ie, te, nt, cap_of), base.t2i_r1, base.t2i_r5,
                 base.t2i_r10, base.t2i_mean_rank);
    /* every item re-ranked: the ITM order alone; three: the two stages */
    assert_ranks("rerank all, image->text", two_stage(true, 100, itm, ie, te, nt, cap_of), all.rr_i2t_r1,
                 all.rr_i2t_r5, all.rr_i2t_r10, all.rr_i2t_mean_rank);
    assert_ranks("rerank all, text->image", two_stage(false, 100, itm, ie, te, nt, cap_of), all.rr_t2i_r1,
                 all.rr_t2i_r5, all.rr_t2i_r10, all.rr_t2i_mean_rank);
    assert_ranks("rerank 3, image->text", two_stage(true, 3, itm, ie, te, nt, cap_of), three.rr_i2t_r1,
                 three.rr_i2t_r5, three.rr_i2t_r10, three.rr_i2t_mean_rank);
    assert_ranks("rerank 3, text->image", two_stage(false, 3, itm, ie, te, nt, cap_of), three.rr_t2i_r1,
                 three.rr_t2i_r5, three.rr_t2i_r10, three.rr_t2i_mean_rank);
    /* the test has teeth: re-ranking changed the ranks here */
    assert_true(fabs(all.rr_i2t_mean_rank - base.i2t_mean_rank) > 0.05 &&
                fabs(three.rr_t2i_mean_rank - base.t2i_mean_rank) + fabs(three.rr_i2t_mean_rank - base.i2t_mean_rank) >
                    0.05);
    free(px);
}

static void test_itm_scores(void **state) {
    world *w = *state;
    float *px = falloc((size_t)4 * 3 * S * S), every[4 * 3], some[4];
    const char *texts[] = {"a red cat", "an old tree", "the blue dog"};
    vlp_error err = {0};
    for (int i = 0; i < 4; i++) check(vlp_preprocess_image_file(w->m, w->images[i], px + (size_t)i * 3 * S * S, &err), &err);
    assert_true(vlp_model_has_fusion(w->m));
    check(vlp_itm_scores(w->m, px, 4, texts, 3, NULL, 0, every, &err), &err);
    int pairs[] = {3, 2, 0, 0, 1, 2, 3, 0};
    check(vlp_itm_scores(w->m, px, 4, texts, 3, pairs, 4, some, &err), &err);
    for (int p = 0; p < 4; p++) /* the same pairs; other company in the fusion forward's GEMMs: ulps apart */
        assert_close("chosen pairs", &some[p], &every[pairs[2 * p] * 3 + pairs[2 * p + 1]], 1, 1e-6, 0);
    int bad[] = {0, 3};
    assert_int_equal(vlp_itm_scores(w->m, px, 4, texts, 3, bad, 1, some, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "pair 0 is (image 0, text 3) of 4 images and 3 texts"));
    /* a model without a fusion encoder: the API's model of test_c_api */
    vlp_model_opts o = vlp_model_opts_default();
    o.vocab = ref_path("api_merges.txt");
    vlp_model *plain;
    check(vlp_model_load(&plain, ref_path("api_model.safetensors"), &o, &err), &err);
    assert_false(vlp_model_has_fusion(plain));
    assert_int_equal(vlp_itm_scores(plain, px, 1, texts, 1, NULL, 0, some, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "no fusion encoder"));
    vlp_eval_opts eo = vlp_eval_opts_default();
    eo.data = w->tsv, eo.rerank = 4;
    vlp_eval_result r;
    assert_int_equal(vlp_eval(plain, &eo, &r, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "re-ranking needs a model with a fusion encoder"));
    vlp_eval_result_free(&r);
    vlp_model_free(plain);
    eo.rerank = -1;
    assert_int_equal(vlp_eval(w->m, &eo, &r, &err), VLP_ERR_ARG);
    vlp_eval_result_free(&r);
    free(px);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reranked_ranks),
        cmocka_unit_test_setup_teardown(test_eval_rerank, setup, teardown),
        cmocka_unit_test_setup_teardown(test_itm_scores, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
