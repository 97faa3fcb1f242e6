/* CoCa's multimodal text decoder (open_clip's MultimodalTransformer):
 *   for each layer l: x = self_block_l(x) (causal); x = cross_block_l(x, image tokens)
 *   logits = ln_final(x) @ text_projection              (B, T, vocab)
 * Its input is the unimodal text tower's last block output (before
 * ln_final), its keys the image tower's token features. Without image tokens
 * (the text-only reference LM of PRIOR) the cross blocks are skipped. With
 * V = 0 there is no projection: the output is ln_final's (the fusion
 * encoder's, whose heads are its own), and the backward's dlogits is its
 * gradient (B, T, C). The self blocks may be causal (CoCa) or not (fusion). */
#ifndef VLP_MODEL_DECODER_H
#define VLP_MODEL_DECODER_H

#include "model/block.h"

typedef struct decoder_dims {
    block_dims self;  // T = context length, C = width; causal for CoCa, not for the fusion encoder
    block_dims cross; // the same, not causal
    int Tk;           // image tokens
    int V;            // vocabulary; 0: no projection (lnf is the output)
    int layers;
} decoder_dims;

/* Views of the decoder's parameters (or of their gradients). */
typedef struct decoder_views {
    block_params *self;                 // [layers] text_decoder.resblocks.l.*
    cross_params *cross;                // [layers] text_decoder.cross_attn.l.*
    float *ln_final_w, *ln_final_b;     // (C) (C)
    float *text_projection;             // (C, V)
} decoder_views;

typedef struct decoder_acts {
    const float **in;    // [2·layers] each block's input: self l at 2l, cross l at 2l+1
    float **out;         // [2·layers] (B, T, C) each block's output
    block_acts *self;    // [layers]
    cross_acts *cross;   // [layers]
    float *lnf, *lnf_mean, *lnf_rstd; // (B, T, C) (B·T) (B·T)
    float *logits;       // (B, T, V); none when V is 0
    const float *img;    // the forward's image tokens, NULL: text only
} decoder_acts;

/* The pointer tables (in, out, self, cross: 2·layers, 2·layers, layers,
 * layers entries), freed first if there were some; and their free. */
vlp_err decoder_acts_alloc(decoder_acts *a, int layers, vlp_error *err);
void decoder_acts_free(decoder_acts *a);
/* Binds activations for batch B (counts when base is NULL) into the tables. */
size_t decoder_acts_bind(decoder_acts *a, float *base, const decoder_dims *d, int B);
size_t decoder_scratch_floats(const decoder_dims *d, int B);

vlp_err decoder_forward(decoder_acts *a,
                        const float *txt, // (B, T, C), kept by the caller until the backward
                        const float *img, // (B, Tk, C) or NULL: no cross-attention
                        const decoder_views *w, const decoder_dims *d, int B, vlp_error *err);
void decoder_backward(float *dtxt,          // (B, T, C) accumulated
                      float *dimg,          // (B, Tk, C) accumulated; unused when text only
                      decoder_views *g,     // accumulated
                      const float *dlogits, // (B, T, V), or (B, T, C) for lnf when V is 0
                      const decoder_acts *a, const decoder_views *w, const decoder_dims *d,
                      float *scratch,       // decoder_scratch_floats()
                      int B);
#endif
