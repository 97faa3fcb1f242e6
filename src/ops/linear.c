#include "ops/ops.h"
#include "ops/gemm.h"
#include "ops/reduce.h"
#include "core/parallel.h"

#include <string.h>

void linear_forward(const matmul_cfg *mm, float *out, const float *inp, const float *weight,
                    const float *bias, int N, int C, int OC) {
    if (bias) vlp_gemm_bias(mm, false, true, N, OC, C, inp, C, weight, C, bias, out, OC);
    else vlp_gemm(mm, false, true, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}

/* bf16 mode: dweight (OC, C) += doutᵀ·inp, inp fp32 or (inp16) bf16, and
 * dbias (or NULL) += Σ dout: the GEMM's packing of doutᵀ reads every value
 * of dout anyway, so it adds up the bias gradient on the way instead of a
 * pass of its own. False, having done nothing, when mm is not bf16 or the
 * GEMM has no workspace slot for the thread. */
static bool bf16_weight_grads(const matmul_cfg *mm, float *dweight, float *dbias,
                              const float *dout, const float *inp, const uint16_t *inp16, int N,
                              int C, int OC) {
    if (!mm || mm->precision != VLP_PRECISION_BF16) return false;
    gemm_bf16_extra sums = {.B16 = inp16, .a_rowsum = dbias};
    return gemm_bf16_ex(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C, NULL,
                        &sums, mm->workspace, mm->threads);
}

void linear_backward(const matmul_cfg *mm, float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight, int N, int C,
                     int OC) {
    if (dinp) vlp_gemm(mm, false, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight && bf16_weight_grads(mm, dweight, dbias, dout, inp, NULL, N, C, OC)) return;
    if (dweight) vlp_gemm(mm, true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) colsum_add(dbias, dout, N, OC, OC);
}

bool linear_backward_bf16_input(const matmul_cfg *mm, float *dweight, float *dbias,
                                const float *dout, const uint16_t *inp16, int N, int C, int OC) {
    if (dweight) return bf16_weight_grads(mm, dweight, dbias, dout, NULL, inp16, N, C, OC);
    if (!mm || mm->precision != VLP_PRECISION_BF16) return false;
    if (dbias) colsum_add(dbias, dout, N, OC, OC); /* frozen weights (prompt learning) */
    return true;
}

void proj_forward(float *out, const float *inp, const float *weight, int N, int C, int OC) {
    vlp_sgemm(false, false, N, OC, C, 1.0f, inp, C, weight, OC, 0.0f, out, OC);
}

void proj_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                   const float *weight, int N, int C, int OC) {
    if (dinp) vlp_sgemm(false, true, N, C, OC, 1.0f, dout, OC, weight, OC, 1.0f, dinp, C);
    if (dweight) vlp_sgemm(true, false, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, OC);
}
