/* The training run of src/train/run.h behind include/vlp.h's opaque handles. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "train/run.h"
#include "vlp.h"

struct vlp_train_opts {
    run_opts r;
    char **strings; // the values given as text: run_opts points into them
    int nstrings;
    vlp_message_fn fn;
    void *user;
};

struct vlp_train {
    run *r;
    vlp_message_fn fn;
    void *user;
};

vlp_err vlp_train_opts_new(vlp_train_opts **out, vlp_error *err) {
    vlp_train_opts *o = calloc(1, sizeof *o);
    VLP_CHECK_ALLOC(o, err, sizeof *o);
    o->r = run_opts_defaults();
    *out = o;
    return VLP_OK;
}

void vlp_train_opts_free(vlp_train_opts *o) {
    if (!o) return;
    for (int i = 0; i < o->nstrings; i++) free(o->strings[i]);
    free(o->strings);
    free(o);
}

vlp_err vlp_train_opts_set(vlp_train_opts *o, const char *key, const char *value, vlp_error *err) {
    VLP_CHECK_ARG(o && key, err, "no options or no key");
    char *copy = value ? strdup(value) : NULL;
    char **grown = realloc(o->strings, sizeof(char *) * (size_t)(o->nstrings + 1));
    if (!grown || (value && !copy)) {
        free(copy);
        if (grown) o->strings = grown;
        VLP_FAIL(err, VLP_ERR_NOMEM, "option %s", key);
    }
    o->strings = grown;
    o->strings[o->nstrings++] = copy; /* kept while the options live, used or not */
    return run_opts_set(&o->r, key, copy, err);
}

vlp_err vlp_train_opts_get(const vlp_train_opts *o, const char *key, char *buf, size_t n, vlp_error *err) {
    const opt_desc *d = opt_find(run_opt_table, run_opt_count, key);
    const void *base = &o->r;
    if (!d) d = opt_find(train_opt_table, train_opt_count, key), base = &o->r.o;
    if (d) {
        opt_format(d, base, buf, n);
        return VLP_OK;
    }
    const objective *obj = o->r.o.objective;
    int i = objective_option_index(obj, key);
    /* an objective's option given, not yet applied (vlp_train_open applies them): as given */
    for (int k = o->r.nobj_args - 1; i >= 0 && k >= 0; k--)
        if (!strcmp(o->r.obj_args[k].flag, obj->options[i].d.flag)) {
            snprintf(buf, n, "%s", o->r.obj_args[k].value ? o->r.obj_args[k].value : "");
            return VLP_OK;
        }
    VLP_CHECK_ARG(i >= 0, err, "no option '%s'%s", key,
                  run_objective_option(key) ? " in the objective set now" : "");
    opt_desc od = objective_option_desc(obj, i);
    opt_format(&od, &o->r.o, buf, n);
    return VLP_OK;
}

void vlp_train_opts_set_messages(vlp_train_opts *o, vlp_message_fn fn, void *user) {
    o->fn = fn, o->user = user;
}

static void api_say(void *ctx, const char *line) {
    const vlp_train *t = ctx;
    if (t->fn) t->fn(t->user, line);
}

static void api_warn(void *ctx, const char *msg) {
    const vlp_train *t = ctx;
    char line[1200];
    snprintf(line, sizeof line, "warning: %s", msg);
    if (t->fn) t->fn(t->user, line);
}

vlp_err vlp_train_open(vlp_train **out, const vlp_train_opts *o, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(o, err, "no options");
    vlp_train *t = calloc(1, sizeof *t);
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    t->fn = o->fn, t->user = o->user;
    run_opts ro = o->r;
    ro.say = api_say, ro.warn = api_warn, ro.ctx = t;
    vlp_err rc = run_open(&t->r, &ro, NULL, err);
    if (rc != VLP_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return VLP_OK;
}

vlp_err vlp_train_step(vlp_train *t, vlp_train_progress *p, vlp_error *err) {
    train_step_info info;
    VLP_TRY(run_step(t->r, &info, NULL, err));
    if (p)
        *p = (vlp_train_progress){.step = info.step, .steps = run_options(t->r)->o.steps,
                                  .loss = info.loss, .lr = info.lr, .logit_scale = info.logit_scale,
                                  .grad_norm = info.grad_norm, .seconds = info.seconds,
                                  .data_seconds = info.data_seconds, .epoch = info.pos.epoch,
                                  .skipped = info.skipped};
    return VLP_OK;
}

bool vlp_train_done(const vlp_train *t) { return run_done(t->r); }
long vlp_train_step_count(const vlp_train *t) { return run_step_count(t->r); }

vlp_err vlp_train_save(vlp_train *t, char *path, size_t n, vlp_error *err) {
    return run_save(t->r, path, n, err);
}

vlp_err vlp_train_evaluate(vlp_train *t, vlp_train_eval *out, vlp_error *err) {
    *out = (vlp_train_eval){.step = run_step_count(t->r)};
    VLP_TRY(run_eval(t->r, err));
    const run_evals *e = run_last_eval(t->r);
    if (!e || e->step != out->step) return VLP_OK; /* no set to evaluate on */
    *out = (vlp_train_eval){.step = e->step, .has_val = e->val, .has_zeroshot = e->zs,
                            .images = e->v.n, .texts = e->v.texts, .loss = e->v.loss,
                            .i2t_r1 = e->v.i2t.r1, .i2t_r5 = e->v.i2t.r5, .i2t_r10 = e->v.i2t.r10,
                            .t2i_r1 = e->v.t2i.r1, .t2i_r5 = e->v.t2i.r5, .t2i_r10 = e->v.t2i.r10,
                            .zs_images = e->z.zs.n, .classes = e->z.classes, .top1 = e->z.zs.top1,
                            .balanced = e->z.zs.balanced, .majority = e->z.zs.majority};
    return VLP_OK;
}

void vlp_train_close(vlp_train *t) {
    if (!t) return;
    run_close(t->r);
    free(t);
}
