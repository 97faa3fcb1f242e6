/* The option engine: the plain types and what every table does with them. */
#include "core/optdesc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *at(const opt_desc *d, const void *base) { return (char *)base + d->off; }

void opt_shortest(double v, bool f32, char *buf, size_t cap) {
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (f32 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

static bool ranged(const opt_desc *d) { return d->lo != 0 || d->hi != 0; }

void opt_wants(const opt_desc *d, char *buf, size_t cap) {
    bool whole = d->type == &opt_int || d->type == &opt_long || d->type == &opt_u64;
    if (!ranged(d)) snprintf(buf, cap, "%s", d->type->what);
    else if (whole) snprintf(buf, cap, "%s in %.0f..%.0f", d->type->what, d->lo, d->hi);
    else snprintf(buf, cap, "%s in [%.15g, %.15g]", d->type->what, d->lo, d->hi);
}

/* ---- integers ---------------------------------------------------------------------------- */

static vlp_err parse_whole(const opt_desc *d, const char *text, long long lo, long long hi,
                           long long *out, vlp_error *err) {
    char *end;
    errno = 0;
    long long x = strtoll(text ? text : "", &end, 10);
    if (ranged(d)) lo = (long long)d->lo, hi = (long long)d->hi;
    VLP_CHECK_ARG(text && !errno && end != text && !*end && x >= lo && x <= hi, err,
                  "%s wants a whole number in %lld..%lld, got '%s'", d->flag, lo, hi,
                  text ? text : "");
    *out = x;
    return VLP_OK;
}

static vlp_err int_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    long long x = 0;
    VLP_TRY(parse_whole(d, text, INT32_MIN, INT32_MAX, &x, err));
    *(int *)dst = (int)x;
    return VLP_OK;
}
static void int_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", *(const int *)src);
}
static json_t *int_json(const opt_desc *d, const void *src) { return json_integer(*(const int *)src); }
static bool int_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (ranged(d) ? x < d->lo || x > d->hi : x < INT32_MIN || x > INT32_MAX) return false;
    *(int *)dst = (int)x;
    return true;
}
const opt_type opt_int = {"a whole number", false, int_parse, int_format, int_json, int_from, sizeof(int)};

static vlp_err long_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    long long x = 0;
    VLP_TRY(parse_whole(d, text, LONG_MIN, LONG_MAX, &x, err));
    *(long *)dst = (long)x;
    return VLP_OK;
}
static void long_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%ld", *(const long *)src);
}
static json_t *long_json(const opt_desc *d, const void *src) { return json_integer(*(const long *)src); }
static bool long_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (ranged(d) && (x < d->lo || x > d->hi)) return false;
    *(long *)dst = (long)x;
    return true;
}
const opt_type opt_long = {"a whole number", false, long_parse, long_format, long_json, long_from, sizeof(long)};

static vlp_err u64_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(text ? text : "", &end, 10);
    VLP_CHECK_ARG(text && *text != '-' && !errno && end != text && !*end, err,
                  "%s wants a whole number in 0..%" PRIu64 ", got '%s'", d->flag, UINT64_MAX,
                  text ? text : "");
    *(uint64_t *)dst = x;
    return VLP_OK;
}
static void u64_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)src);
}
static json_t *u64_json(const opt_desc *d, const void *src) {
    char s[32];
    u64_format(d, src, s, sizeof s);
    return json_string(s);
}
static bool u64_from(const opt_desc *d, void *dst, const json_t *v) {
    const char *s = json_string_value(v);
    char *end = NULL;
    if (!s || !*s || *s == '-') return false;
    errno = 0;
    *(uint64_t *)dst = strtoull(s, &end, 10);
    return *end == 0 && !errno;
}
const opt_type opt_u64 = {"a whole number", false, u64_parse, u64_format, u64_json, u64_from, sizeof(uint64_t)};

/* ---- numbers ------------------------------------------------------------------------------ */

static vlp_err parse_number(const opt_desc *d, const char *text, double *out, vlp_error *err) {
    char *end;
    errno = 0;
    double x = strtod(text ? text : "", &end);
    bool in = isfinite(x) && (!ranged(d) || (x >= d->lo && x <= d->hi));
    if (ranged(d))
        VLP_CHECK_ARG(text && !errno && end != text && !*end && in, err,
                      "%s wants a number in [%.15g, %.15g], got '%s'", d->flag, d->lo, d->hi, text ? text : "");
    else
        VLP_CHECK_ARG(text && !errno && end != text && !*end && in, err,
                      "%s wants a number, got '%s'", d->flag, text ? text : "");
    *out = x;
    return VLP_OK;
}
static bool number_from(const opt_desc *d, const json_t *v, double *x) {
    if (!json_is_number(v)) return false;
    *x = json_number_value(v);
    return isfinite(*x) && (!ranged(d) || (*x >= d->lo && *x <= d->hi));
}

static vlp_err float_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    double x = 0;
    VLP_TRY(parse_number(d, text, &x, err));
    *(float *)dst = (float)x;
    return VLP_OK;
}
static void float_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    opt_shortest(*(const float *)src, true, buf, cap);
}
static json_t *float_json(const opt_desc *d, const void *src) { return json_real(*(const float *)src); }
static bool float_from(const opt_desc *d, void *dst, const json_t *v) {
    double x;
    if (!number_from(d, v, &x)) return false;
    *(float *)dst = (float)x;
    return true;
}
const opt_type opt_float = {"a number", false, float_parse, float_format, float_json, float_from, sizeof(float)};

static vlp_err double_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    return parse_number(d, text, (double *)dst, err);
}
static void double_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    opt_shortest(*(const double *)src, false, buf, cap);
}
static json_t *double_json(const opt_desc *d, const void *src) { return json_real(*(const double *)src); }
static bool double_from(const opt_desc *d, void *dst, const json_t *v) {
    return number_from(d, v, (double *)dst);
}
const opt_type opt_double = {"a number", false, double_parse, double_format, double_json, double_from, sizeof(double)};

/* ---- text and switches -------------------------------------------------------------------- */

static vlp_err string_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    VLP_CHECK_ARG(text, err, "%s needs a value", d->flag);
    *(const char **)dst = text; /* the caller's: argv, or the API's copy */
    return VLP_OK;
}
static void string_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    const char *s = *(const char *const *)src;
    snprintf(buf, cap, "%s", s ? s : "(none)");
}
static json_t *string_json(const opt_desc *d, const void *src) {
    const char *s = *(const char *const *)src;
    return s ? json_string(s) : json_null();
}
/* the string lives in v: the caller keeps the JSON while it uses the value */
static bool string_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_string(v) && !json_is_null(v)) return false;
    /* null only where none is a value: over a default (dst holds it) it would
     * leave a NULL where the code reads text */
    if (json_is_null(v) && *(const char **)dst) return false;
    *(const char **)dst = json_string_value(v);
    return true;
}
const opt_type opt_string = {"text", false, string_parse, string_format, string_json, string_from, sizeof(char *)};

static vlp_err bool_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    if (!text || !strcmp(text, "on") || !strcmp(text, "true") || !strcmp(text, "1")) *(bool *)dst = true;
    else if (!strcmp(text, "off") || !strcmp(text, "false") || !strcmp(text, "0")) *(bool *)dst = false;
    else VLP_FAIL(err, VLP_ERR_ARG, "%s must be on or off, not '%s'", d->flag, text);
    return VLP_OK;
}
static void bool_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", *(const bool *)src ? "on" : "off");
}
static json_t *bool_json(const opt_desc *d, const void *src) { return json_boolean(*(const bool *)src); }
static bool bool_from(const opt_desc *d, void *dst, const json_t *v) {
    if (!json_is_boolean(v)) return false;
    *(bool *)dst = json_is_true(v);
    return true;
}
const opt_type opt_switch = {"a switch", true, bool_parse, bool_format, bool_json, bool_from, sizeof(bool)};
static vlp_err off_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    *(bool *)dst = false;
    return VLP_OK;
}
const opt_type opt_switch_off = {"a switch", true, off_parse, bool_format, bool_json, bool_from, sizeof(bool)};
const opt_type opt_onoff = {"on or off", false, bool_parse, bool_format, bool_json, bool_from, sizeof(bool)};

/* ---- tables -------------------------------------------------------------------------------- */

const opt_desc *opt_find(const opt_desc *t, int n, const char *key) {
    for (int i = 0; key && i < n; i++)
        if ((t[i].key && !strcmp(t[i].key, key)) || (t[i].flag && !strcmp(t[i].flag, key)) ||
            (t[i].shrt && !strcmp(t[i].shrt, key)))
            return &t[i];
    return NULL;
}

vlp_err opt_set(const opt_desc *d, void *base, const char *text, vlp_error *err) {
    return d->type->parse(d, at(d, base), text, err);
}

void opt_format(const opt_desc *d, const void *base, char *buf, size_t cap) {
    d->type->format(d, at(d, base), buf, cap);
}

json_t *opt_to_json(const opt_desc *d, const void *base) { return d->type->to_json(d, at(d, base)); }

bool opt_from_json(const opt_desc *d, void *base, const json_t *v) {
    return d->type->from_json(d, at(d, base), v);
}

vlp_err opt_read_json(const opt_desc *d, void *base, const json_t *v, const char *where, vlp_error *err) {
    if (opt_from_json(d, base, v)) return VLP_OK;
    char *got = json_dumps(v, JSON_ENCODE_ANY), wants[128];
    opt_wants(d, wants, sizeof wants);
    vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: \"%s\" is %.200s; %s takes %s", where, d->key,
                  got ? got : "?", d->flag ? d->flag : d->key, wants);
    free(got);
    return VLP_ERR_FORMAT;
}


void opt_copy(const opt_desc *d, void *dst, const void *src) {
    memcpy(at(d, dst), at(d, src), d->type->size);
}

void opt_help_head(const opt_desc *d, char *buf, size_t cap) {
    snprintf(buf, cap, "  %s%s%s%s%s", d->shrt ? d->shrt : "  ", d->shrt ? ", " : "  ", d->flag,
             d->arg ? " " : "", d->arg ? d->arg : "");
}

void opt_help_text(const opt_desc *d, const void *defaults, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "%s", d->help ? d->help : "");
    if (n >= cap) return;
    if (d->flags & OPT_REQUIRED) {
        snprintf(buf + n, cap - n, " (required)");
        return;
    }
    if (!defaults) return;
    if (d->type == &opt_string && !*(const char *const *)at(d, defaults)) return;
    if (d->type->is_switch) return; /* a switch does what it says when given */
    char v[128];
    opt_format(d, defaults, v, sizeof v);
    snprintf(buf + n, cap - n, " (default %s)", v);
}
