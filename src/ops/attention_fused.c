/* Attention for short sequences: one (batch, head) on one thread, QKᵀ, the
 * masked softmax and PV (and the backward's four products) done in cache by
 * one small kernel, instead of per-head BLAS or bf16 GEMM calls that spend
 * more on their set-up and packing than on 65×65×64 products.
 *
 * The kernel: C (M, N) (+)= alpha · Σ_k A(m, k) · B(k, n), A read through
 * strides (so Pᵀ and dSᵀ need no copy), B rows contiguous; 4 rows of C by 16
 * columns in registers. The two operands whose layout does not fit — Kᵀ
 * and Vᵀ — are transposed into a buffer on the stack, hs·Tk floats (20 KiB
 * for a 64-wide head and 77 tokens), which bounds the sequence and head
 * width (ATTENTION_FUSED_MAX: 64 KiB at most). In bf16 mode (mm) on a CPU
 * with AVX512-BF16 each (batch, head) runs attention_fused_bf16.c's kernel
 * instead: the products in bf16 from operands packed once per head.
 * AVX-512 only: elsewhere the core takes the GEMMs (attention_fused_hw). */
#include "ops/attention_fused.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/fastmath.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

#define TM ATTENTION_TM

#ifdef VLP_ATTN_X86 /* (attention_fused.h) */
#define TARGET_AVX512 __attribute__((target("avx512f")))

/* One tile: rows [0, mr) of C (mr ≤ TM), columns [0, w) (w ≤ 32), over k in
 * [0, K): C (+)= alpha · A·B; rows past mr read row 0 (their sums are dropped). */
TARGET_AVX512 static inline __attribute__((always_inline)) void
tile(float *C, int ldc, const float *A, int am, int ak, const float *B, int ldb, int K, int mr, int w,
     float alpha, bool accumulate, bool two /* w > 16: the second zmm of columns */) {
    __mmask16 m[2];
    attention_tile_masks(w, m);
    /* every loop over the TM rows unrolled, so that c stays in registers
     * (a runtime index into it spills it to the stack at every k) */
    const float *a[TM];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) a[i] = A + (size_t)(i < mr ? i : 0) * am;
    __m512 c[TM][2];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        __m512 b0 = _mm512_maskz_loadu_ps(m[0], b), b1 = two ? _mm512_maskz_loadu_ps(m[1], b + 16) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < TM; i++) {
            __m512 x = _mm512_set1_ps(a[i][(size_t)k * ak]);
            c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
            if (two) c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
        }
    }
    attention_tile_store(C, ldc, c, mr, m, alpha, accumulate, two);
}
#endif

bool attention_fused_hw(void) {
#ifdef VLP_ATTN_X86
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

bool attention_fused_fits(int Tq, int Tk, int hs) {
    return Tq <= ATTENTION_FUSED_MAX && Tk <= ATTENTION_FUSED_MAX && hs <= ATTENTION_FUSED_MAX;
}

/* C (M, N) (+)= alpha · A·B, of the shape attention_tri says */

#ifdef VLP_ATTN_X86
TARGET_AVX512 /* called only where attention_fused_hw() */
#endif
static void small_gemm(float *C, int ldc, const float *A, int am, int ak, const float *B, int ldb,
                       int M, int N, int K, float alpha, bool accumulate, attention_tri shape) {
#ifdef VLP_ATTN_X86
    for (int m0 = 0; m0 < M; m0 += TM) {
        int mr = M - m0 < TM ? M - m0 : TM, last = m0 + mr - 1;
        int kn = shape == CAUSAL_P_TIMES && last + 1 < K ? last + 1 : K;
        for (int n0 = 0; n0 < N; n0 += 32) {
            if (shape == CAUSAL_SCORES && n0 > last) break;
            int w = N - n0 < 32 ? N - n0 : 32;
            float *c = C + (size_t)m0 * ldc + n0;
            const float *a = A + (size_t)m0 * am;
            /* each case its own inlined copy, the flag folded in */
            if (w > 16) tile(c, ldc, a, am, ak, B + n0, ldb, kn, mr, w, alpha, accumulate, true);
            else tile(c, ldc, a, am, ak, B + n0, ldb, kn, mr, w, alpha, accumulate, false);
        }
    }
#else
    (void)C, (void)ldc, (void)A, (void)am, (void)ak, (void)B, (void)ldb, (void)M, (void)N, (void)K;
    (void)alpha, (void)accumulate, (void)shape; /* attention_fused_hw() is false */
#endif
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

void attention_softmax_rows(float *a, int Tq, int Tk, bool causal) {
    for (int t = 0; t < Tq; t++) softmax_masked(a + (size_t)t * Tk, causal ? t + 1 : Tk, Tk);
}

void attention_ds_rows(float *da, const float *a, int Tq, int Tk) {
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

/* X (T, hs) with row stride ld → xt (hs, T) */
static void transpose(float *xt, const float *X, int ld, int T, int hs) {
    for (int j = 0; j < T; j++)
        for (int d = 0; d < hs; d++) xt[(size_t)d * T + j] = X[(size_t)j * ld + d];
}

vlp_err attention_fused_forward(const vlp_matmul *mm, float *out, float *att, const float *q,
                                int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                                int Tk, int C, int NH, bool causal, vlp_error *err) {
    VLP_TRY(attention_check_dims(B, Tq, Tk, C, NH, causal, err));
    int hs = C / NH;
    VLP_CHECK(attention_fused_hw(), err, VLP_ERR_UNSUPPORTED,
              "fused attention needs AVX-512 (attention_core_forward takes the GEMMs without it)");
    VLP_CHECK_SHAPE(attention_fused_fits(Tq, Tk, hs), err,
                    "fused attention takes sequences and heads up to %d wide, not Tq=%d Tk=%d head %d",
                    ATTENTION_FUSED_MAX, Tq, Tk, hs);
    float scale = 1.0f / sqrtf((float)hs);
    bool bf16 = mm && mm->precision == VLP_PRECISION_BF16 && attention_fused_bf16_hw();
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *qb = q + (size_t)b * Tq * ldq + h * hs;  // (Tq, hs) stride ldq
        const float *kb = k + (size_t)b * Tk * ldkv + h * hs; // (Tk, hs) stride ldkv
        const float *vb = v + (size_t)b * Tk * ldkv + h * hs;
        float *a = att + (size_t)bh * Tq * Tk;                // (Tq, Tk)
        float *ob = out + (size_t)b * Tq * C + h * hs;        // (Tq, hs) stride C
        if (bf16) {
            attention_head_forward_bf16(ob, C, a, qb, ldq, kb, vb, ldkv, Tq, Tk, hs, scale, causal);
            continue;
        }
        float kt[hs * Tk];                                    // (hs, Tk): ≤ 64 KiB, 20 KiB at hs 64, T 77
        transpose(kt, kb, ldkv, Tk, hs);
        small_gemm(a, Tk, qb, ldq, 1, kt, Tk, Tq, Tk, hs, scale, false,
                   causal ? CAUSAL_SCORES : DENSE);
        attention_softmax_rows(a, Tq, Tk, causal);
        small_gemm(ob, C, a, Tk, 1, vb, ldkv, Tq, hs, Tk, 1.0f, false,
                   causal ? CAUSAL_P_TIMES : DENSE);
    }
    return VLP_OK;
}

void attention_fused_backward(const vlp_matmul *mm, float *dq, float *dk, float *dv,
                              const float *dout, const float *q, int ldq, const float *k,
                              const float *v, int ldkv, const float *att, float *scratch, int B,
                              int Tq, int Tk, int C, int NH, bool accumulate) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    bool bf16 = mm && mm->precision == VLP_PRECISION_BF16 && attention_fused_bf16_hw();
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t qoff = (size_t)b * Tq * ldq + h * hs, koff = (size_t)b * Tk * ldkv + h * hs;
        const float *a = att + (size_t)bh * Tq * Tk;          // (Tq, Tk)
        const float *dy = dout + (size_t)b * Tq * C + h * hs; // (Tq, hs) stride C
        float *da = scratch + (size_t)bh * Tq * Tk;           // (Tq, Tk)
        if (bf16) {
            attention_head_backward_bf16(dq + qoff, ldq, dk + koff, dv + koff, ldkv, dy, C, q + qoff,
                                         k + koff, v + koff, a, da, Tq, Tk, hs, scale, accumulate);
            continue;
        }
        float vt[hs * Tk];                                    // (hs, Tk)
        transpose(vt, v + koff, ldkv, Tk, hs);
        /* dV += Pᵀ·dY: A = P read down its columns */
        small_gemm(dv + koff, ldkv, a, 1, Tk, dy, C, Tk, hs, Tq, 1.0f, accumulate, DENSE);
        /* dP = dY·Vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) in place (masked: P = 0) */
        small_gemm(da, Tk, dy, C, 1, vt, Tk, Tq, Tk, hs, 1.0f, false, DENSE);
        attention_ds_rows(da, a, Tq, Tk);
        /* dQ += s·dS·K; dK += s·dSᵀ·Q */
        small_gemm(dq + qoff, ldq, da, Tk, 1, k + koff, ldkv, Tq, hs, Tk, scale, accumulate, DENSE);
        small_gemm(dk + koff, ldkv, da, 1, Tk, q + qoff, ldq, Tk, hs, Tq, scale, accumulate, DENSE);
    }
}
