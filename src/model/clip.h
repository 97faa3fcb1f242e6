/*
 * CLIP's towers: a ViT image tower and a causal text tower, with the heads
 * some objectives train (a per-token head, CoCa's text decoder, MAE's pixel
 * decoder). The losses are in src/loss, the objectives in src/train.
 *
 * All parameters live in one float buffer described by a table of named
 * views (open_clip state-dict names and shapes); gradients use the same
 * layout, so optimizer, clipping and allreduce are flat loops. Activations
 * live in one arena sized for a batch at clip_reserve(); no allocation
 * happens in forward or backward.
 */
#ifndef VLP_MODEL_CLIP_H
#define VLP_MODEL_CLIP_H

#include <stdint.h>

#include "model/block.h"
#include "model/config.h"
#include "model/decoder.h"
#include "model/mae.h"

#define VLP_PARAM_NAME_MAX 64

/* The parts of a model: every parameter belongs to one. An objective names
 * the parts it trains (objective.trains, an allow-list) and the trainer
 * freezes the rest, so a head no loss reaches is never touched (weight decay
 * included), whatever heads the model carries. */
#define CLIP_PARTS(X)                                                                              \
    X(IMAGE, "the image tower")                          /* visual.*: with its LN and projection */ \
    X(TEXT, "the text tower")                            /* token/positional embeddings, transformer.* */ \
    X(TEXT_POOL, "the text tower's final LN and projection") /* ln_final, text_projection */       \
    X(LOGIT_SCALE, "the logit scale")                                                              \
    X(LOGIT_BIAS, "the logit bias")                      /* SigLIP's */                            \
    X(TEXT_DECODER, "the text decoder (CoCa)")           /* text_decoder.* */                      \
    X(MAE_DECODER, "the MAE decoder")                    /* mae_decoder.* */                       \
    X(FUSION, "the fusion encoder (ITM, MLM)")           /* text_fusion.* */
enum clip_part_index {
#define CLIP_PART_INDEX(name, words) CLIP_PART_INDEX_##name,
    CLIP_PARTS(CLIP_PART_INDEX) CLIP_PARTS_COUNT
#undef CLIP_PART_INDEX
};
/* one bit each (CLIP_PART_IMAGE, ...): an objective's `trains` is their union */
typedef enum clip_part {
#define CLIP_PART_BIT(name, words) CLIP_PART_##name = 1u << CLIP_PART_INDEX_##name,
    CLIP_PARTS(CLIP_PART_BIT)
#undef CLIP_PART_BIT
} clip_part;
/* "the image tower", ... for one part bit; "?" for anything else */
const char *clip_part_name(unsigned part);

typedef struct clip_param {
    char name[VLP_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[4];
    size_t offset, numel; // in floats, into the parameter buffer
    bool decay;           // AdamW weight decay applies (open_clip's rule)
    bool embedding;       // an embedding table (adamw_cfg.decay_embeddings may exempt it)
    bool frozen;          // locked (LiT) or not trained: no gradient, no update
    unsigned part;        // the clip_part it belongs to
} clip_param;

/* Views of one tower's parameters, into the weights or the gradients. */
typedef struct vision_views {
    float *conv1, *class_embedding, *positional_embedding, *ln_pre_w, *ln_pre_b;
    block_params *blocks; // [layers]
    float *ln_post_w, *ln_post_b, *proj;
} vision_views;

typedef struct text_views {
    float *token_embedding, *positional_embedding;
    block_params *blocks; // [layers]
    float *ln_final_w, *ln_final_b, *text_projection;
} text_views;

/* Views of the fusion encoder's parameters (or of their gradients): its
 * layers and final LN as a decoder without projection, and its heads. */
typedef struct fusion_views {
    decoder_views dec;       // text_fusion.resblocks/cross_attn/ln_final (text_projection unused)
    float *itm_w, *itm_b;    // (2, C) (2): text_fusion.itm_head.*
    float *mlm_bias;         // (V): text_fusion.mlm_bias; the MLM head's weight is token_embedding's
    float *mask_token;       // (W): text_fusion.mask_token, the text tower's embedding of id V ([MASK])
} fusion_views;

typedef struct clip_views {
    vision_views vis;
    text_views txt;
    float *logit_scale;
    float *logit_bias; // NULL unless cfg.has_logit_bias (SigLIP)
    decoder_views dec; // CoCa's text decoder; NULL views unless cfg.multimodal.layers
    mae_views mae;     // MAE's pixel decoder; NULL views unless cfg.mae.layers
    fusion_views fus;  // the fusion encoder; NULL views unless cfg.fusion.layers
} clip_views;

/* Activations one tower saves for its backward. */
typedef struct tower_acts {
    float *stem;              // vision: (B, NP, Cin·P·P) unfolded patches; text: unused
    float *x0;                // (B, T, W) embeddings, the input of ln_pre (vision)
    float *pre_mean, *pre_rstd; // (B·T) ln_pre statistics (vision)
    float **xs;               // [layers + 1] of (B, T, W): block inputs, xs[L] the output
    block_acts *blocks;       // [layers]
    int32_t *pool_index;      // (B)
    float *pooled;            // (B, W) the pooled token before the final LN
    float *pooled_ln, *fin_mean, *fin_rstd; // (B, W) (B) (B)
    float *feat;              // (B, E) projected
    float *feat_norm;         // (B) L2 norms
    float *emb;               // (B, E) normalised embeddings: the tower's output
    /* the head applied to every token (FILIP; NULL unless m->token_head):
     * ln_post/ln_final, projection, L2 norm of each of the B·T tokens */
    float *tok_ln, *tok_mean, *tok_rstd; // (B·T, W) (B·T) (B·T)
    float *tok_feat, *tok_norm;          // (B·T, E) (B·T)
    float *tok_emb;                      // (B·T, E) normalised token features
} tower_acts;

/* Prompt tokens in one tower (prompt learning: CoOp, CoCoOp, MaPLe). Text:
 * the n prompts replace the token embeddings at positions 1..n, after the
 * start token (the positional embedding is still added to them). Image: the
 * n prompts are appended after the patches, without a position, before
 * ln_pre. Layers 1..depth-1 (MaPLe's deep prompts) replace those same n
 * tokens of the block's input. The pointers are the caller's and are read
 * at every forward and backward. */
typedef struct tower_prompts {
    int n;              // prompt tokens; 0: none
    int count;          // the sequences `in` holds: a forward takes at most this batch
    int depth;          // layers whose input holds them (1: the input only), at most layers
    const float *in;    // (S, n, W) the input's, one set per sequence of the forward's batch S
    const float *deep;  // (depth-1, n, W) layers 1..depth-1's, shared by every sequence
    float *din;         // (S, n, W) d loss / d in, overwritten by the backward; NULL: not wanted
    float *ddeep;       // (depth-1, n, W) d loss / d deep, accumulated; NULL: not wanted
} tower_prompts;

/* CoCa's captioning head (cfg.multimodal.layers > 0): a text decoder whose
 * layers cross-attend to the image tokens; the image forward then also
 * projects every token (image_acts.tok_feat), the decoder reads them and the
 * text tower's last block output. Parameters text_decoder.* (CLIP_PART_TEXT_DECODER). */
typedef struct coca_head {
    bool on;
    cross_params *cross_views;   // [2 · layers] weights, then gradients
    decoder_dims dims;
    decoder_acts acts;           // the decoder's activations, in the arena
    float *dimg, *dtxt;          // (B, Tv, E) (B, T, W) the caption loss's tower gradients
} coca_head;

/* MAE's pixel decoder (cfg.mae.layers > 0): the image forward may see only
 * some patches (clip_image_forward_masked); the decoder reads the projected
 * tokens. Parameters mae_decoder.* (CLIP_PART_MAE_DECODER). */
typedef struct mae_head {
    bool on;
    mae_dims dims;
    mae_acts acts;
    int32_t *keep;               // (B, NK) the last image forward's visible patches
    int nkeep;                   // their number; NP: the last forward saw every patch
    float *dimg;                 // (B, 1+NK, E) the MAE loss's gradient for the image tokens
} mae_head;

/* The fusion encoder of ALBEF/BLIP (cfg.fusion.layers > 0): reads pairs of
 * rows of the last text forward (its last block output) and the last image
 * forward (its projected tokens, as CoCa's decoder), gathered into its own
 * input. Parameters text_fusion.* (CLIP_PART_FUSION). */
typedef struct fusion_head {
    bool on;
    cross_params *cross_views;   // [2 · layers] weights, then gradients
    decoder_dims dims;           // not causal, V 0: ln_final's output is read by the heads
    decoder_acts acts;
    int pairs;                   // the last forward's
    bool from_kept_rows;         // ... read rows kept from earlier forwards (clip_fusion_forward_rows)
    int32_t *text_row, *image_row, *pool; // (batch) each pair's rows and its end-of-text position
    float *txt, *img;            // (B, T, C) (B, Tv, E) the pairs' input, gathered
    float *mlm_rows;             // (B·T, C) the fused tokens the last MLM forward read
    float *dlnf;                 // (B, T, C) the heads' gradient for ln_final's output, zeroed by the forward
    float *dpair_txt, *dpair_img; // the backward's: the pairs' input gradients
    float *dtxt, *dimg;          // (B, T, W) (B, Tv, E) the towers' rows' gradients, accumulated
} fusion_head;

/* A model: two towers and the heads its config has, each head's parameters
 * registered in the one buffer under its own part (clip_part). */
typedef struct clip_model {
    clip_config cfg;
    clip_param *params;
    int nparams;
    size_t nfloats;
    float *weights, *grads;     // (nfloats) each
    clip_views views, grad_views; // named views into weights and grads
    block_params *block_views;  // storage for the four block arrays

    /* inference only (clip_init_inference): no gradients; every block of a tower
     * shares one set of activation buffers and the block inputs alternate
     * between two, so the arena is ~layers times smaller; backward is refused */
    bool inference;
    /* arena for batch `batch`, from clip_reserve() */
    int batch;
    float *arena;
    size_t arena_floats;
    tower_acts image_acts, text_acts;
    block_dims image_dims, text_dims;
    float *scratch;               // backward temporaries, shared by both towers
    matmul_cfg mm;                // the blocks' matmuls: precision, bf16 workspace (owned)
    /* locked-image tuning: image blocks below this index, and the stem, are
     * frozen, so the image backward stops there; vision.layers + 1: the
     * whole image tower is frozen (no image backward at all) */
    int vision_frozen_below;
    bool vision_stem_frozen; // conv1, class/positional embedding, ln_pre locked
    bool token_head; // FILIP's head: the forward also computes per-token features (no parameters of its own)
    /* prompt learning (clip_set_prompts): the towers' prompt tokens; while
     * any are set the weights are frozen: the backward computes only what
     * reaches the prompts, no parameter gets a gradient */
    tower_prompts image_prompts, text_prompts;
    bool frozen;
    int image_prompt_room; // image prompt tokens the arena has room for (clip_reserve sizes it)
    /* gradient checkpointing (clip_set_checkpointing): every block of a tower
     * shares one set of activations, and the backward recomputes each block's
     * from its saved input before going through it */
    bool checkpoint;
    bool kept16; // the bound blocks keep bf16 activations (bind_all: bf16 training)
    coca_head coca;
    mae_head mae;
    fusion_head fusion;
    /* int8 weights of the towers' blocks (model/clip_q8.h: vlp quantize), or
     * NULL; inference models only */
    struct clip_q8 *q8;
} clip_model;

vlp_err clip_init(clip_model *m, const clip_config *cfg, vlp_error *err);
/* A model for forward passes only: no gradient buffer, and clip_reserve sizes
 * the arena for forward passes (one set of block activations per tower). */
vlp_err clip_init_inference(clip_model *m, const clip_config *cfg, vlp_error *err);
/* The parameters (floats) a config has, counted without allocating them. */
size_t clip_config_param_count(const clip_config *cfg);
void clip_free(clip_model *m);
/* The arithmetic of the transformer blocks' matmuls (fp32 by default). BF16
 * rounds their inputs to bfloat16 and accumulates in fp32, like
 * torch.autocast; weights, gradients and everything else stay fp32. The
 * workspace is sized for max(`threads`, the cores) threads. On a
 * CPU without AVX512-BF16 the bf16 results are the same, computed slowly:
 * callers check gemm_bf16_hw() first. */
/* Locked-image tuning (LiT, open_clip's lock_image_tower): freezes the
 * image tower but its last `unlocked_groups` groups, open_clip's groups:
 * [conv1, class/positional embedding, ln_pre], each residual block but the
 * last, [last block, ln_post], [proj]. Frozen parameters get no gradient
 * (the backward stops before them) and no AdamW update. unlocked_groups < 0
 * unlocks everything again. */
vlp_err clip_lock_image(clip_model *m, int unlocked_groups, vlp_error *err);
bool clip_image_frozen(const clip_model *m); /* the whole image tower */

/* FILIP: from now on the forward also writes per-token features
 * (image_acts.tok_emb (B, Tv, E), text_acts.tok_emb (B, Tt, E)); the activations are
 * reserved again at the next clip_reserve. The backward from their
 * gradients: */
void clip_enable_token_head(clip_model *m);
void clip_image_backward_tokens(clip_model *m, const float *dtok, int B); // (B, Tv, E)
void clip_text_backward_tokens(clip_model *m, const float *dtok, int B);  // (B, Tt, E)

/* CoCa: the decoder on the last forwards' text tokens and, with_image, the
 * image tokens; next-token logits (B, T, vocab) in coca.acts.logits. Without the
 * image: the text-only language model (PRIOR's reference). */
vlp_err clip_caption_forward(clip_model *m, bool with_image, int B, vlp_error *err);
/* From the logits' gradient: the decoder's parameter gradients (accumulated)
 * and the towers' in coca.dimg / coca.dtxt (overwritten), for the calls below. */
void clip_caption_backward(clip_model *m, const float *dlogits, int B);
/* The towers' backward from any of: the pooled embedding's gradient demb
 * (B, E), the image's projected tokens' (B, Tv, E) / the text tower's last
 * block output's (B, T, W) gradient (the decoder's); NULL: none. */
void clip_image_backward_with_tokens(clip_model *m, const float *demb, const float *dtok_feat, int B);
void clip_text_backward_with_tokens(clip_model *m, const float *demb, const float *dx_last, int B);

/* The fusion encoder (ALBEF/BLIP) on P ≤ batch pairs: text row text_row[p]
 * of the last text forward and image row image_row[p] of the last image
 * forward; its output (ln_final's, (P, T, C)) in fusion.acts.lnf. */
vlp_err clip_fusion_forward(clip_model *m, const int32_t *text_row, const int32_t *image_row, int P,
                            vlp_error *err);
/* The same on rows kept from earlier forwards (retrieval's re-ranking, ITM
 * scores of a set): text_row[p] of txt (n_txt, T, W), the text tower's last
 * block output, with its end-of-text position pool[text_row[p]], and
 * image_row[p] of img (n_img, Tv, E), the image tower's projected tokens.
 * Inference only: a clip_fusion_backward after it does nothing (its rows
 * are no tower forward's to reach). */
vlp_err clip_fusion_forward_rows(clip_model *m, const float *txt, const int32_t *pool, int n_txt,
                                 const int32_t *text_row, const float *img, int n_img, const int32_t *image_row,
                                 int P, vlp_error *err);
/* ITM logits (P, 2) of the last fusion forward: not matched, matched; the
 * backward from their gradient adds to the ITM head's gradients and to the
 * fusion layers' output gradient (for clip_fusion_backward) */
void clip_itm_forward(const clip_model *m, float *logits);
void clip_itm_backward(clip_model *m, const float *ditm);
/* MLM logits (M, V) at M flat positions (pair · T + t) of the last fusion
 * forward: the fused tokens · token_embeddingᵀ + text_fusion.mlm_bias; in
 * chunks of positions as the caller likes (logits of many positions are
 * large); the backward of a chunk from its logits' gradient adds to the MLM
 * bias's, the token embedding's and the fusion output's gradients */
vlp_err clip_mlm_forward(clip_model *m, const int32_t *pos, int M, float *logits, vlp_error *err);
void clip_mlm_backward(clip_model *m, const int32_t *pos, const float *dmlm, int M);
/* fusion.dtxt (text) / fusion.dimg (image) to zero: before the fusion
 * backwards of one text forward (the MLM pass reads a second, masked one,
 * while the image rows' gradients go on accumulating) */
void clip_fusion_zero_grads(clip_model *m, bool text, bool image);
/* The last fusion forward's backward from what its heads' backwards left:
 * the fusion layers' gradients (accumulated), and the pairs' input
 * gradients added to their source rows in fusion.dtxt / fusion.dimg, for
 * clip_text/image_backward_with_tokens. */
void clip_fusion_backward(clip_model *m);

/* MAE: the image forward on the visible patches only — keep (B, NK), each
 * row ascending patch indices — as MAE's encoder: the class token and those
 * patches, each with its position, through the tower (1 + NK tokens); the
 * pooled embedding is the class token's (FLIP's masked contrastive). The
 * backward calls are the usual ones. NK = all patches is the plain forward. */
vlp_err clip_image_forward_masked(clip_model *m, const float *images, const int32_t *keep, int NK,
                                  int B, vlp_error *err);
/* MAE's decoder on the last masked image forward: its predictions of every
 * patch's pixels in mae.acts.pred (B, NP+1, K); the backward from their gradient
 * accumulates the decoder's gradients and writes the image tokens' in
 * mae.dimg, for clip_image_backward_with_tokens. */
vlp_err clip_mae_forward(clip_model *m, int B, vlp_error *err);
void clip_mae_backward(clip_model *m, const float *dpred, int B);

/* Gradient checkpointing on or off: the activation memory of a tower's
 * blocks becomes one block's (the block inputs are still kept), for one more
 * forward of the blocks in the backward; the gradients are the same, bit for
 * bit. Takes effect at the next clip_reserve. */
void clip_set_checkpointing(clip_model *m, bool on);

/* Prompt tokens for both towers (either may be NULL or have n 0: none);
 * copies the structs (the buffers stay the caller's). Changing the image's
 * prompt count needs the next clip_reserve; a model with CoCa's or MAE's
 * decoder takes no image prompts. */
vlp_err clip_set_prompts(clip_model *m, const tower_prompts *vis, const tower_prompts *txt, vlp_error *err);

/* The blocks' matmuls in fp32 or bf16 (threads: the bf16 workspace's
 * slots, at least one per core). A reserved training model is bound anew
 * when its blocks' activations change form (bf16 training keeps them in
 * bf16): its activations are lost, so set it before a forward, not between
 * a forward and its backward. Without the workspace's memory the model
 * stays fp32 and the call fails. */
vlp_err clip_set_precision(clip_model *m, matmul_precision precision, int threads, vlp_error *err);

/* open_clip's initialisation, from a seed. */
void clip_init_weights(clip_model *m, uint64_t seed);

const clip_param *clip_param_find(const clip_model *m, const char *name);

/* Sizes the activation arena for batches up to B (re-sizes when B grows). */
vlp_err clip_reserve(clip_model *m, int B, vlp_error *err);

/* Towers: forward to L2-normalised embeddings (B, E) in image_acts.emb / text_acts.emb;
 * backward from their gradient, accumulating into m->grads. */
vlp_err clip_image_forward(clip_model *m, const float *images, int B, vlp_error *err); // (B,3,H,W)
void clip_image_backward(clip_model *m, const float *demb, int B);                     // (B, E); not in inference
vlp_err clip_text_forward(clip_model *m, const int32_t *ids, int B, vlp_error *err);   // (B, ctx)
void clip_text_backward(clip_model *m, const float *demb, int B);

#endif
