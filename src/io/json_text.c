#include "io/json_text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the length of the UTF-8 sequence at u (of n bytes left), 0 when none starts there:
 * overlong forms, surrogates and values above U+10FFFF are not UTF-8 */
static int sequence(const unsigned char *u, size_t n) {
    int len = u[0] < 0x80 ? 1 : (u[0] >> 5) == 6 ? 2 : (u[0] >> 4) == 14 ? 3 : (u[0] >> 3) == 30 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    for (int k = 1; k < len; k++)
        if ((u[k] & 0xC0) != 0x80) return 0;
    if (len == 1) return 1;
    uint32_t c = u[0] & (0x7F >> len);
    for (int k = 1; k < len; k++) c = c << 6 | (u[k] & 0x3F);
    bool ok = c >= (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
    return ok ? len : 0;
}

bool utf8_valid(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        int len = sequence(u + i, n - i);
        if (!len) return false;
        i += (size_t)len;
    }
    return true;
}

char *utf8_repaired(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int len = sequence(u + i, n - i);
        if (len) memcpy(o, u + i, (size_t)len), o += len, i += (size_t)len;
        else memcpy(o, "\xEF\xBF\xBD", 3), o += 3, i++;
    }
    *o = '\0';
    return out;
}

json_t *json_text_repaired(const char *s) {
    if (utf8_valid(s)) return json_string(s);
    char *r = utf8_repaired(s);
    json_t *j = r ? json_string(r) : NULL;
    free(r);
    return j;
}

vlp_err json_put(json_t *obj, const char *key, json_t *v, const char *what, vlp_error *err) {
    VLP_CHECK(v && json_object_set_new(obj, key, v) == 0, err, VLP_ERR_NOMEM, "%s: the field \"%s\"", what, key);
    return VLP_OK;
}

vlp_err json_set_exact(json_t *obj, const char *key, const char *s, const char *what, vlp_error *err) {
    VLP_CHECK_ARG(utf8_valid(s), err,
                  "%s: \"%s\" would hold '%s', which is not UTF-8 text (JSON holds only UTF-8); rename it", what,
                  key, s);
    return json_put(obj, key, json_string(s), what, err);
}

/* ---- a document checked once ---- */

static void jd_fail(json_doc *d, vlp_err rc, const char *key, const char *why, const char *value) {
    if (d->rc != VLP_OK) return;
    d->rc = rc;
    snprintf(d->failed, sizeof d->failed, "the field \"%.80s\" %s%.100s%s", key ? key : "?", why,
             value ? value : "", value ? "', which is not UTF-8 text (JSON holds only UTF-8); rename it" : "");
}

json_doc json_doc_new(void) {
    json_doc d = {.root = json_object()};
    if (!d.root) jd_fail(&d, VLP_ERR_NOMEM, "(the document)", "could not be made: out of memory", NULL);
    return d;
}

static json_t *kept(json_doc *d, json_t *v, const char *what) {
    if (!v) jd_fail(d, VLP_ERR_NOMEM, what, "could not be made: out of memory", NULL);
    return v;
}
json_t *jd_object(json_doc *d) { return kept(d, json_object(), "(an object)"); }
json_t *jd_array(json_doc *d) { return kept(d, json_array(), "(an array)"); }

void jd_put(json_doc *d, json_t *obj, const char *key, json_t *v) {
    if (!obj) json_decref(v), v = NULL; /* an earlier failure: kept already */
    if (obj && !utf8_valid(key)) { /* jansson refuses such a key: the field would vanish */
        json_decref(v);
        jd_fail(d, VLP_ERR_ARG, key, "has a name '", key);
    } else if (!obj || !v || json_object_set_new(obj, key, v) != 0)
        jd_fail(d, VLP_ERR_NOMEM, key, "could not be written: out of memory", NULL);
}

void jd_text(json_doc *d, json_t *obj, const char *key, const char *text) {
    jd_put(d, obj, key, text ? json_text_repaired(text) : json_null());
}

void jd_exact(json_doc *d, json_t *obj, const char *key, const char *s) {
    if (s && !utf8_valid(s)) {
        jd_fail(d, VLP_ERR_ARG, key, "would hold '", s);
        return;
    }
    jd_put(d, obj, key, s ? json_string(s) : json_null());
}

void jd_append(json_doc *d, json_t *arr, json_t *v) {
    if (!arr) json_decref(v), v = NULL;
    if (!arr || !v || json_array_append_new(arr, v) != 0)
        jd_fail(d, VLP_ERR_NOMEM, "(an array's item)", "could not be written: out of memory", NULL);
}

char *json_doc_dumps(json_doc *d, size_t flags, const char *what, vlp_error *err) {
    char *text = d->rc == VLP_OK ? json_dumps(d->root, flags) : NULL;
    if (!text && d->rc == VLP_OK) jd_fail(d, VLP_ERR_NOMEM, "(the document)", "could not be written: out of memory", NULL);
    if (!text) vlp_error_set(err, d->rc, __FILE__, __LINE__, "%s: %s", what, d->failed);
    return text;
}

void json_doc_free(json_doc *d) {
    json_decref(d->root);
    d->root = NULL;
}
