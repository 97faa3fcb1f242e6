/* The linear probe (CLIP's and CoOp's baseline): multinomial logistic
 * regression on the frozen image features of the shots, fitted at once by
 * L-BFGS (src/eval/linear_probe.c); no text tower. Its scores are logits. */
#include "adapt/prompt.h"
#include "core/error.h"
#include "eval/linear_probe.h"
#include "ops/gemm.h"

#include <stdlib.h>
#include <string.h>

static void probe_layout(prompt_learner *pl) {
    pl_reg_per_class(pl, "probe.weight", &pl->probe_w, 2, pl->E, 0);
    pl_reg_per_class(pl, "probe.bias", &pl->probe_b, 1, 0, 0);
}

static vlp_err probe_scores(prompt_learner *pl, const float *img, int B, float *out, vlp_error *err) {
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * pl->C, pl->probe_b, sizeof(float) * pl->C);
    vlp_sgemm(false, true, B, pl->C, pl->E, 1.0f, img, pl->E, pl->probe_w, pl->E, 1.0f, out, pl->C);
    return VLP_OK;
}

static vlp_err probe_fit(prompt_learner *pl, const float *img, const int *labels, int n, double l2, vlp_error *err) {
    bool *held_out = calloc((size_t)n, sizeof(bool)); /* every shot trains */
    float *wb = malloc(sizeof(float) * (size_t)pl->C * (pl->E + 1));
    probe_result r;
    vlp_err rc = held_out && wb ? linear_probe_fit(img, labels, held_out, n, pl->E, pl->C, l2, 1000, wb, &r, err)
                                : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the probe's weights");
    if (rc == VLP_OK) {
        memcpy(pl->probe_w, wb, sizeof(float) * (size_t)pl->C * pl->E);
        memcpy(pl->probe_b, wb + (size_t)pl->C * pl->E, sizeof(float) * pl->C);
    }
    free(held_out), free(wb);
    return rc;
}

const prompt_method prompt_probe = {
    .name = "linear-probe",
    .summary = "linear probe: logistic regression (L-BFGS) on the frozen image features",
    .n_ctx = 0,
    .layout = probe_layout,
    .embed_images = pl_plain_images,
    .scores = probe_scores,
    .fit = probe_fit,
};
