/* The elementwise and row kernels (ops/eltwise.h), compiled once per level
 * with that level's -march (the Makefile's LEVELS); VLP_LEVEL names the
 * level and the table this copy defines, eltwise_<level>. Every function
 * but the table is static (k_*: the ops' own names are the dispatchers'). */
#include "core/parallel.h"
#include "ops/bf16.h"
#include "ops/eltwise.h"
#include "ops/fastmath.h"
#include "ops/reduce.h"

#include <math.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define QUICKGELU_ALPHA 1.702f

static inline float gelu_value(float x) { return 0.5f * x * (1.0f + vlp_erff(x * INV_SQRT2)); }

/* d act(x) / dx */
static inline float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + vlp_erff(x * INV_SQRT2));
    float pdf = INV_SQRT_2PI * vlp_expf(-0.5f * x * x);
    return cdf + x * pdf;
}

static inline float sigmoidf(float z) { return 1.0f / (1.0f + vlp_expf(-z)); }

static inline float quickgelu_value(float x) { return x * sigmoidf(QUICKGELU_ALPHA * x); }

static inline float quickgelu_grad(float x) {
    float s = sigmoidf(QUICKGELU_ALPHA * x);
    return s + QUICKGELU_ALPHA * x * s * (1.0f - s);
}

static void k_act_forward(vlp_act act, float *out, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = quickgelu_value(inp[i]);
    } else {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = gelu_value(inp[i]);
    }
}

static void k_act_forward_bf16(vlp_act act, uint16_t *out, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = bf16_bits(quickgelu_value(inp[i]));
    } else {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = bf16_bits(gelu_value(inp[i]));
    }
}

static void k_act_backward(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N,
                         bool write) {
    /* four loops, each branch-free, so that each vectorises */
    if (act == VLP_ACT_QUICKGELU && write) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] = dout[i] * quickgelu_grad(inp[i]);
    } else if (act == VLP_ACT_QUICKGELU) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] += dout[i] * quickgelu_grad(inp[i]);
    } else if (write) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] = dout[i] * gelu_grad(inp[i]);
    } else {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] += dout[i] * gelu_grad(inp[i]);
    }
}

/* one row's mean and 1/std: two passes, a one-pass E[x²]-E[x]² loses
 * digits when |mean| ≫ std */
static inline float row_stats(const float *x, int C, float eps, float *mean) {
    float m = 0.0f;
    for (int c = 0; c < C; c++) m += x[c];
    m /= (float)C;
    float v = 0.0f;
    for (int c = 0; c < C; c++) {
        float d = x[c] - m;
        v += d * d;
    }
    v /= (float)C;
    *mean = m;
    return 1.0f / sqrtf(v + eps);
}

static void k_layernorm_rows(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, float eps) {
    VLP_OMP_FOR
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m, s = row_stats(x, C, eps, &m);
        if (out16)
            for (int c = 0; c < C; c++) out16[(size_t)n * C + c] = bf16_bits((x[c] - m) * s * weight[c] + bias[c]);
        else
            for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

static void k_layernorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N,
                               int C) {
    if (dinp) {
        VLP_OMP_FOR
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = mean[n], s = rstd[n];
            /* dx = s·(g - mean(g) - x̂·mean(g·x̂)), g = dy·weight, x̂ the normalised x */
            float gsum = 0.0f, gxsum = 0.0f;
            for (int c = 0; c < C; c++) {
                float g = dy[c] * weight[c];
                gsum += g;
                gxsum += g * (x[c] - m) * s;
            }
            gsum /= (float)C;
            gxsum /= (float)C;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                dx[c] += s * (dy[c] * weight[c] - gsum - xhat * gxsum);
            }
        }
    }
    if (dweight) {
        int width = col_width(C), nblocks = col_blocks(C, width);
        VLP_OMP_FOR
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * width, w = col_block_width(blk, C, width);
            float acc[VLP_COL_BLOCK_MAX] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C + c0;
                const float *dy = dout + (size_t)n * C + c0;
                float m = mean[n], s = rstd[n];
                for (int c = 0; c < w; c++) acc[c] += dy[c] * (x[c] - m) * s;
            }
            for (int c = 0; c < w; c++) dweight[c0 + c] += acc[c];
        }
    }
}

/* softmax_row with the vectorised exp of fastmath.h (glibc's expf is a
 * scalar call per score): row[0..n) normalised, row[n..T) zero */
static void softmax_masked(float *row, int n, int T) {
    float mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < n; j++) row[j] = vlp_expf(row[j] - mx);
    for (int j = 0; j < n; j++) sum += row[j];
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < T; j++) row[j] = 0.0f;
}

static void k_attention_softmax_rows(float *a, int Tq, int Tk, bool causal) {
    for (int t = 0; t < Tq; t++) softmax_masked(a + (size_t)t * Tk, causal ? t + 1 : Tk, Tk);
}

static void k_attention_ds_rows(float *da, const float *a, int Tq, int Tk) {
    for (int t = 0; t < Tq; t++) {
        float *dr = da + (size_t)t * Tk;
        const float *ar = a + (size_t)t * Tk;
        float part[16] = {0}, dot = 0.0f; /* 16 partial sums: the loop vectorises */
        int j = 0;
        for (; j + 16 <= Tk; j += 16)
            for (int x = 0; x < 16; x++) part[x] += ar[j + x] * dr[j + x];
        for (; j < Tk; j++) dot += ar[j] * dr[j];
        for (int x = 0; x < 16; x++) dot += part[x];
        for (j = 0; j < Tk; j++) dr[j] = ar[j] * (dr[j] - dot);
    }
}

static void k_adamw(float *w, const float *g, float *m, float *v, long n, float b1, float b2, float eps,
                  float shrink, float step_size, float inv_sqrt_bc2) {
    VLP_OMP_FOR
    for (long i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] = b1 * m[i] + (1.0f - b1) * gi;
        float vi = v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] = w[i] * shrink - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
const eltwise_kernels CAT(eltwise_, VLP_LEVEL) = {
    .act_forward = k_act_forward,
    .act_forward_bf16 = k_act_forward_bf16,
    .act_backward = k_act_backward,
    .layernorm_rows = k_layernorm_rows,
    .layernorm_backward = k_layernorm_backward,
    .attention_softmax_rows = k_attention_softmax_rows,
    .attention_ds_rows = k_attention_ds_rows,
    .adamw = k_adamw,
};
