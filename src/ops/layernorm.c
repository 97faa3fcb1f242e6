#include "ops/bf16.h"
#include "ops/ops.h"
#include "ops/reduce.h"
#include "core/parallel.h"

#include <math.h>

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

/* the rows normalised into out (fp32) or out16 (rounded to bf16 as written) */
static void layernorm_rows(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
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

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C, float eps) {
    layernorm_rows(out, NULL, mean, rstd, inp, weight, bias, N, C, eps);
}

void layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
    layernorm_rows(NULL, out, mean, rstd, inp, weight, bias, N, C, eps);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C) {
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
    if (dbias) colsum_add(dbias, dout, N, C, C);
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
