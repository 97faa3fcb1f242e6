/* The whole batch's pooled embeddings for the contrastive losses, and the
 * collectives every loss shares. */
#include "train/objectives/shared.h"

#include <stdlib.h>
#include <string.h>

#include "loss/loss.h"

vlp_err mean_over_ranks(const objective_ctx *c, float local, float *loss, vlp_error *err) {
    double sum = local;
    VLP_TRY(dist_allreduce_sum_f64(c->dist, &sum, 1, err));
    *loss = (float)(sum / c->world);
    return VLP_OK;
}

vlp_err sum_over_ranks(const objective_ctx *c, float local, float *sum, vlp_error *err) {
    double s = local;
    VLP_TRY(dist_allreduce_sum_f64(c->dist, &s, 1, err));
    *sum = (float)s;
    return VLP_OK;
}

vlp_err add_reduce_scattered(const objective_ctx *c, const float *global, float *landing,
                             float *local, size_t n, vlp_error *err) {
    VLP_TRY(dist_reduce_scatter_sum(c->dist, global, landing, n, err));
    for (size_t k = 0; k < n; k++) local[k] += landing[k];
    return VLP_OK;
}

vlp_err embeddings_alloc(embeddings *e, const objective_ctx *c, vlp_error *err) {
    memset(e, 0, sizeof *e);
    int E = c->m->cfg.embed_dim, B = c->batch;
    size_t be = (size_t)c->b * E, Be = (size_t)B * E;
    e->img = malloc(sizeof(float) * be), e->txt = malloc(sizeof(float) * be);
    e->dimg = malloc(sizeof(float) * be), e->dtxt = malloc(sizeof(float) * be);
    /* one process: the (B, B) probabilities; a rank: its (b, B) rows */
    e->probs_i2t = malloc(sizeof(float) * c->b * B);
    e->probs_t2i = malloc(sizeof(float) * c->b * B);
    e->scratch = malloc(sizeof(float) * clip_loss_scratch_floats(B, E));
    bool ok = e->img && e->txt && e->dimg && e->dtxt && e->probs_i2t && e->probs_t2i && e->scratch;
    if (ok && c->world > 1) {
        e->img_g = malloc(sizeof(float) * Be), e->txt_g = malloc(sizeof(float) * Be);
        e->dimg_g = malloc(sizeof(float) * Be), e->dtxt_g = malloc(sizeof(float) * Be);
        ok = e->img_g && e->txt_g && e->dimg_g && e->dtxt_g;
    }
    if (ok) return VLP_OK;
    embeddings_free(e);
    VLP_FAIL(err, VLP_ERR_NOMEM, "embedding buffers for batch %d", B);
}

void embeddings_free(embeddings *e) {
    free(e->img), free(e->txt), free(e->dimg), free(e->dtxt);
    free(e->probs_i2t), free(e->probs_t2i), free(e->scratch);
    free(e->img_g), free(e->txt_g), free(e->dimg_g), free(e->dtxt_g);
    memset(e, 0, sizeof *e);
}

vlp_err embeddings_create(void **state, const objective_ctx *c, vlp_error *err) {
    embeddings *e = calloc(1, sizeof *e);
    VLP_CHECK_ALLOC(e, err, sizeof *e);
    vlp_err rc = embeddings_alloc(e, c, err);
    if (rc != VLP_OK) free(e);
    else *state = e;
    return rc;
}

void embeddings_destroy(void *state) {
    if (state) embeddings_free(state);
    free(state);
}

vlp_err image_forward_plain(void *state, const objective_ctx *c, int k, vlp_error *err) {
    int S = c->m->cfg.vision.image_size;
    return clip_image_forward(c->m, c->images + (size_t)k * c->mb * 3 * S * S, c->mb, err);
}

vlp_err text_forward(const objective_ctx *c, int k, vlp_error *err) {
    int T = c->m->cfg.text.context_length;
    return clip_text_forward(c->m, c->ids + (size_t)k * c->mb * T, c->mb, err);
}

vlp_err embeddings_encode(embeddings *e, const objective_ctx *c, image_forward_fn fwd, void *state,
                          vlp_error *err) {
    clip_model *m = c->m;
    int mb = c->mb, E = m->cfg.embed_dim;
    for (int k = 0; k < c->accum; k++) {
        VLP_TRY(fwd(state, c, k, err));
        memcpy(e->img + (size_t)k * mb * E, m->image_acts.emb, sizeof(float) * mb * E);
        VLP_TRY(text_forward(c, k, err));
        memcpy(e->txt + (size_t)k * mb * E, m->text_acts.emb, sizeof(float) * mb * E);
    }
    return VLP_OK;
}

vlp_err infonce_grads(embeddings *e, const objective_ctx *c, float weight, float *loss,
                      vlp_error *err) {
    clip_model *m = c->m;
    int B = c->batch, W = c->world, b = c->b, E = m->cfg.embed_dim;
    float scale = *m->views.logit_scale;
    size_t be = (size_t)b * E;
    memset(e->dimg, 0, sizeof(float) * be);
    memset(e->dtxt, 0, sizeof(float) * be);
    if (W == 1) {
        VLP_TRY(clip_loss_forward(loss, e->probs_i2t, e->probs_t2i, e->img, e->txt, scale, B, E, err));
        clip_loss_backward(e->dimg, e->dtxt, m->grad_views.logit_scale, weight, e->probs_i2t, e->probs_t2i,
                           e->img, e->txt, scale, e->scratch, B, E);
        return VLP_OK;
    }
    VLP_TRY(dist_allgather(c->dist, e->img, e->img_g, be, err));
    VLP_TRY(dist_allgather(c->dist, e->txt, e->txt_g, be, err));
    float local;
    int off = c->rank * b;
    VLP_TRY(clip_loss_local_forward(&local, e->probs_i2t, e->probs_t2i, e->img, e->txt, e->img_g,
                                    e->txt_g, scale, b, B, off, E, err));
    clip_loss_local_backward(e->dimg, e->dtxt, e->dimg_g, e->dtxt_g, m->grad_views.logit_scale, weight / W,
                             e->probs_i2t, e->probs_t2i, e->img, e->txt, e->img_g, e->txt_g, scale,
                             b, B, off, E);
    /* the sum over ranks of the gradients of this rank's rows; landing: scratch */
    VLP_TRY(add_reduce_scattered(c, e->dimg_g, e->scratch, e->dimg, be, err));
    VLP_TRY(add_reduce_scattered(c, e->dtxt_g, e->scratch, e->dtxt, be, err));
    return mean_over_ranks(c, local, loss, err);
}

vlp_err embeddings_backward(embeddings *e, const objective_ctx *c, image_forward_fn fwd,
                            void *state, vlp_error *err) {
    clip_model *m = c->m;
    int K = c->accum, mb = c->mb, E = m->cfg.embed_dim;
    for (int k = 0; k < K; k++) {
        if (K > 1 && !clip_image_frozen(m)) VLP_TRY(fwd(state, c, k, err));
        clip_image_backward(m, e->dimg + (size_t)k * mb * E, mb);
        if (K > 1) VLP_TRY(text_forward(c, k, err));
        clip_text_backward(m, e->dtxt + (size_t)k * mb * E, mb);
    }
    return VLP_OK;
}
