#include "train/trainer.h"
#include "dist/dist.h"
#include "core/error.h"
#include "io/atomic.h"
#include "io/safetensors.h"
#include "loss/loss.h"
#include "model/clip_io.h"
#include "model/mae.h"
#include "core/rng.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#define STATE_FORMAT "vlp-train-state"
#define STATE_VERSION "1"
#define PATH_CAP 4096
#define PRIOR_CHUNK 16 /* captions per forward pass of PRIOR's reference */

struct trainer {
    clip_model *m;
    vlp_loader *data;
    train_opts o;
    char *dir;
    long step;
    float *exp_avg, *exp_avg_sq; // (nfloats) AdamW moments, the parameters' layout
    float *images;               // (batch, 3, S, S)
    int32_t *ids;                // (batch, ctx)
    /* accumulation: the whole batch's embeddings and the loss's buffers */
    float *emb_img, *emb_txt;    // (batch, E)
    float *demb_img, *demb_txt;  // (batch, E)
    float *probs_i2t, *probs_t2i; // (batch, batch)
    float *loss_scratch;
    FILE *metrics;
    int lock_fd;                 // run_dir/lock, locked: one process per run directory
    /* data parallel: this rank's b = batch / world samples of each step */
    vlp_dist *dist;              // NULL: one process
    int rank, world;
    float *emb_img_g, *emb_txt_g;   // (batch, E) the gathered embeddings
    float *demb_img_g, *demb_txt_g; // (batch, E) this rank's gradient for all of them
    /* FILIP: this process's tokens' features, their gradients, the loss's
     * saved state; over MPI also everybody's (the _g buffers) */
    float *tok_img, *tok_txt;       // (b, Tv, E) (b, Tt, E)
    float *dtok_img, *dtok_txt;     // the same shapes
    int32_t *tok_lens;              // (b) caption lengths in tokens (to the end token)
    float *tok_img_g, *tok_txt_g, *dtok_img_g, *dtok_txt_g; // (batch, T, E)
    int32_t *tok_lens_g;            // (batch)
    int32_t *filip_arg;             // filip_saved_ints or filip_local_saved_ints
    float *filip_sims, *filip_scratch, *filip_dsT;
    /* captioning (CoCa, textlm): next-token targets and weights of this
     * process's b captions, each micro-batch's per-row losses; PRIOR's
     * reference model and its log-probabilities */
    int32_t *cap_labels;            // (b, T)
    float *cap_w;                   // (b/accum, T) PRIOR's weights, NULL: plain
    float *cap_rows, *ref_logp;     // (b/accum, T)
    clip_model *prior_ref;
    /* MAE: the visible patches of this process's b images, drawn each step */
    int32_t *keep;                  // (b, nkeep)
    int nkeep;
};

const char *vlp_objective_name(vlp_objective o) {
    switch (o) {
    case VLP_OBJECTIVE_SIGLIP: return "siglip";
    case VLP_OBJECTIVE_FILIP: return "filip";
    case VLP_OBJECTIVE_COCA: return "coca";
    case VLP_OBJECTIVE_TEXTLM: return "textlm";
    case VLP_OBJECTIVE_MAE: return "mae";
    case VLP_OBJECTIVE_CLIP_MAE: return "clip-mae";
    default: return "clip";
    }
}

bool vlp_objective_parse(const char *name, vlp_objective *out) {
    if (!strcmp(name, "clip")) *out = VLP_OBJECTIVE_CLIP;
    else if (!strcmp(name, "siglip")) *out = VLP_OBJECTIVE_SIGLIP;
    else if (!strcmp(name, "filip")) *out = VLP_OBJECTIVE_FILIP;
    else if (!strcmp(name, "coca")) *out = VLP_OBJECTIVE_COCA;
    else if (!strcmp(name, "textlm")) *out = VLP_OBJECTIVE_TEXTLM;
    else if (!strcmp(name, "mae")) *out = VLP_OBJECTIVE_MAE;
    else if (!strcmp(name, "clip-mae")) *out = VLP_OBJECTIVE_CLIP_MAE;
    else return false;
    return true;
}

train_opts train_opts_defaults(void) {
    return (train_opts){.batch = 128, .accum = 1, .steps = 1000, .warmup = 100, .lock_image = -1,
                        .adam = adamw_defaults(), .grad_clip = 0.0, .seed = 0,
                        .clip_weight = 1.0f, .caption_weight = 2.0f, .prior_alpha = 1.0f,
                        .mask_ratio = 0.75f, .mae_weight = 1.0f};
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void trainer_free(trainer *t) {
    if (!t) return;
    free(t->dir), free(t->exp_avg), free(t->exp_avg_sq), free(t->images), free(t->ids);
    free(t->emb_img), free(t->emb_txt), free(t->demb_img), free(t->demb_txt);
    free(t->probs_i2t), free(t->probs_t2i), free(t->loss_scratch);
    free(t->emb_img_g), free(t->emb_txt_g), free(t->demb_img_g), free(t->demb_txt_g);
    free(t->tok_img), free(t->tok_txt), free(t->dtok_img), free(t->dtok_txt), free(t->tok_lens);
    free(t->filip_arg), free(t->filip_sims), free(t->filip_scratch), free(t->filip_dsT);
    free(t->tok_img_g), free(t->tok_txt_g), free(t->dtok_img_g), free(t->dtok_txt_g);
    free(t->tok_lens_g);
    free(t->cap_labels), free(t->cap_w), free(t->cap_rows), free(t->ref_logp);
    free(t->keep);
    if (t->metrics) fclose(t->metrics);
    if (t->lock_fd >= 0) close(t->lock_fd); /* releases the lock */
    free(t);
}

long trainer_step_count(const trainer *t) { return t->step; }

static bool uses_mae(const train_opts *o) {
    return o->objective == VLP_OBJECTIVE_MAE || o->objective == VLP_OBJECTIVE_CLIP_MAE;
}

static vlp_err check_opts(const train_opts *o, vlp_error *err) {
    VLP_CHECK_ARG(o->batch > 0 && o->accum > 0 && o->batch % o->accum == 0, err,
                  "batch %d must be a positive multiple of accum %d", o->batch, o->accum);
    VLP_CHECK_ARG(o->steps > 0 && o->warmup >= 0, err, "steps %ld must be > 0 and warmup %ld >= 0",
                  o->steps, o->warmup);
    VLP_CHECK_ARG(o->adam.lr > 0 && o->adam.beta1 >= 0 && o->adam.beta1 < 1 && o->adam.beta2 >= 0 &&
                      o->adam.beta2 < 1 && o->adam.eps > 0 && o->adam.weight_decay >= 0,
                  err, "AdamW settings out of range (lr %g, betas %g %g, eps %g, wd %g)",
                  o->adam.lr, o->adam.beta1, o->adam.beta2, o->adam.eps, o->adam.weight_decay);
    VLP_CHECK_ARG(o->grad_clip >= 0, err, "grad clip %g must be >= 0 (0: off)", o->grad_clip);
    VLP_CHECK_ARG(o->clip_weight >= 0 && o->caption_weight >= 0 && o->prior_alpha >= 0 &&
                      isfinite(o->clip_weight) && isfinite(o->caption_weight) &&
                      isfinite(o->prior_alpha),
                  err, "loss weights (clip %g, caption %g) and PRIOR's alpha %g must be >= 0",
                  o->clip_weight, o->caption_weight, o->prior_alpha);
    VLP_CHECK_ARG(!o->prior || o->objective == VLP_OBJECTIVE_COCA, err,
                  "PRIOR weights the caption loss: it needs the coca objective, not %s",
                  vlp_objective_name(o->objective));
    VLP_CHECK_ARG(o->mask_ratio > 0 && o->mask_ratio < 1 && o->mae_weight >= 0 &&
                      isfinite(o->mae_weight),
                  err, "mask ratio %g must be in (0, 1) and the MAE weight %g >= 0", o->mask_ratio,
                  o->mae_weight);
    VLP_CHECK_ARG(o->lock_image < 0 || !uses_mae(o), err,
                  "the %s objective trains the image tower: it cannot be locked",
                  vlp_objective_name(o->objective));
    return VLP_OK;
}

/* Two processes writing one run directory would interleave checkpoints and
 * metrics: the second one is refused. A POSIX record lock: a process may take
 * it twice (the CLI locks before it writes the tokenizer, the trainer again),
 * and it dies with the process. */
vlp_err run_dir_lock(const char *dir, int *fd_out, vlp_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    VLP_CHECK_IO(fd >= 0, err, "cannot open %s: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : -1;
        close(fd);
        VLP_CHECK(e != EACCES && e != EAGAIN, err, VLP_ERR_IO,
                  "%s is in use by another process (pid %ld): one training run per directory", dir, pid);
        VLP_FAIL(err, VLP_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return VLP_OK;
}

vlp_err trainer_create(trainer **out, clip_model *m, vlp_loader *data, const train_opts *o,
                       const char *run_dir, vlp_dist *dist, vlp_error *err) {
    *out = NULL;
    VLP_TRY(check_opts(o, err));
    int W = dist_world(dist), R = dist_rank(dist);
    VLP_CHECK_ARG(o->batch % W == 0 && (o->batch / W) % o->accum == 0, err,
                  "batch %d must split into %d ranks of a multiple of accum %d", o->batch, W,
                  o->accum);
    VLP_CHECK_ARG(!m->inference && m->grads, err, "the model was set up for inference only");
    VLP_CHECK_ARG(o->objective != VLP_OBJECTIVE_SIGLIP || m->w.logit_bias, err,
                  "the siglip objective needs a model with a logit_bias (config init_logit_bias)");
    bool captions = o->objective == VLP_OBJECTIVE_COCA || o->objective == VLP_OBJECTIVE_TEXTLM;
    VLP_CHECK_ARG(!captions || m->caption, err,
                  "the %s objective needs a model with a text decoder (config multimodal_cfg)",
                  vlp_objective_name(o->objective));
    VLP_CHECK_ARG(!uses_mae(o) || m->mae, err,
                  "the %s objective needs a model with an MAE decoder (config mae_cfg)",
                  vlp_objective_name(o->objective));
    int nkeep = m->mae ? mae_keep_count(m->mdims.NP, o->mask_ratio) : 0;
    VLP_CHECK_ARG(!uses_mae(o) || nkeep < m->mdims.NP, err,
                  "mask ratio %g masks none of the %d patches", o->mask_ratio, m->mdims.NP);
    int64_t per_step = loader_samples_per_step(data, o->batch / W);
    VLP_CHECK_ARG(data->epoch_size >= per_step, err,
                  "batch %lld is larger than the dataset (%lld pairs)", (long long)per_step,
                  (long long)data->epoch_size);
    if (R == 0) VLP_TRY(make_dirs(run_dir, err));
    trainer *t = calloc(1, sizeof *t);
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    t->m = m, t->data = data, t->o = *o;
    t->dist = W > 1 ? dist : NULL, t->rank = R, t->world = W;
    t->lock_fd = -1;
    /* rank 0 owns the directory (the others are its processes, not rivals) */
    vlp_err lrc = R == 0 ? run_dir_lock(run_dir, &t->lock_fd, err) : VLP_OK;
    if (lrc != VLP_OK) {
        trainer_free(t);
        return lrc;
    }
    int B = o->batch, b = B / W, E = m->cfg.embed_dim, S = m->cfg.vision.image_size;
    int T = m->cfg.text.context_length;
    size_t nf = m->nfloats, be = (size_t)b * E, Be = (size_t)B * E;
    t->dir = strdup(run_dir);
    t->exp_avg = calloc(nf, sizeof(float));
    t->exp_avg_sq = calloc(nf, sizeof(float));
    t->images = malloc(sizeof(float) * (size_t)b * 3 * S * S);
    t->ids = malloc(sizeof(int32_t) * (size_t)b * T);
    bool ok = t->dir && t->exp_avg && t->exp_avg_sq && t->images && t->ids;
    /* the whole batch's embeddings, for a contrastive loss outside clip_forward
     * (the text-only LM has none) */
    bool contrastive = o->objective != VLP_OBJECTIVE_TEXTLM && o->objective != VLP_OBJECTIVE_MAE;
    if (ok && contrastive && (o->accum > 1 || W > 1 || o->objective != VLP_OBJECTIVE_CLIP)) {
        t->emb_img = malloc(sizeof(float) * be), t->emb_txt = malloc(sizeof(float) * be);
        t->demb_img = malloc(sizeof(float) * be), t->demb_txt = malloc(sizeof(float) * be);
        /* one process: the (B, B) probabilities; a rank: its (b, B) rows */
        t->probs_i2t = malloc(sizeof(float) * be / E * B);
        t->probs_t2i = malloc(sizeof(float) * be / E * B);
        t->loss_scratch = malloc(sizeof(float) * clip_loss_scratch_floats(B, E));
        ok = t->emb_img && t->emb_txt && t->demb_img && t->demb_txt && t->probs_i2t &&
             t->probs_t2i && t->loss_scratch;
    }
    if (ok && contrastive && W > 1) {
        t->emb_img_g = malloc(sizeof(float) * Be), t->emb_txt_g = malloc(sizeof(float) * Be);
        t->demb_img_g = malloc(sizeof(float) * Be), t->demb_txt_g = malloc(sizeof(float) * Be);
        ok = t->emb_img_g && t->emb_txt_g && t->demb_img_g && t->demb_txt_g;
    }
    if (ok && o->objective == VLP_OBJECTIVE_FILIP) {
        int Tv = m->vdims.T, Tt = m->tdims.T;
        size_t ni = (size_t)b * Tv * E, nt = (size_t)b * Tt * E;
        t->tok_img = malloc(sizeof(float) * ni), t->dtok_img = malloc(sizeof(float) * ni);
        t->tok_txt = malloc(sizeof(float) * nt), t->dtok_txt = malloc(sizeof(float) * nt);
        t->tok_lens = malloc(sizeof(int32_t) * b);
        size_t nargs = W == 1 ? filip_saved_ints(B, Tv, Tt) : filip_local_saved_ints(b, B, Tv, Tt);
        t->filip_arg = malloc(sizeof(int32_t) * nargs);
        t->filip_sims = malloc(sizeof(float) * 4 * (size_t)b * B);
        t->filip_scratch = malloc(sizeof(float) * filip_scratch_floats(B, Tv, Tt));
        ok = t->tok_img && t->dtok_img && t->tok_txt && t->dtok_txt && t->tok_lens &&
             t->filip_arg && t->filip_sims && t->filip_scratch;
        if (ok && W > 1) {
            size_t gi = (size_t)B * Tv * E, gt = (size_t)B * Tt * E;
            t->tok_img_g = malloc(sizeof(float) * gi), t->dtok_img_g = malloc(sizeof(float) * gi);
            t->tok_txt_g = malloc(sizeof(float) * gt), t->dtok_txt_g = malloc(sizeof(float) * gt);
            t->tok_lens_g = malloc(sizeof(int32_t) * B);
            t->filip_dsT = malloc(sizeof(float) * (size_t)B * b);
            ok = t->tok_img_g && t->dtok_img_g && t->tok_txt_g && t->dtok_txt_g && t->tok_lens_g &&
                 t->filip_dsT;
        }
    }
    if (ok && captions) { /* targets for the whole share, the rest per micro-batch */
        size_t mbt = (size_t)(b / o->accum) * T;
        t->cap_labels = malloc(sizeof(int32_t) * (size_t)b * T);
        t->cap_rows = malloc(sizeof(float) * mbt);
        ok = t->cap_labels && t->cap_rows;
        if (ok && o->prior) {
            t->cap_w = malloc(sizeof(float) * mbt);
            t->ref_logp = malloc(sizeof(float) * mbt);
            ok = t->cap_w && t->ref_logp;
        }
    }
    if (ok && uses_mae(o)) {
        t->nkeep = nkeep;
        t->keep = malloc(sizeof(int32_t) * (size_t)b * nkeep);
        ok = t->keep;
    }
    if (!ok) {
        trainer_free(t);
        VLP_FAIL(err, VLP_ERR_NOMEM, "training buffers for batch %d", B);
    }
    if (o->objective == VLP_OBJECTIVE_FILIP) clip_enable_token_head(m); /* before reserving */
    vlp_err rc = clip_reserve(m, b / o->accum, err);
    /* the text-only LM never looks at images: the image tower stays as it is */
    int lock = o->objective == VLP_OBJECTIVE_TEXTLM ? 0 : o->lock_image;
    if (rc == VLP_OK) rc = clip_lock_image(m, lock, err); /* -1: all unlocked */
    if (rc != VLP_OK) {
        trainer_free(t);
        return rc;
    }
    /* parts no loss of the objective reaches stay as they are (no weight
     * decay either): MAE alone trains the image tower and its decoder, the
     * other objectives leave an MAE decoder alone */
    for (int i = 0; i < m->nparams; i++) {
        vlp_param *p = &m->params[i];
        bool mae_part = !strncmp(p->name, "mae_decoder.", 12);
        if (o->objective == VLP_OBJECTIVE_MAE) p->frozen = strncmp(p->name, "visual.", 7) && !mae_part;
        else if (mae_part) p->frozen = o->objective != VLP_OBJECTIVE_CLIP_MAE;
    }
    *out = t;
    return VLP_OK;
}

/* ---- the step ---------------------------------------------------------------------------- */

/* Over MPI, the tails every loss shares. local (n) += the sum over ranks
 * of their gradients for this rank's rows, out of global (world·n); landing
 * (n) is scratch. */
static vlp_err add_reduce_scattered(trainer *t, const float *global, float *landing, float *local,
                                    size_t n, vlp_error *err) {
    VLP_TRY(dist_reduce_scatter_sum(t->dist, global, landing, n, err));
    for (size_t k = 0; k < n; k++) local[k] += landing[k];
    return VLP_OK;
}

/* *loss = the mean of the ranks' losses: the batch's loss */
static vlp_err mean_over_ranks(trainer *t, float local, float *loss, vlp_error *err) {
    double sum = local;
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &sum, 1, err));
    *loss = (float)(sum / t->world);
    return VLP_OK;
}

/* SigLIP: this process's images against every text of the batch (gathered
 * across ranks); the texts' gradients summed back to their owners. */
static vlp_err siglip_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int B = t->o.batch, W = t->world, b = B / W, E = m->cfg.embed_dim;
    float scale = *m->w.logit_scale, bias = *m->w.logit_bias;
    size_t be = (size_t)b * E;
    const float *txt_g = t->emb_txt;
    float *dtxt_g = t->demb_txt;
    if (W > 1) {
        VLP_TRY(dist_allgather(t->dist, t->emb_txt, t->emb_txt_g, be, err));
        txt_g = t->emb_txt_g, dtxt_g = t->demb_txt_g;
    }
    float local;
    VLP_TRY(siglip_loss_forward(&local, t->probs_i2t, t->emb_img, txt_g, scale, bias, b, B,
                                t->rank * b, E, err));
    siglip_loss_backward(t->demb_img, dtxt_g, m->g.logit_scale, m->g.logit_bias, 1.0f / W,
                         t->probs_i2t, t->emb_img, txt_g, scale, bias, t->loss_scratch, b, B,
                         t->rank * b, E);
    *loss = local;
    if (W == 1) return VLP_OK;
    VLP_TRY(dist_reduce_scatter_sum(t->dist, t->demb_txt_g, t->demb_txt, be, err));
    return mean_over_ranks(t, local, loss, err);
}

/* The loss and its gradient w.r.t. this process's embeddings (b rows in
 * emb_img/emb_txt → demb_img/demb_txt). One process: the whole batch. A
 * rank: gather everyone's embeddings, the loss rows of its own samples
 * against all of them (open_clip's local loss), and the gradient of every
 * gathered embedding summed over the ranks back to the rank that owns it.
 * With dloss = 1/world the ranks' summed parameter gradients are the whole
 * batch's. *loss: the batch's loss (the ranks' mean). */
static vlp_err embedding_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int B = t->o.batch, W = t->world, b = B / W, E = m->cfg.embed_dim;
    float scale = *m->w.logit_scale;
    memset(t->demb_img, 0, sizeof(float) * (size_t)b * E);
    memset(t->demb_txt, 0, sizeof(float) * (size_t)b * E);
    if (t->o.objective == VLP_OBJECTIVE_SIGLIP) return siglip_grads(t, loss, err);
    /* CoCa and clip-mae weigh the contrastive part of their loss */
    bool weighted = t->o.objective == VLP_OBJECTIVE_COCA || t->o.objective == VLP_OBJECTIVE_CLIP_MAE;
    float cw = weighted ? t->o.clip_weight : 1.0f;
    if (W == 1) {
        VLP_TRY(clip_loss_forward(loss, t->probs_i2t, t->probs_t2i, t->emb_img, t->emb_txt, scale,
                                  B, E, err));
        clip_loss_backward(t->demb_img, t->demb_txt, m->g.logit_scale, cw, t->probs_i2t,
                           t->probs_t2i, t->emb_img, t->emb_txt, scale, t->loss_scratch, B, E);
        return VLP_OK;
    }
    size_t be = (size_t)b * E;
    VLP_TRY(dist_allgather(t->dist, t->emb_img, t->emb_img_g, be, err));
    VLP_TRY(dist_allgather(t->dist, t->emb_txt, t->emb_txt_g, be, err));
    float local;
    VLP_TRY(clip_loss_local_forward(&local, t->probs_i2t, t->probs_t2i, t->emb_img, t->emb_txt,
                                    t->emb_img_g, t->emb_txt_g, scale, b, B, t->rank * b, E, err));
    clip_loss_local_backward(t->demb_img, t->demb_txt, t->demb_img_g, t->demb_txt_g,
                             m->g.logit_scale, cw / W, t->probs_i2t, t->probs_t2i, t->emb_img,
                             t->emb_txt, t->emb_img_g, t->emb_txt_g, scale, b, B, t->rank * b, E);
    /* the sum over ranks of the gradients of this rank's rows; scratch: loss_scratch */
    VLP_TRY(add_reduce_scattered(t, t->demb_img_g, t->loss_scratch, t->demb_img, be, err));
    VLP_TRY(add_reduce_scattered(t, t->demb_txt_g, t->loss_scratch, t->demb_txt, be, err));
    return mean_over_ranks(t, local, loss, err);
}

/* Micro-batch k's images through the image tower: the visible patches only
 * for the MAE objectives. */
static vlp_err image_forward(trainer *t, int k, vlp_error *err) {
    int mb = t->o.batch / t->world / t->o.accum, S = t->m->cfg.vision.image_size;
    const float *img = t->images + (size_t)k * mb * 3 * S * S;
    if (!uses_mae(&t->o)) return clip_image_forward(t->m, img, mb, err);
    return clip_image_forward_masked(t->m, img, t->keep + (size_t)k * mb * t->nkeep, t->nkeep, mb,
                                     err);
}

/* This process's b samples in accum micro-batches: encode all of them
 * (activations of the last micro-batch only), the loss, then re-encode each
 * micro-batch and back-propagate its slice of the embedding gradient. With
 * one micro-batch the activations are still there: no re-encoding. */
/* The FILIP loss and its gradient w.r.t. this process's tokens. Over MPI:
 * gather everybody's tokens, the loss rows of this rank's images and texts
 * against all of them, the gathered tokens' gradients summed back to their
 * owners (as embedding_grads does for CLIP). */
static vlp_err filip_token_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int B = t->o.batch, W = t->world, b = B / W, E = m->cfg.embed_dim;
    int Tv = m->vdims.T, Tt = m->tdims.T;
    size_t vi = (size_t)Tv * E, ti = (size_t)Tt * E;
    float scale = *m->w.logit_scale;
    memset(t->dtok_img, 0, sizeof(float) * b * vi);
    memset(t->dtok_txt, 0, sizeof(float) * b * ti);
    if (W == 1) {
        VLP_TRY(filip_loss_forward(loss, t->probs_i2t, t->probs_t2i, t->filip_sims, t->filip_arg,
                                   t->tok_img, t->tok_txt, t->tok_lens, scale, t->filip_scratch,
                                   B, Tv, Tt, E, err));
        filip_loss_backward(t->dtok_img, t->dtok_txt, m->g.logit_scale, 1.0f, t->probs_i2t,
                            t->probs_t2i, t->filip_sims, t->filip_arg, t->tok_img, t->tok_txt,
                            t->tok_lens, scale, B, Tv, Tt, E);
        return VLP_OK;
    }
    VLP_TRY(dist_allgather(t->dist, t->tok_img, t->tok_img_g, b * vi, err));
    VLP_TRY(dist_allgather(t->dist, t->tok_txt, t->tok_txt_g, b * ti, err));
    VLP_TRY(dist_allgather_i32(t->dist, t->tok_lens, t->tok_lens_g, (size_t)b, err));
    float local;
    int off = t->rank * b;
    VLP_TRY(filip_loss_local_forward(&local, t->probs_i2t, t->probs_t2i, t->filip_sims,
                                     t->filip_arg, t->tok_img, t->tok_txt, t->tok_lens,
                                     t->tok_img_g, t->tok_txt_g, t->tok_lens_g, scale,
                                     t->filip_scratch, b, B, off, Tv, Tt, E, err));
    filip_loss_local_backward(t->dtok_img, t->dtok_txt, t->dtok_img_g, t->dtok_txt_g,
                              m->g.logit_scale, 1.0f / W, t->probs_i2t, t->probs_t2i,
                              t->filip_dsT, t->filip_sims, t->filip_arg, t->tok_img, t->tok_txt,
                              t->tok_lens, t->tok_img_g, t->tok_txt_g, t->tok_lens_g, scale, b,
                              B, off, Tv, Tt, E);
    /* the gathered gradients' sum for this rank's tokens, added to its own;
     * the gathered buffers are free again and serve as the landing place */
    VLP_TRY(add_reduce_scattered(t, t->dtok_img_g, t->tok_img_g, t->dtok_img, b * vi, err));
    VLP_TRY(add_reduce_scattered(t, t->dtok_txt_g, t->tok_txt_g, t->dtok_txt, b * ti, err));
    return mean_over_ranks(t, local, loss, err);
}

/* FILIP: every micro-batch's token features, the token-wise loss over the
 * whole batch, then each micro-batch back-propagated from its tokens'
 * gradients (re-encoded when there are several). */
static vlp_err filip_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int K = t->o.accum, b = t->o.batch / t->world, mb = b / K, E = m->cfg.embed_dim;
    int Tv = m->vdims.T, Tt = m->tdims.T;
    size_t vi = (size_t)Tv * E, ti = (size_t)Tt * E;
    for (int k = 0; k < K; k++) {
        VLP_TRY(image_forward(t, k, err));
        memcpy(t->tok_img + (size_t)k * mb * vi, m->va.tok_emb, sizeof(float) * mb * vi);
        VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * Tt, mb, err));
        memcpy(t->tok_txt + (size_t)k * mb * ti, m->ta.tok_emb, sizeof(float) * mb * ti);
        for (int j = 0; j < mb; j++) t->tok_lens[k * mb + j] = m->ta.pool_index[j] + 1;
    }
    VLP_TRY(filip_token_grads(t, loss, err));
    for (int k = 0; k < K; k++) {
        if (K > 1 && !clip_image_frozen(m)) VLP_TRY(image_forward(t, k, err));
        clip_image_backward_tokens(m, t->dtok_img + (size_t)k * mb * vi, mb);
        if (K > 1) VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * Tt, mb, err));
        clip_text_backward_tokens(m, t->dtok_txt + (size_t)k * mb * ti, mb);
    }
    return VLP_OK;
}

/* MAE's masks of this process's images for this step: each a function of
 * (seed, step, the sample's place in the whole batch), so micro-batches and
 * ranks mask exactly as one process would. */
static void draw_masks(trainer *t) {
    int b = t->o.batch / t->world, NP = t->m->mdims.NP;
    vlp_rng r = {t->o.seed ^ 0x6d61736b2d6d6165ull}; /* "mask-mae" */
    uint64_t run = vlp_rng_u64(&r);
    vlp_rng rs = {run ^ (uint64_t)t->step};
    uint64_t step = vlp_rng_u64(&rs);
    for (int i = 0; i < b; i++) {
        vlp_rng ri = {step ^ (uint64_t)(t->rank * b + i)};
        mae_random_keep(t->keep + (size_t)i * t->nkeep, NP, t->nkeep, vlp_rng_u64(&ri));
    }
}

/* The MAE loss's divisor: the masked patches of the whole batch */
static double mae_denominator(const trainer *t) {
    return (double)t->o.batch * (t->m->mdims.NP - t->nkeep);
}

/* Micro-batch k's MAE loss (added to *sum) after its masked image forward,
 * and its backward with demb (NULL: none) for the pooled embedding. */
static vlp_err mae_micro(trainer *t, const float *demb, float dloss, float *sum, vlp_error *err) {
    clip_model *m = t->m;
    int mb = t->o.batch / t->world / t->o.accum;
    float part;
    VLP_TRY(clip_mae_step(m, mb, mae_denominator(t), dloss, &part, err));
    *sum += part;
    clip_image_backward_with_tokens(m, demb, m->dmae_img, mb);
    return VLP_OK;
}

/* MAE alone: each micro-batch's masked images through the tower and the
 * decoder; the loss divided by the whole batch's masked patches. */
static vlp_err mae_grads(trainer *t, float *loss, vlp_error *err) {
    float sum = 0.0f;
    for (int k = 0; k < t->o.accum; k++) {
        VLP_TRY(image_forward(t, k, err));
        VLP_TRY(mae_micro(t, NULL, 1.0f, &sum, err));
    }
    double c = sum; /* each rank's share of the batch's loss */
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &c, 1, err));
    *loss = (float)c;
    return VLP_OK;
}

/* Every micro-batch's embeddings into emb_img / emb_txt; the activations of
 * the last micro-batch stay in the model. */
static vlp_err encode_all(trainer *t, vlp_error *err) {
    clip_model *m = t->m;
    int K = t->o.accum, b = t->o.batch / t->world, mb = b / K, E = m->cfg.embed_dim;
    int T = m->cfg.text.context_length;
    for (int k = 0; k < K; k++) {
        VLP_TRY(image_forward(t, k, err));
        memcpy(t->emb_img + (size_t)k * mb * E, m->va.emb, sizeof(float) * mb * E);
        VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * T, mb, err));
        memcpy(t->emb_txt + (size_t)k * mb * E, m->ta.emb, sizeof(float) * mb * E);
    }
    return VLP_OK;
}

/* The contrastive losses (clip, siglip; clip-mae adds MAE on the same
 * masked forward). */
static vlp_err accumulated_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int K = t->o.accum, b = t->o.batch / t->world, mb = b / K, E = m->cfg.embed_dim;
    int T = m->cfg.text.context_length;
    bool mae = t->o.objective == VLP_OBJECTIVE_CLIP_MAE;
    VLP_TRY(encode_all(t, err));
    float contrastive, rec = 0.0f;
    VLP_TRY(embedding_grads(t, &contrastive, err));
    for (int k = 0; k < K; k++) {
        if (K > 1 && !clip_image_frozen(m)) /* a locked tower needs no activations */
            VLP_TRY(image_forward(t, k, err));
        if (mae) VLP_TRY(mae_micro(t, t->demb_img + (size_t)k * mb * E, t->o.mae_weight, &rec, err));
        else clip_image_backward(m, t->demb_img + (size_t)k * mb * E, mb);
        if (K > 1) VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * T, mb, err));
        clip_text_backward(m, t->demb_txt + (size_t)k * mb * E, mb);
    }
    *loss = contrastive;
    if (!mae) return VLP_OK;
    double c = rec;
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &c, 1, err));
    *loss = t->o.clip_weight * contrastive + t->o.mae_weight * (float)c;
    return VLP_OK;
}

/* Captioning: the targets of this process's captions and the number of
 * targets in the whole batch (all ranks), the caption loss's divisor. */
static vlp_err caption_denominator(trainer *t, double *denom, vlp_error *err) {
    int b = t->o.batch / t->world, T = t->m->cfg.text.context_length;
    double n = (double)caption_targets(t->cap_labels, t->ids, b, T);
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &n, 1, err));
    VLP_CHECK_ARG(n > 0, err, "no caption of the batch has a token after its start token");
    *denom = n;
    return VLP_OK;
}

/* Micro-batch k's caption loss (added to *loss) after the model's text
 * (and, with_image, image) forward: PRIOR's weights from the reference, the
 * decoder, the loss, and the backward into the decoder's parameters; the
 * towers' gradients are left in m->dcap_txt / m->dcap_img. */
static vlp_err caption_micro(trainer *t, int k, bool with_image, double denom, float dloss,
                             float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int mb = t->o.batch / t->world / t->o.accum, T = m->cfg.text.context_length;
    int V = m->cfg.text.vocab_size, N = mb * T;
    const int32_t *labels = t->cap_labels + (size_t)k * N;
    float *w = NULL;
    if (t->o.prior) {
        /* the reference in chunks of the batch it reserved: its activations
         * would otherwise cost as much as the model's */
        clip_model *r = t->prior_ref;
        for (int c0 = 0; c0 < mb; c0 += r->batch) {
            int c = mb - c0 < r->batch ? mb - c0 : r->batch;
            VLP_TRY(clip_text_forward(r, t->ids + (size_t)k * N + (size_t)c0 * T, c, err));
            VLP_TRY(clip_caption_forward(r, false, c, err));
            caption_target_logprobs(t->ref_logp + (size_t)c0 * T, r->da.logits,
                                    labels + (size_t)c0 * T, c * T, V);
        }
        w = t->cap_w;
        prior_weights(w, t->ref_logp, labels, mb, T, t->o.prior_alpha);
    }
    VLP_TRY(clip_caption_forward(m, with_image, mb, err));
    float part;
    VLP_TRY(caption_loss_forward(&part, m->da.logits, t->cap_rows, m->da.logits, labels, w, N, V,
                                 denom, err));
    *loss += part;
    caption_loss_backward(m->da.logits, m->da.logits, labels, w, dloss, N, V, denom);
    clip_caption_backward(m, m->da.logits, mb);
    return VLP_OK;
}

/* CoCa: the contrastive loss over the whole batch as for CLIP (every
 * micro-batch encoded first), then each micro-batch's captions through the
 * decoder, and one backward per tower from both losses' gradients. */
static vlp_err coca_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int K = t->o.accum, mb = t->o.batch / t->world / K, E = m->cfg.embed_dim;
    int T = m->cfg.text.context_length;
    double denom = 1.0;
    VLP_TRY(caption_denominator(t, &denom, err));
    VLP_TRY(encode_all(t, err));
    float contrastive, caption = 0.0f;
    VLP_TRY(embedding_grads(t, &contrastive, err));
    for (int k = 0; k < K; k++) {
        if (K > 1) { /* the decoder reads the image tokens even of a locked tower */
            VLP_TRY(image_forward(t, k, err));
            VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * T, mb, err));
        }
        VLP_TRY(caption_micro(t, k, true, denom, t->o.caption_weight, &caption, err));
        clip_image_backward_with_tokens(m, t->demb_img + (size_t)k * mb * E, m->dcap_img, mb);
        clip_text_backward_with_tokens(m, t->demb_txt + (size_t)k * mb * E, m->dcap_txt, mb);
    }
    double c = caption; /* each rank's share of the batch's caption loss */
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &c, 1, err));
    *loss = t->o.clip_weight * contrastive + t->o.caption_weight * (float)c;
    return VLP_OK;
}

/* The text-only language model: the text tower and the decoder without
 * cross-attention on the captions alone. */
static vlp_err textlm_grads(trainer *t, float *loss, vlp_error *err) {
    clip_model *m = t->m;
    int K = t->o.accum, mb = t->o.batch / t->world / K, T = m->cfg.text.context_length;
    double denom = 1.0;
    VLP_TRY(caption_denominator(t, &denom, err));
    float lm = 0.0f;
    for (int k = 0; k < K; k++) {
        VLP_TRY(clip_text_forward(m, t->ids + (size_t)k * mb * T, mb, err));
        VLP_TRY(caption_micro(t, k, false, denom, 1.0f, &lm, err));
        clip_text_backward_with_tokens(m, NULL, m->dcap_txt, mb);
    }
    double c = lm;
    VLP_TRY(dist_allreduce_sum_f64(t->dist, &c, 1, err));
    *loss = (float)c;
    return VLP_OK;
}

vlp_err trainer_set_prior_ref(trainer *t, clip_model *ref, vlp_error *err) {
    const clip_config *a = &t->m->cfg, *r = &ref->cfg;
    VLP_CHECK_ARG(t->o.prior, err, "the run does not use PRIOR weighting");
    VLP_CHECK_ARG(ref->caption, err, "PRIOR's reference has no text decoder (config multimodal_cfg)");
    VLP_CHECK_ARG(r->text.vocab_size == a->text.vocab_size &&
                      r->text.context_length == a->text.context_length,
                  err, "PRIOR's reference reads %d tokens of a %d-token vocabulary, the model %d of "
                  "%d: train it on the same tokenizer", r->text.context_length,
                  r->text.vocab_size, a->text.context_length, a->text.vocab_size);
    int mb = t->o.batch / t->world / t->o.accum;
    VLP_TRY(clip_reserve(ref, mb < PRIOR_CHUNK ? mb : PRIOR_CHUNK, err));
    t->prior_ref = ref;
    return VLP_OK;
}

vlp_err trainer_step(trainer *t, train_step_info *info, vlp_error *err) {
    double t0 = now_s();
    clip_model *m = t->m;
    const train_opts *o = &t->o;
    VLP_CHECK_ARG(!o->prior || t->prior_ref, err,
                  "PRIOR weighting needs its reference model (trainer_set_prior_ref)");
    VLP_TRY(t->data->next(t->data->impl, o->batch / t->world, t->images, t->ids, err));
    double t_data = now_s() - t0;
    memset(m->grads, 0, sizeof(float) * m->nfloats);
    if (uses_mae(o)) draw_masks(t);
    float loss;
    if (o->accum == 1 && t->world == 1 && o->objective == VLP_OBJECTIVE_CLIP) {
        VLP_TRY(clip_forward(m, t->images, t->ids, o->batch, err));
        clip_backward(m, o->batch);
        loss = m->loss;
    } else {
        if (o->objective == VLP_OBJECTIVE_FILIP) VLP_TRY(filip_grads(t, &loss, err));
        else if (o->objective == VLP_OBJECTIVE_COCA) VLP_TRY(coca_grads(t, &loss, err));
        else if (o->objective == VLP_OBJECTIVE_TEXTLM) VLP_TRY(textlm_grads(t, &loss, err));
        else if (o->objective == VLP_OBJECTIVE_MAE) VLP_TRY(mae_grads(t, &loss, err));
        else VLP_TRY(accumulated_grads(t, &loss, err));
        /* every rank's contribution to every parameter: the batch's gradient
         * (nothing to do in one process) */
        VLP_TRY(dist_allreduce_sum(t->dist, m->grads, m->nfloats, err));
    }
    /* locked parameters: no gradient (nor in the clipping norm); the head's
     * LayerNorm backward touches ln_post even when only proj is unlocked */
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].frozen)
            memset(m->grads + m->params[i].offset, 0, sizeof(float) * m->params[i].numel);
    VLP_CHECK(isfinite(loss), err, VLP_ERR_NUMERIC,
              "loss is %g at step %ld; lower the learning rate or enable --grad-clip", loss,
              t->step + 1);
    double gnorm = clip_grad_norm(m->grads, m->nfloats, o->grad_clip);
    float lr = lr_at(o->adam.lr, t->step, o->warmup, o->steps);
    adamw_step(&o->adam, lr, t->step + 1, m->params, m->nparams, m->weights, m->grads, t->exp_avg,
               t->exp_avg_sq);
    clamp_logit_scale(m->w.logit_scale);
    t->step++;
    if (info)
        *info = (train_step_info){.step = t->step, .loss = loss, .lr = lr,
                                  .logit_scale = expf(*m->w.logit_scale), .grad_norm = gnorm,
                                  .pos = t->data->tell(t->data->impl), .seconds = now_s() - t0,
                                  .data_seconds = t_data};
    return VLP_OK;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static char *opts_json(const train_opts *o) {
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:s}",
                          "objective", vlp_objective_name(o->objective), "lock_image",
                          o->lock_image, "batch", o->batch,
                          "accum", o->accum, "steps", (json_int_t)o->steps, "warmup",
                          (json_int_t)o->warmup, "lr", (double)o->adam.lr, "beta1",
                          (double)o->adam.beta1, "beta2", (double)o->adam.beta2, "eps",
                          (double)o->adam.eps, "weight_decay", (double)o->adam.weight_decay,
                          "grad_clip", o->grad_clip, "seed", "");
    if (!j) return NULL;
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed); /* a string: JSON numbers lose 64-bit ints */
    json_object_set_new(j, "seed", json_string(seed));
    json_object_set_new(j, "clip_weight", json_real(o->clip_weight));
    json_object_set_new(j, "caption_weight", json_real(o->caption_weight));
    json_object_set_new(j, "prior", json_boolean(o->prior));
    json_object_set_new(j, "prior_alpha", json_real(o->prior_alpha));
    json_object_set_new(j, "mask_ratio", json_real(o->mask_ratio));
    json_object_set_new(j, "mae_weight", json_real(o->mae_weight));
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(j);
    return s;
}

static vlp_err parse_opts(const char *text, const char *what, train_opts *o, vlp_error *err) {
    json_error_t je;
    json_t *j = json_loads(text ? text : "", 0, &je);
    VLP_CHECK_FORMAT(j, err, "%s: training options: %s", what, text ? je.text : "missing");
    double lr, b1, b2, eps, wd, clip;
    json_int_t steps, warmup;
    const char *seed;
    int batch, accum;
    const char *objective = "clip"; /* states written before objectives existed */
    int lock_image = -1;
    /* absent in states written before captioning / MAE: their defaults */
    double clip_w = 1.0, cap_w = 2.0, alpha = 1.0, mask_ratio = 0.75, mae_w = 1.0;
    int prior = 0;
    int bad = json_unpack_ex(j, &je, JSON_STRICT,
                             "{s?:s, s?:i, s:i, s:i, s:I, s:I, s:F, s:F, s:F, s:F, s:F, s:F, s:s, "
                             "s?:F, s?:F, s?:b, s?:F, s?:F, s?:F}",
                             "objective", &objective, "lock_image", &lock_image, "batch", &batch, "accum", &accum, "steps", &steps, "warmup", &warmup,
                             "lr", &lr, "beta1", &b1, "beta2", &b2, "eps", &eps, "weight_decay", &wd,
                             "grad_clip", &clip, "seed", &seed, "clip_weight", &clip_w,
                             "caption_weight", &cap_w, "prior", &prior, "prior_alpha", &alpha,
                             "mask_ratio", &mask_ratio, "mae_weight", &mae_w);
    vlp_objective obj = VLP_OBJECTIVE_CLIP;
    if (!bad && !vlp_objective_parse(objective, &obj)) {
        json_decref(j);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: unknown objective '%s'", what, objective);
    }
    if (!bad) {
        *o = (train_opts){.objective = obj, .lock_image = lock_image, .batch = batch, .accum = accum, .steps = (long)steps, .warmup = (long)warmup,
                          .adam = {(float)lr, (float)b1, (float)b2, (float)eps, (float)wd},
                          .grad_clip = clip, .seed = strtoull(seed, NULL, 10),
                          .clip_weight = (float)clip_w, .caption_weight = (float)cap_w,
                          .prior = prior, .prior_alpha = (float)alpha,
                          .mask_ratio = (float)mask_ratio, .mae_weight = (float)mae_w};
    }
    json_decref(j);
    VLP_CHECK_FORMAT(!bad, err, "%s: training options: %s", what, je.text);
    return VLP_OK;
}

static void run_path(char *out, const trainer *t, const char *name) {
    snprintf(out, PATH_CAP, "%s/%s", t->dir, name);
}

/* A rank's own data position at a checkpoint (ranks > 0; rank 0's is in
 * the state): "epoch index\n". */
static void rank_pos_path(char *out, const trainer *t, long step, int rank) {
    snprintf(out, PATH_CAP, "%s/ckpt-%08ld.rank%d.pos", t->dir, step, rank);
}

/* Removes all but the newest `keep` ckpt-*.safetensors (and their states). */
static void prune(trainer *t, int keep) {
    DIR *d = opendir(t->dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s;
        char tail[32];
        if (sscanf(e->d_name, "ckpt-%ld.%31s", &s, tail) == 2 && !strcmp(tail, "safetensors"))
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer < keep) continue;
        char p[PATH_CAP], name[64];
        snprintf(name, sizeof name, "ckpt-%08ld.state", steps[i]);
        run_path(p, t, name), unlink(p); /* the state first: it names the weights */
        for (int r = 1; r < t->world; r++) rank_pos_path(p, t, steps[i], r), unlink(p);
        snprintf(name, sizeof name, "ckpt-%08ld.safetensors", steps[i]);
        run_path(p, t, name), unlink(p);
    }
}


static vlp_err save_rank_pos(trainer *t, vlp_error *err) {
    char path[PATH_CAP], line[64];
    rank_pos_path(path, t, t->step, t->rank);
    data_pos pos = t->data->tell(t->data->impl);
    int n = snprintf(line, sizeof line, "%" PRId64 " %" PRId64 "\n", pos.epoch, pos.index);
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    atomic_write(&af, line, (size_t)n);
    return atomic_commit(&af, err);
}

static vlp_err load_rank_pos(trainer *t, long step, data_pos *pos, vlp_error *err) {
    char path[PATH_CAP];
    rank_pos_path(path, t, step, t->rank);
    FILE *f = fopen(path, "r");
    VLP_CHECK_IO(f, err, "cannot open %s (rank %d's data position): %s", path, t->rank,
                 strerror(errno));
    long long e = -1, i = -1;
    int got = fscanf(f, "%lld %lld", &e, &i);
    fclose(f);
    VLP_CHECK_FORMAT(got == 2 && e >= 0 && i >= 0, err, "%s: not \"epoch index\"", path);
    *pos = (data_pos){e, i};
    return VLP_OK;
}

vlp_err trainer_save(trainer *t, int keep, char *written, size_t cap, vlp_error *err) {
    clip_model *m = t->m;
    char ckpt_name[64], state_name[64], path[PATH_CAP], step[32], epoch[32], index[32], world[16];
    snprintf(ckpt_name, sizeof ckpt_name, "ckpt-%08ld.safetensors", t->step);
    snprintf(state_name, sizeof state_name, "ckpt-%08ld.state", t->step);
    snprintf(step, sizeof step, "%ld", t->step);
    snprintf(world, sizeof world, "%d", t->world);
    if (written) snprintf(written, cap, "%s/%s", t->dir, ckpt_name);
    /* every rank's position is on disk before rank 0's state names the step;
     * the weights and moments are the same on every rank: rank 0 writes them */
    if (t->rank > 0) VLP_TRY(save_rank_pos(t, err));
    VLP_TRY(dist_barrier(t->dist, err));
    if (t->rank > 0) return dist_barrier(t->dist, err); /* wait for rank 0's files */
    data_pos pos = t->data->tell(t->data->impl);
    snprintf(epoch, sizeof epoch, "%" PRId64, pos.epoch);
    snprintf(index, sizeof index, "%" PRId64, pos.index);

    st_meta cm[] = {{"vlp.step", step}};
    run_path(path, t, ckpt_name);
    VLP_TRY(clip_save(m, path, cm, 1, err));

    char *opts = opts_json(&t->o);
    VLP_CHECK_ALLOC(opts, err, 256);
    st_meta sm[] = {{"format", STATE_FORMAT}, {"version", STATE_VERSION}, {"step", step},
                    {"epoch", epoch},         {"index", index},           {"checkpoint", ckpt_name},
                    {"options", opts},        {"world", world}};
    st_tensor ts[2] = {
        {.name = "exp_avg", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)m->nfloats}, .data = t->exp_avg},
        {.name = "exp_avg_sq", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)m->nfloats}, .data = t->exp_avg_sq}};
    run_path(path, t, state_name);
    vlp_err rc = st_write(path, ts, 2, sm, (int)(sizeof sm / sizeof sm[0]), err);
    free(opts);
    VLP_TRY(rc);
    run_path(path, t, "latest.safetensors");
    VLP_TRY(atomic_symlink(ckpt_name, path, err));
    run_path(path, t, "latest.state");
    VLP_TRY(atomic_symlink(state_name, path, err));
    prune(t, keep < 1 ? 1 : keep);
    return dist_barrier(t->dist, err);
}

static vlp_err open_state(const char *dir, st_file **out, vlp_error *err) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/latest.state", dir);
    VLP_TRY(st_open(path, out, err));
    const char *fmt = st_meta_get(*out, "format"), *ver = st_meta_get(*out, "version");
    if (!fmt || strcmp(fmt, STATE_FORMAT) || !ver || strcmp(ver, STATE_VERSION)) {
        st_close(*out);
        *out = NULL;
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: not a vlp training state of version %s", path, STATE_VERSION);
    }
    return VLP_OK;
}

vlp_err trainer_saved_opts(const char *run_dir, train_opts *o, vlp_error *err) {
    st_file *f;
    VLP_TRY(open_state(run_dir, &f, err));
    vlp_err rc = parse_opts(st_meta_get(f, "options"), st_path(f), o, err);
    st_close(f);
    return rc;
}

static vlp_err meta_i64(const st_file *f, const char *key, int64_t *out, vlp_error *err) {
    const char *v = st_meta_get(f, key);
    char *end = NULL;
    long long x = v ? strtoll(v, &end, 10) : 0;
    VLP_CHECK_FORMAT(v && end && !*end && *v && x >= 0, err, "%s: metadata \"%s\" is %s%s%s",
                     st_path(f), key, v ? "'" : "missing", v ? v : "", v ? "'" : "");
    *out = x;
    return VLP_OK;
}

static vlp_err load_state(trainer *t, st_file *sf, vlp_error *err) {
    clip_model *m = t->m;
    train_opts saved;
    VLP_TRY(parse_opts(st_meta_get(sf, "options"), st_path(sf), &saved, err));
    const train_opts *o = &t->o;
    VLP_CHECK_ARG(saved.lock_image == o->lock_image, err,
                  "%s: the run was started with the image tower %s; resume with the same",
                  st_path(sf), saved.lock_image < 0 ? "unlocked" : "locked (--lock-image)");
    VLP_CHECK_ARG(saved.objective == o->objective, err,
                  "%s: the run trains the %s objective, not %s", st_path(sf),
                  vlp_objective_name(saved.objective), vlp_objective_name(o->objective));
    VLP_CHECK_ARG(saved.prior == o->prior && (!o->prior || saved.prior_alpha == o->prior_alpha) &&
                      saved.clip_weight == o->clip_weight &&
                      saved.caption_weight == o->caption_weight,
                  err, "%s: the run was started %s PRIOR weighting (alpha %g) and loss weights "
                  "clip %g / caption %g; resume with the same", st_path(sf),
                  saved.prior ? "with" : "without", saved.prior_alpha, saved.clip_weight,
                  saved.caption_weight);
    VLP_CHECK_ARG(!uses_mae(o) || (saved.mask_ratio == o->mask_ratio && saved.mae_weight == o->mae_weight),
                  err, "%s: the run was started with mask ratio %g and MAE weight %g; resume with "
                  "the same", st_path(sf), saved.mask_ratio, saved.mae_weight);
    VLP_CHECK_ARG(saved.batch == o->batch && saved.accum == o->accum && saved.seed == o->seed &&
                      saved.warmup == o->warmup && saved.adam.lr == o->adam.lr &&
                      saved.adam.weight_decay == o->adam.weight_decay &&
                      saved.grad_clip == o->grad_clip,
                  err, "%s: the run was started with other options (batch %d, accum %d, lr %g, "
                  "warmup %ld, seed %" PRIu64 "); resume with those", st_path(sf), saved.batch,
                  saved.accum, saved.adam.lr, saved.warmup, saved.seed);
    int64_t step, epoch, index, world = 1;
    if (st_meta_get(sf, "world")) VLP_TRY(meta_i64(sf, "world", &world, err));
    VLP_CHECK_ARG(world == t->world, err,
                  "%s: the run was trained on %lld processes; resume it with mpirun -np %lld "
                  "(not %d)", st_path(sf), (long long)world, (long long)world, t->world);
    VLP_TRY(meta_i64(sf, "step", &step, err));
    VLP_TRY(meta_i64(sf, "epoch", &epoch, err));
    VLP_TRY(meta_i64(sf, "index", &index, err));
    const char *ckpt = st_meta_get(sf, "checkpoint");
    VLP_CHECK_FORMAT(ckpt && !strchr(ckpt, '/'), err, "%s: metadata \"checkpoint\" is missing or not a file name",
                     st_path(sf));
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "exp_avg_sq" : "exp_avg";
        const st_tensor *x = st_find(sf, name);
        VLP_CHECK_FORMAT(x && x->dtype == ST_F32 && x->ndim == 1 && (size_t)x->shape[0] == m->nfloats,
                         err, "%s: tensor '%s' missing or not F32 [%zu]", st_path(sf), name, m->nfloats);
        memcpy(i ? t->exp_avg_sq : t->exp_avg, x->data, sizeof(float) * m->nfloats);
    }
    char path[PATH_CAP];
    run_path(path, t, ckpt);
    st_file *cf;
    VLP_TRY(st_open(path, &cf, err));
    const char *cstep = st_meta_get(cf, "vlp.step");
    vlp_err rc = VLP_OK;
    if (!cstep || strtoll(cstep, NULL, 10) != step)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s: step %s, but %s says %lld", path, cstep ? cstep : "missing",
                           st_path(sf), (long long)step);
    if (rc == VLP_OK) rc = clip_load_weights(m, cf, err);
    st_close(cf);
    VLP_TRY(rc);
    data_pos pos = {epoch, index};
    if (t->rank > 0) VLP_TRY(load_rank_pos(t, (long)step, &pos, err));
    VLP_TRY(t->data->seek(t->data->impl, pos, err));
    t->step = (long)step;
    return VLP_OK;
}

vlp_err trainer_resume(trainer *t, vlp_error *err) {
    st_file *sf;
    VLP_TRY(open_state(t->dir, &sf, err));
    vlp_err rc = load_state(t, sf, err);
    st_close(sf);
    if (rc != VLP_OK) return rc;
    if (t->rank > 0) return VLP_OK;
    /* drop metrics lines of steps after the checkpoint: the resumed run redoes them */
    char path[PATH_CAP];
    run_path(path, t, "metrics.jsonl");
    FILE *in = fopen(path, "r");
    if (!in) return VLP_OK;
    atomic_file af;
    rc = atomic_open(&af, path, err);
    if (rc != VLP_OK) {
        fclose(in);
        return rc;
    }
    char line[8192];
    while (fgets(line, sizeof line, in)) {
        long s;
        if (sscanf(line, "{\"step\":%ld", &s) == 1 && s > t->step) continue;
        atomic_write(&af, line, strlen(line));
    }
    fclose(in);
    return atomic_commit(&af, err);
}

vlp_err trainer_log(trainer *t, const char *json_line, vlp_error *err) {
    if (t->rank > 0) return VLP_OK; /* rank 0 writes the run's metrics */
    if (!t->metrics) {
        char path[PATH_CAP];
        run_path(path, t, "metrics.jsonl");
        t->metrics = fopen(path, "a");
        VLP_CHECK_IO(t->metrics, err, "cannot open %s: %s", path, strerror(errno));
    }
    VLP_CHECK_IO(fprintf(t->metrics, "%s\n", json_line) > 0 && fflush(t->metrics) == 0, err,
                 "cannot append to %s/metrics.jsonl: %s", t->dir, strerror(errno));
    return VLP_OK;
}
