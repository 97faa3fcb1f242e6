/* CoOp: learnt context vectors before the class name, shared by the classes
 * or one set per class (CSC); the image tower as it is. */
#include "adapt/prompt.h"
#include "core/error.h"
#include "ops/gemm.h"

#include <string.h>

static vlp_err coop_step(prompt_learner *pl, const float *images, const int *labels, int B, float *loss,
                         int *correct, vlp_error *err) {
    VLP_TRY(pl_plain_images(pl, images, B, pl->img, err));
    VLP_TRY(pl_text_features(pl, NULL, err));
    pl_scores_from_features(pl, pl->img, B, pl->logits);
    float *dscores = pl->logits; /* overwritten by its own gradient */
    *loss = pl_cross_entropy(pl->logits, labels, B, pl->C, pl_logit_scale(pl), dscores, correct);
    /* d feat (C, E) = dscoresᵀ (C, B) · img (B, E) */
    vlp_sgemm(true, false, pl->C, pl->E, B, 1.0f, dscores, pl->C, pl->img, pl->E, 0.0f, pl->dtfeat, pl->E);
    return pl_text_backward(pl, NULL, pl->dtfeat, NULL, err);
}

const prompt_method prompt_coop = {
    .name = "coop",
    .summary = "CoOp: M learnt context vectors before the class name (shared, or per class with --csc)",
    .n_ctx = 16,
    .init = NULL,
    .lr = 0.002,
    .batch = 32,
    .epochs = {50, 100, 100, 200, 200},
    .csc = true,
    .embed_images = pl_plain_images,
    .scores = pl_scores_cached,
    .step = coop_step,
};
