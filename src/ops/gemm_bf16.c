/* bf16 GEMM with fp32 accumulation: C = alpha · op(A)·op(B) + bias + beta · C, where
 * op(A) and op(B) are fp32 in memory and rounded to bf16 (nearest-even) as
 * they are packed. Debian's OpenBLAS is built without sbgemm, so this is our
 * own: BLIS-style blocking, packed panels, and an MR×NR register tile that
 * issues AVX512-BF16 dot products (VDPBF16PS: two bf16 products per fp32
 * lane). A portable kernel computes the same thing where the CPU lacks them.
 *
 * Packed layouts (uint32 = a pair of bf16 along K, the lower at k even):
 *   A block: MR-row strips, each [kp][MR]   — one broadcast per row and pair
 *            (or [MR][kp] when op(A) = A: its rows convert without a transpose)
 *   B block: NR-col panels, each [kp][NR]   — two zmm loads per pair
 * K is padded to even with zeros; ragged M and N are padded with zeros in
 * the packs and masked when C is written. */
#include "core/cpu.h"
#include "core/parallel.h"
#include "ops/bf16.h"
#include "ops/bf16_x86.h"
#include "ops/gemm.h"

#include <stdint.h>
#include <string.h>

#define MR 12
#define NR 32
#define KC 1024 /* K per block (even): a B panel is KC/2 · 128 B = 64 KiB, streamed from L2 */
#define MC 240  /* rows per A block (multiple of MR): 480 KiB, in L2 */
#define NC 1536 /* cols per B block (multiple of NR) */

#define A_BLOCK_PAIRS ((size_t)MC * (KC / 2))
#define B_BLOCK_PAIRS ((size_t)NC * (KC / 2))

size_t gemm_bf16_workspace_bytes(int threads) {
    if (threads < 1)
        threads = 1;
    return (size_t)threads * (A_BLOCK_PAIRS + B_BLOCK_PAIRS) * sizeof(uint32_t) + 64;
}

float bf16_round(float f) { return bf16_rounded(f); }

static inline uint32_t pair_bf16(float lo, float hi) {
    return (uint32_t)bf16_bits(lo) | ((uint32_t)bf16_bits(hi) << 16);
}

/* element (r, k) of op(X), X stored row-major with leading dimension ld; op
 * transposes when `trans` (X is then stored (K, R)) */
static inline float op_at(const float *X, int ld, bool trans, int r, int k) {
    return trans ? X[(size_t)k * ld + r] : X[(size_t)r * ld + k];
}

/* Packs rows [r0, r0+rn) × k [k0, k0+kn) of op(X) into strips of W rows:
 * strip s, pair kp, row i at dst[(s·kp2 + kp)·W + i]. Rows past rn and the
 * odd k pad are zero. Portable: used for every layout the vector packers do
 * not cover and on CPUs without AVX-512. */
static void pack_generic(uint32_t *dst, const float *X, int ld, bool trans, int r0, int rn, int k0,
                         int kn, int W, int strip_lo, int strip_hi, float *rowsum) {
    int kp2 = (kn + 1) / 2;
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        float sum[32] = {0}; /* W ≤ 32 */
        for (int kp = 0; kp < kp2; kp++) {
            int k = k0 + 2 * kp;
            bool has_hi = 2 * kp + 1 < kn;
            for (int i = 0; i < W; i++) {
                int r = s * W + i;
                uint32_t v = 0;
                if (r < rn) {
                    float lo = op_at(X, ld, trans, r0 + r, k);
                    float hi = has_hi ? op_at(X, ld, trans, r0 + r, k + 1) : 0.0f;
                    v = pair_bf16(lo, hi);
                    sum[i] = sum[i] + lo + hi; /* k, then k + 1: the order of the vector packer */
                }
                d[(size_t)kp * W + i] = v;
            }
        }
        if (rowsum)
            for (int i = 0; i < W && s * W + i < rn; i++)
                rowsum[r0 + s * W + i] += sum[i];
    }
}

/* C tile (mr × nr valid of MR × NR) = alpha · acc (+ bias) + beta · C */
static inline void store_tile_generic(float *C, int ldc, const float *acc, int mr, int nr,
                                      float alpha, float beta, const float *bias) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *c = C + (size_t)i * ldc + j;
            float v = alpha * acc[i * NR + j];
            if (bias)
                v += bias[j];
            *c = beta == 0.0f ? v : v + beta * *c;
        }
}

static float bf16_lo(uint32_t p) {
    uint32_t u = p << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float bf16_hi(uint32_t p) {
    uint32_t u = p & 0xffff0000u;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void kernel_generic(int kp2, const uint32_t *a, const uint32_t *b, float *C, int ldc, int mr,
                           int nr, float alpha, float beta, const float *bias) {
    float acc[MR * NR] = {0};
    for (int kp = 0; kp < kp2; kp++) {
        const uint32_t *ak = a + (size_t)kp * MR, *bk = b + (size_t)kp * NR;
        for (int i = 0; i < MR; i++) {
            float alo = bf16_lo(ak[i]), ahi = bf16_hi(ak[i]);
            for (int j = 0; j < NR; j++)
                acc[i * NR + j] += alo * bf16_lo(bk[j]) + ahi * bf16_hi(bk[j]);
        }
    }
    store_tile_generic(C, ldc, acc, mr, nr, alpha, beta, bias);
}

#ifdef VLP_BF16_X86 /* (bf16_x86.h) */

/* The lanes of the 16 rows from v on in a strip of W rows: *in_strip those
 * inside the strip (W = 12 leaves 4 out, neither loaded nor stored), the
 * result those of them below rn (left = rn − the first row's index). */
TARGET_BF16 static inline __mmask16 strip_lanes(int W, int v, int left, __mmask16 *in_strip) {
    int width = W - v < 16 ? W - v : 16;
    *in_strip = (__mmask16)((1u << width) - 1);
    return left >= 16 ? *in_strip : left <= 0 ? 0 : (__mmask16)(((1u << left) - 1) & *in_strip);
}

/* Strips of W (16 or 32) rows where op(X)'s rows are X's columns (X stored
 * (K, R)): contiguous loads, no transpose. */
TARGET_BF16 static void pack_cols_x86(uint32_t *dst, const float *X, int ld, int r0, int rn, int k0,
                                      int kn, int W, int strip_lo, int strip_hi, float *rowsum) {
    int kp2 = (kn + 1) / 2;
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        __m512 sum[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}; /* W ≤ 32 */
        for (int kp = 0; kp < kp2; kp++) {
            bool has_hi = 2 * kp + 1 < kn;
            for (int v = 0; v < W; v += 16) {
                int r = s * W + v;
                __mmask16 wm, m = strip_lanes(W, v, rn - r, &wm);
                _mm512_mask_storeu_epi32(d + (size_t)kp * W + v, wm,
                                         bf16_pairs_of_rows(X, ld, r0 + r, k0 + 2 * kp, has_hi, m,
                                                      rowsum ? &sum[v / 16] : NULL));
            }
        }
        if (rowsum)
            for (int v = 0; v < W; v += 16) {
                int r = s * W + v;
                __mmask16 wm, m = strip_lanes(W, v, rn - r, &wm);
                float *out = rowsum + r0 + r;
                _mm512_mask_storeu_ps(out, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), sum[v / 16]));
            }
    }
}

/* Panels of W columns of a bf16 X stored (K, R) (op(X)'s rows are X's
 * columns): rows k and k+1 interleaved into pairs, bits copied. */
TARGET_BF16 static void pack_cols16_x86(uint32_t *dst, const uint16_t *X, int ld, int r0, int rn,
                                        int k0, int kn, int W, int strip_lo, int strip_hi) {
    int kp2 = (kn + 1) / 2;
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        for (int kp = 0; kp < kp2; kp++) {
            bool has_hi = 2 * kp + 1 < kn;
            const uint16_t *xlo = X + (size_t)(k0 + 2 * kp) * ld + r0;
            for (int v = 0; v < W; v += 16) {
                int r = s * W + v;
                __mmask16 wm, m = strip_lanes(W, v, rn - r, &wm);
                __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, xlo + r));
                __m512i hi = has_hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, xlo + ld + r))
                                    : _mm512_setzero_si512();
                _mm512_mask_storeu_epi32(d + (size_t)kp * W + v, wm,
                                         _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
    }
}

/* Strips of W rows where op(X)'s rows are X's rows (X stored (R, K)): each
 * row converted in order (its pairs are adjacent k). With `rows_out` the
 * strip is stored row by row ([i][kp], for kernel_x86_arows: contiguous
 * stores); else its pairs are scattered down the strip ([kp][i], the B
 * panels' layout). */
TARGET_BF16 static void pack_rows_x86(uint32_t *dst, const float *X, int ld, int r0, int rn, int k0,
                                      int kn, int W, int strip_lo, int strip_hi, bool rows_out) {
    int kp2 = (kn + 1) / 2;
    uint32_t row[KC / 2] __attribute__((aligned(64)));
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        for (int i = 0; i < W; i++) {
            int r = s * W + i;
            if (r >= rn) {
                for (int kp = 0; kp < kp2; kp++)
                    d[rows_out ? (size_t)i * kp2 + kp : (size_t)kp * W + i] = 0;
                continue;
            }
            const float *x = X + (size_t)(r0 + r) * ld + k0;
            bf16_convert_row((uint16_t *)(rows_out ? d + (size_t)i * kp2 : row), x, kn);
            if (!rows_out)
                for (int kp = 0; kp < kp2; kp++)
                    d[(size_t)kp * W + i] = row[kp];
        }
    }
}

/* The register tile: MR rows × 32 columns, 24 fp32 accumulators. A's pair
 * (i, kp) is at a[i·si + kp·sk]: [kp][MR] strips (si 1, sk MR) or rows
 * (si kp2, sk 1), which spare the pack a transpose. */
TARGET_BF16 static inline __attribute__((always_inline)) void
kernel_x86(int kp2, const uint32_t *a, size_t si, size_t sk, const uint32_t *b, float *C, int ldc,
           int mr, int nr, float alpha, float beta, const float *bias, bool fetch_c) {
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    /* on the first K block C is far (a row block of a big activation):
     * start fetching the tile now, so the misses overlap the dot products
     * (on later blocks it is in cache, and prefetching measured slower) */
    if (fetch_c)
        for (int i = 0; i < mr; i++) {
            _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + (size_t)i * ldc + 16), _MM_HINT_T0);
        }
    for (int kp = 0; kp < kp2; kp++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b + (size_t)kp * NR);
        __m512bh b1 = (__m512bh)_mm512_load_si512(b + (size_t)kp * NR + 16);
        const uint32_t *ak = a + (size_t)kp * sk;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ak[i * si]);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    for (int i = 0; i < mr; i++) {
        float *ci = C + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, c[i][0]), r1 = _mm512_mul_ps(va, c[i][1]);
        if (bias) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, bias));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, bias + 16));
        }
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

TARGET_BF16 static void kernel_x86_astrips(int kp2, const uint32_t *a, const uint32_t *b, float *C,
                                           int ldc, int mr, int nr, float alpha, float beta,
                                           const float *bias, bool fetch_c) {
    kernel_x86(kp2, a, 1, MR, b, C, ldc, mr, nr, alpha, beta, bias, fetch_c);
}

TARGET_BF16 static void kernel_x86_arows(int kp2, const uint32_t *a, const uint32_t *b, float *C,
                                         int ldc, int mr, int nr, float alpha, float beta,
                                         const float *bias, bool fetch_c) {
    kernel_x86(kp2, a, (size_t)kp2, 1, b, C, ldc, mr, nr, alpha, beta, bias, fetch_c);
}
#endif

bool gemm_bf16_hw(void) {
#ifdef VLP_BF16_X86
    return vlp_cpu_has(VLP_FEAT_AVX512 | VLP_FEAT_AVX512_BF16);
#else
    return false;
#endif
}

typedef struct gemm_plan {
    bool ta, tb, hw;
    int M, N, K;
    const uint16_t *A16; // op(A) = A given as bfloat16 rows (lda apart), instead of A; or NULL
    const uint16_t *B16; // op(B) = B given as bfloat16 (K, N) rows (ldb apart), instead of B; or NULL
    float *a_rowsum;     // (M) += op(A)'s row sums, added by the A packer on the first N block
    float alpha, beta;
    const float *bias; // (N) added on the first K block, or NULL
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    uint32_t *apack, *bpack;
} gemm_plan;

/* Strips of W rows of X16 (bf16 rows, ld apart), already rounded: their
 * pairs are copied, no conversion. rows_out: [i][kp] (kernel_x86_arows),
 * else [kp][i] (the portable kernel's strips). The odd k pad and the rows
 * past rn are zero. */
static void pack_rows_bf16(uint32_t *dst, const uint16_t *X16, int ld, int r0, int rn, int k0, int kn,
                           int W, int strip_lo, int strip_hi, bool rows_out) {
    int kp2 = (kn + 1) / 2;
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        for (int i = 0; i < W; i++) {
            int r = s * W + i;
            const uint16_t *x = r < rn ? X16 + (size_t)(r0 + r) * ld + k0 : NULL;
            if (rows_out && x) {
                uint32_t *row = d + (size_t)i * kp2;
                memcpy(row, x, sizeof(uint16_t) * (size_t)(kn & ~1));
                if (kn & 1) row[kp2 - 1] = x[kn - 1]; /* the low half; the pad high half zero */
                continue;
            }
            for (int kp = 0; kp < kp2; kp++) {
                uint32_t v = 0;
                if (x) v = (uint32_t)x[2 * kp] | (2 * kp + 1 < kn ? (uint32_t)x[2 * kp + 1] << 16 : 0u);
                d[rows_out ? (size_t)i * kp2 + kp : (size_t)kp * W + i] = v;
            }
        }
    }
}

/* Panels of W columns of a bf16 X stored (K, R), portable: pairs of rows
 * k and k+1, bits copied; the odd k pad and the columns past rn zero. */
static void pack_cols_bf16(uint32_t *dst, const uint16_t *X, int ld, int r0, int rn, int k0, int kn,
                           int W, int strip_lo, int strip_hi) {
    int kp2 = (kn + 1) / 2;
    for (int s = strip_lo; s < strip_hi; s++) {
        uint32_t *d = dst + (size_t)s * kp2 * W;
        for (int kp = 0; kp < kp2; kp++) {
            const uint16_t *xlo = X + (size_t)(k0 + 2 * kp) * ld + r0;
            bool has_hi = 2 * kp + 1 < kn;
            for (int i = 0; i < W; i++) {
                int r = s * W + i;
                uint32_t v = 0;
                if (r < rn) v = (uint32_t)xlo[r] | (has_hi ? (uint32_t)xlo[ld + r] << 16 : 0u);
                d[(size_t)kp * W + i] = v;
            }
        }
    }
}

/* rows [r0, r0+rn) of an untransposed X summed over k [k0, k0+kn) into
 * rowsum, k in order (the packers' order for the transposed one) */
static void add_row_sums(float *rowsum, const float *X, int ld, int r0, int rn, int k0, int kn) {
    for (int r = r0; r < r0 + rn; r++) {
        const float *x = X + (size_t)r * ld + k0;
        float sum = 0.0f;
        for (int k = 0; k < kn; k++) sum += x[k];
        rowsum[r] += sum;
    }
}

/* op(A) rows are A's columns when trans_a; op(B)ᵀ rows (the N side) are B's
 * rows when trans_b. `rowsum`: op(A)'s row sums over this K block, added
 * (strips [s_lo, s_hi) are the whole block here). */
static void pack_a(const gemm_plan *p, int i0, int mn, int k0, int kn, int s_lo, int s_hi,
                   float *rowsum) {
    if (p->A16) { /* (no row sums of a bf16 A: the API refuses them) */
        pack_rows_bf16(p->apack, p->A16, p->lda, i0, mn, k0, kn, MR, s_lo, s_hi, p->hw);
        return;
    }
    if (rowsum && !p->ta) {
        add_row_sums(rowsum, p->A, p->lda, i0, mn, k0, kn);
        rowsum = NULL;
    }
#ifdef VLP_BF16_X86
    if (p->hw) {
        if (p->ta)
            pack_cols_x86(p->apack, p->A, p->lda, i0, mn, k0, kn, MR, s_lo, s_hi, rowsum);
        else
            pack_rows_x86(p->apack, p->A, p->lda, i0, mn, k0, kn, MR, s_lo, s_hi, true);
        return;
    }
#endif
    pack_generic(p->apack, p->A, p->lda, p->ta, i0, mn, k0, kn, MR, s_lo, s_hi, rowsum);
}

static void pack_b(const gemm_plan *p, int j0, int nn, int k0, int kn, int s_lo, int s_hi) {
#ifdef VLP_BF16_X86
    if (p->hw) {
        if (p->B16)
            pack_cols16_x86(p->bpack, p->B16, p->ldb, j0, nn, k0, kn, NR, s_lo, s_hi);
        else if (p->tb)
            pack_rows_x86(p->bpack, p->B, p->ldb, j0, nn, k0, kn, NR, s_lo, s_hi, false);
        else
            pack_cols_x86(p->bpack, p->B, p->ldb, j0, nn, k0, kn, NR, s_lo, s_hi, NULL);
        return;
    }
#endif
    if (p->B16) {
        pack_cols_bf16(p->bpack, p->B16, p->ldb, j0, nn, k0, kn, NR, s_lo, s_hi);
        return;
    }
    /* op(B)[k][n]: the n-th "row" of the panel is B's row n when trans_b */
    pack_generic(p->bpack, p->B, p->ldb, !p->tb, j0, nn, k0, kn, NR, s_lo, s_hi, NULL);
}

static void tile(const gemm_plan *p, int kp2, int sa, int sb, int i0, int mn, int j0, int nn,
                 float beta, bool first_k) {
    const uint32_t *a = p->apack + (size_t)sa * kp2 * MR;
    const uint32_t *b = p->bpack + (size_t)sb * kp2 * NR;
    int mr = mn - sa * MR < MR ? mn - sa * MR : MR;
    int nr = nn - sb * NR < NR ? nn - sb * NR : NR;
    float *C = p->C + (size_t)(i0 + sa * MR) * p->ldc + j0 + sb * NR;
    const float *bias = first_k && p->bias ? p->bias + j0 + sb * NR : NULL;
#ifdef VLP_BF16_X86
    if (p->hw) {
        if (p->ta)
            kernel_x86_astrips(kp2, a, b, C, p->ldc, mr, nr, p->alpha, beta, bias, first_k);
        else
            kernel_x86_arows(kp2, a, b, C, p->ldc, mr, nr, p->alpha, beta, bias, first_k);
        return;
    }
#endif
    kernel_generic(kp2, a, b, C, p->ldc, mr, nr, p->alpha, beta, bias);
}

/* One block of rows [i0, i0+mn) against the packed B block: pack its A
 * (into this thread's buffer), then the tiles panel-major, so a B panel
 * stays in L1 while the A strips stream from L2. */
static void row_block(const gemm_plan *p, int i0, int mn, int j0, int nn, int sbn, int k0, int kn,
                      float beta) {
    int san = (mn + MR - 1) / MR, kp2 = (kn + 1) / 2;
    /* each (row block, K block) is packed once per N block, by one thread:
     * the first N block's packing adds the row sums, race-free */
    pack_a(p, i0, mn, k0, kn, 0, san, j0 == 0 ? p->a_rowsum : NULL);
    for (int sb = 0; sb < sbn; sb++)
        for (int sa = 0; sa < san; sa++)
            tile(p, kp2, sa, sb, i0, mn, j0, nn, beta, k0 == 0);
}

/* The blocked loops for thread tid of nt (nt > 1: inside the parallel
 * region, every thread calls this). The threads pack the shared B block
 * together, then take row blocks dynamically (a slow thread on a noisy
 * machine takes fewer), each packing its own A. Row blocks are at most MC
 * rows and small enough that every thread gets ~4 of them. */
static void gemm_loops(const gemm_plan *p, uint32_t *apack, int tid, int nt) {
    gemm_plan mine = *p;
    mine.apack = apack;
    int rows = MC;
    if (nt > 1) {
        int want = (p->M + 4 * nt - 1) / (4 * nt);
        want = (want + MR - 1) / MR * MR;
        if (want < rows)
            rows = want;
    }
    int nblk = (p->M + rows - 1) / rows;
    for (int j0 = 0; j0 < p->N; j0 += NC) {
        int nn = p->N - j0 < NC ? p->N - j0 : NC, sbn = (nn + NR - 1) / NR;
        for (int k0 = 0; k0 < p->K; k0 += KC) {
            int kn = p->K - k0 < KC ? p->K - k0 : KC;
            float beta = k0 == 0 ? p->beta : 1.0f;
            pack_b(p, j0, nn, k0, kn, sbn * tid / nt, sbn * (tid + 1) / nt);
            if (nt == 1) {
                for (int b = 0; b < nblk; b++) {
                    int i0 = b * rows, mn = p->M - i0 < rows ? p->M - i0 : rows;
                    row_block(&mine, i0, mn, j0, nn, sbn, k0, kn, beta);
                }
                continue;
            }
#ifdef _OPENMP
#pragma omp barrier /* B is packed */
                    /* the loop's closing barrier: everyone is done with this B block */
#pragma omp for schedule(dynamic, 1)
            for (int b = 0; b < nblk; b++) {
                int i0 = b * rows, mn = p->M - i0 < rows ? p->M - i0 : rows;
                row_block(&mine, i0, mn, j0, nn, sbn, k0, kn, beta);
            }
#endif
        }
    }
}

static bool gemm_bf16_run(bool hw, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc, const float *bias, const gemm_bf16_extra *x, void *workspace,
                          int ws_threads) {
    static const gemm_bf16_extra none = {0};
    if (!x)
        x = &none;
    if (M <= 0 || N <= 0)
        return true;
    if (K <= 0 || alpha == 0.0f) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = C + (size_t)i * ldc + j;
                *c = (beta == 0.0f ? 0.0f : beta * *c) + (bias ? bias[j] : 0.0f);
            }
        if (x->a_rowsum && K > 0) /* alpha 0: the GEMM skips A, its sums do not */
            for (int i = 0; i < M; i++)
                for (int k = 0; k < K; k++)
                    x->a_rowsum[i] += op_at(A, lda, trans_a, i, k);
        return true;
    }
    uintptr_t base = ((uintptr_t)workspace + 63) & ~(uintptr_t)63;
#ifdef _OPENMP
    size_t slot = (A_BLOCK_PAIRS + B_BLOCK_PAIRS) * sizeof(uint32_t); /* a thread's packing */
#endif
    gemm_plan p = {.ta = trans_a, .tb = trans_b, .hw = hw, .M = M, .N = N, .K = K,
                   .A16 = x->A16, .B16 = x->B16, .a_rowsum = x->a_rowsum,
                   .alpha = alpha,
                   .beta = beta, .bias = bias, .A = A, .B = B, .lda = lda, .ldb = ldb,
                   .ldc = ldc, .C = C};
    int nt = 1;
#ifdef _OPENMP
    if (omp_in_parallel()) {
        /* a thread of an enclosing region (per-head attention): its own slot */
        int tid = omp_get_thread_num();
        if (tid >= ws_threads)
            return false; /* no slot of its own */
        base += (size_t)tid * slot;
    } else {
        nt = omp_get_max_threads() < ws_threads ? omp_get_max_threads() : ws_threads;
        long work = (long)M * N * K;
        if (work < 64L * 64 * 64)
            nt = 1; /* not worth waking the pool */
    }
#endif
    p.bpack = (uint32_t *)base + A_BLOCK_PAIRS; /* slot 0's B, or the caller's slot */
    if (nt == 1) {
        gemm_loops(&p, (uint32_t *)base, 0, 1);
        return true;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        gemm_loops(&p, (uint32_t *)(base + (size_t)tid * slot), tid, omp_get_num_threads());
    }
#endif
    return true;
}

bool gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc, const float *bias,
               void *workspace, int ws_threads) {
    return gemm_bf16_run(gemm_bf16_hw(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                         ldc, bias, NULL, workspace, ws_threads);
}

bool gemm_bf16_portable(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc, const float *bias, void *workspace, int ws_threads) {
    return gemm_bf16_run(false, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                         bias, NULL, workspace, ws_threads);
}

bool gemm_bf16_ex(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc,
                  const float *bias, const gemm_bf16_extra *x, void *workspace, int ws_threads) {
    /* the layouts the bf16 packers read, and row sums only of fp32 values */
    if (x && ((x->A16 && (trans_a || x->a_rowsum)) || (x->B16 && trans_b)))
        return false;
    return gemm_bf16_run(gemm_bf16_hw() && !(x && x->portable), trans_a, trans_b, M, N, K, alpha,
                         A, lda, B, ldb, beta, C, ldc, bias, x, workspace, ws_threads);
}
