/* int8 linear layers for inference (`vlp quantize`): weights int8 with one
 * symmetric scale per output channel, activations quantized per token
 * (row) on the fly, products summed in int32, the result rescaled to fp32.
 *
 *   out[n][o] = Σ_c qa[n][c]·qw[o][c] · sa[n] · sw[o] + bias[o]
 *
 * The VNNI kernels (VPDPBUSD) multiply unsigned by signed bytes, so the
 * activations are stored as qa + 128 and 128·Σ_c qw[o][c] is taken off
 * again; the portable kernel computes the same integers, and all share the
 * fp32 epilogue, so their outputs are equal bit for bit. The plain AVX2
 * kernel stores q and |q| instead and sums Σ q·w directly (gemm_int8.c),
 * the same integers again. */
#ifndef VLP_OPS_GEMM_INT8_H
#define VLP_OPS_GEMM_INT8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* A weight W (OC, C) as int8, W ≈ q · scale[o], packed for the kernels. */
typedef struct q8_matrix {
    int OC, C;
    int kq;          // ceil(C / 4): the kernels take 4 consecutive c at a time
    int8_t *packed;  // (ceil(OC / 32), kq, 32, 4) panels of 32 output channels, zero padded
    float *scale;    // (OC)
    int32_t *wsum;   // (OC) Σ_c q[o][c]: zero · wsum is what the activations' + zero added
} q8_matrix;

/* Per-output-channel symmetric quantization of w (OC, C): scale[o] =
 * max_c |w[o][c]| / 127 (0 for a zero row), q = round(w / scale) in
 * [-127, 127]. False, having written nothing meaningful, when w holds a
 * non-finite value. */
bool q8_quantize_rows(int8_t *q, float *scale, const float *w, int OC, int C);
/* Packs q (OC, C) and scale (OC) into m (allocates; q8_matrix_free). */
vlp_err q8_matrix_init(q8_matrix *m, const int8_t *q, const float *scale, int OC, int C,
                       vlp_error *err);
void q8_matrix_free(q8_matrix *m);
/* The int8 values back, q (OC, C), from the packed panels. */
void q8_matrix_unpack(const q8_matrix *m, int8_t *q);

/* Bytes of workspace q8_linear_forward needs for N rows of width C. */
size_t q8_workspace_bytes(int N, int C);
/* out (N, OC) = inp (N, C) · Wᵀ + bias (OC, or NULL), W = w (C = w->C);
 * the best kernel the active level allows (q8_level). Threads: the OpenMP
 * pool when called outside a parallel region. */
void q8_linear_forward(float *out, const float *inp, const q8_matrix *w, const float *bias, int N,
                       void *workspace);
/* the same with the portable kernel (8-bit activations) whatever the CPU */
void q8_linear_forward_portable(float *out, const float *inp, const q8_matrix *w,
                                const float *bias, int N, void *workspace);
const char *q8_level(void); /* "avx512-vnni", "avx2-vnni", "avx2", "dotprod" or "portable" */
const char *q8_describe(void); /* the kernel in words: "int8 (AVX512-VNNI)", ... */

#endif
