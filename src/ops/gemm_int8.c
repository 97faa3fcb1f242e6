/* int8 GEMM for inference: see gemm_int8.h for the arithmetic.
 *
 * Layouts:
 *   activations: (N, 4·kq) bytes, qa + 128 (the pad columns 128, i.e. 0),
 *                then N fp32 scales, in the caller's workspace
 *   weights:     panels of NR output channels, each (kq, NR, 4): the 4
 *                bytes of one k-group of one channel are one int32 lane,
 *                so a panel row is two zmm of VPDPBUSD's signed operand
 * The kernels compute an MR×NR tile of int32 sums over all of K (K ≤ a
 * few thousand here: 255·127·K stays far below 2³¹), then the shared
 * epilogue rescales it. Threads take (row block, panel group) pairs.
 *
 * The kernels, best first (KERNELS): AVX512-VNNI and AVX-VNNI (VPDPBUSD on
 * zmm / ymm), plain AVX2 (VPMADDUBSW on |q| and sign-carrying weights, then
 * VPMADDWD: tile_avx2 says why), arm64 SDOT, the portable C. All compute the same
 * integers, so their outputs are equal bit for bit on every CPU. */
#include "ops/gemm_int8.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/parallel.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MR 12 /* rows per tile: 24 zmm accumulators, as in the bf16 kernel */
#define NR 32 /* output channels per panel: two zmm of int32 */
#define ROW_BLOCK (4 * MR)
#define PANEL_GROUP 4
/* rows whose largest |value| is below this quantize to zeros: 127 / amax
 * would overflow to inf and 0 · inf is NaN (1e-30 is far below any weight
 * or activation that matters next to the others) */
#define Q8_TINY 1e-30f

/* The row's largest |value| (0 when below Q8_TINY), or -1 when it holds a
 * non-finite value: the scale of both weights and activations. */
static float row_absmax(const float *x, int C) {
    float amax = 0.0f;
    bool finite = true;
    for (int c = 0; c < C; c++) {
        float a = fabsf(x[c]);
        finite = finite && a <= FLT_MAX;
        amax = a > amax ? a : amax;
    }
    return !finite ? -1.0f : amax < Q8_TINY ? 0.0f : amax;
}

/* x · inv (inv = 127 / max) to the nearest integer, ties to even (as
 * nearbyintf: adding and removing 1.5·2²³ rounds |v| < 2²² in the default
 * mode, and vectorises where nearbyintf is a library call), in [-127, 127] */
static inline float quantized(float x, float inv) {
    float v = (x * inv + 12582912.0f) - 12582912.0f;
    return v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
}

bool q8_quantize_rows(int8_t *q, float *scale, const float *w, int OC, int C) {
    bool finite = true;
    for (int o = 0; o < OC; o++) {
        const float *r = w + (size_t)o * C;
        float amax = row_absmax(r, C);
        finite = finite && amax >= 0.0f;
        amax = amax > 0.0f ? amax : 0.0f;
        scale[o] = amax / 127.0f;
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int c = 0; c < C; c++) q[(size_t)o * C + c] = finite ? (int8_t)quantized(r[c], inv) : 0;
    }
    return finite;
}

/* where q[o][c] lives in the panels */
static size_t packed_index(int kq, int o, int c) {
    return (size_t)(o / NR) * kq * NR * 4 + ((size_t)(c / 4) * NR + o % NR) * 4 + c % 4;
}

vlp_err q8_matrix_init(q8_matrix *m, const int8_t *q, const float *scale, int OC, int C,
                       vlp_error *err) {
    memset(m, 0, sizeof *m);
    VLP_CHECK_SHAPE(OC > 0 && C > 0, err, "int8 weight shape (%d, %d) must be positive", OC, C);
    int kq = (C + 3) / 4, panels = (OC + NR - 1) / NR;
    size_t bytes = (size_t)panels * kq * NR * 4;
    m->packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    m->scale = malloc(sizeof(float) * (size_t)OC);
    m->wsum = malloc(sizeof(int32_t) * (size_t)OC);
    if (!m->packed || !m->scale || !m->wsum) {
        q8_matrix_free(m);
        VLP_FAIL(err, VLP_ERR_NOMEM, "int8 weight (%d, %d): %zu bytes", OC, C, bytes);
    }
    m->OC = OC, m->C = C, m->kq = kq;
    memset(m->packed, 0, bytes);
    for (int o = 0; o < OC; o++) {
        int32_t sum = 0;
        for (int c = 0; c < C; c++) {
            int8_t v = q[(size_t)o * C + c];
            m->packed[packed_index(kq, o, c)] = v;
            sum += v;
        }
        m->wsum[o] = sum;
        m->scale[o] = scale[o];
    }
    return VLP_OK;
}

void q8_matrix_unpack(const q8_matrix *m, int8_t *q) {
    for (int o = 0; o < m->OC; o++)
        for (int c = 0; c < m->C; c++) q[(size_t)o * m->C + c] = m->packed[packed_index(m->kq, o, c)];
}

void q8_matrix_free(q8_matrix *m) {
    free(m->packed), free(m->scale), free(m->wsum);
    memset(m, 0, sizeof *m);
}

size_t q8_workspace_bytes(int N, int C) { /* room for two planes a row (the AVX2 kernel's) */
    return (size_t)N * 8 * (size_t)((C + 3) / 4) + sizeof(float) * (size_t)N + 64;
}

/* How a kernel reads a quantized row of ldq bytes (q in [-127, 127]):
 * BIASED q + 128 (u8; the pad 128, i.e. 0), PLANES |q| then q (two rows,
 * the pads 0), SIGNED q (s8, the pad 0). The sums of BIASED hold
 * 128·Σw more than Σ q·w, the others none. */
typedef enum { BIASED, PLANES, SIGNED } q8_layout;

/* row n of inp → its scale and q in the layout; a row with a non-finite
 * value gets scale NaN, so its outputs are NaN (no UB casting NaN to int) */
static void quantize_row(uint8_t *dst, float *scale, const float *x, int C, int ldq, q8_layout layout) {
    float amax = row_absmax(x, C);
    int8_t *sgn = (int8_t *)dst + (layout == PLANES ? ldq : 0); /* where q goes (PLANES, SIGNED) */
    if (amax <= 0.0f) { /* non-finite: NaN outputs; tiny or zero: a zero row */
        *scale = amax < 0.0f ? NAN : 0.0f;
        memset(dst, layout == BIASED ? 128 : 0, (size_t)ldq * (layout == PLANES ? 2 : 1));
        return;
    }
    *scale = amax / 127.0f;
    float inv = 127.0f / amax;
    if (layout == BIASED) {
        for (int c = 0; c < C; c++) dst[c] = (uint8_t)((int)quantized(x[c], inv) + 128);
        memset(dst + C, 128, (size_t)(ldq - C));
        return;
    }
    for (int c = 0; c < C; c++) {
        int q = (int)quantized(x[c], inv);
        if (layout == PLANES) dst[c] = (uint8_t)(q < 0 ? -q : q);
        sgn[c] = (int8_t)q;
    }
    if (layout == PLANES) memset(dst + C, 0, (size_t)(ldq - C));
    memset(sgn + C, 0, (size_t)(ldq - C));
}

/* out[i][j] = (acc − zero·Σw) · sa[i] · sw[j] + bias[j], for the tile's
 * mr × nr; one function for every kernel, so they agree bit for bit */
static void store_tile(float *out, int ldo, const int32_t *acc, int mr, int nr, const float *sa,
                       const float *sw, const int32_t *wsum, int zero, const float *bias) {
    for (int i = 0; i < mr; i++) {
        float *o = out + (size_t)i * ldo;
        const int32_t *a = acc + i * NR;
        float s = sa[i];
        if (bias)
            for (int j = 0; j < nr; j++) o[j] = (float)(a[j] - zero * wsum[j]) * s * sw[j] + bias[j];
        else
            for (int j = 0; j < nr; j++) o[j] = (float)(a[j] - zero * wsum[j]) * s * sw[j];
    }
}

static void tile_portable(const uint8_t *const *rows, const int8_t *panel, int kq,
                          int32_t *acc /* [MR][NR] */) {
    memset(acc, 0, sizeof(int32_t) * MR * NR);
    for (int k = 0; k < kq; k++) {
        const int8_t *b = panel + (size_t)k * NR * 4;
        for (int i = 0; i < MR; i++) {
            const uint8_t *a = rows[i] + 4 * k;
            int32_t *c = acc + i * NR;
            for (int j = 0; j < NR; j++)
                c[j] += a[0] * b[4 * j] + a[1] * b[4 * j + 1] + a[2] * b[4 * j + 2] +
                        a[3] * b[4 * j + 3];
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#define VLP_VNNI_X86 1
#include <immintrin.h>
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))

TARGET_VNNI static void tile_vnni(const uint8_t *const *rows, const int8_t *panel, int kq,
                                  int32_t *acc /* [MR][NR] */) {
    __m512i c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_si512();
    for (int k = 0; k < kq; k++) {
        __m512i b0 = _mm512_load_si512(panel + (size_t)k * NR * 4);
        __m512i b1 = _mm512_load_si512(panel + (size_t)k * NR * 4 + 64);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            int32_t g;
            memcpy(&g, rows[i] + 4 * k, 4);
            __m512i a = _mm512_set1_epi32(g);
            c[i][0] = _mm512_dpbusd_epi32(c[i][0], a, b0);
            c[i][1] = _mm512_dpbusd_epi32(c[i][1], a, b1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_si512(acc + i * NR, c[i][0]);
        _mm512_storeu_si512(acc + i * NR + 16, c[i][1]);
    }
}

/* The ymm kernels: rows [r0, r0 + ROWS) by channels [16h, 16h + 16) of the
 * panel (two ymm of int32 a row) at a time, the panel (kq · 128 bytes) read
 * from L1 once per row group and half. AVX-VNNI: VPDPBUSD on q + 128, as
 * the zmm kernel. */
TARGET_AVXVNNI static void tile_avxvnni(const uint8_t *const *rows, const int8_t *panel, int kq,
                                        int32_t *acc /* [MR][NR] */) {
    enum { ROWS = 6 };
    for (int h = 0; h < 2; h++)
        for (int r0 = 0; r0 < MR; r0 += ROWS) {
            __m256i c[ROWS][2];
#pragma GCC unroll 6
            for (int i = 0; i < ROWS; i++) c[i][0] = c[i][1] = _mm256_setzero_si256();
            for (int k = 0; k < kq; k++) {
                const int8_t *b = panel + (size_t)k * NR * 4 + 64 * h;
                __m256i b0 = _mm256_load_si256((const __m256i *)b);
                __m256i b1 = _mm256_load_si256((const __m256i *)(b + 32));
#pragma GCC unroll 6
                for (int i = 0; i < ROWS; i++) {
                    int32_t g;
                    memcpy(&g, rows[r0 + i] + 4 * k, 4);
                    __m256i a = _mm256_set1_epi32(g);
                    c[i][0] = _mm256_dpbusd_avx_epi32(c[i][0], a, b0);
                    c[i][1] = _mm256_dpbusd_avx_epi32(c[i][1], a, b1);
                }
            }
#pragma GCC unroll 6
            for (int i = 0; i < ROWS; i++) {
                _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NR + 16 * h), c[i][0]);
                _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NR + 16 * h + 8), c[i][1]);
            }
        }
}

/* 8-bit activations on plain AVX2, which has no u8·s8 dot product into
 * int32: VPMADDUBSW adds two u8·s8 products in int16 with saturation, so it
 * is fed |q| (u8, ≤ 127) and w with q's sign (VPSIGNB): a pair is at most
 * 127·127·2 < 2¹⁵, and VPMADDWD by ones then adds pairs of pairs in int32.
 * The sums are Σ q·w exactly (the epilogue's zero is 0), the integers of the
 * other kernels. Each row is stored twice (quantize_row's `planes`): |q|,
 * then q, so the kernel broadcasts both instead of computing them. */
#define STEP_SIGNED(c, a_abs, a_sgn, b) \
    _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(b, a_sgn)), ones))
TARGET_AVX2 static void tile_avx2(const uint8_t *const *rows, const int8_t *panel, int kq,
                                  int32_t *acc /* [MR][NR] */) {
    enum { ROWS = 4 };
    const size_t plane = (size_t)4 * kq; /* the q plane follows the |q| one */
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++)
        for (int r0 = 0; r0 < MR; r0 += ROWS) {
            __m256i c[ROWS][2];
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++) c[i][0] = c[i][1] = _mm256_setzero_si256();
            for (int k = 0; k < kq; k++) {
                const int8_t *b = panel + (size_t)k * NR * 4 + 64 * h;
                __m256i b0 = _mm256_load_si256((const __m256i *)b);
                __m256i b1 = _mm256_load_si256((const __m256i *)(b + 32));
#pragma GCC unroll 4
                for (int i = 0; i < ROWS; i++) {
                    int32_t ga, gs;
                    memcpy(&ga, rows[r0 + i] + 4 * k, 4);
                    memcpy(&gs, rows[r0 + i] + plane + 4 * k, 4);
                    __m256i a_abs = _mm256_set1_epi32(ga), a_sgn = _mm256_set1_epi32(gs);
                    c[i][0] = STEP_SIGNED(c[i][0], a_abs, a_sgn, b0);
                    c[i][1] = STEP_SIGNED(c[i][1], a_abs, a_sgn, b1);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < ROWS; i++) {
                _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NR + 16 * h), c[i][0]);
                _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NR + 16 * h + 8), c[i][1]);
            }
        }
}
#endif

#if defined(__aarch64__) && defined(__GNUC__)
#define VLP_SDOT_ARM 1
#include <arm_neon.h>

/* arm64 with the dot-product extension (armv8.2 DotProd: Cortex-A76,
 * Neoverse N1, Apple M1 and later): SDOT multiplies signed bytes, so the
 * rows are stored as q (SIGNED) and the sums are Σ q·w. Rows [r0, r0 + 4)
 * by channels [16h, 16h + 16) in 16 accumulators (four q registers a row,
 * four channels each), the panel's 4-byte groups as they are for VNNI. */
__attribute__((target("arch=armv8.2-a+dotprod"))) static void tile_sdot(const uint8_t *const *rows, const int8_t *panel,
                                                         int kq, int32_t *acc /* [MR][NR] */) {
    enum { ROWS = 4 };
    for (int h = 0; h < 2; h++)
        for (int r0 = 0; r0 < MR; r0 += ROWS) {
            int32x4_t c[ROWS][4];
            for (int i = 0; i < ROWS; i++)
                for (int j = 0; j < 4; j++) c[i][j] = vdupq_n_s32(0);
            for (int k = 0; k < kq; k++) {
                const int8_t *b = panel + (size_t)k * NR * 4 + 64 * h;
                int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16), b2 = vld1q_s8(b + 32), b3 = vld1q_s8(b + 48);
#pragma GCC unroll 4
                for (int i = 0; i < ROWS; i++) {
                    int32_t g;
                    memcpy(&g, rows[r0 + i] + 4 * k, 4);
                    int8x16_t a = vreinterpretq_s8_s32(vdupq_n_s32(g));
                    c[i][0] = vdotq_s32(c[i][0], a, b0);
                    c[i][1] = vdotq_s32(c[i][1], a, b1);
                    c[i][2] = vdotq_s32(c[i][2], a, b2);
                    c[i][3] = vdotq_s32(c[i][3], a, b3);
                }
            }
            for (int i = 0; i < ROWS; i++)
                for (int j = 0; j < 4; j++) vst1q_s32(acc + (r0 + i) * NR + 16 * h + 4 * j, c[i][j]);
        }
}
#endif

typedef void (*tile_fn)(const uint8_t *const *, const int8_t *, int, int32_t *);

/* best first: the first whose needs the active level meets runs */
typedef struct q8_kernel {
    vlp_impl_tag tag;
    tile_fn tile;
    q8_layout layout;  /* how quantize_row stores a row for it */
    const char *words; /* for vlp_model_describe */
} q8_kernel;
static const q8_kernel KERNELS[] = {
#ifdef VLP_VNNI_X86
    {{"avx512-vnni", VLP_FEAT_AVX512 | VLP_FEAT_AVX512_VNNI}, tile_vnni, BIASED, "int8 (AVX512-VNNI)"},
    {{"avx2-vnni", VLP_FEAT_AVX2 | VLP_FEAT_AVX_VNNI}, tile_avxvnni, BIASED, "int8 (AVX-VNNI)"},
    {{"avx2", VLP_FEAT_AVX2}, tile_avx2, PLANES, "int8 (AVX2)"},
#endif
#ifdef VLP_SDOT_ARM
    {{"dotprod", VLP_FEAT_NEON | VLP_FEAT_DOTPROD}, tile_sdot, SIGNED, "int8 (arm64 SDOT)"},
#endif
    {{"portable", 0}, tile_portable, BIASED, "int8 (portable kernel: no int8 instructions at this level)"},
};

const char *q8_level(void) { return VLP_CPU_PICK(KERNELS)->tag.level; }
const char *q8_describe(void) { return VLP_CPU_PICK(KERNELS)->words; }

static void q8_run(const q8_kernel *kern, float *out, const float *inp, const q8_matrix *w,
                   const float *bias, int N, void *workspace) {
    if (N <= 0) return;
    int C = w->C, OC = w->OC, kq = w->kq, ldq = 4 * kq;
    tile_fn tile = kern->tile;
    size_t row_bytes = (size_t)ldq * (kern->layout == PLANES ? 2 : 1);
    int zero = kern->layout == BIASED ? 128 : 0; /* what the sums hold beyond Σ q·w: zero · Σw */
    uint8_t *qa = (uint8_t *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    float *sa = (float *)(qa + (size_t)N * row_bytes); /* ldq is a multiple of 4 */
    VLP_OMP_FOR
    for (int n = 0; n < N; n++)
        quantize_row(qa + (size_t)n * row_bytes, sa + n, inp + (size_t)n * C, C, ldq, kern->layout);
    int row_blocks = (N + ROW_BLOCK - 1) / ROW_BLOCK, panels = (OC + NR - 1) / NR;
    int groups = (panels + PANEL_GROUP - 1) / PANEL_GROUP;
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
#endif
    for (int rb = 0; rb < row_blocks; rb++)
        for (int g = 0; g < groups; g++) {
            _Alignas(64) int32_t acc[MR * NR];
            int p_end = (g + 1) * PANEL_GROUP < panels ? (g + 1) * PANEL_GROUP : panels;
            int r_end = (rb + 1) * ROW_BLOCK < N ? (rb + 1) * ROW_BLOCK : N;
            for (int p = g * PANEL_GROUP; p < p_end; p++) {
                const int8_t *panel = w->packed + (size_t)p * kq * NR * 4;
                int j0 = p * NR, nr = OC - j0 < NR ? OC - j0 : NR;
                for (int i0 = rb * ROW_BLOCK; i0 < r_end; i0 += MR) {
                    int mr = r_end - i0 < MR ? r_end - i0 : MR;
                    const uint8_t *rows[MR];
                    /* rows past the end read row i0 again; their sums are not stored */
                    for (int i = 0; i < MR; i++) rows[i] = qa + (size_t)(i0 + (i < mr ? i : 0)) * row_bytes;
                    tile(rows, panel, kq, acc);
                    store_tile(out + (size_t)i0 * OC + j0, OC, acc, mr, nr, sa + i0, w->scale + j0,
                               w->wsum + j0, zero, bias ? bias + j0 : NULL);
                }
            }
        }
}

void q8_linear_forward(float *out, const float *inp, const q8_matrix *w, const float *bias, int N,
                       void *workspace) {
    q8_run(VLP_CPU_PICK(KERNELS), out, inp, w, bias, N, workspace);
}

void q8_linear_forward_portable(float *out, const float *inp, const q8_matrix *w,
                                const float *bias, int N, void *workspace) {
    q8_run(&KERNELS[sizeof KERNELS / sizeof *KERNELS - 1], out, inp, w, bias, N, workspace);
}
