/* clip: symmetric InfoNCE on the pooled embeddings (open_clip's ClipLoss). */
#include "train/objectives/shared.h"

#include <stdlib.h>

static const char *const no_mae[] = {"mae_decoder.", NULL};

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    embeddings *e = calloc(1, sizeof *e);
    VLP_CHECK_ALLOC(e, err, sizeof *e);
    vlp_err rc = embeddings_alloc(e, c, err);
    if (rc != VLP_OK) free(e);
    else *state = e;
    return rc;
}

static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    embeddings *e = state;
    VLP_TRY(embeddings_encode(e, c, image_forward_plain, NULL, err));
    VLP_TRY(infonce_grads(e, c, 1.0f, loss, err));
    return embeddings_backward(e, c, image_forward_plain, NULL, err);
}

static void destroy(void *state) {
    if (state) embeddings_free(state);
    free(state);
}

const objective objective_clip = {
    .name = "clip",
    .help = "symmetric InfoNCE on the pooled embeddings (open_clip's ClipLoss)",
    .lock = LOCK_OPTIONAL,
    .untrained = no_mae,
    .create = create,
    .grads = grads,
    .free = destroy,
};
