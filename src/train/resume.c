/* Resuming a run: its options checked against the trainer's (the one
 * resume check, train_opts_resume), then weights, moments, step and data
 * position from its latest state. */
#include "train/trainer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "model/clip_io.h"
#include "train/runfiles.h"

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
static vlp_err load_weights(trainer *t, const st_file *sf, const run_state *s, vlp_error *err) {
    char path[TRAIN_PATH_CAP];
    run_path(path, t, s->checkpoint);
    st_file *cf;
    VLP_TRY(st_open(path, &cf, err));
    const char *cstep = st_meta_get(cf, "vlp.step");
    int64_t step;
    vlp_error ignored = {0};
    vlp_err rc = VLP_OK;
    if (run_number(cstep, path, "vlp.step", TRAIN_MAX_STEPS, &step, &ignored) != VLP_OK || step != s->step)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: step %s, but %s says %lld",
                           path, cstep ? cstep : "missing", st_path(sf), (long long)s->step);
    if (rc == VLP_OK) rc = clip_load_weights(t->m, cf, err);
    st_close(cf);
    return rc;
}

static vlp_err load_state(trainer *t, st_file *sf, vlp_error *err) {
    run_state s;
    VLP_TRY(run_state_read(sf, &s, err));
    train_opts saved;
    VLP_TRY(train_opts_from_json(s.options, st_path(sf), &saved, err));
    VLP_TRY(train_opts_resume(&saved, &t->o, NULL, 0, st_path(sf), err));
    VLP_CHECK_ARG(s.world == t->world, err,
                  "%s: the run was trained on %lld processes; resume it with mpirun -np %lld "
                  "(not %d)", st_path(sf), (long long)s.world, (long long)s.world, t->world);
    VLP_TRY(load_moments(t, sf, err));
    VLP_TRY(load_weights(t, sf, &s, err));
    data_pos pos = s.pos;
    if (t->rank > 0) VLP_TRY(load_rank_pos(t, (long)s.step, &pos, err));
    VLP_TRY(t->data->seek(t->data->impl, pos, err));
    t->step = (long)s.step;
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
