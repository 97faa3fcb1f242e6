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
 * epilogue rescales it. Threads take (row block, panel group) pairs. */
#include "ops/gemm_int8.h"
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

/* x · inv (inv = 127 / max) to the nearest integer, ties to even, in [-127, 127] */
static inline float quantized(float x, float inv) {
    float v = nearbyintf(x * inv);
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
    m->offset = malloc(sizeof(int32_t) * (size_t)OC);
    if (!m->packed || !m->scale || !m->offset) {
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
        m->offset[o] = 128 * sum;
        m->scale[o] = scale[o];
    }
    return VLP_OK;
}

void q8_matrix_unpack(const q8_matrix *m, int8_t *q) {
    for (int o = 0; o < m->OC; o++)
        for (int c = 0; c < m->C; c++) q[(size_t)o * m->C + c] = m->packed[packed_index(m->kq, o, c)];
}

void q8_matrix_free(q8_matrix *m) {
    free(m->packed), free(m->scale), free(m->offset);
    memset(m, 0, sizeof *m);
}

size_t q8_workspace_bytes(int N, int C) {
    return (size_t)N * 4 * (size_t)((C + 3) / 4) + sizeof(float) * (size_t)N + 64;
}

/* row n of inp → qa + 128 (and the pad) and its scale; a row with a
 * non-finite value gets scale NaN, so its outputs are NaN (no UB casting
 * NaN to int) */
static void quantize_row(uint8_t *dst, float *scale, const float *x, int C, int ldq) {
    float amax = row_absmax(x, C);
    if (amax <= 0.0f) { /* non-finite: NaN outputs; tiny or zero: a zero row */
        *scale = amax < 0.0f ? NAN : 0.0f;
        memset(dst, 128, (size_t)ldq);
        return;
    }
    *scale = amax / 127.0f;
    float inv = 127.0f / amax;
    for (int c = 0; c < C; c++) dst[c] = (uint8_t)((int)quantized(x[c], inv) + 128);
    memset(dst + C, 128, (size_t)(ldq - C));
}

/* out[i][j] = (acc − offset) · sa[i] · sw[j] + bias[j], for the tile's
 * mr × nr; one function for both kernels, so they agree bit for bit */
static void store_tile(float *out, int ldo, const int32_t *acc, int mr, int nr, const float *sa,
                       const float *sw, const int32_t *off, const float *bias) {
    for (int i = 0; i < mr; i++) {
        float *o = out + (size_t)i * ldo;
        const int32_t *a = acc + i * NR;
        float s = sa[i];
        if (bias)
            for (int j = 0; j < nr; j++) o[j] = (float)(a[j] - off[j]) * s * sw[j] + bias[j];
        else
            for (int j = 0; j < nr; j++) o[j] = (float)(a[j] - off[j]) * s * sw[j];
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

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define VLP_VNNI_X86 1
#include <immintrin.h>
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

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
#endif

bool q8_hw(void) {
#ifdef VLP_VNNI_X86
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

typedef void (*tile_fn)(const uint8_t *const *, const int8_t *, int, int32_t *);

static void q8_run(tile_fn tile, float *out, const float *inp, const q8_matrix *w,
                   const float *bias, int N, void *workspace) {
    if (N <= 0) return;
    int C = w->C, OC = w->OC, kq = w->kq, ldq = 4 * kq;
    uint8_t *qa = (uint8_t *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    float *sa = (float *)(qa + (size_t)N * ldq); /* ldq is a multiple of 4 */
    VLP_OMP_FOR
    for (int n = 0; n < N; n++)
        quantize_row(qa + (size_t)n * ldq, sa + n, inp + (size_t)n * C, C, ldq);
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
                    for (int i = 0; i < MR; i++) rows[i] = qa + (size_t)(i0 + (i < mr ? i : 0)) * ldq;
                    tile(rows, panel, kq, acc);
                    store_tile(out + (size_t)i0 * OC + j0, OC, acc, mr, nr, sa + i0, w->scale + j0,
                               w->offset + j0, bias ? bias + j0 : NULL);
                }
            }
        }
}

void q8_linear_forward(float *out, const float *inp, const q8_matrix *w, const float *bias, int N,
                       void *workspace) {
#ifdef VLP_VNNI_X86
    if (q8_hw()) {
        q8_run(tile_vnni, out, inp, w, bias, N, workspace);
        return;
    }
#endif
    q8_run(tile_portable, out, inp, w, bias, N, workspace);
}

void q8_linear_forward_portable(float *out, const float *inp, const q8_matrix *w,
                                const float *bias, int N, void *workspace) {
    q8_run(tile_portable, out, inp, w, bias, N, workspace);
}
