#include "io/json_text.h"

#include <stdint.h>
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
