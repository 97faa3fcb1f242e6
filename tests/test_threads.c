/* The ops promise results that do not depend on the OpenMP thread count:
 * reductions over rows are split by output column and every head of the
 * attention runs its GEMMs on one thread. Each op that reduces or runs heads
 * is run on 1 and on 2 threads here and must agree to the bit.
 *
 * The linear layers are left out on purpose: their GEMMs run on OpenBLAS's
 * threads (its OpenMP build follows omp_get_max_threads), and whether
 * OpenBLAS sums the same way on 1 and 2 threads depends on its kernel
 * (Cooperlake: identical; Haswell, forced by OPENBLAS_CORETYPE: not, for a
 * 68x144x48 sgemm). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/parallel.h"
#include "ops/ops.h"

enum { B = 3, T = 37, C = 96, NH = 4, V = 50, N = B * T };

typedef struct outputs {
    float ln_out[N * C], ln_dinp[N * C], ln_dw[C], ln_db[C];
    float lin_db[C];
    float att_out[N * C], att[B * NH * T * T], dqkv[N * 3 * C];
    float dwte[V * C], dwpe[T * C];
    float cls_dinp[B * (T - 1) * C], dcls[C], dpos[T * C];
} outputs;

static void run_ops(outputs *o, int threads) {
    omp_set_num_threads(threads);
    memset(o, 0, sizeof *o);
    rng r = {99};
    float *x = falloc(N * 3 * C), *dy = falloc(N * 3 * C), *w = falloc(C), *b = falloc(C);
    float *mean = falloc(N), *rstd = falloc(N), *scratch = falloc(attention_scratch_floats(B, T, NH));
    int32_t ids[N];
    fill_normal(&r, x, N * 3 * C, 1.0f, 0.5f);
    fill_normal(&r, dy, N * 3 * C, 1.0f, 0.0f);
    fill_normal(&r, w, C, 0.2f, 1.0f);
    fill_normal(&r, b, C, 0.2f, 0.0f);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(rng_u64(&r) % 7); /* many repeats */

    layernorm_forward(o->ln_out, mean, rstd, x, w, b, N, C, 1e-5f);
    layernorm_backward(o->ln_dinp, o->ln_dw, o->ln_db, dy, x, w, mean, rstd, N, C);
    linear_backward(NULL, NULL, NULL, o->lin_db, dy, x, w, N, C, C);
    assert_int_equal(attention_forward(NULL, o->att_out, o->att, x, B, T, C, NH, true, NULL),
                     VLP_OK);
    attention_backward(NULL, o->dqkv, dy, x, o->att, scratch, B, T, C, NH, true);
    embedding_backward(o->dwte, o->dwpe, dy, ids, B, T, C, V);
    cls_pos_backward(o->cls_dinp, o->dcls, o->dpos, dy, NULL, B, T - 1, T - 1, C);
    free(x), free(dy), free(w), free(b), free(mean), free(rstd), free(scratch);
}

static void test_ops_bitwise_across_threads(void **state) {
    int saved = omp_get_max_threads();
    outputs *one = malloc(sizeof *one), *two = malloc(sizeof *two);
    assert_non_null(one);
    assert_non_null(two);
    run_ops(one, 1);
    run_ops(two, 2);
    omp_set_num_threads(saved);
#define SAME(field) assert_memory_equal(one->field, two->field, sizeof one->field)
    SAME(ln_out), SAME(ln_dinp), SAME(ln_dw), SAME(ln_db), SAME(lin_db);
    SAME(att_out), SAME(att), SAME(dqkv), SAME(dwte), SAME(dwpe);
    SAME(cls_dinp), SAME(dcls), SAME(dpos);
#undef SAME
    free(one), free(two);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_bitwise_across_threads),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
