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
/* C (M, N) (+)= alpha · A·B (dense; A read through strides am, ak) by the
 * tile of `level` ("avx512", "avx2"), whatever level is active; false when
 * this CPU cannot run it or there is none. Tests compare the levels. */
bool attention_small_gemm_at(const char *level, float *C, int ldc, const float *A, int am, int ak,
                             const float *B, int ldb, int M, int N, int K, float alpha, bool accumulate);
#define ATTENTION_TM 6 /* rows of C a tile holds, by two zmm of columns: 12 accumulators */

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define VLP_ATTN_X86 1
#include <immintrin.h>
/* The lanes of a tile's w ≤ 32 columns in its two zmm: m[0] the first 16, m[1] the rest */
__attribute__((target("avx512f"), always_inline)) static inline void
attention_tile_masks(int w, __mmask16 m[2]) {
    m[0] = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
    m[1] = w >= 32 ? 0xffff : w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
}

/* The end of both kernels' tiles: rows [0, mr) of C = alpha · c (+ C when
 * accumulating), the columns of the masks m; the second zmm of columns only
 * when two. Inlined, unrolled: c stays in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
attention_tile_store(float *C, int ldc, __m512 c[ATTENTION_TM][2], int mr, const __mmask16 m[2],
                     float alpha, bool accumulate, bool two) {
    __mmask16 m0 = m[0], m1 = m[1];
    __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < ATTENTION_TM; i++) {
        if (i >= mr) break;
        float *o = C + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(al, c[i][0]);
        if (accumulate) r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), r0);
        _mm512_mask_storeu_ps(o, m0, r0);
        if (!two) continue;
        __m512 r1 = _mm512_mul_ps(al, c[i][1]);
        if (accumulate) r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), r1);
        _mm512_mask_storeu_ps(o + 16, m1, r1);
    }
}
#endif
#endif
