/* Resuming a run: its options checked against the trainer's (the one
 * resume check, train_opts_resume), then weights, moments, step and data
 * position from its latest state. */
#include "train/trainer_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/clip_io.h"

/* A whole number of the state's metadata in 0..max: a file never carries a
 * value the run could not have made (an epoch near 2^63 would overflow the
 * data order's epoch + 1) */
static vlp_err meta_i64(const st_file *f, const char *key, int64_t max, int64_t *out, vlp_error *err) {
    const char *v = st_meta_get(f, key);
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    VLP_CHECK_FORMAT(v && end && !*end && *v && errno == 0 && x >= 0 && x <= max, err,
                     "%s: metadata \"%s\" is %s%s%s, not a whole number in 0..%lld", st_path(f), key,
                     v ? "'" : "missing", v ? v : "", v ? "'" : "", (long long)max);
    *out = x;
    return VLP_OK;
}

static vlp_err load_moments(trainer *t, const st_file *sf, vlp_error *err) {
    size_t nf = t->m->nfloats;
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "exp_avg_sq" : "exp_avg";
        const st_tensor *x = st_find(sf, name);
        VLP_CHECK_FORMAT(x && x->dtype == ST_F32 && x->ndim == 1 && (size_t)x->shape[0] == nf, err,
                         "%s: tensor '%s' missing or not F32 [%zu]", st_path(sf), name, nf);
        memcpy(i ? t->exp_avg_sq : t->exp_avg, x->data, sizeof(float) * nf);
    }
    return VLP_OK;
}

/* the checkpoint the state names, which must be of the same step */
static vlp_err load_weights(trainer *t, const st_file *sf, int64_t step, vlp_error *err) {
    const char *ckpt = st_meta_get(sf, "checkpoint");
    VLP_CHECK_FORMAT(ckpt && *ckpt && !strchr(ckpt, '/'), err,
                     "%s: metadata \"checkpoint\" is missing or not a file name", st_path(sf));
    char path[TRAIN_PATH_CAP];
    run_path(path, t, ckpt);
    st_file *cf;
    VLP_TRY(st_open(path, &cf, err));
    const char *cstep = st_meta_get(cf, "vlp.step");
    vlp_err rc = VLP_OK;
    if (!cstep || strtoll(cstep, NULL, 10) != step)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: step %s, but %s says %lld",
                           path, cstep ? cstep : "missing", st_path(sf), (long long)step);
    if (rc == VLP_OK) rc = clip_load_weights(t->m, cf, err);
    st_close(cf);
    return rc;
}

static vlp_err load_state(trainer *t, st_file *sf, vlp_error *err) {
    train_opts saved;
    VLP_TRY(train_opts_from_json(st_meta_get(sf, "options"), st_path(sf), &saved, err));
    VLP_TRY(train_opts_resume(&saved, &t->o, NULL, 0, st_path(sf), err));
    int64_t step, epoch, index, world = 1;
    if (st_meta_get(sf, "world")) VLP_TRY(meta_i64(sf, "world", (int64_t)1 << 20, &world, err));
    VLP_CHECK_ARG(world == t->world, err,
                  "%s: the run was trained on %lld processes; resume it with mpirun -np %lld "
                  "(not %d)", st_path(sf), (long long)world, (long long)world, t->world);
    VLP_TRY(meta_i64(sf, "step", TRAIN_MAX_STEPS, &step, err));
    VLP_TRY(meta_i64(sf, "epoch", (int64_t)1 << 52, &epoch, err)); /* epochs smaller than a batch: many a step */
    VLP_TRY(meta_i64(sf, "index", (int64_t)1 << 62, &index, err));
    VLP_TRY(load_moments(t, sf, err));
    VLP_TRY(load_weights(t, sf, step, err));
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
    if (rc != VLP_OK || t->rank > 0) return rc;
    return truncate_metrics(t, err);
}
