/* The trainer: its buffers, and one optimizer step whatever the objective. */
#include "train/trainer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/parallel.h"
#include "io/atomic.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void trainer_free(trainer *t) {
    if (!t) return;
    if (t->obj_state) t->o.objective->free(t->obj_state);
    free(t->dir), free(t->exp_avg), free(t->exp_avg_sq), free(t->images), free(t->ids);
    if (t->metrics) fclose(t->metrics);
    if (t->lock_fd >= 0) close(t->lock_fd); /* releases the lock */
    free(t);
}

long trainer_step_count(const trainer *t) { return t->step; }

/* The parts of the model the objective trains; the rest stays as it is (no
 * gradient, no weight decay). The image tower's lock first (LiT): an
 * objective that does not train it has it locked whole, so its backward
 * stops before it. */
static vlp_err freeze(trainer *t, vlp_error *err) {
    clip_model *m = t->m;
    unsigned trains = t->o.objective->trains;
    int lock = trains & CLIP_PART_IMAGE ? t->o.lock_image : 0;
    VLP_TRY(clip_lock_image(m, lock, err)); /* -1: all unlocked */
    for (int i = 0; i < m->nparams; i++) {
        clip_param *p = &m->params[i];
        if (p->part != CLIP_PART_IMAGE) p->frozen = !(trains & p->part);
    }
    return VLP_OK;
}

static vlp_err check_model(const train_opts *o, const clip_model *m, const batch_loader *data,
                           int world, vlp_error *err) {
    VLP_TRY(train_opts_check(o, err));
    VLP_CHECK_ARG(o->batch % world == 0 && (o->batch / world) % o->accum == 0, err,
                  "batch %d must split into %d ranks of a multiple of accum %d", o->batch, world,
                  o->accum);
    VLP_CHECK_ARG(!m->inference && m->grads, err, "the model was set up for inference only");
    VLP_TRY(objective_check_config(o->objective, &m->cfg, NULL, err));
    if (o->objective->check) VLP_TRY(o->objective->check(o->obj, m, err));
    int64_t per_step = loader_samples_per_step(data, o->batch / world);
    VLP_CHECK_ARG(data->epoch_size >= per_step, err,
                  "batch %lld is larger than the dataset (%lld pairs)", (long long)per_step,
                  (long long)data->epoch_size);
    return VLP_OK;
}

static vlp_err setup(trainer *t, vlp_error *err) {
    clip_model *m = t->m;
    const train_opts *o = &t->o;
    int b = o->batch / t->world, S = m->cfg.vision.image_size, T = m->cfg.text.context_length;
    size_t nf = m->nfloats;
    t->exp_avg = calloc(nf, sizeof(float));
    t->exp_avg_sq = calloc(nf, sizeof(float));
    t->images = malloc(sizeof(float) * (size_t)b * 3 * S * S);
    t->ids = malloc(sizeof(int32_t) * (size_t)b * T);
    VLP_CHECK(t->exp_avg && t->exp_avg_sq && t->images && t->ids, err, VLP_ERR_NOMEM,
              "training buffers for batch %d", o->batch);
    t->ctx = (objective_ctx){.m = m, .opt = t->o.obj, .dist = t->dist, .rank = t->rank,
                             .world = t->world, .batch = o->batch, .b = b, .accum = o->accum,
                             .mb = b / o->accum, .images = t->images, .ids = t->ids,
                             .seed = o->seed};
    VLP_TRY(o->objective->create(&t->obj_state, &t->ctx, err));
    VLP_TRY(clip_set_precision(m, o->precision, omp_get_max_threads(), err));
    clip_set_checkpointing(m, o->grad_checkpointing);
    VLP_TRY(clip_reserve(m, t->ctx.mb, err)); /* after the objective adds what it needs */
    return freeze(t, err);
}

vlp_err trainer_create(trainer **out, clip_model *m, batch_loader *data, const train_opts *o,
                       const char *run_dir, dist_group *dist, vlp_error *err) {
    *out = NULL;
    int W = dist_world(dist), R = dist_rank(dist);
    VLP_TRY(check_model(o, m, data, W, err));
    if (R == 0) VLP_TRY(make_dirs(run_dir, err));
    trainer *t = calloc(1, sizeof *t);
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    t->m = m, t->data = data, t->o = *o;
    t->dist = W > 1 ? dist : NULL, t->rank = R, t->world = W;
    t->lock_fd = -1;
    t->dir = strdup(run_dir);
    vlp_err rc = t->dir ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "run dir");
    /* rank 0 owns the directory (the others are its processes, not rivals) */
    if (rc == VLP_OK && R == 0) rc = run_dir_lock(run_dir, &t->lock_fd, err);
    if (rc == VLP_OK) rc = setup(t, err);
    if (rc != VLP_OK) {
        trainer_free(t);
        return rc;
    }
    *out = t;
    return VLP_OK;
}

vlp_err trainer_set_model(trainer *t, const char *option, clip_model *ref, vlp_error *err) {
    const objective *obj = t->o.objective;
    int i = objective_option_index(obj, option);
    VLP_CHECK_ARG(i >= 0 && OBJECTIVE_IS_MODEL(obj, i) && obj->set_model, err,
                  "the %s objective takes no model '%s'", obj->name, option);
    VLP_CHECK_ARG(t->o.obj[i] != 0, err, "the run was started without %s", obj->options[i].d.flag);
    return obj->set_model(t->obj_state, &t->ctx, i, ref, err);
}

/* The optimizer's part: locked parameters lose their gradient (the head's
 * LayerNorm backward touches ln_post even when only proj is unlocked), the
 * norm is clipped, AdamW steps, the logit scale is clamped. A loss or
 * gradient that is not finite updates nothing: an error, or *skipped. */
static vlp_err update(trainer *t, float loss, double *gnorm, float *lr, bool *skipped,
                      vlp_error *err) {
    clip_model *m = t->m;
    const train_opts *o = &t->o;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].frozen)
            memset(m->grads + m->params[i].offset, 0, sizeof(float) * m->params[i].numel);
    *lr = lr_at(o->adam.lr, t->step, o->warmup, o->steps);
    *gnorm = isfinite(loss) ? clip_grad_norm(m->grads, m->nfloats, o->grad_clip) : NAN;
    *skipped = !isfinite(loss) || !isfinite(*gnorm);
    if (*skipped && o->skip_nonfinite) return VLP_OK;
    VLP_CHECK(!*skipped, err, VLP_ERR_NUMERIC,
              "step %ld: the loss is %g and the gradient norm %g; nothing was updated (lower the "
              "learning rate, clip gradients with --grad-clip, or skip such steps with "
              "--skip-nonfinite)", t->step + 1, loss, *gnorm);
    adamw_step(&o->adam, *lr, t->step + 1, m->params, m->nparams, m->weights, m->grads, t->exp_avg,
               t->exp_avg_sq);
    clamp_logit_scale(m->views.logit_scale);
    return VLP_OK;
}

vlp_err trainer_step(trainer *t, train_step_info *info, vlp_error *err) {
    double t0 = now_s();
    clip_model *m = t->m;
    const objective *obj = t->o.objective;
    if (obj->ready) VLP_TRY(obj->ready(t->obj_state, t->o.obj, err));
    VLP_TRY(t->data->next(t->data->impl, t->ctx.b, t->images, t->ids, err));
    double t_data = now_s() - t0;
    memset(m->grads, 0, sizeof(float) * m->nfloats);
    t->ctx.step = t->step;
    float loss;
    vlp_err grc = obj->grads(t->obj_state, &t->ctx, &loss, err);
    /* a loss that is not finite is the step's to report or skip (below); over
     * MPI the ranks would part ways in their collectives, so it stops the job */
    if (grc == VLP_ERR_NUMERIC && t->world == 1) loss = NAN;
    else VLP_TRY(grc);
    /* every rank's contribution to every parameter: the batch's gradient
     * (nothing to do in one process) */
    VLP_TRY(dist_allreduce_sum(t->dist, m->grads, m->nfloats, err));
    double gnorm = 0;
    float lr = 0;
    bool skipped = false;
    VLP_TRY(update(t, loss, &gnorm, &lr, &skipped, err));
    t->step++;
    if (info)
        *info = (train_step_info){.step = t->step, .loss = loss, .lr = lr,
                                  .logit_scale = expf(*m->views.logit_scale), .grad_norm = gnorm,
                                  .skipped = skipped,
                                  .pos = t->data->tell(t->data->impl), .seconds = now_s() - t0,
                                  .data_seconds = t_data};
    return VLP_OK;
}
