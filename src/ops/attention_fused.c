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
 * AVX-512 (two zmm of columns a tile) or AVX2 (two ymm), the same sums in
 * the same order; without AVX2 the core takes the GEMMs (attention_fused_hw). */
#include "ops/attention_fused.h"
#include "ops/eltwise.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

#define TM ATTENTION_TM

/* C (M, N) (+)= alpha · A·B, of the shape attention_tri says */
typedef void (*small_gemm_fn)(float *C, int ldc, const float *A, int am, int ak, const float *B,
                              int ldb, int M, int N, int K, float alpha, bool accumulate,
                              attention_tri shape);
/* a kernel family's entry: the level and its small GEMM (NULL: none, the
 * core takes the BLAS GEMMs) */
typedef struct small_gemm_impl {
    vlp_impl_tag tag;
    small_gemm_fn gemm;
} small_gemm_impl;

/* The loop over a product's tiles, WIDTH columns a tile, each tile call
 * TILE(c, a, b, kn, mr, w): one copy per kernel, the shape's cuts the same. */
#define SMALL_GEMM_TILES(WIDTH, TILE)                                                        \
    for (int m0 = 0; m0 < M; m0 += TM) {                                                     \
        int mr = M - m0 < TM ? M - m0 : TM, last = m0 + mr - 1;                              \
        int kn = shape == CAUSAL_P_TIMES && last + 1 < K ? last + 1 : K;                     \
        for (int n0 = 0; n0 < N; n0 += WIDTH) {                                              \
            if (shape == CAUSAL_SCORES && n0 > last) break;                                  \
            int w = N - n0 < WIDTH ? N - n0 : WIDTH;                                         \
            float *c = C + (size_t)m0 * ldc + n0;                                            \
            const float *a = A + (size_t)m0 * am;                                            \
            TILE(c, a, B + n0, kn, mr, w);                                                   \
        }                                                                                    \
    }

#ifdef VLP_ATTN_X86 /* (attention_fused.h) */
#define TARGET_AVX512 __attribute__((target("avx512f")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

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

/* ymm lanes [0, w) of 8 set */
TARGET_AVX2 static inline __attribute__((always_inline)) __m256i lanes8(int w) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The AVX2 tile: as tile, columns [0, w) with w ≤ 16 in two ymm; `full`
 * (w = 16) loads and stores without masks. Each C element is the same
 * chain of FMAs over k as in the AVX-512 tile: the same bits. */
TARGET_AVX2 static inline __attribute__((always_inline)) void
tile8(float *C, int ldc, const float *A, int am, int ak, const float *B, int ldb, int K, int mr, int w,
      float alpha, bool accumulate, bool two /* w > 8 */, bool full /* w = 16 */) {
    __m256i m0 = lanes8(w), m1 = lanes8(w - 8);
    const float *a[TM];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) a[i] = A + (size_t)(i < mr ? i : 0) * am;
    __m256 c[TM][2];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
        __m256 b1 = !two ? b0 : full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
        for (int i = 0; i < TM; i++) {
            __m256 x = _mm256_broadcast_ss(&a[i][(size_t)k * ak]);
            c[i][0] = _mm256_fmadd_ps(x, b0, c[i][0]);
            if (two) c[i][1] = _mm256_fmadd_ps(x, b1, c[i][1]);
        }
    }
    __m256 al = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) {
        if (i >= mr) break;
        float *o = C + (size_t)i * ldc;
        __m256 r0 = _mm256_mul_ps(al, c[i][0]), r1 = _mm256_mul_ps(al, c[i][1]);
        if (full) {
            if (accumulate) r0 = _mm256_add_ps(_mm256_loadu_ps(o), r0), r1 = _mm256_add_ps(_mm256_loadu_ps(o + 8), r1);
            _mm256_storeu_ps(o, r0), _mm256_storeu_ps(o + 8, r1);
            continue;
        }
        if (accumulate) r0 = _mm256_add_ps(_mm256_maskload_ps(o, m0), r0);
        _mm256_maskstore_ps(o, m0, r0);
        if (!two) continue;
        if (accumulate) r1 = _mm256_add_ps(_mm256_maskload_ps(o + 8, m1), r1);
        _mm256_maskstore_ps(o + 8, m1, r1);
    }
}

/* each case its own inlined copy, the flags folded in */
#define TILE512(c, a, b, kn, mr, w)                                                          \
    do {                                                                                     \
        if (w > 16) tile(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate, true);     \
        else tile(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate, false);           \
    } while (0)
#define TILE256(c, a, b, kn, mr, w)                                                          \
    do {                                                                                     \
        if (w == 16) tile8(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate, true, true); \
        else if (w > 8) tile8(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate, true, false); \
        else tile8(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate, false, false);  \
    } while (0)

TARGET_AVX512 static void small_gemm_avx512(float *C, int ldc, const float *A, int am, int ak,
                                            const float *B, int ldb, int M, int N, int K, float alpha,
                                            bool accumulate, attention_tri shape) {
    SMALL_GEMM_TILES(32, TILE512)
}

TARGET_AVX2 static void small_gemm_avx2(float *C, int ldc, const float *A, int am, int ak,
                                        const float *B, int ldb, int M, int N, int K, float alpha,
                                        bool accumulate, attention_tri shape) {
    SMALL_GEMM_TILES(16, TILE256)
}

/* best first; without either the core takes the GEMMs (attention.c) */
static const small_gemm_impl SMALL_GEMMS[] = {
    {{"avx512", VLP_FEAT_AVX512}, small_gemm_avx512},
    {{"avx2", VLP_FEAT_AVX2}, small_gemm_avx2},
    {{"gemm", 0}, NULL},
};
#elif defined(__aarch64__) && defined(__GNUC__)
#include <arm_neon.h>
#include <math.h>

/* The NEON tile: 6 rows by 16 columns in four q registers a row (24
 * accumulators of the 32); each output the same FMA chain over k as the
 * x86 tiles (FMLA by element). Ragged tiles (w < 16) take fmaf, the same
 * fused operation one element at a time. */
static inline __attribute__((always_inline)) void
tile_neon(float *C, int ldc, const float *A, int am, int ak, const float *B, int ldb, int K, int mr, int w,
          float alpha, bool accumulate) {
    const float *a[TM];
    for (int i = 0; i < TM; i++) a[i] = A + (size_t)(i < mr ? i : 0) * am;
    if (w < 16) {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < w; j++) {
                float c = 0.0f;
                for (int k = 0; k < K; k++) c = fmaf(a[i][(size_t)k * ak], B[(size_t)k * ldb + j], c);
                float r = alpha * c;
                C[(size_t)i * ldc + j] = accumulate ? C[(size_t)i * ldc + j] + r : r;
            }
        return;
    }
    float32x4_t c[TM][4];
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++)
        for (int j = 0; j < 4; j++) c[i][j] = vdupq_n_f32(0.0f);
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
#pragma GCC unroll 6
        for (int i = 0; i < TM; i++) {
            float x = a[i][(size_t)k * ak];
            c[i][0] = vfmaq_n_f32(c[i][0], b0, x);
            c[i][1] = vfmaq_n_f32(c[i][1], b1, x);
            c[i][2] = vfmaq_n_f32(c[i][2], b2, x);
            c[i][3] = vfmaq_n_f32(c[i][3], b3, x);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < TM; i++) {
        if (i >= mr) break;
        float *o = C + (size_t)i * ldc;
        for (int j = 0; j < 4; j++) {
            float32x4_t r = vmulq_n_f32(c[i][j], alpha);
            if (accumulate) r = vaddq_f32(vld1q_f32(o + 4 * j), r);
            vst1q_f32(o + 4 * j, r);
        }
    }
}

#define TILE_NEON(c, a, b, kn, mr, w) tile_neon(c, ldc, a, am, ak, b, ldb, kn, mr, w, alpha, accumulate)

static void small_gemm_neon(float *C, int ldc, const float *A, int am, int ak, const float *B, int ldb,
                            int M, int N, int K, float alpha, bool accumulate, attention_tri shape) {
    SMALL_GEMM_TILES(16, TILE_NEON)
}

static const small_gemm_impl SMALL_GEMMS[] = {
    {{"neon", VLP_FEAT_NEON}, small_gemm_neon},
    {{"gemm", 0}, NULL},
};
#else
static const small_gemm_impl SMALL_GEMMS[] = {{{"gemm", 0}, NULL}};
#endif

bool attention_small_gemm_at(const char *level, float *C, int ldc, const float *A, int am, int ak,
                             const float *B, int ldb, int M, int N, int K, float alpha, bool accumulate) {
    for (size_t i = 0; i < sizeof SMALL_GEMMS / sizeof *SMALL_GEMMS; i++)
        if (SMALL_GEMMS[i].gemm && !strcmp(SMALL_GEMMS[i].tag.level, level) &&
            (vlp_cpu()->cpu & SMALL_GEMMS[i].tag.needs) == SMALL_GEMMS[i].tag.needs) {
            SMALL_GEMMS[i].gemm(C, ldc, A, am, ak, B, ldb, M, N, K, alpha, accumulate, DENSE);
            return true;
        }
    return false;
}

const char *attention_fused_level(void) { return VLP_CPU_PICK(SMALL_GEMMS)->tag.level; }

bool attention_fused_hw(void) { return VLP_CPU_PICK(SMALL_GEMMS)->gemm != NULL; }

bool attention_fused_fits(int Tq, int Tk, int hs) {
    return Tq <= ATTENTION_FUSED_MAX && Tk <= ATTENTION_FUSED_MAX && hs <= ATTENTION_FUSED_MAX;
}

void attention_softmax_rows(float *a, int Tq, int Tk, bool causal) {
    eltwise()->attention_softmax_rows(a, Tq, Tk, causal);
}

void attention_ds_rows(float *da, const float *a, int Tq, int Tk) { eltwise()->attention_ds_rows(da, a, Tq, Tk); }

/* X (T, hs) with row stride ld → xt (hs, T) */
static void transpose(float *xt, const float *X, int ld, int T, int hs) {
    for (int j = 0; j < T; j++)
        for (int d = 0; d < hs; d++) xt[(size_t)d * T + j] = X[(size_t)j * ld + d];
}

vlp_err attention_fused_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                                int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                                int Tk, int C, int NH, bool causal, vlp_error *err) {
    VLP_TRY(attention_check_dims(B, Tq, Tk, C, NH, causal, err));
    int hs = C / NH;
    VLP_CHECK(attention_fused_hw(), err, VLP_ERR_UNSUPPORTED,
              "fused attention needs AVX2 or AVX-512 (attention_core_forward takes the GEMMs without)");
    VLP_CHECK_SHAPE(attention_fused_fits(Tq, Tk, hs), err,
                    "fused attention takes sequences and heads up to %d wide, not Tq=%d Tk=%d head %d",
                    ATTENTION_FUSED_MAX, Tq, Tk, hs);
    float scale = 1.0f / sqrtf((float)hs);
    bool bf16 = mm && mm->precision == VLP_PRECISION_BF16 && attention_fused_bf16_hw();
    small_gemm_fn small_gemm = VLP_CPU_PICK(SMALL_GEMMS)->gemm;
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

void attention_fused_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                              const float *dout, const float *q, int ldq, const float *k,
                              const float *v, int ldkv, const float *att, float *scratch, int B,
                              int Tq, int Tk, int C, int NH, bool accumulate) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    bool bf16 = mm && mm->precision == VLP_PRECISION_BF16 && attention_fused_bf16_hw();
    small_gemm_fn small_gemm = VLP_CPU_PICK(SMALL_GEMMS)->gemm; /* callers check attention_fused_hw() */
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
