/*
 * A head: what a model carries besides its two towers for some objective
 * (CoCa's text decoder, MAE's pixel decoder, and the next ones). Each is one
 * file (src/model/head_*.c) and one line in clip.c's table of heads; clip.c
 * asks each present head for its dimensions, views, parameters (registered
 * under its part, with open_clip's names), initial weights, activations
 * and scratch, and never names a head itself. The head's forward and
 * backward are its own calls (clip.h: clip_caption_*, clip_mae_*).
 */
#ifndef VLP_MODEL_CLIP_HEAD_H
#define VLP_MODEL_CLIP_HEAD_H
#include "core/rng.h"
#include "model/arena.h"
#include "model/clip.h"

/* The parameter layout pass (clip.c): it runs twice, to count, then to fill
 * the table and bind the views (layout_binding). */
typedef struct param_layout {
    clip_model *m;
    int n;
    size_t off;
    bool bind;
    unsigned part; // the clip_part of what is registered now
} param_layout;

static inline bool layout_binding(const param_layout *L) { return L->bind; }
static inline bool layout_with_grads(const param_layout *L) { return L->bind && L->m->grads; }
/* one tensor (ndim ≤ 2 here), its weight view *wv and gradient view *gv (may be NULL) */
void layout_reg(param_layout *L, const char *name, int ndim, int64_t d0, int64_t d1, float **wv, float **gv);
/* an embedding table (token, positional, class, mask token) */
void layout_reg_embedding(param_layout *L, const char *name, int ndim, int64_t d0, int64_t d1, float **wv,
                          float **gv);
/* `layers` residual blocks named PREFIXresblocks.L.* */
void layout_reg_blocks(param_layout *L, const char *prefix, int layers, const block_dims *d, block_params *w,
                       block_params *g);

/* `layers` cross-attention blocks named PREFIXcross_attn.L.* (CoCa's
 * decoder's, open_clip's names and order); g NULL: no gradient views */
void layout_reg_cross_blocks(param_layout *L, const char *prefix, int layers, const block_dims *d, cross_params *w,
                             cross_params *g);

/* a residual block's open_clip initialisation (text: CLIP.init_parameters' re-draw) */
void clip_init_block(rng64 *r, block_params *p, const block_dims *d, bool text, int layers);

/* name, part, present and layout are required; any other entry may be NULL
 * (nothing to do: a head that only holds parameters needs no more) */
typedef struct clip_head {
    const char *name;  // its parameters' prefix without the dot ("text_decoder"); test_train checks it
    unsigned part;     // their clip_part
    bool (*present)(const clip_config *cfg);
    /* from m->cfg and the towers' dims: its own (and its flag on) */
    void (*set_dims)(clip_model *m);
    /* residual blocks it needs views of (weights; as many again for gradients) */
    int (*blocks)(const clip_model *m);
    /* its views' storage: blocks (2 · blocks(m): weights, then gradients) and its own */
    vlp_err (*bind_views)(clip_model *m, block_params *blocks, bool with_grads, vlp_error *err);
    void (*layout)(param_layout *L);
    void (*init_weights)(clip_model *m, rng64 *r);
    /* whether the image forward must project every token for it */
    bool (*reads_image_tokens)(const clip_model *m);
    /* its activation tables for a new batch size (clip_reserve) */
    vlp_err (*reserve)(clip_model *m, vlp_error *err);
    /* its activations in the arena (a counting pass when a->base is NULL);
     * returns the scratch floats its backward needs */
    size_t (*bind)(clip_model *m, arena *a, int B);
    void (*free)(clip_model *m);
} clip_head;

#endif
