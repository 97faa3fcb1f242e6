/* The elementwise and row kernels, compiled once per instruction-set level
 * (src/ops/levels/eltwise.c: plain C the compiler vectorises for each) and
 * picked at run time (eltwise()). They are the same C at every level and
 * the build does not contract a·b + c into FMAs (-std=c11:
 * -ffp-contract=off), so every level computes the same bits; only the
 * vector width differs. Internal to src/ops and the optimizer. */
#ifndef VLP_OPS_ELTWISE_H
#define VLP_OPS_ELTWISE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"

typedef struct eltwise_kernels {
    /* out = act(inp), N values; out16: rounded to bf16 as written */
    void (*act_forward)(vlp_act act, float *out, const float *inp, size_t N);
    void (*act_forward_bf16)(vlp_act act, uint16_t *out, const float *inp, size_t N);
    /* dinp (+)= dout ⊙ act'(inp): accumulated, or written when `write` */
    void (*act_backward)(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N,
                         bool write);
    /* the rows normalised into out (fp32) or out16 (bf16), mean and 1/std saved */
    void (*layernorm_rows)(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int N, int C, float eps);
    /* dinp += the input gradient; dweight += Σ_n dout ⊙ x̂ (either may be NULL) */
    void (*layernorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N,
                               int C);
    /* a (Tq, Tk) scores → probabilities; causal: row t's keys past t zero */
    void (*attention_softmax_rows)(float *a, int Tq, int Tk, bool causal);
    /* da (Tq, Tk) = dP → dS = P ⊙ (dP − rowsum(P ⊙ dP)), in place */
    void (*attention_ds_rows)(float *da, const float *a, int Tq, int Tk);
    /* AdamW on n values: m, v updated, w = w·shrink − step_size·m / (√v·inv_sqrt_bc2 + eps) */
    void (*adamw)(float *w, const float *g, float *m, float *v, long n, float b1, float b2,
                  float eps, float shrink, float step_size, float inv_sqrt_bc2);
} eltwise_kernels;

/* the active level's kernels */
const eltwise_kernels *eltwise(void);
/* the portable build's, whatever the CPU (tests compare the levels) */
const eltwise_kernels *eltwise_portable_kernels(void);
const char *eltwise_level(void);
#endif
