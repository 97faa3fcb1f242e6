/* clip-mae: the contrastive loss on the masked images (FLIP, Li et al. 2023)
 * plus MAE's reconstruction on the same forward. */
#include "train/objectives/shared.h"

#include <stdlib.h>

enum { CLIP_WEIGHT, MASK_RATIO, MAE_WEIGHT };
static const objective_option options[] = {
    OBJECTIVE_CLIP_WEIGHT(CLIP_WEIGHT),
    OBJECTIVE_NUMBER(MASK_RATIO, "mask_ratio", "--mask-ratio", "X",
                     "share of patches masked", 0.75f, 1e-6f, 1.0f - 1e-6f),
    OBJECTIVE_NUMBER(MAE_WEIGHT, "mae_weight", "--mae-weight", "X",
                     "weight of the reconstruction loss", 1.0f, 0.0f, 1e6f),
};

typedef struct clip_mae {
    embeddings e;
    masks k;
} clip_mae;

static vlp_err check(const float *opt, const clip_model *m, vlp_error *err) {
    return masks_check(m, opt[MASK_RATIO], err);
}

static void destroy(void *state) {
    clip_mae *s = state;
    if (!s) return;
    embeddings_free(&s->e);
    free(s->k.keep);
    free(s);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    clip_mae *s = calloc(1, sizeof *s);
    VLP_CHECK_ALLOC(s, err, sizeof *s);
    vlp_err rc = embeddings_alloc(&s->e, c, err);
    if (rc == VLP_OK) rc = masks_alloc(&s->k, c, c->opt[MASK_RATIO], err);
    if (rc != VLP_OK) {
        destroy(s);
        return rc;
    }
    *state = s;
    return VLP_OK;
}

static vlp_err masked_forward(void *state, const objective_ctx *c, int k, vlp_error *err) {
    return masked_image_forward(&((clip_mae *)state)->k, c, k, err);
}

static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    clip_mae *s = state;
    clip_model *m = c->m;
    int K = c->accum, mb = c->mb, E = m->cfg.embed_dim;
    float cw = c->opt[CLIP_WEIGHT], mw = c->opt[MAE_WEIGHT];
    masks_draw(&s->k, c);
    VLP_TRY(embeddings_encode(&s->e, c, masked_forward, s, err));
    float contrastive, rec = 0.0f;
    VLP_TRY(infonce_grads(&s->e, c, cw, &contrastive, err));
    for (int k = 0; k < K; k++) {
        if (K > 1) VLP_TRY(masked_forward(s, c, k, err));
        VLP_TRY(mae_micro(&s->k, c, s->e.dimg + (size_t)k * mb * E, mw, &rec, err));
        if (K > 1) VLP_TRY(text_forward(c, k, err));
        clip_text_backward(m, s->e.dtxt + (size_t)k * mb * E, mb);
    }
    VLP_TRY(sum_over_ranks(c, rec, &rec, err));
    *loss = cw * contrastive + mw * rec;
    return VLP_OK;
}

const objective objective_clip_mae = {
    .name = "clip-mae",
    .help = "contrastive on the masked images (FLIP) + MAE; the config needs mae_cfg",
    .options = options,
    .noptions = (int)(sizeof options / sizeof options[0]),
    .requires = requires_mae_decoder,
    .lock = LOCK_REFUSED,
    .trains = TRAINS_CONTRASTIVE | CLIP_PART_MAE_DECODER,
    .check = check,
    .create = create,
    .grads = grads,
    .free = destroy,
};
