/* The bf16 GEMM against a double-precision reference computed on the same
 * bf16-rounded inputs. Products of two bf16 are exact in fp32, so the only
 * error left is fp32 accumulation:
 *     |C − ref| <= 1e-5 · Σ_k |a_ik · b_kj|   (plus beta's term)
 * Rounding the inputs any other way (truncation, no rounding at all) moves
 * results by ~2^-9 of that sum and fails. Every transpose combination, the
 * shapes of the models and ragged ones (M, N, K not multiples of the 12×32
 * tile or the 1024 K block, odd K, K = 1, K = 0), alpha/beta, a bias, strided operands, and
 * calls from inside a parallel region (per-thread workspace slots); the
 * AVX512-BF16 kernel (when the CPU has it) and the portable one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "ops/bf16.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "testutil.h"

typedef bool (*gemm_fn)(bool, bool, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int, const float *, void *, int);

typedef struct shape {
    int M, N, K;
} shape;

/* op(X)[r][k] of a matrix stored with leading dimension ld */
static float at(const float *X, int ld, bool trans, int r, int k) {
    return trans ? X[(size_t)k * ld + r] : X[(size_t)r * ld + k];
}

static void check_one(gemm_fn fn, const char *kernel, shape s, bool ta, bool tb, float alpha,
                      float beta, int pad, bool with_bias) {
    int M = s.M, N = s.N, K = s.K;
    /* leading dimensions with `pad` extra columns: strided operands */
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    size_t nc = (size_t)M * ldc;
    rng r = {(uint64_t)(M * 131 + N * 17 + K + ta * 7 + tb * 3 + pad)};
    float *A = falloc(na), *B = falloc(nb), *C = falloc(nc), *C0 = falloc(nc);
    float *bias = NULL;
    if (with_bias) {
        bias = falloc((size_t)N);
        fill_normal(&r, bias, (size_t)N, 1.0f, 0.5f);
    }
    fill_normal(&r, A, na, 1.0f, 0.1f);
    fill_normal(&r, B, nb, 1.0f, -0.1f);
    fill_normal(&r, C, nc, 1.0f, 0.0f);
    if (beta == 0.0f) /* beta = 0 must not read C: NaN there must not leak */
        for (size_t i = 0; i < nc; i++)
            C[i] = NAN;
    memcpy(C0, C, nc * sizeof(float));
    int threads = omp_get_max_threads();
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    assert_non_null(ws);
    assert_true(fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, ws, threads));

    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double ref = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double p = (double)bf16_round(at(A, lda, ta, i, k)) *
                           (double)bf16_round(at(B, ldb, !tb, j, k));
                ref += p;
                mag += fabs(p);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[(size_t)i * ldc + j];
            double bj = bias ? bias[j] : 0.0;
            double want = alpha * ref + bj + beta * c0;
            double tol = 1e-5 * fabs(alpha) * mag + 1e-6 * (fabs(beta * c0) + fabs(bj)) + 1e-30;
            double got = C[(size_t)i * ldc + j];
            if (!(fabs(got - want) <= tol))
                fail_msg(
                    "%s gemm %dx%dx%d ta=%d tb=%d alpha=%g beta=%g pad=%d bias=%d: C[%d][%d] = "
                    "%.9g, want %.9g (tol %.3g)",
                    kernel, M, N, K, ta, tb, alpha, beta, pad, with_bias, i, j, got, want, tol);
        }
        /* the padding columns of C are untouched */
        for (int j = N; j < ldc; j++)
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float)))
                fail_msg("%s gemm %dx%dx%d wrote C[%d][%d], past N", kernel, M, N, K, i, j);
    }
    free(A), free(B), free(C), free(C0), free(ws), free(bias);
}

static const shape shapes[] = {
    {1, 1, 1},     {12, 32, 2},   {13, 33, 3},   {11, 31, 1},     {65, 65, 64},  {65, 64, 65},
    {50, 96, 385}, {37, 47, 769}, {130, 70, 33}, {251, 1600, 17}, {24, 64, 384}, {7, 5, 1000},
};

static void run_all(gemm_fn fn, const char *kernel) {
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            check_one(fn, kernel, shapes[s], t & 1, t >> 1, 1.0f, 0.0f, 0, false);
    /* alpha, beta, strides and a bias (added once, though K spans 3 blocks) */
    check_one(fn, kernel, (shape){13, 40, 2100}, false, true, 1.0f, 0.0f, 1, true);
    check_one(fn, kernel, (shape){13, 40, 2100}, true, false, 0.5f, 1.0f, 2, true);
    check_one(fn, kernel, (shape){45, 70, 129}, false, true, 0.125f, 1.0f, 3, false);
    check_one(fn, kernel, (shape){45, 70, 129}, true, false, -2.0f, 0.5f, 5, false);
    check_one(fn, kernel, (shape){29, 33, 64}, true, true, 1.0f, 1.0f, 1, false);
    check_one(fn, kernel, (shape){50, 96, 1000}, false, true, 1.0f, 0.0f, 2, true);
    check_one(fn, kernel, (shape){13, 33, 3}, true, false, 1.0f, 1.0f, 0, true);
    check_one(fn, kernel, (shape){5, 7, 0}, false, false, 1.0f, 0.0f, 0,
              true); /* K = 0: C = bias */
}

static void test_avx512_bf16_kernel(void **state) {
    if (!gemm_bf16_hw()) {
        printf("# this CPU has no AVX512-BF16: only the portable kernel is tested\n");
        skip();
    }
    run_all(gemm_bf16, "avx512-bf16");
}

static void test_portable_kernel(void **state) { run_all(gemm_bf16_portable, "portable"); }

/* A bigger shape on the model's path: the two kernels agree closely (they
 * sum in different orders), and both are within bf16 rounding of fp32. */
static void test_model_shape_close_to_fp32(void **state) {
    int M = 520, N = 768, K = 256;
    rng r = {5};
    float *A = falloc((size_t)M * K), *W = falloc((size_t)N * K), *C = falloc((size_t)M * N),
          *R = falloc((size_t)M * N);
    fill_normal(&r, A, (size_t)M * K, 1.0f, 0.0f);
    fill_normal(&r, W, (size_t)N * K, 0.05f, 0.0f);
    int threads = omp_get_max_threads();
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    vlp_sgemm(false, true, M, N, K, 1.0f, A, K, W, K, 0.0f, R, N);
    assert_true(gemm_bf16(false, true, M, N, K, 1.0f, A, K, W, K, 0.0f, C, N, NULL, ws, threads));
    /* relative error of bf16 inputs: 2^-9 each; over K random terms ~2^-8.5/sqrt(K) · |sum| */
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < (size_t)M * N; i++) {
        num += ((double)C[i] - R[i]) * ((double)C[i] - R[i]);
        den += (double)R[i] * R[i];
    }
    double rel = sqrt(num / den);
    printf("# bf16 vs fp32 relative RMS error %.2e (520x768x256)\n", rel);
    assert_true(rel < 5e-3);
    assert_true(rel > 1e-4); /* inputs really were rounded to bf16 */
    free(A), free(W), free(C), free(R), free(ws);
}

/* Called from every thread of a parallel region, each with its own slot:
 * the per-head attention does this. A thread without a slot is refused. */
static void test_inside_parallel_region(void **state) {
    int threads = omp_get_max_threads() < 2 ? 2 : omp_get_max_threads();
    int M = 65, N = 64, K = 65, J = 8;
    rng r = {11};
    float *A = falloc((size_t)J * M * K), *B = falloc((size_t)J * K * N),
          *C = falloc((size_t)J * M * N), *R = falloc((size_t)J * M * N);
    fill_normal(&r, A, (size_t)J * M * K, 1.0f, 0.0f);
    fill_normal(&r, B, (size_t)J * K * N, 1.0f, 0.0f);
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    for (int j = 0; j < J; j++)
        assert_true(gemm_bf16(false, false, M, N, K, 1.0f, A + (size_t)j * M * K, K,
                              B + (size_t)j * K * N, N, 0.0f, R + (size_t)j * M * N, N, NULL, ws,
                              1));
    int refused = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : refused)
    for (int j = 0; j < J; j++)
        refused +=
            !gemm_bf16(false, false, M, N, K, 1.0f, A + (size_t)j * M * K, K, B + (size_t)j * K * N,
                       N, 0.0f, C + (size_t)j * M * N, N, NULL, ws, threads);
    assert_int_equal(refused, 0);
    /* one thread alone and many threads in a region: the same sums */
    assert_memory_equal(C, R, sizeof(float) * J * M * N);
#ifdef _OPENMP
    int no_slot = 0;
#pragma omp parallel num_threads(2) reduction(+ : no_slot)
    if (omp_get_thread_num() == 1)
        no_slot += !gemm_bf16(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N, NULL, ws, 1);
    assert_int_equal(no_slot, 1);
#endif
    free(A), free(B), free(C), free(R), free(ws);
}

/* Round to nearest, ties to even, and NaN kept. */
static void test_bf16_round(void **state) {
    assert_true(bf16_round(1.0f) == 1.0f);
    assert_true(bf16_round(1.0f + 0x1p-8f) == 1.0f);               /* tie → even (down) */
    assert_true(bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f); /* tie → even (up) */
    assert_true(bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);
    assert_true(bf16_round(-3.0f) == -3.0f);
    assert_true(isnan(bf16_round(NAN)));
    assert_true(isinf(bf16_round(INFINITY)));
}

static uint16_t bits_of(float f) { /* f holds a bf16 value exactly */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* An operand given as bf16 (gemm_bf16_ex's A16, B16): the same products as
 * gemm_bf16 on the same values in fp32, bit for bit (both round the fp32
 * form to the same bf16), with odd K, ragged M and N, strided rows, a bias,
 * K over several blocks. */
static void check_bf16_operands(bool portable, const char *kernel) {
    static const shape sh[] = {{1, 1, 1}, {13, 33, 3}, {65, 64, 65}, {50, 96, 385}, {37, 47, 769}, {24, 64, 384}, {9, 40, 2100}};
    int threads = omp_get_max_threads();
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    gemm_fn ref = portable ? gemm_bf16_portable : gemm_bf16;
    for (size_t t = 0; t < sizeof sh / sizeof *sh; t++)
        for (int v = 0; v < 3; v++) { /* A16 with op(B) = B, A16 with op(B) = Bᵀ, B16 */
            bool tb = v == 1, b16 = v == 2;
            int M = sh[t].M, N = sh[t].N, K = sh[t].K, lda = K + 3, ldb = (tb ? K : N) + 1;
            rng r = {(uint64_t)(M * 7 + N * 3 + K + v)};
            size_t na = (size_t)M * lda, nb = (size_t)(tb ? N : K) * ldb;
            float *A = falloc(na), *B = falloc(nb), *bias = falloc((size_t)N),
                  *C1 = falloc((size_t)M * N), *C2 = falloc((size_t)M * N);
            uint16_t *A16 = malloc(sizeof(uint16_t) * na), *B16 = malloc(sizeof(uint16_t) * nb);
            fill_normal(&r, A, na, 1.0f, 0.0f);
            fill_normal(&r, B, nb, 1.0f, 0.0f);
            fill_normal(&r, bias, (size_t)N, 1.0f, 0.0f);
            for (size_t i = 0; i < na; i++) A16[i] = bits_of(A[i] = bf16_round(A[i]));
            for (size_t i = 0; i < nb; i++) B16[i] = bits_of(B[i] = bf16_round(B[i]));
            gemm_bf16_extra x = {.portable = portable};
            if (b16) x.B16 = B16;
            else x.A16 = A16;
            assert_true(ref(false, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C1, N, bias, ws, threads));
            assert_true(gemm_bf16_ex(false, tb, M, N, K, 1.0f, b16 ? A : NULL, lda, b16 ? NULL : B,
                                     ldb, 0.0f, C2, N, bias, &x, ws, threads));
            if (memcmp(C1, C2, sizeof(float) * (size_t)M * N))
                fail_msg("%s gemm %dx%dx%d tb=%d with bf16 %s differs from fp32 operands", kernel, M,
                         N, K, tb, b16 ? "B" : "A");
            free(A), free(B), free(bias), free(C1), free(C2), free(A16), free(B16);
        }
    /* the layouts the bf16 packers do not read are refused, nothing done */
    uint16_t one = 0x3f80;
    float c = 7.0f, f = 1.0f;
    gemm_bf16_extra a16 = {.A16 = &one, .portable = portable}, b16 = {.B16 = &one, .portable = portable};
    assert_false(gemm_bf16_ex(true, false, 1, 1, 1, 1.0f, NULL, 1, &f, 1, 0.0f, &c, 1, NULL, &a16, ws, threads));
    assert_false(gemm_bf16_ex(false, true, 1, 1, 1, 1.0f, &f, 1, NULL, 1, 0.0f, &c, 1, NULL, &b16, ws, threads));
    assert_true(c == 7.0f);
    free(ws);
}

static void test_bf16_operands(void **state) {
    check_bf16_operands(true, "portable");
    if (gemm_bf16_hw()) check_bf16_operands(false, "avx512-bf16");
}

/* a_rowsum: op(A)'s rows summed in fp32 while packed (the bias gradient of
 * a weight-gradient GEMM), added to what is there; within 1e-6 of a double
 * sum, the same bits from both kernels, once per row although N spans two
 * column blocks (N > 1536) and K three row blocks, and the GEMM itself
 * unchanged. */
static void test_row_sums(void **state) {
    static const shape sh[] = {{1, 1, 1}, {13, 33, 7}, {37, 1601, 769}, {130, 40, 2100}};
    int threads = omp_get_max_threads();
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    for (size_t t = 0; t < sizeof sh / sizeof *sh; t++)
        for (int ta = 0; ta < 2; ta++) {
            int M = sh[t].M, N = sh[t].N, K = sh[t].K, lda = (ta ? M : K) + 2;
            size_t na = (size_t)(ta ? K : M) * lda;
            rng r = {(uint64_t)(M + N + K + ta)};
            float *A = falloc(na), *B = falloc((size_t)K * N), *C1 = falloc((size_t)M * N),
                  *C2 = falloc((size_t)M * N), *sums[2] = {falloc((size_t)M), falloc((size_t)M)};
            fill_normal(&r, A, na, 1.0f, 0.3f);
            fill_normal(&r, B, (size_t)K * N, 1.0f, 0.0f);
            assert_true(gemm_bf16(ta, false, M, N, K, 1.0f, A, lda, B, N, 0.0f, C1, N, NULL, ws, threads));
            for (int p = 0; p < 2; p++) {
                for (int i = 0; i < M; i++) sums[p][i] = 0.5f; /* added to */
                gemm_bf16_extra x = {.a_rowsum = sums[p], .portable = p == 0};
                assert_true(gemm_bf16_ex(ta, false, M, N, K, 1.0f, A, lda, B, N, 0.0f, C2, N, NULL,
                                         &x, ws, threads));
                if (p == 1 || !gemm_bf16_hw())
                    assert_memory_equal(C1, C2, sizeof(float) * (size_t)M * N);
            }
            for (int i = 0; i < M; i++) {
                double want = 0.5, mag = 0.5;
                for (int k = 0; k < K; k++) {
                    double a = at(A, lda, ta, i, k);
                    want += a, mag += fabs(a);
                }
                if (!(fabs(sums[0][i] - want) <= 1e-6 * mag))
                    fail_msg("row sum %d of a %dx%d op(A) (ta=%d, N=%d): %.9g, want %.9g", i, M, K,
                             ta, N, sums[0][i], want);
                if (memcmp(&sums[0][i], &sums[1][i], sizeof(float)))
                    fail_msg("row sum %d (ta=%d): portable %.9g, avx512 %.9g", i, ta, sums[0][i], sums[1][i]);
            }
            free(A), free(B), free(C1), free(C2), free(sums[0]), free(sums[1]);
        }
    free(ws);
}

/* The ops that write bf16 for those GEMMs write the fp32 op's values rounded. */
static void test_bf16_writers(void **state) {
    int N = 7, C = 45;
    rng r = {9};
    float *x = falloc((size_t)N * C), *w = falloc((size_t)C), *b = falloc((size_t)C), *y = falloc((size_t)N * C);
    float m1[7], s1[7], m2[7], s2[7];
    uint16_t *y16 = malloc(sizeof(uint16_t) * (size_t)N * C);
    fill_normal(&r, x, (size_t)N * C, 2.0f, 0.5f);
    fill_normal(&r, w, (size_t)C, 1.0f, 1.0f);
    fill_normal(&r, b, (size_t)C, 0.5f, 0.0f);
    layernorm_forward(y, m1, s1, x, w, b, N, C, 1e-5f);
    layernorm_forward_bf16(y16, m2, s2, x, w, b, N, C, 1e-5f);
    assert_memory_equal(m1, m2, sizeof m1);
    assert_memory_equal(s1, s2, sizeof s1);
    for (int i = 0; i < N * C; i++) assert_int_equal(y16[i], bf16_bits(y[i]));
    for (int a = 0; a < 2; a++) {
        vlp_act act = a ? VLP_ACT_QUICKGELU : VLP_ACT_GELU;
        act_forward(act, y, x, (size_t)N * C);
        act_forward_bf16(act, y16, x, (size_t)N * C);
        for (int i = 0; i < N * C; i++) assert_int_equal(y16[i], bf16_bits(y[i]));
    }
    free(x), free(w), free(b), free(y), free(y16);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_round),
        cmocka_unit_test(test_avx512_bf16_kernel),
        cmocka_unit_test(test_portable_kernel),
        cmocka_unit_test(test_model_shape_close_to_fp32),
        cmocka_unit_test(test_inside_parallel_region),
        cmocka_unit_test(test_bf16_operands),
        cmocka_unit_test(test_row_sums),
        cmocka_unit_test(test_bf16_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
