/* MAE's random masks and its reconstruction loss, for the objectives that
 * mask the images (mae, clip-mae). */
#include "train/objectives/shared.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "loss/loss.h"
#include "model/mae.h"


const char *requires_mae_decoder(const clip_config *cfg) {
    return cfg->mae.layers > 0 ? NULL : "an MAE decoder (config mae_cfg)";
}

vlp_err masks_check(const clip_model *m, float mask_ratio, vlp_error *err) {
    int nkeep = mae_keep_count(m->mae.dims.NP, mask_ratio);
    VLP_CHECK_ARG(nkeep < m->mae.dims.NP, err, "--mask-ratio %g masks none of the %d patches",
                  mask_ratio, m->mae.dims.NP);
    return VLP_OK;
}

vlp_err masks_alloc(masks *k, const objective_ctx *c, float mask_ratio, vlp_error *err) {
    k->nkeep = mae_keep_count(c->m->mae.dims.NP, mask_ratio);
    k->keep = malloc(sizeof(int32_t) * (size_t)c->b * k->nkeep);
    VLP_CHECK_ALLOC(k->keep, err, sizeof(int32_t) * (size_t)c->b * k->nkeep);
    return VLP_OK;
}

void masks_draw(masks *k, const objective_ctx *c) {
    int b = c->b, NP = c->m->mae.dims.NP;
    rng64 r = {c->seed ^ 0x6d61736b2d6d6165ull}; /* "mask-mae" */
    uint64_t run = rng64_u64(&r);
    rng64 rs = {run ^ (uint64_t)c->step};
    uint64_t step = rng64_u64(&rs);
    for (int i = 0; i < b; i++) {
        rng64 ri = {step ^ (uint64_t)(c->rank * b + i)};
        mae_random_keep(k->keep + (size_t)i * k->nkeep, NP, k->nkeep, rng64_u64(&ri));
    }
}

vlp_err masked_image_forward(const masks *k, const objective_ctx *c, int mb_index, vlp_error *err) {
    int mb = c->mb, S = c->m->cfg.vision.image_size;
    const float *img = c->images + (size_t)mb_index * mb * 3 * S * S;
    return clip_image_forward_masked(c->m, img, k->keep + (size_t)mb_index * mb * k->nkeep,
                                     k->nkeep, mb, err);
}

vlp_err clip_mae_step(clip_model *m, int B, double denom, float dloss, float *loss,
                      vlp_error *err) {
    VLP_TRY(clip_mae_forward(m, B, err));
    int NP = m->mae.dims.NP, NK = m->mae.nkeep, K = m->mae.dims.K;
    VLP_TRY(mae_loss_forward(loss, m->mae.acts.pred, m->image_acts.stem, m->mae.keep, B, NP, NK, K, denom, err));
    if (dloss == 0.0f) return VLP_OK;
    /* the prediction is not needed once its gradient is known: overwritten */
    mae_loss_backward(m->mae.acts.pred, m->mae.acts.pred, m->image_acts.stem, m->mae.keep, dloss, B, NP, NK, K, denom);
    clip_mae_backward(m, m->mae.acts.pred, B);
    return VLP_OK;
}

vlp_err mae_micro(const masks *k, const objective_ctx *c, const float *demb, float dloss,
                  float *sum, vlp_error *err) {
    clip_model *m = c->m;
    /* the loss's divisor: the masked patches of the whole batch */
    double denom = (double)c->batch * (m->mae.dims.NP - k->nkeep);
    float part;
    VLP_TRY(clip_mae_step(m, c->mb, denom, dloss, &part, err));
    *sum += part;
    clip_image_backward_with_tokens(m, demb, m->mae.dimg, c->mb);
    return VLP_OK;
}
