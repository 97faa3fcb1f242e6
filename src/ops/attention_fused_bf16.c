/* The fused attention of one (batch, head) in bf16 (attention_fused.c picks
 * it in bf16 mode on a CPU with AVX512-BF16): the six products of the
 * forward and backward with VDPBF16PS, two bf16 products per fp32 lane,
 * fp32 accumulation; scores, softmax, dS and every output fp32 (like
 * autocast's bf16 matmuls between fp32 softmax and residuals).
 *
 * Each operand is packed once per (batch, head) into bf16 pairs along the
 * product's K on the stack (a pair = the lower k in the low half, as in
 * gemm_bf16.c):
 *   rows   X (R, K) → [r][kp]   a row converted in order (the pairs are adjacent)
 *   pairs  X (K, N) → [kp][n]   rows 2kp and 2kp+1 interleaved
 *   cols   X (N, K) → [kp][n]   rows converted, then transposed by pairs
 * A is read through strides (a pair at a[i·si + kp·sk]), so Pᵀ and dSᵀ are
 * the `pairs` packs of P and dS read down their columns. An odd K is padded
 * with a zero. */
#include "ops/attention_fused.h"
#include "ops/bf16_x86.h"
#include "ops/gemm.h"

#include <stdint.h>
#include <string.h>

#define TM ATTENTION_TM

#if defined(VLP_ATTN_X86) && defined(VLP_BF16_X86) /* (attention_fused.h, bf16_x86.h) */

/* One tile: rows [0, mr) of C (mr ≤ TM), columns [0, w) (w ≤ 32), over KP
 * pairs: C (+)= alpha · A·B; rows past mr read row 0 (their sums dropped). */
TARGET_BF16 static inline __attribute__((always_inline)) void
tile16(float *C, int ldc, const uint32_t *A, size_t si, size_t sk, const uint32_t *B, int ldb, int KP,
       int mr, int w, float alpha, bool accumulate, bool two /* w > 16 */) {
    __mmask16 m[2];
    attention_tile_masks(w, m);
    /* every loop over the TM rows unrolled: c stays in registers */
    const uint32_t *a[TM];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) a[i] = A + (size_t)(i < mr ? i : 0) * si;
    __m512 c[TM][2];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int kp = 0; kp < KP; kp++) {
        const uint32_t *b = B + (size_t)kp * ldb;
        __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(m[0], b);
        __m512bh b1 = two ? (__m512bh)_mm512_maskz_loadu_epi32(m[1], b + 16) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < TM; i++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[i][(size_t)kp * sk]);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], x, b0);
            if (two) c[i][1] = _mm512_dpbf16_ps(c[i][1], x, b1);
        }
    }
    attention_tile_store(C, ldc, c, mr, m, alpha, accumulate, two);
}

/* C (M, N) (+)= alpha · A·B over KP pairs; CAUSAL_SCORES skips the tiles
 * right of the diagonal, CAUSAL_P_TIMES cuts K (A = P, zero there) */
TARGET_BF16 static void gemm16(float *C, int ldc, const uint32_t *A, size_t si, size_t sk,
                               const uint32_t *B, int ldb, int M, int N, int KP, float alpha,
                               bool accumulate, attention_tri shape) {
    for (int m0 = 0; m0 < M; m0 += TM) {
        int mr = M - m0 < TM ? M - m0 : TM, last = m0 + mr - 1;
        int kp = shape == CAUSAL_P_TIMES && (last + 2) / 2 < KP ? (last + 2) / 2 : KP;
        for (int n0 = 0; n0 < N; n0 += 32) {
            if (shape == CAUSAL_SCORES && n0 > last) break;
            int w = N - n0 < 32 ? N - n0 : 32;
            float *c = C + (size_t)m0 * ldc + n0;
            const uint32_t *a = A + (size_t)m0 * si;
            if (w > 16) tile16(c, ldc, a, si, sk, B + n0, ldb, kp, mr, w, alpha, accumulate, true);
            else tile16(c, ldc, a, si, sk, B + n0, ldb, kp, mr, w, alpha, accumulate, false);
        }
    }
}

/* rows: X (R, K), rows ld apart → dst [r][K2] */
TARGET_BF16 static void pack_rows(uint32_t *dst, const float *X, int ld, int R, int K) {
    int K2 = (K + 1) / 2;
    for (int r = 0; r < R; r++) bf16_convert_row((uint16_t *)(dst + (size_t)r * K2), X + (size_t)r * ld, K);
}

/* pairs: X (K, N), rows ld apart → dst [kp][ldd], rows 2kp and 2kp+1 interleaved */
TARGET_BF16 static void pack_pairs(uint32_t *dst, int ldd, const float *X, int ld, int K, int N) {
    for (int kp = 0; kp < (K + 1) / 2; kp++)
        for (int n = 0; n < N; n += 16) {
            __mmask16 m = N - n >= 16 ? 0xffff : (__mmask16)((1u << (N - n)) - 1);
            _mm512_mask_storeu_epi32(dst + (size_t)kp * ldd + n, m,
                                     bf16_pairs_of_rows(X, ld, n, 2 * kp, 2 * kp + 1 < K, m, NULL));
        }
}

/* cols: X (N, K), rows ld apart → dst [kp][N]; tmp holds N × K2 pairs */
TARGET_BF16 static void pack_cols(uint32_t *dst, const float *X, int ld, int N, int K, uint32_t *tmp) {
    int K2 = (K + 1) / 2;
    pack_rows(tmp, X, ld, N, K);
    for (int n = 0; n < N; n++)
        for (int kp = 0; kp < K2; kp++) dst[(size_t)kp * N + n] = tmp[(size_t)n * K2 + kp];
}

/* The largest pack: T ≤ ATTENTION_FUSED_MAX tokens by half as many pairs
 * of a head ≤ ATTENTION_FUSED_MAX wide, and the odd pad */
#define PACK_MAX ((size_t)ATTENTION_FUSED_MAX * (ATTENTION_FUSED_MAX / 2 + 1))

TARGET_BF16 void attention_head_forward_bf16(float *out, int ldo, float *a, const float *q, int ldq,
                                             const float *k, const float *v, int ldkv, int Tq,
                                             int Tk, int hs, float scale, bool causal) {
    uint32_t abuf[PACK_MAX], bbuf[PACK_MAX]; /* 32 KiB each at most (128 tokens, head 128) */
    int hs2 = (hs + 1) / 2, Tk2 = (Tk + 1) / 2;
    /* S = s·Q·Kᵀ (Tq, Tk), then P in place */
    pack_cols(bbuf, k, ldkv, Tk, hs, abuf); /* Kᵀ: [kp over hs][Tk] */
    pack_rows(abuf, q, ldq, Tq, hs);
    gemm16(a, Tk, abuf, (size_t)hs2, 1, bbuf, Tk, Tq, Tk, hs2, scale, false,
           causal ? CAUSAL_SCORES : DENSE);
    attention_softmax_rows(a, Tq, Tk, causal);
    /* out = P·V (Tq, hs) */
    pack_rows(abuf, a, Tk, Tq, Tk);
    pack_pairs(bbuf, hs, v, ldkv, Tk, hs);
    gemm16(out, ldo, abuf, (size_t)Tk2, 1, bbuf, hs, Tq, hs, Tk2, 1.0f, false,
           causal ? CAUSAL_P_TIMES : DENSE);
}

TARGET_BF16 void attention_head_backward_bf16(float *dq, int ldq, float *dk, float *dv, int ldkv,
                                              const float *dy, int ldy, const float *q,
                                              const float *k, const float *v, const float *a,
                                              float *da, int Tq, int Tk, int hs, float scale,
                                              bool accumulate) {
    uint32_t abuf[PACK_MAX], bbuf[PACK_MAX];
    int hs2 = (hs + 1) / 2, Tq2 = (Tq + 1) / 2, Tk2 = (Tk + 1) / 2;
    /* dV (+)= Pᵀ·dY: A = P's pairs of rows, read down the columns */
    pack_pairs(abuf, Tk, a, Tk, Tq, Tk);
    pack_pairs(bbuf, hs, dy, ldy, Tq, hs);
    gemm16(dv, ldkv, abuf, 1, (size_t)Tk, bbuf, hs, Tk, hs, Tq2, 1.0f, accumulate, DENSE);
    /* dP = dY·Vᵀ, then dS in place */
    pack_cols(bbuf, v, ldkv, Tk, hs, abuf);
    pack_rows(abuf, dy, ldy, Tq, hs);
    gemm16(da, Tk, abuf, (size_t)hs2, 1, bbuf, Tk, Tq, Tk, hs2, 1.0f, false, DENSE);
    attention_ds_rows(da, a, Tq, Tk);
    /* dQ (+)= s·dS·K */
    pack_rows(abuf, da, Tk, Tq, Tk);
    pack_pairs(bbuf, hs, k, ldkv, Tk, hs);
    gemm16(dq, ldq, abuf, (size_t)Tk2, 1, bbuf, hs, Tq, hs, Tk2, scale, accumulate, DENSE);
    /* dK (+)= s·dSᵀ·Q */
    pack_pairs(abuf, Tk, da, Tk, Tq, Tk);
    pack_pairs(bbuf, hs, q, ldq, Tq, hs);
    gemm16(dk, ldkv, abuf, 1, (size_t)Tk, bbuf, hs, Tk, hs, Tq2, scale, accumulate, DENSE);
}

bool attention_fused_bf16_hw(void) { return gemm_bf16_hw(); }

#else /* no AVX512-BF16 kernels here: attention_fused.c never calls these */
bool attention_fused_bf16_hw(void) { return false; }
void attention_head_forward_bf16(float *out, int ldo, float *a, const float *q, int ldq,
                                 const float *k, const float *v, int ldkv, int Tq, int Tk, int hs,
                                 float scale, bool causal) {
    (void)out, (void)ldo, (void)a, (void)q, (void)ldq, (void)k, (void)v, (void)ldkv, (void)Tq;
    (void)Tk, (void)hs, (void)scale, (void)causal;
}
void attention_head_backward_bf16(float *dq, int ldq, float *dk, float *dv, int ldkv,
                                  const float *dy, int ldy, const float *q, const float *k,
                                  const float *v, const float *a, float *da, int Tq, int Tk, int hs,
                                  float scale, bool accumulate) {
    (void)dq, (void)ldq, (void)dk, (void)dv, (void)ldkv, (void)dy, (void)ldy, (void)q, (void)k;
    (void)v, (void)a, (void)da, (void)Tq, (void)Tk, (void)hs, (void)scale, (void)accumulate;
}
#endif
