/* The pre-LN residual attention block of open_clip (ResidualAttentionBlock):
 *   x1  = x  + out_proj(MHA(ln_1(x)))
 *   out = x1 + c_proj(act(c_fc(ln_2(x1))))                                  */
#ifndef VLP_MODEL_BLOCK_H
#define VLP_MODEL_BLOCK_H

#include "ops/gemm_int8.h"
#include "ops/ops.h"

typedef struct block_dims {
    int B, T, C, NH;
    int hidden;   // MLP width, mlp_ratio · C
    bool causal;  // text tower
    vlp_act act;  // GELU, or QuickGELU for OpenAI weights
    float eps;    // layernorm eps, 1e-5 in open_clip
    const matmul_cfg *mm; // matmul precision + workspace; NULL: fp32
    void *q8_ws;          // int8 layers' workspace (q8_workspace_bytes for B·T rows), when
                          // the blocks have int8 weights
} block_dims;

/* A block's four matrices in int8 (an inference model from vlp quantize);
 * one whose `packed` is NULL stays fp32. */
typedef struct block_q8 {
    q8_matrix in_proj, out_proj, c_fc, c_proj;
} block_q8;

/* Views of one block's parameters (or of their gradients) inside a larger
 * buffer; the field order is the layout order. */
typedef struct block_params {
    float *ln_1_w, *ln_1_b;         // (C) (C)
    float *in_proj_w, *in_proj_b;   // (3C, C) (3C)
    float *out_proj_w, *out_proj_b; // (C, C) (C)
    float *ln_2_w, *ln_2_b;         // (C) (C)
    float *c_fc_w, *c_fc_b;         // (H, C) (H)
    float *c_proj_w, *c_proj_b;     // (C, H) (C)
    /* not a view: the int8 weights the forward uses instead of the fp32
     * matrices (inference only), or NULL */
    const block_q8 *q8;
} block_params;

#define BLOCK_NPARAMS 12

/* Name (open_clip state-dict suffix after "resblocks.<i>."), and shape. */
typedef struct block_param_spec {
    const char *name;
    int ndim;
    int dims[2];
} block_param_spec;

static inline size_t block_param_numel(const block_param_spec *s) {
    return (size_t)s->dims[0] * (s->ndim == 2 ? (size_t)s->dims[1] : 1);
}

/* Fills specs[BLOCK_NPARAMS] in layout order. */
void block_param_specs(const block_dims *d, block_param_spec specs[BLOCK_NPARAMS]);
/* Points the views at consecutive ranges from base; returns the floats used.
 * base may be NULL to only count. */
size_t block_params_bind(block_params *p, float *base, const block_dims *d);
/* The view of parameter i (layout order), for name-driven code. */
float **block_params_slot(block_params *p, int i);

/* Activations the forward saves for the backward. */
typedef struct block_acts {
    float *ln1, *ln1_mean, *ln1_rstd; // (B,T,C) (B·T) (B·T)
    float *qkv;                       // (B, T, 3C)
    float *att;                       // (B, NH, T, T)
    float *heads;                     // (B, T, C)
    float *x1;                        // (B, T, C) after the attention residual
    float *ln2, *ln2_mean, *ln2_rstd; // (B,T,C) (B·T) (B·T)
    float *fc;                        // (B, T, H) before the activation
    float *fc_act;                    // (B, T, H)
    /* bf16 training: ln1, ln2 and fc_act are this block's own, holding the
     * bf16 values the forward's GEMMs read (half the bytes), and the
     * backward reads them instead of recomputing them (clip.c binds them
     * so when it has the memory to keep them: not when checkpointing) */
    bool kept16;
} block_acts;

/* The same without ln1, ln2 and fc_act, which point at `ln` (N, C) and
 * `fc_act` (N, H): buffers all blocks of a tower share, since the backward
 * recomputes the LayerNorm and activation outputs (or, kept16, the caller
 * points them at the block's own bf16 ones); returns the floats taken
 * from base. */
size_t block_acts_bind_shared(block_acts *a, float *base, float *ln, float *fc_act, const block_dims *d);
size_t block_acts_bind(block_acts *a, float *base, const block_dims *d);
size_t block_scratch_floats(const block_dims *d);

vlp_err block_forward(float *out,              // (B, T, C)
                      block_acts *acts,
                      const float *inp,        // (B, T, C)
                      const block_params *w, const block_dims *d, vlp_error *err);
void block_backward(float *dinp,               // (B, T, C) or NULL, accumulated
                    block_params *dw,          // accumulated
                    const float *dout,         // (B, T, C)
                    const float *inp,          // (B, T, C)
                    const block_acts *acts, const block_params *w,
                    float *scratch,            // block_scratch_floats()
                    const block_dims *d);
/* The cross-attention block of open_clip's multimodal decoder
 * (ResidualAttentionBlock with is_cross_attention):
 *   x1  = x  + out_proj(MHA(q = ln_1(x), k = v = ln_1_kv(kv)))
 *   out = x1 + c_proj(act(c_fc(ln_2(x1))))
 * in_proj's rows are q|k|v as in self-attention; keys come from Tk tokens of
 * width C (the image's). Parameters in open_clip's order: ln_1, attn,
 * ln_1_kv, ln_2, mlp. */
typedef struct cross_params {
    block_params base;            // ln_1, attn (in_proj (3C, C), out_proj), ln_2, mlp
    float *ln_1_kv_w, *ln_1_kv_b; // (C) (C)
} cross_params;

/* Activations: base.qkv holds q (B, Tq, C), base.att (B, NH, Tq, Tk); every
 * buffer is the block's own (no sharing). */
typedef struct cross_acts {
    block_acts base;
    float *lnkv, *lnkv_mean, *lnkv_rstd; // (B, Tk, C) (B·Tk) (B·Tk)
    float *kv;                           // (B, Tk, 2C) k | v
} cross_acts;

size_t cross_acts_bind(cross_acts *a, float *base, const block_dims *d, int Tk);
size_t cross_scratch_floats(const block_dims *d, int Tk);
vlp_err cross_block_forward(float *out,          // (B, T, C)
                            cross_acts *acts,
                            const float *inp,    // (B, T, C)
                            const float *kv_inp, // (B, Tk, C)
                            int Tk, const cross_params *w, const block_dims *d, vlp_error *err);
void cross_block_backward(float *dinp,           // (B, T, C) or NULL, accumulated
                          float *dkv_inp,        // (B, Tk, C) or NULL, accumulated
                          cross_params *dw,      // accumulated
                          const float *dout,     // (B, T, C)
                          const float *inp, const float *kv_inp, int Tk, const cross_acts *acts,
                          const cross_params *w,
                          float *scratch,        // cross_scratch_floats()
                          const block_dims *d);
#endif
