/* filip: token-wise late interaction (Yao et al. 2021) on every token's
 * projected feature. Over MPI every rank gathers everybody's tokens, takes
 * the loss rows of its own images and texts against all of them, and the
 * gathered tokens' gradients are summed back to their owners. */
#include "train/objectives/shared.h"

#include <stdlib.h>
#include <string.h>

#include "loss/loss.h"

typedef struct filip {
    float *img, *txt;            // (b, Tv, E) (b, Tt, E) this process's tokens' features
    float *dimg, *dtxt;          // the same shapes: their gradients
    int32_t *lens;               // (b) caption lengths in tokens (to the end token)
    float *img_g, *txt_g, *dimg_g, *dtxt_g; // (B, T, E) everybody's, over MPI
    int32_t *lens_g;             // (B)
    int32_t *arg;                // filip_saved_ints or filip_local_saved_ints
    float *probs_i2t, *probs_t2i; // (b, B)
    float *sims, *scratch, *dsT;
} filip;

static void destroy(void *state) {
    filip *f = state;
    if (!f) return;
    free(f->img), free(f->txt), free(f->dimg), free(f->dtxt), free(f->lens);
    free(f->img_g), free(f->txt_g), free(f->dimg_g), free(f->dtxt_g), free(f->lens_g);
    free(f->arg), free(f->probs_i2t), free(f->probs_t2i), free(f->sims), free(f->scratch);
    free(f->dsT);
    free(f);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    clip_model *m = c->m;
    clip_enable_token_head(m); /* before the trainer reserves the activations */
    filip *f = calloc(1, sizeof *f);
    VLP_CHECK_ALLOC(f, err, sizeof *f);
    int B = c->batch, b = c->b, W = c->world, E = m->cfg.embed_dim;
    int Tv = m->image_dims.T, Tt = m->text_dims.T;
    size_t ni = (size_t)b * Tv * E, nt = (size_t)b * Tt * E;
    f->img = malloc(sizeof(float) * ni), f->dimg = malloc(sizeof(float) * ni);
    f->txt = malloc(sizeof(float) * nt), f->dtxt = malloc(sizeof(float) * nt);
    f->lens = malloc(sizeof(int32_t) * b);
    size_t nargs = W == 1 ? filip_saved_ints(B, Tv, Tt) : filip_local_saved_ints(b, B, Tv, Tt);
    f->arg = malloc(sizeof(int32_t) * nargs);
    f->probs_i2t = malloc(sizeof(float) * b * B), f->probs_t2i = malloc(sizeof(float) * b * B);
    f->sims = malloc(sizeof(float) * 4 * (size_t)b * B);
    f->scratch = malloc(sizeof(float) * filip_scratch_floats(B, Tv, Tt));
    bool ok = f->img && f->dimg && f->txt && f->dtxt && f->lens && f->arg && f->probs_i2t &&
              f->probs_t2i && f->sims && f->scratch;
    if (ok && W > 1) {
        size_t gi = (size_t)B * Tv * E, gt = (size_t)B * Tt * E;
        f->img_g = malloc(sizeof(float) * gi), f->dimg_g = malloc(sizeof(float) * gi);
        f->txt_g = malloc(sizeof(float) * gt), f->dtxt_g = malloc(sizeof(float) * gt);
        f->lens_g = malloc(sizeof(int32_t) * B);
        f->dsT = malloc(sizeof(float) * (size_t)B * b);
        ok = f->img_g && f->dimg_g && f->txt_g && f->dtxt_g && f->lens_g && f->dsT;
    }
    if (!ok) {
        destroy(f);
        VLP_FAIL(err, VLP_ERR_NOMEM, "FILIP's token buffers for batch %d", B);
    }
    *state = f;
    return VLP_OK;
}

/* the loss and its gradient w.r.t. this process's tokens */
static vlp_err token_grads(filip *f, const objective_ctx *c, float *loss, vlp_error *err) {
    clip_model *m = c->m;
    int B = c->batch, W = c->world, b = c->b, E = m->cfg.embed_dim;
    int Tv = m->image_dims.T, Tt = m->text_dims.T;
    size_t vi = (size_t)Tv * E, ti = (size_t)Tt * E;
    float scale = *m->views.logit_scale;
    memset(f->dimg, 0, sizeof(float) * b * vi);
    memset(f->dtxt, 0, sizeof(float) * b * ti);
    if (W == 1) {
        VLP_TRY(filip_loss_forward(loss, f->probs_i2t, f->probs_t2i, f->sims, f->arg, f->img,
                                   f->txt, f->lens, scale, f->scratch, B, Tv, Tt, E, err));
        filip_loss_backward(f->dimg, f->dtxt, m->grad_views.logit_scale, 1.0f, f->probs_i2t, f->probs_t2i,
                            f->sims, f->arg, f->img, f->txt, f->lens, scale, B, Tv, Tt, E);
        return VLP_OK;
    }
    VLP_TRY(dist_allgather(c->dist, f->img, f->img_g, b * vi, err));
    VLP_TRY(dist_allgather(c->dist, f->txt, f->txt_g, b * ti, err));
    VLP_TRY(dist_allgather_i32(c->dist, f->lens, f->lens_g, (size_t)b, err));
    float local;
    int off = c->rank * b;
    VLP_TRY(filip_loss_local_forward(&local, f->probs_i2t, f->probs_t2i, f->sims, f->arg, f->img,
                                     f->txt, f->lens, f->img_g, f->txt_g, f->lens_g, scale,
                                     f->scratch, b, B, off, Tv, Tt, E, err));
    filip_loss_local_backward(f->dimg, f->dtxt, f->dimg_g, f->dtxt_g, m->grad_views.logit_scale, 1.0f / W,
                              f->probs_i2t, f->probs_t2i, f->dsT, f->sims, f->arg, f->img, f->txt,
                              f->lens, f->img_g, f->txt_g, f->lens_g, scale, b, B, off, Tv, Tt, E);
    /* the gathered gradients' sum for this rank's tokens, added to its own;
     * the gathered buffers are free again and serve as the landing place */
    VLP_TRY(add_reduce_scattered(c, f->dimg_g, f->img_g, f->dimg, b * vi, err));
    VLP_TRY(add_reduce_scattered(c, f->dtxt_g, f->txt_g, f->dtxt, b * ti, err));
    return mean_over_ranks(c, local, loss, err);
}

/* every micro-batch's token features, the loss over the whole batch, then
 * each micro-batch back-propagated from its tokens' gradients (re-encoded
 * when there are several) */
static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    filip *f = state;
    clip_model *m = c->m;
    int K = c->accum, mb = c->mb, E = m->cfg.embed_dim;
    size_t vi = (size_t)m->image_dims.T * E, ti = (size_t)m->text_dims.T * E;
    for (int k = 0; k < K; k++) {
        VLP_TRY(image_forward_plain(NULL, c, k, err));
        memcpy(f->img + (size_t)k * mb * vi, m->image_acts.tok_emb, sizeof(float) * mb * vi);
        VLP_TRY(text_forward(c, k, err));
        memcpy(f->txt + (size_t)k * mb * ti, m->text_acts.tok_emb, sizeof(float) * mb * ti);
        for (int j = 0; j < mb; j++) f->lens[k * mb + j] = m->text_acts.pool_index[j] + 1;
    }
    VLP_TRY(token_grads(f, c, loss, err));
    for (int k = 0; k < K; k++) {
        if (K > 1 && !clip_image_frozen(m)) VLP_TRY(image_forward_plain(NULL, c, k, err));
        clip_image_backward_tokens(m, f->dimg + (size_t)k * mb * vi, mb);
        if (K > 1) VLP_TRY(text_forward(c, k, err));
        clip_text_backward_tokens(m, f->dtxt + (size_t)k * mb * ti, mb);
    }
    return VLP_OK;
}

const objective objective_filip = {
    .name = "filip",
    .help = "token-wise late interaction (FILIP, Yao et al. 2021)",
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_CONTRASTIVE,
    .create = create,
    .grads = grads,
    .free = destroy,
};
