/* Evaluation maths on hand-made embeddings: ranks and recalls (ties against
 * the target), several positives per query, zero-shot top-1/top-5/balanced
 * and majority baseline, and the L-BFGS linear probe on separable and on
 * noisy data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "eval/eval.h"
#include "eval/linear_probe.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* 2-D unit vectors at angles: similarities are cosines of angle differences */
static void at_angles(float *v, const double *deg, int n) {
    for (int i = 0; i < n; i++) v[2 * i] = (float)cos(deg[i] * M_PI / 180), v[2 * i + 1] = (float)sin(deg[i] * M_PI / 180);
}

static void test_retrieval_ranks(void **state) {
    float q[3 * 2], g[4 * 2];
    at_angles(q, (double[]){0, 90, 180}, 3);
    at_angles(g, (double[]){10, 80, 200, 5}, 4);
    /* query 0 (0°): gallery by similarity 5°(3), 10°(0), 80°(1), 200°(2) */
    int target[3] = {0, 1, 2};
    retrieval_result r;
    vlp_error err = {0};
    check(retrieval_eval(q, g, target, 3, 4, 2, &r, &err), &err);
    /* ranks: q0 → item 0 is 2nd; q1 (90°) → item 1 (80°) is 1st; q2 (180°) → item 2 (200°) is 1st */
    assert_int_equal(r.n, 3);
    assert_true(fabs(r.r1 - 2.0 / 3) < 1e-12 && r.r5 == 1.0 && fabs(r.mean_rank - 4.0 / 3) < 1e-12);
    assert_true(r.median_rank == 1.0);
    /* several positives: q0 owns items 0 and 3 → best (3) is first */
    int owner[4] = {0, 1, 2, 0};
    check(retrieval_eval_multi(q, g, owner, 3, 4, 2, &r, &err), &err);
    assert_true(r.r1 == 1.0);
    int bad[3] = {0, 1, 7};
    assert_int_equal(retrieval_eval(q, g, bad, 3, 4, 2, &r, &err), VLP_ERR_ARG);
}

static void test_distinct_strings(void **state) {
    const char *v[] = {"b", "a", "", "b", NULL};
    int idx[5], nd = -1;
    const char **d = distinct_strings(v, 5, &nd, idx);
    assert_non_null(d);
    assert_int_equal(nd, 2);
    assert_string_equal(d[0], "a");
    assert_string_equal(d[1], "b");
    int want[5] = {1, 0, -1, 1, -1};
    assert_memory_equal(idx, want, sizeof want);
    free(d);
}

static void test_zeroshot(void **state) {
    float cls[3 * 2], img[5 * 2];
    at_angles(cls, (double[]){0, 120, 240}, 3);
    at_angles(img, (double[]){10, 100, 250, 50, 300}, 5);
    /* nearest class: 0, 1, 2, 0, 2 */
    int label[5] = {0, 1, 2, 1, -1}; /* the last one unlabelled: left out */
    zeroshot_result z;
    vlp_error err = {0};
    check(zeroshot_eval(img, cls, label, 5, 3, 2, &z, &err), &err);
    assert_int_equal(z.n, 4);
    assert_true(fabs(z.top1 - 0.75) < 1e-12);
    assert_true(fabs(z.balanced - (1.0 + 0.5 + 1.0) / 3) < 1e-12);
    assert_true(fabs(z.majority - 0.5) < 1e-12);
    assert_true(z.top5 == 1.0); /* 3 classes: always within 5 */
}

static void test_linear_probe(void **state) {
    enum { N = 600, D = 8, C = 3 };
    float *x = falloc(N * D);
    int y[N];
    bool test[N];
    rng r = {4};
    for (int i = 0; i < N; i++) { /* three separated blobs */
        y[i] = i % C;
        for (int d = 0; d < D; d++) x[i * D + d] = (float)((d == y[i] ? 3.0 : 0.0) + rng_normal(&r));
        test[i] = i % 4 == 0;
    }
    probe_result p;
    vlp_error err = {0};
    check(linear_probe(x, y, test, N, D, C, 1e-3, 500, &p, &err), &err);
    assert_true(p.test_acc > 0.9 && p.train_acc > 0.9);
    assert_true(p.iterations > 1 && p.iterations < 500);
    /* pure noise: chance-level held-out accuracy (and no crash) */
    for (int i = 0; i < N * D; i++) x[i] = rng_normal(&r);
    check(linear_probe(x, y, test, N, D, C, 1e-3, 500, &p, &err), &err);
    assert_true(p.test_acc < 0.5);
    /* a stronger penalty gives a larger (regularised) training loss */
    probe_result strong;
    check(linear_probe(x, y, test, N, D, C, 10.0, 500, &strong, &err), &err);
    assert_true(strong.final_loss > p.final_loss);
    int bad[N];
    memcpy(bad, y, sizeof bad);
    bad[7] = 5;
    assert_int_equal(linear_probe(x, bad, test, N, D, C, 1e-3, 500, &p, &err), VLP_ERR_ARG);
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retrieval_ranks),
        cmocka_unit_test(test_distinct_strings),
        cmocka_unit_test(test_zeroshot),
        cmocka_unit_test(test_linear_probe),
    };
    return cmocka_run_group_tests_name("eval", tests, NULL, NULL);
}
