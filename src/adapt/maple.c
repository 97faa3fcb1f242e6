/* MaPLe: n context tokens in the text tower's input and, each through a
 * linear coupling (text width -> image width), appended to the image
 * tower's tokens; the input of layers 1..J-1 of both towers gets deeper
 * prompts the same way (the text's learnt, the image's coupled from them). */
#include "adapt/prompt.h"
#include "core/error.h"
#include "model/init.h"
#include "ops/gemm.h"

#include <stdio.h>
#include <string.h>

static void maple_layout(prompt_learner *pl) {
    int n = pl->n, W = pl->W, Wv = pl->Wv;
    char name[VLP_PARAM_NAME_MAX];
    pl_reg(pl, "prompt_learner.proj.weight", &pl->couple_w[0], 2, Wv, W, 0);
    pl_reg(pl, "prompt_learner.proj.bias", &pl->couple_b[0], 1, Wv, 0, 0);
    for (int i = 0; i + 1 < pl->depth; i++) { /* consecutive: the model reads them as one (depth-1, n, W) */
        snprintf(name, sizeof name, "prompt_learner.compound_prompts_text.%d", i);
        pl_reg(pl, name, i ? NULL : &pl->deep, 2, n, W, 0);
    }
    for (int i = 0; i + 1 < pl->depth; i++) {
        snprintf(name, sizeof name, "prompt_learner.compound_prompt_projections.%d.weight", i);
        pl_reg(pl, name, &pl->couple_w[i + 1], 2, Wv, W, 0);
        snprintf(name, sizeof name, "prompt_learner.compound_prompt_projections.%d.bias", i);
        pl_reg(pl, name, &pl->couple_b[i + 1], 1, Wv, 0, 0);
    }
}

static void maple_init(prompt_learner *pl, rng64 *r) {
    init_linear(r, pl->couple_w[0], pl->couple_b[0], pl->Wv, pl->W);
    size_t nW = (size_t)pl->n * pl->W;
    init_normal(r, pl->deep, nW * (pl->depth - 1), 0.02f);
    /* the reference clones one initialised layer for every deep coupling */
    for (int l = 1; l < pl->depth; l++) {
        if (l == 1) init_linear(r, pl->couple_w[1], pl->couple_b[1], pl->Wv, pl->W);
        else {
            memcpy(pl->couple_w[l], pl->couple_w[1], sizeof(float) * pl->Wv * pl->W);
            memcpy(pl->couple_b[l], pl->couple_b[1], sizeof(float) * pl->Wv);
        }
    }
}

/* the image's prompts from the text's: vin (B copies of proj(ctx)), vdeep */
static void couple_forward(prompt_learner *pl, int B) {
    int n = pl->n, W = pl->W, Wv = pl->Wv;
    size_t nWv = (size_t)n * Wv;
    for (int l = 0; l < pl->depth; l++) {
        const float *src = l ? pl->deep + (size_t)(l - 1) * n * W : pl->ctx;
        float *dst = l ? pl->vdeep + (l - 1) * nWv : pl->vin;
        for (int k = 0; k < n; k++) memcpy(dst + (size_t)k * Wv, pl->couple_b[l], sizeof(float) * Wv);
        vlp_sgemm(false, true, n, Wv, W, 1.0f, src, W, pl->couple_w[l], W, 1.0f, dst, Wv);
    }
    for (int b = 1; b < B; b++) memcpy(pl->vin + b * nWv, pl->vin, sizeof(float) * nWv);
}

/* the couplings' backward from the image prompts' gradients (dvin summed
 * over the batch), into the couplings and the text prompts */
static void couple_backward(prompt_learner *pl, int B) {
    int n = pl->n, W = pl->W, Wv = pl->Wv;
    size_t nWv = (size_t)n * Wv;
    for (int b = 1; b < B; b++)
        for (size_t i = 0; i < nWv; i++) pl->dvin[i] += pl->dvin[b * nWv + i];
    for (int l = 0; l < pl->depth; l++) {
        const float *src = l ? pl->deep + (size_t)(l - 1) * n * W : pl->ctx;
        const float *dy = l ? pl->dvdeep + (l - 1) * nWv : pl->dvin;
        float *gw = pl->grads + (pl->couple_w[l] - pl->weights), *gb = pl->grads + (pl->couple_b[l] - pl->weights);
        float *gsrc = pl->grads + (src - pl->weights);
        vlp_sgemm(true, false, Wv, W, n, 1.0f, dy, Wv, src, W, 1.0f, gw, W);            // dW += dyᵀ x
        for (int k = 0; k < n; k++)
            for (int i = 0; i < Wv; i++) gb[i] += dy[(size_t)k * Wv + i];
        vlp_sgemm(false, false, n, W, Wv, 1.0f, dy, Wv, pl->couple_w[l], W, 1.0f, gsrc, W); // dx += dy W
    }
}

static vlp_err maple_images(prompt_learner *pl, const float *images, int B, float *out, vlp_error *err) {
    VLP_CHECK_ARG(B <= pl->batch, err, "batch %d: the learner holds %d images", B, pl->batch);
    couple_forward(pl, B);
    VLP_TRY(clip_image_forward(pl->m, images, B, err));
    memcpy(out, pl->m->image_acts.emb, sizeof(float) * (size_t)B * pl->E);
    return VLP_OK;
}

static vlp_err maple_step(prompt_learner *pl, const float *images, const int *labels, int B, float *loss,
                          int *correct, vlp_error *err) {
    VLP_TRY(pl_text_features(pl, NULL, err));
    VLP_TRY(maple_images(pl, images, B, pl->img, err));
    pl_scores_from_features(pl, pl->img, B, pl->logits);
    float *dscores = pl->logits;
    *loss = pl_cross_entropy(pl->logits, labels, B, pl->C, pl_logit_scale(pl), dscores, correct);
    int C = pl->C, E = pl->E;
    vlp_sgemm(false, false, B, E, C, 1.0f, dscores, C, pl->tfeat, E, 0.0f, pl->dimg, E);   // (B, E)
    vlp_sgemm(true, false, C, E, B, 1.0f, dscores, C, pl->img, E, 0.0f, pl->dtfeat, E);   // (C, E)
    memset(pl->dvdeep, 0, sizeof(float) * (size_t)(pl->depth - 1) * pl->n * pl->Wv);
    clip_image_backward(pl->m, pl->dimg, B);
    VLP_TRY(pl_text_backward(pl, NULL, pl->dtfeat, NULL, err));
    couple_backward(pl, B);
    return VLP_OK;
}

const prompt_method prompt_maple = {
    .name = "maple",
    .summary = "MaPLe: text prompts, coupled image prompts, both in the first J layers",
    .n_ctx = 2,
    .init = "a photo of a",
    .lr = 0.0035,
    .batch = 4,
    .epochs = {5, 5, 5, 5, 5},
    .deep = true,
    .layout = maple_layout,
    .init_params = maple_init,
    .embed_images = maple_images,
    .scores = pl_scores_cached,
    .step = maple_step,
};
