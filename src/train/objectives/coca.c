/* coca: contrastive + captioning (open_clip's CoCaLoss), with PRIOR's token
 * weighting of the caption loss as an option (Chen et al. 2025). */
#include "train/objectives/shared.h"

#include <stdlib.h>

enum { CLIP_WEIGHT, CAPTION_WEIGHT, PRIOR, PRIOR_ALPHA };
static const objective_option options[] = {
    OBJECTIVE_CLIP_WEIGHT(CLIP_WEIGHT),
    OBJECTIVE_NUMBER(CAPTION_WEIGHT, "caption_weight", "--caption-weight", "X",
                     "weight of the caption loss", 2.0f, 0.0f, 1e6f),
    OBJECTIVE_MODEL(PRIOR, "prior", "--prior-ref", "CKPT",
                    "weight each caption token's loss by PRIOR's (1 - p_ref)^alpha from this textlm "
                    "checkpoint (its run's tokenizer is used unless --vocab is given)"),
    OBJECTIVE_NUMBER(PRIOR_ALPHA, "prior_alpha", "--prior-alpha", "A",
                     "PRIOR's exponent alpha", 1.0f, 0.0f, 100.0f),
};

typedef struct coca {
    embeddings e;
    captions cap;
} coca;

static void destroy(void *state) {
    coca *s = state;
    if (!s) return;
    embeddings_free(&s->e);
    captions_free(&s->cap);
    free(s);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    coca *s = calloc(1, sizeof *s);
    VLP_CHECK_ALLOC(s, err, sizeof *s);
    vlp_err rc = embeddings_alloc(&s->e, c, err);
    if (rc == VLP_OK) rc = captions_alloc(&s->cap, c, c->opt[PRIOR] != 0, err);
    if (rc != VLP_OK) {
        destroy(s);
        return rc;
    }
    s->cap.alpha = c->opt[PRIOR_ALPHA];
    *state = s;
    return VLP_OK;
}

static vlp_err set_model(void *state, const objective_ctx *c, int option, clip_model *ref,
                         vlp_error *err) {
    return captions_set_reference(&((coca *)state)->cap, c, ref, err);
}

static vlp_err ready(void *state, const float *opt, vlp_error *err) {
    const coca *s = state;
    VLP_CHECK_ARG(!s->cap.w || s->cap.ref, err,
                  "PRIOR weighting needs its reference model (trainer_set_model \"prior\", "
                  "--prior-ref)");
    return VLP_OK;
}

/* the contrastive loss over the whole batch as for CLIP (every micro-batch
 * encoded first), then each micro-batch's captions through the decoder, and
 * one backward per tower from both losses' gradients */
static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    coca *s = state;
    clip_model *m = c->m;
    int K = c->accum, mb = c->mb, E = m->cfg.embed_dim;
    float cw = c->opt[CLIP_WEIGHT], capw = c->opt[CAPTION_WEIGHT];
    double denom = 1.0;
    VLP_TRY(captions_targets(&s->cap, c, &denom, err));
    VLP_TRY(embeddings_encode(&s->e, c, image_forward_plain, NULL, err));
    float contrastive, caption = 0.0f;
    VLP_TRY(infonce_grads(&s->e, c, cw, &contrastive, err));
    for (int k = 0; k < K; k++) {
        if (K > 1) { /* the decoder reads the image tokens even of a locked tower */
            VLP_TRY(image_forward_plain(NULL, c, k, err));
            VLP_TRY(text_forward(c, k, err));
        }
        VLP_TRY(captions_micro(&s->cap, c, k, true, denom, capw, &caption, err));
        clip_image_backward_with_tokens(m, s->e.dimg + (size_t)k * mb * E, m->coca.dimg, mb);
        clip_text_backward_with_tokens(m, s->e.dtxt + (size_t)k * mb * E, m->coca.dtxt, mb);
    }
    VLP_TRY(sum_over_ranks(c, caption, &caption, err)); /* each rank's share of the batch's */
    *loss = cw * contrastive + capw * caption;
    return VLP_OK;
}

const objective objective_coca = {
    .name = "coca",
    .help = "contrastive + captioning (open_clip's CoCaLoss); the config needs multimodal_cfg",
    .options = options,
    .noptions = (int)(sizeof options / sizeof options[0]),
    .requires = requires_text_decoder,
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_CONTRASTIVE | CLIP_PART_TEXT_DECODER,
    .create = create,
    .set_model = set_model,
    .ready = ready,
    .grads = grads,
    .free = destroy,
};
