/* The fused short-sequence attention's parts shared by its fp32 kernel
 * (attention_fused.c) and its bf16 one (attention_fused_bf16.c). Internal
 * to src/ops. */
#ifndef VLP_OPS_ATTENTION_FUSED_H
#define VLP_OPS_ATTENTION_FUSED_H
#include <stdbool.h>

#include "ops/ops.h"

/* A product's shape: C the (T, T) score matrix of a causal product whose
 * tiles right of the diagonal are not needed (skipped), or the product P·X
 * whose A = P is zero right of the diagonal (K cut there). */
typedef enum { DENSE, CAUSAL_SCORES, CAUSAL_P_TIMES } attention_tri;

/* a (Tq, Tk) scores → probabilities, row by row; causal: row t's keys past
 * t masked (zero) */
void attention_softmax_rows(float *a, int Tq, int Tk, bool causal);
/* da (Tq, Tk) = dP → dS = P ⊙ (dP − rowsum(P ⊙ dP)), in place (masked: P = 0) */
void attention_ds_rows(float *da, const float *a, int Tq, int Tk);

/* One (batch, head) in bf16: out (Tq, hs) rows ldo apart, a (Tq, Tk) the
 * probabilities; q (Tq, hs) ldq apart, k and v (Tk, hs) ldkv apart. */
bool attention_fused_bf16_hw(void); /* AVX512-BF16: the bf16 kernel's only implementation */
void attention_head_forward_bf16(float *out, int ldo, float *a, const float *q, int ldq,
                                 const float *k, const float *v, int ldkv, int Tq, int Tk, int hs,
                                 float scale, bool causal);
/* Its backward: dq, dk, dv (+)= (accumulate) their gradients; dy (Tq, hs)
 * ldy apart; da (Tq, Tk) scratch. */
void attention_head_backward_bf16(float *dq, int ldq, float *dk, float *dv, int ldkv,
                                  const float *dy, int ldy, const float *q, const float *k,
                                  const float *v, const float *a, float *da, int Tq, int Tk, int hs,
                                  float scale, bool accumulate);
#endif
