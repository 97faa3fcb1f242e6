/* clip: symmetric InfoNCE on the pooled embeddings (open_clip's ClipLoss). */
#include "train/objectives/shared.h"

#include <stdlib.h>

static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    embeddings *e = state;
    VLP_TRY(embeddings_encode(e, c, image_forward_plain, NULL, err));
    VLP_TRY(infonce_grads(e, c, 1.0f, loss, err));
    return embeddings_backward(e, c, image_forward_plain, NULL, err);
}

const objective objective_clip = {
    .name = "clip",
    .help = "symmetric InfoNCE on the pooled embeddings (open_clip's ClipLoss)",
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_CONTRASTIVE,
    .create = embeddings_create,
    .grads = grads,
    .free = embeddings_destroy,
};
