/* textlm: the text tower and the decoder without cross-attention as a
 * text-only language model on the captions: PRIOR's reference. */
#include "train/objectives/shared.h"

#include <stdlib.h>

static void destroy(void *state) {
    if (state) captions_free(state);
    free(state);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    captions *cp = calloc(1, sizeof *cp);
    VLP_CHECK_ALLOC(cp, err, sizeof *cp);
    vlp_err rc = captions_alloc(cp, c, false, err);
    if (rc != VLP_OK) free(cp);
    else *state = cp;
    return rc;
}

static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    captions *cp = state;
    clip_model *m = c->m;
    double denom = 1.0;
    VLP_TRY(captions_targets(cp, c, &denom, err));
    float lm = 0.0f;
    for (int k = 0; k < c->accum; k++) {
        VLP_TRY(text_forward(c, k, err));
        VLP_TRY(captions_micro(cp, c, k, false, denom, 1.0f, &lm, err));
        clip_text_backward_with_tokens(m, NULL, m->coca.dtxt, c->mb);
    }
    return sum_over_ranks(c, lm, loss, err);
}

const objective objective_textlm = {
    .name = "textlm",
    .help = "the decoder as a text-only LM on the captions (PRIOR's reference); the config "
            "needs multimodal_cfg",
    .requires = requires_text_decoder,
    .lock = LOCK_OPTIONAL, /* it never looks at images: the image tower is frozen whole */
    .trains = CLIP_PART_TEXT | CLIP_PART_TEXT_DECODER,
    .create = create,
    .grads = grads,
    .free = destroy,
};
