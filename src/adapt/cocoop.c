/* CoCoOp: CoOp's context shifted, for each image, by a meta-net of its
 * feature: Linear(E, E/16) -> ReLU -> Linear(E/16, width), added to every
 * context vector. The classes' prompts are the image's own, so the text
 * tower runs once per image. */
#include "adapt/prompt.h"
#include "core/error.h"
#include "model/init.h"

#include <string.h>

static void cocoop_layout(prompt_learner *pl) {
    int E = pl->E, H = pl->hidden, W = pl->W;
    pl_reg(pl, "prompt_learner.meta_net.linear1.weight", &pl->meta_w1, 2, H, E, 0);
    pl_reg(pl, "prompt_learner.meta_net.linear1.bias", &pl->meta_b1, 1, H, 0, 0);
    pl_reg(pl, "prompt_learner.meta_net.linear2.weight", &pl->meta_w2, 2, W, H, 0);
    pl_reg(pl, "prompt_learner.meta_net.linear2.bias", &pl->meta_b2, 1, W, 0, 0);
}

static void cocoop_init(prompt_learner *pl, rng64 *r) {
    init_linear(r, pl->meta_w1, pl->meta_b1, pl->hidden, pl->E);
    init_linear(r, pl->meta_w2, pl->meta_b2, pl->W, pl->hidden);
}

/* bias (W) = w2 · relu(w1 · x + b1) + b2; hid (H) keeps the ReLU's output */
static void meta_forward(const prompt_learner *pl, const float *x, float *hid, float *bias) {
    int E = pl->E, H = pl->hidden, W = pl->W;
    for (int h = 0; h < H; h++) {
        double s = pl->meta_b1[h];
        for (int e = 0; e < E; e++) s += (double)pl->meta_w1[(size_t)h * E + e] * x[e];
        hid[h] = s > 0 ? (float)s : 0.0f;
    }
    for (int w = 0; w < W; w++) {
        double s = pl->meta_b2[w];
        for (int h = 0; h < H; h++) s += (double)pl->meta_w2[(size_t)w * H + h] * hid[h];
        bias[w] = (float)s;
    }
}

/* the meta-net's gradients from dbias (W), accumulated */
static void meta_backward(prompt_learner *pl, const float *x, const float *hid, const float *dbias) {
    int E = pl->E, H = pl->hidden, W = pl->W;
    float *gw1 = pl->grads + (pl->meta_w1 - pl->weights), *gb1 = pl->grads + (pl->meta_b1 - pl->weights);
    float *gw2 = pl->grads + (pl->meta_w2 - pl->weights), *gb2 = pl->grads + (pl->meta_b2 - pl->weights);
    float *dh = pl->dhid;
    for (int h = 0; h < H; h++) dh[h] = 0;
    for (int w = 0; w < W; w++) {
        gb2[w] += dbias[w];
        for (int h = 0; h < H; h++) {
            gw2[(size_t)w * H + h] += dbias[w] * hid[h];
            dh[h] += pl->meta_w2[(size_t)w * H + h] * dbias[w];
        }
    }
    for (int h = 0; h < H; h++) {
        if (hid[h] <= 0) continue; /* ReLU */
        gb1[h] += dh[h];
        for (int e = 0; e < E; e++) gw1[(size_t)h * E + e] += dh[h] * x[e];
    }
}

static vlp_err cocoop_scores(prompt_learner *pl, const float *img, int B, float *out, vlp_error *err) {
    for (int b = 0; b < B; b++) {
        const float *x = img + (size_t)b * pl->E;
        meta_forward(pl, x, pl->hid, pl->bias);
        VLP_TRY(pl_text_features(pl, pl->bias, err));
        pl_scores_from_features(pl, x, 1, out + (size_t)b * pl->C);
    }
    return VLP_OK;
}

static vlp_err cocoop_step(prompt_learner *pl, const float *images, const int *labels, int B, float *loss,
                           int *correct, vlp_error *err) {
    VLP_TRY(pl_plain_images(pl, images, B, pl->img, err));
    float scale = pl_logit_scale(pl), total = 0;
    int hits = 0;
    for (int b = 0; b < B; b++) { /* one image's prompts, forward and backward */
        const float *x = pl->img + (size_t)b * pl->E;
        float *hid = pl->hid + (size_t)b * pl->hidden, *bias = pl->bias + (size_t)b * pl->W;
        float *dbias = pl->dbias + (size_t)b * pl->W, *row = pl->logits + (size_t)b * pl->C;
        meta_forward(pl, x, hid, bias);
        VLP_TRY(pl_text_features(pl, bias, err));
        pl_scores_from_features(pl, x, 1, row);
        int hit;
        total += pl_cross_entropy(row, labels + b, 1, pl->C, scale, row, &hit) / B;
        hits += hit;
        for (int c = 0; c < pl->C; c++) /* d feat_c = d score_c / B · x */
            for (int e = 0; e < pl->E; e++) pl->dtfeat[(size_t)c * pl->E + e] = row[c] / B * x[e];
        memset(dbias, 0, sizeof(float) * pl->W);
        VLP_TRY(pl_text_backward(pl, bias, pl->dtfeat, dbias, err));
        meta_backward(pl, x, hid, dbias);
    }
    *loss = total;
    if (correct) *correct = hits;
    return VLP_OK;
}

const prompt_method prompt_cocoop = {
    .name = "cocoop",
    .summary = "CoCoOp: CoOp's context plus a meta-net of the image feature (prompts per image)",
    .n_ctx = 4,
    .init = "a photo of a",
    .lr = 0.002,
    .batch = 1,
    .epochs = {10, 10, 10, 10, 10},
    .layout = cocoop_layout,
    .init_params = cocoop_init,
    .embed_images = pl_plain_images,
    .scores = cocoop_scores,
    .step = cocoop_step,
};
