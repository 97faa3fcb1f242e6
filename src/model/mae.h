/* MAE's light decoder (He et al. 2021, "Masked Autoencoders Are Scalable
 * Vision Learners"), reading the image tower's output on the visible patches:
 *
 *   e   = embed(tok)                                 (B, 1+NK, C)  tok: projected tokens
 *   x0  = [e_cls; patch p: e_j if p = keep[j] else mask_token] + pos   (B, 1+NP, C)
 *   x   = blocks(x0)                                 (not causal)
 *   pred = pred(ln(x))                               (B, 1+NP, K)  K = 3·P·P pixels
 *
 * Row 0 of pred (the class token's) is computed and never read. The pixel
 * order of a patch is (channel, row, column), the order of conv1's weight
 * (MAE's patchify uses (row, column, channel): a permutation of pred's rows). */
#ifndef VLP_MODEL_MAE_H
#define VLP_MODEL_MAE_H

#include <stdint.h>

#include "model/block.h"

typedef struct mae_dims {
    block_dims blk; // T = 1 + NP, C = decoder width, not causal
    int NP;         // patches of an image
    int E;          // width of the tokens read (the image tower's embed_dim)
    int K;          // pixels of a patch, 3·P·P
    int layers;
} mae_dims;

/* Views of the decoder's parameters (or gradients), state-dict names
 * mae_decoder.{embed.weight, embed.bias, mask_token, positional_embedding,
 * resblocks.N.*, ln.weight, ln.bias, pred.weight, pred.bias}. */
typedef struct mae_views {
    float *embed_w, *embed_b; // (C, E) (C)
    float *mask_token;        // (C)
    float *pos;               // (1+NP, C)
    block_params *blocks;     // [layers]
    float *ln_w, *ln_b;       // (C) (C)
    float *pred_w, *pred_b;   // (K, C) (K)
} mae_views;

typedef struct mae_acts {
    float *emb;               // (B, 1+NK, C) the embedded visible tokens
    int32_t *slot;            // (B, NP) visible patch p: its token (1..NK); masked: 0
    float **xs;               // [layers + 1] (B, T, C) block inputs, xs[layers] the output
    block_acts *blocks;       // [layers]
    float *ln, *ln_mean, *ln_rstd; // (B·T, C) (B·T) (B·T)
    float *pred;              // (B, T, K)
    const float *tok;         // the forward's input, kept by the caller for the backward
    int nkeep;
} mae_acts;

/* Binds activations for batch B (counts when base is NULL); xs and blocks
 * must hold layers + 1 and layers entries. */
size_t mae_acts_bind(mae_acts *a, float *base, const mae_dims *d, int B);
size_t mae_scratch_floats(const mae_dims *d, int B);

vlp_err mae_forward(mae_acts *a,
                    const float *tok,    // (B, 1+NK, E) class token, then the visible patches
                    const int32_t *keep, // (B, NK) their patch indices, ascending in [0, NP):
                                         // the list clip_image_forward_masked checked
                    int NK, const mae_views *w, const mae_dims *d, int B, vlp_error *err);
void mae_backward(float *dtok,          // (B, 1+NK, E) accumulated
                  mae_views *g,         // accumulated
                  const float *dpred,   // (B, T, K); row 0 of each sample ignored
                  const mae_acts *a, const mae_views *w, const mae_dims *d,
                  float *scratch,       // mae_scratch_floats()
                  int B);

/* MAE's initialisation: xavier-uniform linear layers with zero biases,
 * N(0, 0.02) mask token, 2-D sine-cosine positions (MAE keeps them fixed;
 * here they are learnt from that start), blocks as the image tower's. */
void mae_init_weights(mae_views *w, const mae_dims *d, uint64_t seed);

/* A random choice of NK of NP patches, ascending, from a seed (MAE's
 * random_masking: argsort of uniform noise, the first NK kept). */
void mae_random_keep(int32_t *keep, int NP, int NK, uint64_t seed);
/* The patches kept at a mask ratio: NP·(1 − ratio), as MAE's int(); at least 1. */
int mae_keep_count(int NP, float mask_ratio);
#endif
