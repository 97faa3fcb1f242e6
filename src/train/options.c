/* A run's options: defaults, checks, the training state's JSON and the one
 * resume check. The general options are a table (what each is called in the
 * state and on the command line, where it lives, whether a resumed run may
 * change it); an objective's come from its own table (objective.h). */
#include "train/trainer.h"
#include "core/optdesc.h"

#include <inttypes.h>
#include <jansson.h>

#include "io/json_text.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the types only a run's options have ------------------------------------------------- */

static const char *precision_name(matmul_precision p) { return p == VLP_PRECISION_BF16 ? "bf16" : "fp32"; }

static vlp_err precision_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    bool bf16 = text && !strcmp(text, "bf16");
    VLP_CHECK_ARG(bf16 || (text && !strcmp(text, "fp32")), err, "%s must be fp32 or bf16, not '%s'",
                  d->flag, text ? text : "");
    *(matmul_precision *)dst = bf16 ? VLP_PRECISION_BF16 : VLP_PRECISION_FP32;
    return VLP_OK;
}
static void precision_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", precision_name(*(const matmul_precision *)src));
}
static json_t *precision_json(const opt_desc *d, const void *src) {
    return json_string(precision_name(*(const matmul_precision *)src));
}
static bool precision_from(const opt_desc *d, void *dst, const json_t *v) {
    return json_is_string(v) && precision_parse(d, dst, json_string_value(v), NULL) == VLP_OK;
}
static const opt_type opt_precision = {"fp32 or bf16", false, precision_parse, precision_format,
                                       precision_json, precision_from, sizeof(matmul_precision)};

/* LiT: -1 off, 0 all locked, N: the top N groups train. --lock-image is the
 * switch; --lock-image-unlocked-groups N (an alias of the same field) the N. */
static vlp_err lock_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    if (*(int *)dst < 0) *(int *)dst = 0;
    return VLP_OK;
}
static void lock_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    int g = *(const int *)src;
    if (g < 0) snprintf(buf, cap, "off");
    else if (g == 0) snprintf(buf, cap, "on");
    else snprintf(buf, cap, "on with --lock-image-unlocked-groups %d", g);
}

/* the objective by name; its options take their defaults */
static vlp_err objective_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    const objective *obj = objective_find(text);
    if (!obj) {
        char names[256];
        VLP_FAIL(err, VLP_ERR_ARG, "%s must be one of %s, not '%s'", d->flag,
                 objective_names(names, sizeof names), text ? text : "");
    }
    train_opts_set_objective((train_opts *)((char *)dst - offsetof(train_opts, objective)), obj);
    return VLP_OK;
}
static void objective_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", (*(const objective *const *)src)->name);
}
static json_t *objective_json(const opt_desc *d, const void *src) {
    return json_string((*(const objective *const *)src)->name);
}
static const opt_type opt_objective = {"an objective's name", false, objective_parse, objective_format,
                                       objective_json, NULL, sizeof(objective *)};

static bool lock_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 4096) return false;
    *(int *)dst = (int)json_integer_value(v);
    return true;
}
static json_t *lock_json(const opt_desc *d, const void *src) { return json_integer(*(const int *)src); }
static const opt_type opt_lock_state = {"a switch", true, lock_parse, lock_format, lock_json, lock_from, sizeof(int)};

/* ---- the table ------------------------------------------------------------------------------ */

/* Every option of the math of a run: the training state records them (in
 * this order), a resumed run compares them, the command line and the C API
 * set them, --help lists them, all from here. The objective's own options
 * come from its table (objective_option_desc). */
#define T(key, shrt, flag, arg, type, member, lo, hi, flags, help)                               \
    {key, shrt, flag, arg, &type, offsetof(train_opts, member), lo, hi, flags, help, NULL}
#define STATE OPT_STATE
#define REQ (OPT_STATE | OPT_ALWAYS_SAVED)
const opt_desc train_opt_table[] = {
    T("objective", NULL, "--objective", "O", opt_objective, objective, 0, 0, OPT_HIDDEN,
      "what the towers are trained for"),
    T("lock_image", NULL, "--lock-image", NULL, opt_lock_state, lock_image, 0, 0, STATE,
      "LiT: freeze the image tower (no gradients, no updates)"),
    T("lock_image", NULL, "--lock-image-unlocked-groups", "N", opt_int, lock_image, 0, 4096, OPT_ALIAS,
      "but train its last N groups (open_clip's: proj, then [last block, ln_post], then the other "
      "blocks from the top, the stem last)"),
    T("batch", "-b", "--batch", "N", opt_int, batch, 2, 1 << 20, REQ, "samples per step, the loss's batch"),
    T("accum", NULL, "--accum", "K", opt_int, accum, 1, 1 << 16, REQ,
      "micro-batches per step, contrastive accumulation"),
    T("steps", "-n", "--steps", "N", opt_long, steps, 1, (double)TRAIN_MAX_STEPS, REQ | OPT_CHANGEABLE,
      "optimizer steps"),
    T("warmup", NULL, "--warmup", "N", opt_long, warmup, 0, (double)TRAIN_MAX_STEPS, REQ, "linear warmup steps"),
    T("lr", NULL, "--lr", "X", opt_float, adam.lr, 1e-12, 10, REQ, "peak learning rate"),
    T("beta1", NULL, "--beta1", "X", opt_float, adam.beta1, 0, 0.999999, REQ, "AdamW's beta1"),
    T("beta2", NULL, "--beta2", "X", opt_float, adam.beta2, 0, 0.999999, REQ, "AdamW's beta2"),
    T("eps", NULL, "--eps", "X", opt_float, adam.eps, 1e-30, 1, REQ, "AdamW's epsilon"),
    T("weight_decay", NULL, "--wd", "X", opt_float, adam.weight_decay, 0, 10, REQ, "AdamW weight decay"),
    T("grad_clip", NULL, "--grad-clip", "X", opt_double, grad_clip, 0, 1e30, REQ,
      "clip the global gradient norm to X, 0 = off"),
    T("seed", "-s", "--seed", "N", opt_u64, seed, 0, 0, REQ, "initialisation and data order"),
    T("precision", "-p", "--precision", "P", opt_precision, precision, 0, 0, STATE,
      "fp32, or bf16: the transformer matmuls in bfloat16 with fp32 accumulation and fp32 weights "
      "(AVX512-BF16; without it a new run falls back to fp32 and says so)"),
    {"decay_embeddings", NULL, "--wd-embeddings", "on|off", &opt_onoff,
     offsetof(train_opts, adam.decay_embeddings), 0, 0, STATE,
     "decay the embedding tables too, as open_clip (off: exempt token, positional and class "
     "embeddings)", "false"},
    T("skip_nonfinite", NULL, "--skip-nonfinite", NULL, opt_switch, skip_nonfinite, 0, 0, STATE,
      "a step whose loss or gradient is NaN/Inf updates nothing and the run goes on, counting it "
      "(default: the run stops at it, its last checkpoint intact)"),
    {"grad_checkpointing", NULL, "--grad-checkpointing", NULL, &opt_switch,
     offsetof(train_opts, grad_checkpointing), 0, 0, STATE | OPT_CHANGEABLE,
     "recompute each block's activations in the backward: the same gradients in a fraction of the "
     "activation memory, for about one more forward of the blocks (a resumed run may turn it on, or "
     "off with --no-grad-checkpointing)", "false"},
    T("grad_checkpointing", NULL, "--no-grad-checkpointing", NULL, opt_switch_off, grad_checkpointing,
      0, 0, OPT_ALIAS, "gradient checkpointing off"),
};
#undef T
#undef STATE
#undef REQ
const int train_opt_count = (int)(sizeof train_opt_table / sizeof train_opt_table[0]);
#define NFIELDS train_opt_count
#define fields train_opt_table

/* the table's entries the state holds: each key once, the objective apart */
static bool in_state(const opt_desc *d) {
    return (d->flags & OPT_STATE) && !(d->flags & OPT_ALIAS);
}

train_opts train_opts_defaults(void) {
    train_opts o = {.batch = 128, .accum = 1, .steps = 1000, .warmup = 100, .lock_image = -1,
                    .adam = adamw_defaults(), .grad_clip = 0.0, .seed = 0,
                    .precision = VLP_PRECISION_FP32};
    train_opts_set_objective(&o, vlp_objectives[0]);
    return o;
}

void train_opts_set_objective(train_opts *o, const objective *obj) {
    o->objective = obj;
    memset(o->obj, 0, sizeof o->obj);
    for (int i = 0; i < obj->noptions; i++) o->obj[i] = obj->options[i].def;
}

int objective_option_index(const objective *o, const char *key) {
    for (int i = 0; i < o->noptions; i++)
        if (!strcmp(o->options[i].d.key, key) || !strcmp(o->options[i].d.flag, key)) return i;
    return -1;
}

/* "coca, clip-mae": the built-in objectives that have the option */
static void owners(const char *key, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; vlp_objectives[i]; i++)
        if (objective_option_index(vlp_objectives[i], key) >= 0 && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", vlp_objectives[i]->name);
    if (!n) snprintf(buf, cap, "no objective");
}

vlp_err train_opts_set(train_opts *o, const char *key, float value, vlp_error *err) {
    int i = objective_option_index(o->objective, key);
    if (i < 0) {
        char who[256];
        owners(key, who, sizeof who);
        VLP_FAIL(err, VLP_ERR_ARG, "%s is an option of %s, not of the %s objective", key, who,
                 o->objective->name);
    }
    o->obj[i] = value;
    return VLP_OK;
}

float train_opts_get(const train_opts *o, const char *key) {
    int i = objective_option_index(o->objective, key);
    return i < 0 ? NAN : o->obj[i];
}

vlp_err train_opts_check(const train_opts *o, vlp_error *err) {
    VLP_CHECK_ARG(o->objective, err, "no objective");
    for (int i = 0; i < NFIELDS; i++) { /* the ranges the command line checks */
        const opt_desc *d = &fields[i];
        if (!in_state(d) || (d->lo == 0 && d->hi == 0)) continue;
        json_t *v = opt_to_json(d, o);
        double x = json_number_value(v);
        json_decref(v);
        char text[64];
        opt_format(d, o, text, sizeof text);
        VLP_CHECK_ARG(x >= d->lo && x <= d->hi, err, "%s %s is out of range: [%g, %g]", d->flag,
                      text, d->lo, d->hi);
    }
    VLP_CHECK_ARG(o->batch % o->accum == 0, err, "batch %d must be a multiple of accum %d",
                  o->batch, o->accum);
    VLP_CHECK_ARG(o->precision == VLP_PRECISION_FP32 || o->precision == VLP_PRECISION_BF16, err,
                  "precision %d is neither fp32 nor bf16", (int)o->precision);
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++) {
        const opt_desc *p = &obj->options[i].d;
        float v = o->obj[i];
        if (OBJECTIVE_IS_MODEL(obj, i))
            VLP_CHECK_ARG(v == 0 || v == 1, err, "%s: %s is %g, not 0 (off) or 1 (on)", obj->name,
                          p->key, v);
        else
            VLP_CHECK_ARG(isfinite(v) && v >= p->lo && v <= p->hi, err,
                          "%s %g is out of range for the %s objective: [%g, %g]", p->flag, v,
                          obj->name, p->lo, p->hi);
    }
    VLP_CHECK_ARG(obj->trains, err, "the %s objective names no part of the model it trains",
                  obj->name);
    VLP_CHECK_ARG(o->lock_image < 0 || obj->lock != LOCK_REFUSED, err,
                  "the %s objective trains the image tower: it cannot be locked", obj->name);
    return VLP_OK;
}

/* ---- an objective's options as the engine sees them ------------------------------------------ */

/* objective_model: 1 given, 0 not; a boolean in the state */
static vlp_err given_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    *(float *)dst = 1;
    return VLP_OK;
}
static void given_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", *(const float *)src ? "given" : "not given");
}
static json_t *given_json(const opt_desc *d, const void *src) { return json_boolean(*(const float *)src != 0); }
static bool given_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_boolean(v)) return false;
    *(float *)dst = (float)json_is_true(v);
    return true;
}
const opt_type objective_model = {"a model file", false, given_parse, given_format, given_json,
                                  given_from, sizeof(float)};

opt_desc objective_option_desc(const objective *obj, int i) {
    opt_desc d = obj->options[i].d;
    d.off += offsetof(train_opts, obj); /* into train_opts, where the values live */
    return d;
}

/* ---- the training state's JSON ---------------------------------------------------------------- */

char *train_opts_to_json(const train_opts *o) {
    json_doc doc = json_doc_new();
    json_t *j = doc.root;
    jd_exact(&doc, j, "objective", o->objective->name);
    for (int i = 0; i < NFIELDS; i++)
        if (in_state(&fields[i])) jd_put(&doc, j, fields[i].key, opt_to_json(&fields[i], o));
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++) {
        opt_desc d = objective_option_desc(obj, i);
        jd_put(&doc, j, d.key, opt_to_json(&d, o));
    }
    char *s = json_doc_dumps(&doc, JSON_PRESERVE_ORDER | JSON_COMPACT, "the training options", NULL);
    json_doc_free(&doc);
    return s;
}

const char *objective_option_flag(const char *key) {
    for (int i = 0; vlp_objectives[i]; i++) {
        int k = objective_option_index(vlp_objectives[i], key);
        if (k >= 0) return vlp_objectives[i]->options[k].d.flag;
    }
    return NULL;
}

static vlp_err parse_fields(json_t *j, const char *what, train_opts *o, vlp_error *err) {
    for (int i = 0; i < NFIELDS; i++) {
        const opt_desc *d = &fields[i];
        if (!in_state(d)) continue;
        json_t *v = json_object_get(j, d->key), *absent = NULL;
        VLP_CHECK_FORMAT(v || !(d->flags & OPT_ALWAYS_SAVED), err, "%s: training options lack \"%s\"",
                         what, d->key);
        if (!v && d->absent) v = absent = json_loads(d->absent, JSON_DECODE_ANY, NULL);
        vlp_err rc = v ? opt_read_json(d, o, v, what, err) : VLP_OK;
        json_decref(absent);
        VLP_TRY(rc);
    }
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++) {
        opt_desc d = objective_option_desc(obj, i);
        json_t *v = json_object_get(j, d.key);
        if (!v) continue; /* written before the option existed: its default */
        VLP_TRY(opt_read_json(&d, o, v, what, err));
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        /* states written before options were an objective's hold every objective's */
        bool known = !strcmp(key, "objective") || objective_option_flag(key);
        for (int i = 0; i < NFIELDS && !known; i++) known = in_state(&fields[i]) && !strcmp(key, fields[i].key);
        VLP_CHECK_FORMAT(known, err, "%s: unknown training option \"%s\"", what, key);
    }
    return VLP_OK;
}

vlp_err train_opts_from_json(const char *text, const char *what, train_opts *o, vlp_error *err) {
    json_error_t je;
    json_t *j = json_loads(text ? text : "", 0, &je);
    VLP_CHECK_FORMAT(j, err, "%s: training options: %s", what, text ? je.text : "missing");
    vlp_err rc = VLP_OK;
    train_opts r = train_opts_defaults();
    json_t *name = json_object_get(j, "objective"); /* absent: written before objectives existed */
    const objective *obj = vlp_objectives[0];
    if (!json_is_object(j))
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: training options are not a JSON object", what);
    else if (name && !(json_is_string(name) && (obj = objective_find(json_string_value(name))))) {
        char names[256];
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s: unknown objective %s%s%s (this build knows %s)", what,
                           json_is_string(name) ? "'" : "", json_is_string(name) ? json_string_value(name) : "(not a string)",
                           json_is_string(name) ? "'" : "", objective_names(names, sizeof names));
    }
    if (rc == VLP_OK) {
        train_opts_set_objective(&r, obj);
        rc = parse_fields(j, what, &r, err);
    }
    json_decref(j);
    if (rc == VLP_OK) *o = r;
    return rc;
}

/* ---- the resume check -------------------------------------------------------------------- */

static bool was_given(const char *key, const char *const *keys, int n) {
    if (!keys) return true;
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i], key)) return true;
    return false;
}

static void changeable_flags(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < NFIELDS; i++)
        if (in_state(&fields[i]) && (fields[i].flags & OPT_CHANGEABLE) && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", fields[i].flag);
}

/* one option given again: a changeable one replaces the run's, any other must agree */
static vlp_err resume_one(const opt_desc *d, train_opts *run, const train_opts *given,
                          const char *what, const char *chg, vlp_error *err) {
    if (d->flags & OPT_CHANGEABLE) {
        opt_copy(d, run, given);
        return VLP_OK;
    }
    char a[64], b[64];
    opt_format(d, run, a, sizeof a);
    opt_format(d, given, b, sizeof b);
    VLP_CHECK_ARG(!strcmp(a, b), err,
                  "%s: the run was started with %s %s, not %s; a resumed run keeps its "
                  "options (it may change %s)", what, d->flag, a, b, chg);
    return VLP_OK;
}

vlp_err train_opts_resume(train_opts *run, const train_opts *given, const char *const *given_keys,
                          int ngiven, const char *what, vlp_error *err) {
    if (was_given("objective", given_keys, ngiven))
        VLP_CHECK_ARG(run->objective == given->objective, err,
                      "%s: the run trains the %s objective, not %s; a resumed run keeps it", what,
                      run->objective->name, given->objective->name);
    char chg[128];
    changeable_flags(chg, sizeof chg);
    for (int i = 0; i < NFIELDS; i++)
        if (in_state(&fields[i]) && was_given(fields[i].key, given_keys, ngiven))
            VLP_TRY(resume_one(&fields[i], run, given, what, chg, err));
    const objective *obj = run->objective;
    if (obj != given->objective) return VLP_OK; /* not given (checked above): the run's */
    for (int i = 0; i < obj->noptions; i++) {
        opt_desc d = objective_option_desc(obj, i);
        if (was_given(d.key, given_keys, ngiven)) VLP_TRY(resume_one(&d, run, given, what, chg, err));
    }
    return VLP_OK;
}

void train_opts_describe(const train_opts *o, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "--objective %s", o->objective->name);
    for (int i = 0; i < NFIELDS && n < cap; i++) {
        if (!in_state(&fields[i])) continue;
        char v[64];
        opt_format(&fields[i], o, v, sizeof v);
        n += (size_t)snprintf(buf + n, cap - n, " %s %s", fields[i].flag, v);
    }
    for (int i = 0; i < o->objective->noptions && n < cap; i++) {
        opt_desc d = objective_option_desc(o->objective, i);
        char v[32];
        opt_format(&d, o, v, sizeof v);
        n += (size_t)snprintf(buf + n, cap - n, " %s %s", d.flag, v);
    }
}
