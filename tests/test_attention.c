/* The attention core's two implementations — the fused short-sequence kernel
 * and the per-head GEMMs — against a double-precision reference written
 * here from the definition (scores q·k/√hs, keys past the query masked when
 * causal, softmax, P·V; the backward's dV = Pᵀ·dY, dS = P ⊙ (dP − Σ P⊙dP),
 * dQ = dS·K/√hs, dK = dSᵀ·Q/√hs), forward and backward, on ragged shapes:
 * one token, odd batches, sequences and head widths not multiples of the
 * kernel's 4×16 tile, cross-attention (Tq ≠ Tk), causal and not, the
 * largest the fused kernel takes. fp32 within 2e-5 of the reference's scale;
 * in bf16 mode (operands rounded) within 2e-2 and not equal to fp32: the
 * GEMMs, and the fused kernel on a CPU with AVX512-BF16 (without it, the
 * fused kernel computes fp32 in both modes: within 2e-5 in both).
 * Breaking the mask (a key past the query seen, or one before it hidden)
 * moves the outputs by far more than the tolerance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "testutil.h"

typedef struct shape {
    int B, Tq, Tk, C, NH;
    bool causal;
} shape;

static const shape shapes[] = {
    {1, 1, 1, 16, 1, false},  {1, 1, 1, 16, 1, true},   {3, 65, 65, 256, 4, false},
    {2, 77, 77, 128, 2, true}, {5, 7, 13, 48, 3, false}, {1, 33, 33, 88, 1, false},
    {3, 17, 17, 64, 1, true},  {1, 128, 128, 64, 1, true}, {2, 50, 50, 96, 1, false},
    {1, 5, 128, 128, 1, false}, {2, 9, 9, 45, 3, true}, /* odd head width: the pairs' pad */
};

typedef struct tensors {
    float *q, *kv, *out, *att, *dout, *dq, *dkv, *scratch;
    double *rout, *rdq, *rdk, *rdv;
} tensors;

/* q (B, Tq, C) dense; k|v interleaved per row (B·Tk, 2C): k at 0, v at C */
static void reference(const shape *s, const tensors *t, const float *dq0, const float *dkv0) {
    int hs = s->C / s->NH, C = s->C;
    double sc = 1.0 / sqrt((double)hs);
    double *p = malloc(sizeof(double) * s->Tq * s->Tk), *dp = malloc(sizeof(double) * s->Tq * s->Tk);
    for (int i = 0; i < s->B * s->Tq * C; i++) t->rout[i] = 0, t->rdq[i] = dq0[i];
    for (int i = 0; i < s->B * s->Tk * C; i++) t->rdk[i] = dkv0[(i / C) * 2 * C + i % C], t->rdv[i] = dkv0[(i / C) * 2 * C + C + i % C];
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++) {
            const float *q = t->q + (size_t)b * s->Tq * C + h * hs;
            const float *k = t->kv + (size_t)b * s->Tk * 2 * C + h * hs, *v = k + C;
            const float *dy = t->dout + (size_t)b * s->Tq * C + h * hs;
            for (int i = 0; i < s->Tq; i++) {
                int n = s->causal ? i + 1 : s->Tk;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) {
                    double d = 0;
                    for (int e = 0; e < hs; e++) d += (double)q[i * C + e] * k[j * 2 * C + e];
                    p[i * s->Tk + j] = d * sc, mx = fmax(mx, d * sc);
                }
                for (int j = 0; j < s->Tk; j++) {
                    p[i * s->Tk + j] = j < n ? exp(p[i * s->Tk + j] - mx) : 0.0;
                    sum += p[i * s->Tk + j];
                }
                for (int j = 0; j < s->Tk; j++) p[i * s->Tk + j] /= sum;
                for (int e = 0; e < hs; e++) {
                    double o = 0;
                    for (int j = 0; j < s->Tk; j++) o += p[i * s->Tk + j] * v[j * 2 * C + e];
                    t->rout[((size_t)b * s->Tq + i) * C + h * hs + e] = o;
                }
            }
            for (int i = 0; i < s->Tq; i++) {
                double dot = 0;
                for (int j = 0; j < s->Tk; j++) {
                    double d = 0;
                    for (int e = 0; e < hs; e++) d += (double)dy[i * C + e] * v[j * 2 * C + e];
                    dp[i * s->Tk + j] = d, dot += d * p[i * s->Tk + j];
                }
                for (int j = 0; j < s->Tk; j++) dp[i * s->Tk + j] = p[i * s->Tk + j] * (dp[i * s->Tk + j] - dot);
            }
            for (int e = 0; e < hs; e++) {
                for (int i = 0; i < s->Tq; i++) {
                    double g = 0;
                    for (int j = 0; j < s->Tk; j++) g += dp[i * s->Tk + j] * k[j * 2 * C + e];
                    t->rdq[((size_t)b * s->Tq + i) * C + h * hs + e] += sc * g;
                }
                for (int j = 0; j < s->Tk; j++) {
                    double gk = 0, gv = 0;
                    for (int i = 0; i < s->Tq; i++) {
                        gk += dp[i * s->Tk + j] * q[i * C + e];
                        gv += p[i * s->Tk + j] * dy[i * C + e];
                    }
                    t->rdk[((size_t)b * s->Tk + j) * C + h * hs + e] += sc * gk;
                    t->rdv[((size_t)b * s->Tk + j) * C + h * hs + e] += gv;
                }
            }
        }
    free(p), free(dp);
}

/* max |got − want| over the scale of want (its max |·|, at least 1e-3) */
static double rel_err(const float *got, int gstride, int goff, const double *want, int rows, int C) {
    double err = 0, mag = 1e-3;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            mag = fmax(mag, fabs(want[(size_t)r * C + c]));
            double d = fabs(got[(size_t)r * gstride + goff + c] - want[(size_t)r * C + c]);
            if (!(d <= err)) err = d; /* a NaN sticks (fmax would drop it) and fails the caller */
        }
    return err / mag;
}

typedef vlp_err (*fwd_fn)(const matmul_cfg *, float *, float *, const float *, int, const float *,
                          const float *, int, int, int, int, int, int, bool, vlp_error *);
typedef void (*bwd_fn)(const matmul_cfg *, float *, float *, float *, const float *, const float *,
                       int, const float *, const float *, int, const float *, float *, int, int, int,
                       int, int, bool);

/* the worst relative error of out, dq, dk, dv against the reference; the
 * backward accumulates onto random gradients, or writes over NaN */
static double run_one(const shape *s, fwd_fn fwd, bwd_fn bwd, const matmul_cfg *mm, bool accumulate) {
    int C = s->C;
    size_t nq = (size_t)s->B * s->Tq * C, nkv = (size_t)s->B * s->Tk * 2 * C;
    size_t natt = (size_t)s->B * s->NH * s->Tq * s->Tk;
    tensors t = {falloc(nq), falloc(nkv), falloc(nq), falloc(natt), falloc(nq), falloc(nq), falloc(nkv),
                 falloc(natt), malloc(sizeof(double) * nq), malloc(sizeof(double) * nq),
                 malloc(sizeof(double) * nkv / 2), malloc(sizeof(double) * nkv / 2)};
    rng r = {(uint64_t)(s->B * 7919 + s->Tq * 131 + s->Tk * 17 + C + s->causal)};
    fill_normal(&r, t.q, nq, 1.0f, 0.0f);
    fill_normal(&r, t.kv, nkv, 1.0f, 0.0f);
    fill_normal(&r, t.dout, nq, 1.0f, 0.0f);
    fill_normal(&r, t.dq, nq, 0.5f, 0.0f); /* the backward accumulates onto these */
    fill_normal(&r, t.dkv, nkv, 0.5f, 0.0f);
    float *dq0 = falloc(nq), *dkv0 = falloc(nkv);
    memcpy(dq0, t.dq, sizeof(float) * nq), memcpy(dkv0, t.dkv, sizeof(float) * nkv);
    if (!accumulate) {
        memset(dq0, 0, sizeof(float) * nq), memset(dkv0, 0, sizeof(float) * nkv);
        for (size_t i = 0; i < nq; i++) t.dq[i] = NAN;
        for (size_t i = 0; i < nkv; i++) t.dkv[i] = NAN;
    }
    for (size_t i = 0; i < nq; i++) t.out[i] = NAN; /* every output written */
    vlp_error err = {0};
    assert_int_equal(fwd(mm, t.out, t.att, t.q, C, t.kv, t.kv + C, 2 * C, s->B, s->Tq, s->Tk, C, s->NH,
                         s->causal, &err), VLP_OK);
    bwd(mm, t.dq, t.dkv, t.dkv + C, t.dout, t.q, C, t.kv, t.kv + C, 2 * C, t.att, t.scratch, s->B, s->Tq,
        s->Tk, C, s->NH, accumulate);
    reference(s, &t, dq0, dkv0);
    int rows_q = s->B * s->Tq, rows_k = s->B * s->Tk;
    double e = rel_err(t.out, C, 0, t.rout, rows_q, C);
    e = fmax(e, rel_err(t.dq, C, 0, t.rdq, rows_q, C));
    e = fmax(e, rel_err(t.dkv, 2 * C, 0, t.rdk, rows_k, C));
    e = fmax(e, rel_err(t.dkv, 2 * C, C, t.rdv, rows_k, C));
    free(t.q), free(t.kv), free(t.out), free(t.att), free(t.dout), free(t.dq), free(t.dkv), free(t.scratch);
    free(t.rout), free(t.rdq), free(t.rdk), free(t.rdv), free(dq0), free(dkv0);
    return e;
}

/* bf16_rounds: in bf16 mode the implementation rounds its operands (the
 * GEMMs do; the fused kernel where the CPU has AVX512-BF16) */
static void check_all(fwd_fn fwd, bwd_fn bwd, const char *name, bool bf16_rounds) {
    int threads = omp_get_max_threads();
    matmul_cfg bf = {.precision = VLP_PRECISION_BF16, .workspace = malloc(gemm_bf16_workspace_bytes(threads)),
                     .threads = threads};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        double e32 = run_one(s, fwd, bwd, NULL, true), e32w = run_one(s, fwd, bwd, NULL, false);
        double e16 = run_one(s, fwd, bwd, &bf, false);
        printf("# %s B=%d Tq=%d Tk=%d C=%d heads=%d causal=%d: fp32 %.2e (written: %.2e), bf16 %.2e\n", name,
               s->B, s->Tq, s->Tk, s->C, s->NH, s->causal, e32, e32w, e16);
        if (!(e32 < 2e-5)) fail_msg("%s fp32: relative error %.3g", name, e32);
        if (!(e32w < 2e-5)) fail_msg("%s fp32, gradients written: relative error %.3g", name, e32w);
        if (!(e16 < (bf16_rounds ? 2e-2 : 2e-5))) fail_msg("%s bf16: relative error %.3g", name, e16);
        if (bf16_rounds && s->Tk > 1 && !(e16 > 1e-5))
            fail_msg("%s bf16: operands were not rounded (%.3g)", name, e16);
    }
    free(bf.workspace);
}

static void test_fused(void **state) {
    if (!attention_fused_hw()) {
        printf("# this CPU has no AVX-512: the core runs the GEMMs, tested below\n");
        skip();
    }
    check_all(attention_fused_forward, attention_fused_backward, "fused", gemm_bf16_hw());
}

static void test_gemm(void **state) {
    check_all(attention_gemm_forward, attention_gemm_backward, "gemm", true);
}

/* The dispatcher takes the fused kernel up to its limits, the GEMMs past them. */
static void test_fits(void **state) {
    assert_true(attention_fused_fits(65, 65, 64));
    assert_true(attention_fused_fits(77, 77, 64));
    assert_true(attention_fused_fits(ATTENTION_FUSED_MAX, ATTENTION_FUSED_MAX, ATTENTION_FUSED_MAX));
    assert_false(attention_fused_fits(197, 197, 64));
    assert_false(attention_fused_fits(50, 50, 160));
    vlp_error err = {0};
    float x[4] = {0};
    assert_int_equal(attention_fused_forward(NULL, x, x, x, 1, x, x, 1, 1, 200, 200, 64, 1, false, &err),
                     attention_fused_hw() ? VLP_ERR_SHAPE : VLP_ERR_UNSUPPORTED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fits),
        cmocka_unit_test(test_fused),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
