/* siglip: the pairwise sigmoid loss (open_clip's SigLipLoss): this process's
 * images against every text of the batch, gathered across the ranks. */
#include "train/objectives/shared.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss.h"

static const char *requires(const clip_config *cfg) {
    return cfg->has_logit_bias ? NULL : "a logit_bias (config init_logit_bias)";
}

/* SigLIP's initialisation (Zhai et al.: t' = ln 10, b = -10) unless the
 * config sets its own */
static void configure(clip_config *cfg) {
    if (cfg->has_logit_bias) return;
    cfg->has_logit_bias = true, cfg->init_logit_bias = -10.0f;
    if (!cfg->has_logit_scale_init) cfg->has_logit_scale_init = true, cfg->init_logit_scale = logf(10.0f);
}

/* the loss and the gradients of this process's embeddings; the texts'
 * gradients summed back to their owners */
static vlp_err sigmoid_grads(embeddings *e, const objective_ctx *c, float *loss, vlp_error *err) {
    clip_model *m = c->m;
    int B = c->batch, W = c->world, b = c->b, E = m->cfg.embed_dim;
    float scale = *m->views.logit_scale, bias = *m->views.logit_bias;
    size_t be = (size_t)b * E;
    memset(e->dimg, 0, sizeof(float) * be);
    memset(e->dtxt, 0, sizeof(float) * be);
    const float *txt_g = e->txt;
    float *dtxt_g = e->dtxt;
    if (W > 1) {
        VLP_TRY(dist_allgather(c->dist, e->txt, e->txt_g, be, err));
        txt_g = e->txt_g, dtxt_g = e->dtxt_g;
    }
    float local;
    VLP_TRY(siglip_loss_forward(&local, e->probs_i2t, e->img, txt_g, scale, bias, b, B,
                                c->rank * b, E, err));
    siglip_loss_backward(e->dimg, dtxt_g, m->grad_views.logit_scale, m->grad_views.logit_bias, 1.0f / W,
                         e->probs_i2t, e->img, txt_g, scale, bias, e->scratch, b, B, c->rank * b, E);
    *loss = local;
    if (W == 1) return VLP_OK;
    VLP_TRY(dist_reduce_scatter_sum(c->dist, e->dtxt_g, e->dtxt, be, err));
    return mean_over_ranks(c, local, loss, err);
}

static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    embeddings *e = state;
    VLP_TRY(embeddings_encode(e, c, image_forward_plain, NULL, err));
    VLP_TRY(sigmoid_grads(e, c, loss, err));
    return embeddings_backward(e, c, image_forward_plain, NULL, err);
}

const objective objective_siglip = {
    .name = "siglip",
    .help = "pairwise sigmoid loss (open_clip's SigLipLoss); a config without "
            "init_logit_scale/init_logit_bias starts as SigLIP: scale ln 10, bias -10",
    .configure = configure,
    .requires = requires,
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_CONTRASTIVE | CLIP_PART_LOGIT_BIAS,
    .create = embeddings_create,
    .grads = grads,
    .free = embeddings_destroy,
};
