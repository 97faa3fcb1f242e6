/* LayerNorm: the level's row kernels (ops/eltwise.h, levels/eltwise.c) */
#include "ops/eltwise.h"
#include "ops/ops.h"
#include "ops/reduce.h"

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C, float eps) {
    eltwise()->layernorm_rows(out, NULL, mean, rstd, inp, weight, bias, N, C, eps);
}

void layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
    eltwise()->layernorm_rows(NULL, out, mean, rstd, inp, weight, bias, N, C, eps);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C) {
    eltwise()->layernorm_backward(dinp, dweight, dout, inp, weight, mean, rstd, N, C);
    if (dbias) colsum_add(dbias, dout, N, C, C);
}
