/* A run's options: defaults, checks, the training state's JSON and the one
 * resume check. The general options are a table (what each is called in the
 * state and on the command line, where it lives, whether a resumed run may
 * change it); an objective's come from its own table (objective.h). */
#include "train/trainer.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum field_kind { F_INT, F_LONG, F_FLOAT, F_DOUBLE, F_U64, F_PRECISION, F_BOOL, F_LOCK } field_kind;

typedef struct train_field {
    const char *key, *flag;
    field_kind kind;
    size_t off;
    bool required;   // in every state since the first version
    bool changeable; // a resumed run may give another value
    /* what a state written before the option existed ran with (JSON); NULL:
     * the default */
    const char *absent;
} train_field;

#define F(key, flag, kind, member, req, chg) {key, flag, kind, offsetof(train_opts, member), req, chg, NULL}
static const train_field fields[] = {
    F("lock_image", "--lock-image", F_LOCK, lock_image, false, false),
    F("batch", "--batch", F_INT, batch, true, false),
    F("accum", "--accum", F_INT, accum, true, false),
    F("steps", "--steps", F_LONG, steps, true, true),
    F("warmup", "--warmup", F_LONG, warmup, true, false),
    F("lr", "--lr", F_FLOAT, adam.lr, true, false),
    F("beta1", "--beta1", F_FLOAT, adam.beta1, true, false),
    F("beta2", "--beta2", F_FLOAT, adam.beta2, true, false),
    F("eps", "--eps", F_FLOAT, adam.eps, true, false),
    F("weight_decay", "--wd", F_FLOAT, adam.weight_decay, true, false),
    F("grad_clip", "--grad-clip", F_DOUBLE, grad_clip, true, false),
    F("seed", "--seed", F_U64, seed, true, false),
    F("precision", "--precision", F_PRECISION, precision, false, false),
    {"decay_embeddings", "--wd-embeddings", F_BOOL, offsetof(train_opts, adam.decay_embeddings),
     false, false, "false"},
    F("skip_nonfinite", "--skip-nonfinite", F_BOOL, skip_nonfinite, false, false),
    {"grad_checkpointing", "--grad-checkpointing", F_BOOL, offsetof(train_opts, grad_checkpointing), false, true,
     "false"},
};
#undef F
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))

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
        if (!strcmp(o->options[i].key, key) || !strcmp(o->options[i].flag, key)) return i;
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
    VLP_CHECK_ARG(o->batch > 0 && o->accum > 0 && o->batch % o->accum == 0, err,
                  "batch %d must be a positive multiple of accum %d", o->batch, o->accum);
    VLP_CHECK_ARG(o->steps > 0 && o->warmup >= 0, err, "steps %ld must be > 0 and warmup %ld >= 0",
                  o->steps, o->warmup);
    VLP_CHECK_ARG(o->adam.lr > 0 && o->adam.beta1 >= 0 && o->adam.beta1 < 1 && o->adam.beta2 >= 0 &&
                      o->adam.beta2 < 1 && o->adam.eps > 0 && o->adam.weight_decay >= 0,
                  err, "AdamW settings out of range (lr %g, betas %g %g, eps %g, wd %g)",
                  o->adam.lr, o->adam.beta1, o->adam.beta2, o->adam.eps, o->adam.weight_decay);
    VLP_CHECK_ARG(o->grad_clip >= 0, err, "grad clip %g must be >= 0 (0: off)", o->grad_clip);
    VLP_CHECK_ARG(o->precision == VLP_PRECISION_FP32 || o->precision == VLP_PRECISION_BF16, err,
                  "precision %d is neither fp32 nor bf16", (int)o->precision);
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++) {
        const objective_option *p = &obj->options[i];
        float v = o->obj[i];
        if (p->kind == OBJECTIVE_MODEL)
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

/* ---- one field's value, as text and as JSON ---------------------------------------------- */

static void *field_at(const train_opts *o, const train_field *f) {
    return (char *)o + f->off;
}

static size_t field_size(field_kind k) {
    switch (k) {
    case F_INT: case F_LOCK: return sizeof(int);
    case F_LONG: return sizeof(long);
    case F_FLOAT: return sizeof(float);
    case F_DOUBLE: return sizeof(double);
    case F_U64: return sizeof(uint64_t);
    case F_PRECISION: return sizeof(vlp_precision);
    case F_BOOL: return sizeof(bool);
    }
    return 0;
}

static const char *precision_name(vlp_precision p) { return p == VLP_PRECISION_BF16 ? "bf16" : "fp32"; }

/* v as the shortest text that reads back the same (as a float when f32) */
static void shortest(double v, bool f32, char *buf, size_t cap) {
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (f32 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

/* the value as the command line writes it */
static void field_text(const train_opts *o, const train_field *f, char *buf, size_t cap) {
    const void *p = field_at(o, f);
    switch (f->kind) {
    case F_INT: snprintf(buf, cap, "%d", *(const int *)p); break;
    case F_LOCK: { /* -1 off, 0 all locked, N: the top N groups train */
        int g = *(const int *)p;
        if (g < 0) snprintf(buf, cap, "off");
        else if (g == 0) snprintf(buf, cap, "on");
        else snprintf(buf, cap, "on with --lock-image-unlocked-groups %d", g);
        break;
    }
    case F_LONG: snprintf(buf, cap, "%ld", *(const long *)p); break;
    case F_FLOAT: shortest(*(const float *)p, true, buf, cap); break;
    case F_DOUBLE: shortest(*(const double *)p, false, buf, cap); break;
    case F_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)p); break;
    case F_PRECISION: snprintf(buf, cap, "%s", precision_name(*(const vlp_precision *)p)); break;
    case F_BOOL: snprintf(buf, cap, "%s", *(const bool *)p ? "on" : "off"); break;
    }
}

static void option_text(const objective *obj, int i, float v, char *buf, size_t cap) {
    if (obj->options[i].kind == OBJECTIVE_MODEL) snprintf(buf, cap, "%s", v ? "given" : "not given");
    else shortest(v, true, buf, cap);
}

static json_t *field_json(const train_opts *o, const train_field *f) {
    const void *p = field_at(o, f);
    switch (f->kind) {
    case F_INT: case F_LOCK: return json_integer(*(const int *)p);
    case F_LONG: return json_integer(*(const long *)p);
    case F_FLOAT: return json_real(*(const float *)p);
    case F_DOUBLE: return json_real(*(const double *)p);
    case F_PRECISION: return json_string(precision_name(*(const vlp_precision *)p));
    case F_BOOL: return json_boolean(*(const bool *)p);
    case F_U64: { /* a string: JSON numbers lose 64-bit integers */
        char s[32];
        snprintf(s, sizeof s, "%" PRIu64, *(const uint64_t *)p);
        return json_string(s);
    }
    }
    return NULL;
}

static bool field_from_json(train_opts *o, const train_field *f, json_t *v) {
    void *p = field_at(o, f);
    switch (f->kind) {
    case F_INT: case F_LOCK:
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 30)) return false;
        *(int *)p = (int)json_integer_value(v);
        return true;
    case F_LONG:
        if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
        *(long *)p = (long)json_integer_value(v);
        return true;
    case F_FLOAT:
        if (!json_is_number(v)) return false;
        *(float *)p = (float)json_number_value(v);
        return true;
    case F_DOUBLE:
        if (!json_is_number(v)) return false;
        *(double *)p = json_number_value(v);
        return true;
    case F_U64: {
        const char *s = json_string_value(v);
        char *end = NULL;
        if (!s || !*s) return false;
        *(uint64_t *)p = strtoull(s, &end, 10);
        return *end == 0;
    }
    case F_BOOL:
        if (!json_is_boolean(v)) return false;
        *(bool *)p = json_is_true(v);
        return true;
    case F_PRECISION: {
        const char *s = json_string_value(v);
        if (!s || (strcmp(s, "fp32") && strcmp(s, "bf16"))) return false;
        *(vlp_precision *)p = strcmp(s, "bf16") ? VLP_PRECISION_FP32 : VLP_PRECISION_BF16;
        return true;
    }
    }
    return false;
}

char *train_opts_to_json(const train_opts *o) {
    json_t *j = json_object();
    if (!j) return NULL;
    json_object_set_new(j, "objective", json_string(o->objective->name));
    for (int i = 0; i < NFIELDS; i++) json_object_set_new(j, fields[i].key, field_json(o, &fields[i]));
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++)
        json_object_set_new(j, obj->options[i].key, obj->options[i].kind == OBJECTIVE_MODEL
                                                        ? json_boolean(o->obj[i] != 0)
                                                        : json_real(o->obj[i]));
    char *s = json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(j);
    return s;
}

/* a key some built-in objective has: states written before options were an
 * objective's hold every objective's */
static bool any_objective_option(const char *key) {
    for (int i = 0; vlp_objectives[i]; i++)
        if (objective_option_index(vlp_objectives[i], key) >= 0) return true;
    return false;
}

static vlp_err parse_fields(json_t *j, const char *what, train_opts *o, vlp_error *err) {
    for (int i = 0; i < NFIELDS; i++) {
        json_t *v = json_object_get(j, fields[i].key), *absent = NULL;
        VLP_CHECK_FORMAT(v || !fields[i].required, err, "%s: training options lack \"%s\"", what,
                         fields[i].key);
        if (!v && fields[i].absent) v = absent = json_loads(fields[i].absent, JSON_DECODE_ANY, NULL);
        bool ok = !v || field_from_json(o, &fields[i], v);
        json_decref(absent);
        VLP_CHECK_FORMAT(ok, err, "%s: training option \"%s\" has a value of the wrong type or range",
                         what, fields[i].key);
    }
    const objective *obj = o->objective;
    for (int i = 0; i < obj->noptions; i++) {
        json_t *v = json_object_get(j, obj->options[i].key);
        if (!v) continue; /* written before the option existed: its default */
        bool model = obj->options[i].kind == OBJECTIVE_MODEL;
        VLP_CHECK_FORMAT(model ? json_is_boolean(v) : json_is_number(v), err,
                         "%s: training option \"%s\" is not a %s", what, obj->options[i].key,
                         model ? "boolean" : "number");
        o->obj[i] = model ? (float)json_is_true(v) : (float)json_number_value(v);
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        bool known = !strcmp(key, "objective") || any_objective_option(key);
        for (int i = 0; i < NFIELDS && !known; i++) known = !strcmp(key, fields[i].key);
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
        if (fields[i].changeable && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", fields[i].flag);
}

vlp_err train_opts_resume(train_opts *run, const train_opts *given, const char *const *given_keys,
                          int ngiven, const char *what, vlp_error *err) {
    if (was_given("objective", given_keys, ngiven))
        VLP_CHECK_ARG(run->objective == given->objective, err,
                      "%s: the run trains the %s objective, not %s; a resumed run keeps it", what,
                      run->objective->name, given->objective->name);
    char chg[128];
    changeable_flags(chg, sizeof chg);
    for (int i = 0; i < NFIELDS; i++) {
        const train_field *f = &fields[i];
        if (!was_given(f->key, given_keys, ngiven)) continue;
        char a[64], b[64];
        field_text(run, f, a, sizeof a);
        field_text(given, f, b, sizeof b);
        if (f->changeable) {
            memcpy(field_at(run, f), field_at(given, f), field_size(f->kind));
            continue;
        }
        VLP_CHECK_ARG(!strcmp(a, b), err,
                      "%s: the run was started with %s %s, not %s; a resumed run keeps its "
                      "options (it may change %s)", what, f->flag, a, b, chg);
    }
    const objective *obj = run->objective;
    if (obj != given->objective) return VLP_OK; /* not given (checked above): the run's */
    for (int i = 0; i < obj->noptions; i++) {
        const objective_option *p = &obj->options[i];
        if (!was_given(p->key, given_keys, ngiven) || run->obj[i] == given->obj[i]) continue;
        char a[32], b[32];
        option_text(obj, i, run->obj[i], a, sizeof a);
        option_text(obj, i, given->obj[i], b, sizeof b);
        VLP_FAIL(err, VLP_ERR_ARG,
                 "%s: the run was started with %s %s, not %s; a resumed run keeps its options "
                 "(it may change %s)", what, p->flag, a, b, chg);
    }
    return VLP_OK;
}

void train_opts_describe(const train_opts *o, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "--objective %s", o->objective->name);
    for (int i = 0; i < NFIELDS && n < cap; i++) {
        char v[64];
        field_text(o, &fields[i], v, sizeof v);
        n += (size_t)snprintf(buf + n, cap - n, " %s %s", fields[i].flag, v);
    }
    for (int i = 0; i < o->objective->noptions && n < cap; i++) {
        char v[32];
        option_text(o->objective, i, o->obj[i], v, sizeof v);
        n += (size_t)snprintf(buf + n, cap - n, " %s %s", o->objective->options[i].flag, v);
    }
}
