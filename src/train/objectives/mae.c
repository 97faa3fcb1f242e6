/* mae: masked image modeling alone (He et al. 2021): the image tower on the
 * visible patches, the pixel decoder, the loss on the masked ones. */
#include "train/objectives/shared.h"

#include <stdlib.h>

enum { MASK_RATIO };
static const objective_option options[] = {
    OBJECTIVE_NUMBER(MASK_RATIO, "mask_ratio", "--mask-ratio", "X",
                     "share of patches masked", 0.75f, 1e-6f, 1.0f - 1e-6f),
};

/* the image tower and its decoder, nothing else */
static vlp_err check(const float *opt, const clip_model *m, vlp_error *err) {
    return masks_check(m, opt[MASK_RATIO], err);
}

static void destroy(void *state) {
    masks *k = state;
    if (k) free(k->keep);
    free(k);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    masks *k = calloc(1, sizeof *k);
    VLP_CHECK_ALLOC(k, err, sizeof *k);
    vlp_err rc = masks_alloc(k, c, c->opt[MASK_RATIO], err);
    if (rc != VLP_OK) free(k);
    else *state = k;
    return rc;
}

/* each micro-batch's masked images through the tower and the decoder; the
 * loss divided by the whole batch's masked patches */
static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    masks *k = state;
    masks_draw(k, c);
    float sum = 0.0f;
    for (int i = 0; i < c->accum; i++) {
        VLP_TRY(masked_image_forward(k, c, i, err));
        VLP_TRY(mae_micro(k, c, NULL, 1.0f, &sum, err));
    }
    return sum_over_ranks(c, sum, loss, err); /* each rank's share of the batch's loss */
}

const objective objective_mae = {
    .name = "mae",
    .help = "masked image modeling alone; the config needs mae_cfg",
    .options = options,
    .noptions = (int)(sizeof options / sizeof options[0]),
    .requires = requires_mae_decoder,
    .lock = LOCK_REFUSED,
    .trains = CLIP_PART_IMAGE | CLIP_PART_MAE_DECODER,
    .check = check,
    .create = create,
    .grads = grads,
    .free = destroy,
};
