/* The int8 linear layer (src/ops/gemm_int8.c) against a reference written
 * here from its definition: weights quantized per output channel,
 * activations per row (scale max|x|/127, round to nearest even), the integer
 * sum Σ qa·qw exact, then (float)sum · sa · sw + bias. The kernels must
 * equal it bit for bit, on ragged shapes (rows, channels and widths not
 * multiples of the 12×32 tile or of the 4-byte groups), and the VNNI kernel
 * (when the CPU has it) must equal the portable one. A wrong packing, a
 * wrong +128 correction or a lost pad column changes the integers and fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/gemm_int8.h"
#include "testutil.h"

typedef void (*q8_fn)(float *, const float *, const q8_matrix *, const float *, int, void *);

/* the reference's own quantization of one row to [-127, 127] */
static float ref_quantize(int8_t *q, const float *x, int C) {
    float amax = 0.0f;
    for (int c = 0; c < C; c++) amax = fmaxf(amax, fabsf(x[c]));
    if (amax == 0.0f) {
        memset(q, 0, (size_t)C);
        return 0.0f;
    }
    for (int c = 0; c < C; c++) q[c] = (int8_t)nearbyintf(x[c] * (127.0f / amax));
    return amax / 127.0f;
}

/* w (OC, C) quantized per channel into qw (OC·C) and sw (OC), packed, then
 * out (N, OC) = fn on x (N, C) and bias; the packed matrix freed again */
static void quantize_and_run(q8_fn fn, float *out, const float *x, const float *w, int8_t *qw, float *sw,
                             const float *bias, int N, int C, int OC) {
    q8_matrix m;
    vlp_error err = {0};
    assert_true(q8_quantize_rows(qw, sw, w, OC, C));
    assert_int_equal(q8_matrix_init(&m, qw, sw, OC, C, &err), VLP_OK);
    void *ws = malloc(q8_workspace_bytes(N, C));
    fn(out, x, &m, bias, N, ws);
    q8_matrix_free(&m);
    free(ws);
}

static void check_shape(q8_fn fn, const char *kernel, int N, int C, int OC, bool with_bias) {
    rng r = {(uint64_t)(N * 1009 + C * 31 + OC)};
    float *x = falloc((size_t)N * C), *w = falloc((size_t)OC * C), *out = falloc((size_t)N * OC);
    float *bias = with_bias ? falloc((size_t)OC) : NULL;
    fill_normal(&r, x, (size_t)N * C, 1.0f, 0.05f);
    fill_normal(&r, w, (size_t)OC * C, 0.05f, 0.0f);
    if (bias) fill_normal(&r, bias, (size_t)OC, 0.5f, 0.0f);
    if (N > 2) memset(x + (size_t)C, 0, sizeof(float) * C); /* a zero row: scale 0 */
    int8_t *qw = malloc((size_t)OC * C), *qa = malloc((size_t)C);
    float *sw = falloc((size_t)OC);
    for (size_t i = 0; i < (size_t)N * OC; i++) out[i] = NAN; /* every output written */
    quantize_and_run(fn, out, x, w, qw, sw, bias, N, C, OC);
    for (int n = 0; n < N; n++) {
        float sa = ref_quantize(qa, x + (size_t)n * C, C);
        for (int o = 0; o < OC; o++) {
            int64_t s = 0;
            for (int c = 0; c < C; c++) s += (int64_t)qa[c] * qw[(size_t)o * C + c];
            float want = (float)s * sa * sw[o];
            if (bias) want += bias[o];
            float got = out[(size_t)n * OC + o];
            if (memcmp(&got, &want, sizeof got))
                fail_msg("%s int8 linear N=%d C=%d OC=%d bias=%d: out[%d][%d] = %.9g, want %.9g",
                         kernel, N, C, OC, with_bias, n, o, got, want);
        }
    }
    free(x), free(w), free(out), free(bias), free(qw), free(qa), free(sw);
}

static const int shapes[][3] = {
    {1, 1, 1},   {1, 5, 3},     {12, 32, 32},  {13, 33, 31}, {11, 4, 64},
    {65, 64, 65}, {50, 768, 96}, {49, 770, 33}, {97, 3072, 40}, {130, 255, 129},
};

static void run_all(q8_fn fn, const char *kernel) {
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        check_shape(fn, kernel, shapes[s][0], shapes[s][1], shapes[s][2], s % 2 == 1);
}

static void test_portable_kernel(void **state) { run_all(q8_linear_forward_portable, "portable"); }

/* the kernel of the active level (tests/run.sh runs this test at every level
 * the CPU has): AVX512-VNNI, AVX-VNNI, AVX2 or portable, each equal to the
 * reference bit for bit */
static void test_level_kernel(void **state) {
    printf("# level %s\n", q8_level());
    run_all(q8_linear_forward, q8_level());
}

/* The AVX2 kernel near the saturation bound of VPMADDUBSW: every
 * activation and weight at ±127 with the same sign along each pair, so a
 * pair is 2·127·127 = 32258 (just below 32767); fed q + 128 it would be
 * 2·255·127 and saturate. Checked against the exact integers whatever
 * kernel runs. */
static void test_extreme_values(void **state) {
    int N = 13, C = 64, OC = 33;
    float *x = falloc((size_t)N * C), *w = falloc((size_t)OC * C), *out = falloc((size_t)N * OC);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] = ((n + c / 2) % 2) ? 1.0f : -1.0f;
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) w[(size_t)o * C + c] = ((o + c / 2) % 2) ? 1.0f : -1.0f;
    int8_t qw[33 * 64];
    float sw[33];
    quantize_and_run(q8_linear_forward, out, x, w, qw, sw, NULL, N, C, OC);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float want = (n + o) % 2 ? -64.0f : 64.0f; /* ±1 · ±1: the same sign on every c, or the other */
            float got = out[(size_t)n * OC + o];
            if (fabsf(got - want) > 1e-4f) fail_msg("out[%d][%d] = %.6g, want %.6g", n, o, got, want);
        }
    free(x), free(w), free(out);
}

/* Per-channel symmetric quantization, on values whose results are known. */
static void test_quantize_rows(void **state) {
    const float w[2][4] = {{1.0f, -2.0f, 0.5f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    int8_t q[8];
    float s[2];
    assert_true(q8_quantize_rows(q, s, &w[0][0], 2, 4));
    assert_true(s[0] == 2.0f / 127.0f);
    assert_int_equal(q[0], 64); /* 63.5 → 64 (ties to even) */
    assert_int_equal(q[1], -127);
    assert_int_equal(q[2], 32); /* 31.75 */
    assert_int_equal(q[3], 0);
    assert_true(s[1] == 0.0f);
    for (int i = 4; i < 8; i++) assert_int_equal(q[i], 0);
    const float bad[2] = {1.0f, INFINITY};
    assert_false(q8_quantize_rows(q, s, bad, 1, 2));
    /* a row too small to scale (127 / max would overflow): zeros, no NaN */
    const float tiny[4] = {1e-35f, 0.0f, -1e-36f, 0.0f};
    assert_true(q8_quantize_rows(q, s, tiny, 1, 4));
    assert_true(s[0] == 0.0f);
    for (int i = 0; i < 4; i++) assert_int_equal(q[i], 0);
}

/* A row holding NaN gives NaN outputs for that row alone; a row of values
 * too small to scale gives zeros. */
static void test_nonfinite_row(void **state) {
    int N = 3, C = 8, OC = 5;
    float x[24], w[40], out[15];
    for (int i = 0; i < 24; i++) x[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 40; i++) w[i] = (float)(i % 5) - 2.0f;
    x[C + 2] = NAN;
    for (int c = 0; c < C; c++) x[2 * C + c] = c % 2 ? 1e-38f : 0.0f; /* tiny: a zero row */
    int8_t qw[40];
    float sw[5];
    quantize_and_run(q8_linear_forward, out, x, w, qw, sw, NULL, N, C, OC);
    for (int o = 0; o < OC; o++) {
        assert_true(isfinite(out[o]) && out[2 * OC + o] == 0.0f);
        assert_true(isnan(out[OC + o]));
    }
}

/* On a layer of the model's size the int8 result is within quantization
 * error of fp32: ~1% relative RMS, and not zero (it really was quantized). */
static void test_close_to_fp32(void **state) {
    int N = 200, C = 768, OC = 512;
    rng r = {3};
    float *x = falloc((size_t)N * C), *w = falloc((size_t)OC * C), *out = falloc((size_t)N * OC),
          *ref = falloc((size_t)N * OC), *sw = falloc((size_t)OC);
    fill_normal(&r, x, (size_t)N * C, 1.0f, 0.0f);
    fill_normal(&r, w, (size_t)OC * C, 0.03f, 0.0f);
    int8_t *qw = malloc((size_t)OC * C);
    quantize_and_run(q8_linear_forward, out, x, w, qw, sw, NULL, N, C, OC);
    vlp_sgemm(false, true, N, OC, C, 1.0f, x, C, w, C, 0.0f, ref, OC);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < (size_t)N * OC; i++) {
        num += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double rel = sqrt(num / den);
    printf("# int8 vs fp32 relative RMS error %.2e (200x768x512, normal data)\n", rel);
    assert_true(rel < 2e-2);
    assert_true(rel > 1e-4);
    free(x), free(w), free(out), free(ref), free(sw), free(qw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_rows),
        cmocka_unit_test(test_portable_kernel),
        cmocka_unit_test(test_level_kernel),
        cmocka_unit_test(test_extreme_values),
        cmocka_unit_test(test_nonfinite_row),
        cmocka_unit_test(test_close_to_fp32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
