/*
 * The op library: fp32, one forward/backward pair per op, llm.c style.
 *
 *   foo_forward(out, saved..., inp, weights..., dims)
 *   foo_backward(dinp, dweights..., dout, saved..., inputs..., dims)
 *
 * Rules every op keeps:
 *   - backward ACCUMULATES (+=) into every gradient it writes, so a tensor
 *     used twice gets the sum; callers zero gradients once per step;
 *   - a gradient pointer that is NULL is not computed (e.g. no dinp for the
 *     first layer, no dimg for the pixels);
 *   - no allocation: ops that need temporary memory take a `scratch` buffer
 *     of foo_scratch_floats(dims) floats;
 *   - an op that has a precondition its dims or data can violate returns
 *     vlp_err and fills the optional vlp_error; ops that cannot fail are void;
 *   - reductions over rows (bias, layernorm and embedding gradients) are
 *     partitioned by output column, so results do not depend on the thread
 *     count.
 * Shapes are given in comments as (dim, dim, ...), row-major.
 */
#ifndef VLP_OPS_H
#define VLP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "ops/gemm.h"

/* mm (first argument of the GEMM-backed ops): the precision of their
 * matmuls and the bf16 packing workspace; NULL is fp32 BLAS. */

/* ---- linear: out = inp · weightᵀ + bias -------------------------------- */
void linear_forward(const matmul_cfg *mm, float *out,          // (N, OC)
                    const float *inp,    // (N, C)
                    const float *weight, // (OC, C)
                    const float *bias,   // (OC) or NULL
                    int N, int C, int OC);
void linear_backward(const matmul_cfg *mm, float *dinp,         // (N, C) or NULL
                     float *dweight,      // (OC, C) or NULL
                     float *dbias,        // (OC) or NULL
                     const float *dout,   // (N, OC)
                     const float *inp,    // (N, C)
                     const float *weight, // (OC, C)
                     int N, int C, int OC);
/* Its weight and bias gradients in bf16 mode with the input given in bf16
 * (inp16 (N, C): an activation a bf16 model wrote once): the GEMM copies
 * it into its packs, and its packing of doutᵀ sums the bias gradient on
 * the way. The same bits as linear_backward on its fp32 values. Returns
 * false, having done nothing, when mm is not bf16 or the calling thread
 * has no workspace slot (never outside a parallel region). */
bool linear_backward_bf16_input(const matmul_cfg *mm, float *dweight, float *dbias,
                                const float *dout, const uint16_t *inp16, int N, int C, int OC);

/* ---- projection: out = inp · weight, weight stored (C, OC) ------------------
 * open_clip's visual.proj and text_projection are plain matrices used as
 * x @ proj, not nn.Linear weights. */
void proj_forward(float *out, const float *inp, const float *weight, int N, int C, int OC);
void proj_backward(float *dinp,         // (N, C) or NULL
                   float *dweight,      // (C, OC) or NULL
                   const float *dout,   // (N, OC)
                   const float *inp,    // (N, C)
                   const float *weight, // (C, OC)
                   int N, int C, int OC);

/* ---- layernorm over the last dim ----------------------------------------- */
void layernorm_forward(float *out,          // (N, C)
                       float *mean,         // (N) saved
                       float *rstd,         // (N) saved
                       const float *inp,    // (N, C)
                       const float *weight, // (C)
                       const float *bias,   // (C)
                       int N, int C, float eps);
/* the same with the output rounded to bfloat16 (uint16 bits) as it is
 * written: the input of a bf16 GEMM (gemm_bf16_ex's A16), produced once */
void layernorm_forward_bf16(uint16_t *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dweight, float *dbias, // (N,C) (C) (C)
                        const float *dout,                         // (N, C)
                        const float *inp, const float *weight,     // (N, C) (C)
                        const float *mean, const float *rstd,      // (N) (N)
                        int N, int C);

/* ---- activations, elementwise over N values -------------------------------- */
void gelu_forward(float *out, const float *inp, size_t N); // 0.5x(1+erf(x/√2))
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t N);
void quickgelu_forward(float *out, const float *inp, size_t N); // x·σ(1.702x)
void quickgelu_backward(float *dinp, const float *dout, const float *inp, size_t N);

typedef enum vlp_act { VLP_ACT_GELU = 0, VLP_ACT_QUICKGELU = 1 } vlp_act;
void act_forward(vlp_act act, float *out, const float *inp, size_t N);
/* the forward with its output rounded to bfloat16 as it is written */
void act_forward_bf16(vlp_act act, uint16_t *out, const float *inp, size_t N);
void act_backward(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N);
/* the same, written rather than accumulated (dinp = dout ⊙ act'(inp)): a
 * fresh buffer needs no zeroing pass first */
void act_backward_write(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N);

/* ---- softmax over the last dim -------------------------------------------- */
void softmax_forward(float *out, const float *inp, int N, int C); // (N, C)
void softmax_backward(float *dinp,       // (N, C)
                      const float *dout, // (N, C)
                      const float *out,  // (N, C) the forward output
                      int N, int C);

/* ---- residual: out = a + b ------------------------------------------------ */
void residual_forward(float *out, const float *a, const float *b, size_t N);
void residual_backward(float *da, float *db, const float *dout, size_t N);

/* ---- scaled dot-product attention core over a fused q|k|v tensor ------------
 * qkv row t of batch b is [q(C) | k(C) | v(C)], each split into NH heads of
 * C/NH, as the output of open_clip's in_proj. out is the heads concatenated,
 * before out_proj. With causal, query t sees keys 0..t. */
vlp_err attention_forward(const matmul_cfg *mm, float *out,       // (B, T, C)
                          float *att,       // (B, NH, T, T) saved probabilities
                          const float *qkv, // (B, T, 3C)
                          int B, int T, int C, int NH, bool causal, vlp_error *err);
size_t attention_scratch_floats(int B, int T, int NH);
void attention_backward(const matmul_cfg *mm, float *dqkv,       // (B, T, 3C)
                        const float *dout, // (B, T, C)
                        const float *qkv,  // (B, T, 3C)
                        const float *att,  // (B, NH, T, T)
                        float *scratch,    // attention_scratch_floats()
                        int B, int T, int C, int NH,
                        bool accumulate);  // false: dqkv is written, not added to


/* The same core on separate operands (cross-attention: Tq queries against Tk
 * keys): q rows of stride ldq, k and v rows of stride ldkv (b·Tk + j),
 * out (B, Tq, C) dense, att (B, NH, Tq, Tk). Causal needs Tq == Tk. */
vlp_err attention_core_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                               int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                               int Tk, int C, int NH, bool causal, vlp_error *err);
size_t attention_core_scratch_floats(int B, int Tq, int Tk, int NH);
/* accumulates into dq, dk, dv (same strides as q, k, v), or with !accumulate
 * writes them (no need to zero them first) */
void attention_core_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                             const float *dout, const float *q, int ldq, const float *k,
                             const float *v, int ldkv, const float *att, float *scratch, int B,
                             int Tq, int Tk, int C, int NH, bool accumulate);

/* The core's two implementations, which the two calls above choose between:
 * the fused kernel for short sequences (attention_fused.c: one (batch, head)
 * in cache, QKᵀ, masked softmax and PV by one small kernel; Tq, Tk and the
 * head width at most ATTENTION_FUSED_MAX), and per-head GEMMs (BLAS or the
 * bf16 kernel) for any length. Same arguments, same results up to the
 * order of the sums. */
#define ATTENTION_FUSED_MAX 128
/* the dims both check: positive, C divisible by NH, causal only when Tq == Tk */
vlp_err attention_check_dims(int B, int Tq, int Tk, int C, int NH, bool causal, vlp_error *err);
bool attention_fused_fits(int Tq, int Tk, int head_width);
bool attention_fused_hw(void); /* AVX2 or AVX-512 (the level picks the kernel) */
const char *attention_fused_level(void); /* "avx512", "avx2" or "gemm" (none) */
/* "eltwise=avx512 attention=avx512 ...": the level each kernel family runs at */
void ops_kernel_levels(char *buf, size_t n);
vlp_err attention_fused_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                                int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                                int Tk, int C, int NH, bool causal, vlp_error *err);
void attention_fused_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                              const float *dout, const float *q, int ldq, const float *k,
                              const float *v, int ldkv, const float *att, float *scratch, int B,
                              int Tq, int Tk, int C, int NH, bool accumulate);
vlp_err attention_gemm_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                               int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                               int Tk, int C, int NH, bool causal, vlp_error *err);
void attention_gemm_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                             const float *dout, const float *q, int ldq, const float *k,
                             const float *v, int ldkv, const float *att, float *scratch, int B,
                             int Tq, int Tk, int C, int NH, bool accumulate);

/* ---- multi-head self-attention: in_proj, attention core, out_proj ----------- */
vlp_err mha_forward(const matmul_cfg *mm, float *out,            // (B, T, C)
                    float *qkv,            // (B, T, 3C) saved
                    float *att,            // (B, NH, T, T) saved
                    float *heads,          // (B, T, C) saved, input of out_proj
                    const float *inp,      // (B, T, C)
                    const float *w_in,     // (3C, C) in_proj_weight, rows q|k|v
                    const float *b_in,     // (3C) in_proj_bias
                    const float *w_out,    // (C, C) out_proj.weight
                    const float *b_out,    // (C) out_proj.bias
                    int B, int T, int C, int NH, bool causal, vlp_error *err);
size_t mha_scratch_floats(int B, int T, int C, int NH);
void mha_backward(const matmul_cfg *mm, float *dinp,                       // (B, T, C) or NULL
                  float *dw_in, float *db_in,        // (3C, C) (3C)
                  float *dw_out, float *db_out,      // (C, C) (C)
                  const float *dout,                 // (B, T, C)
                  const float *inp, const float *qkv, const float *att, const float *heads,
                  const uint16_t *inp16, // inp in bf16 (bf16 mode) instead of inp, or NULL
                  const float *w_in, const float *w_out,
                  float *scratch,                    // mha_scratch_floats()
                  int B, int T, int C, int NH,
                  bool accumulate);                  // false: dinp written, not added to

/* ---- token embedding (+ optional positional embedding) ---------------------- */
vlp_err embedding_forward(float *out,         // (B, T, C)
                          const int32_t *ids, // (B, T), each in [0, V)
                          const float *wte,   // (V, C)
                          const float *wpe,   // (T, C) or NULL
                          int B, int T, int C, int V, vlp_error *err);
void embedding_backward(float *dwte,        // (V, C) or NULL
                        float *dwpe,        // (T, C) or NULL
                        const float *dout,  // (B, T, C)
                        const int32_t *ids, // (B, T), validated by the forward
                        int B, int T, int C, int V);
/* The same with one more row past the vocabulary: id V reads `extra` (C)
 * (a fusion model's [MASK] token, kept apart from the BPE table so that
 * open_clip's token_embedding keeps its shape); extra NULL: ids < V only.
 * The backward adds id V's gradients to dextra (NULL: dropped). */
vlp_err embedding_forward_extra(float *out, const int32_t *ids, const float *wte, const float *wpe,
                                const float *extra, int B, int T, int C, int V, vlp_error *err);
void embedding_backward_extra(float *dwte, float *dwpe, float *dextra, const float *dout, const int32_t *ids, int B,
                              int T, int C, int V);

/* ---- patch embedding: conv(stride = kernel = P, no bias) as one GEMM ---------
 * img is channels-first; a patch is unfolded in (channel, row, col) order, the
 * layout of conv1.weight (W, Cin, P, P); patches are numbered row-major over
 * the (H/P, W/P) grid as open_clip's flatten(2). */
vlp_err patch_embed_forward(float *out,         // (B, NP, W)  NP = (H/P)·(Wd/P)
                            float *cols,        // (B, NP, Cin·P·P) saved
                            const float *img,   // (B, Cin, H, Wd)
                            const float *weight, // (W, Cin·P·P)
                            int B, int Cin, int H, int Wd, int P, int W, vlp_error *err);
size_t patch_embed_scratch_floats(int B, int Cin, int H, int Wd, int P);
void patch_embed_backward(float *dimg,          // (B, Cin, H, Wd) or NULL
                          float *dweight,       // (W, Cin·P·P) or NULL
                          const float *dout,    // (B, NP, W)
                          const float *cols,    // (B, NP, Cin·P·P)
                          const float *weight,  // (W, Cin·P·P)
                          float *scratch,       // patch_embed_scratch_floats(), if dimg
                          int B, int Cin, int H, int Wd, int P, int W);

/* ---- class token prepend + positional embedding add -----------------------
 * keep (B, NK), ascending patch indices, or NULL (all NP patches, NK
 * ignored): only those patches become tokens, each with its own position
 * (MAE's masked encoder input). */
void cls_pos_forward(float *out,           // (B, NK+1, W)
                     const float *inp,     // (B, NP, W)
                     const float *cls,     // (W) class_embedding
                     const float *pos,     // (NP+1, W) positional_embedding
                     const int32_t *keep,  // (B, NK) or NULL
                     int B, int NP, int NK, int W);
void cls_pos_backward(float *dinp, float *dcls, float *dpos, // (B,NP,W) (W) (NP+1,W)
                      const float *dout,                     // (B, NK+1, W)
                      const int32_t *keep, int B, int NP, int NK, int W);

/* ---- token pooling: one token per sequence ---------------------------------- */
void token_pool_forward(float *out,          // (B, C)
                        const float *inp,    // (B, T, C)
                        const int32_t *index, // (B) token taken, in [0, T)
                        int B, int T, int C);
void token_pool_backward(float *dinp, const float *dout, const int32_t *index, int B, int T,
                         int C);
/* index[b] = 0: the class token of a ViT. */
void pool_index_first(int32_t *index, int B);
/* index[b] = first position of the largest id other than `skip` (-1: none;
 * a fusion model's [MASK] is the largest id but not the end of text; 0 when
 * every id is skip): the EOT token of CLIP text. */
void pool_index_argmax(int32_t *index, const int32_t *ids, int B, int T, int32_t skip);

/* ---- L2 normalisation of rows: out = x / max(‖x‖, 1e-12), as F.normalize ---- */
void l2norm_forward(float *out, float *norm, const float *inp, int N, int C); // norm (N) saved
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                     int N, int C);

#endif
