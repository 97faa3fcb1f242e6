#include "data/pretok.h"
#include "core/error.h"
#include "data/text_clean.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct pretok {
    pcre2_code *re;
};

vlp_err pretok_create(pretok **out, vlp_error *err) {
    static const char pat[] =
        "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
    pretok *p = calloc(1, sizeof *p);
    VLP_CHECK_ALLOC(p, err, sizeof *p);
    int ecode;
    PCRE2_SIZE eoff;
    p->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS,
                          &ecode, &eoff, NULL);
    if (!p->re) {
        free(p);
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "PCRE2 cannot compile the pre-tokenizer (error %d)", ecode);
    }
    *out = p;
    return VLP_OK;
}

void pretok_free(pretok *p) {
    if (!p) return;
    pcre2_code_free(p->re);
    free(p);
}

char *pretok_clean(const char *text) {
    char *a = utf8_sanitize(text, strlen(text));
    char *u1 = a ? html_unescape(a) : NULL;
    char *u2 = u1 ? html_unescape(u1) : NULL;
    char *ws = u2 ? whitespace_clean(u2) : NULL;
    char *clean = ws ? py_lower(ws) : NULL;
    free(a), free(u1), free(u2), free(ws);
    return clean;
}

bool pretok_begin(const pretok *p, pretok_iter *it) {
    it->off = 0;
    it->match = pcre2_match_data_create_from_pattern(p->re, NULL);
    return it->match != NULL;
}

bool pretok_next(const pretok *p, pretok_iter *it, const char *clean, size_t len, size_t *start,
                 size_t *end) {
    while (it->off < len) {
        if (pcre2_match(p->re, (PCRE2_SPTR)clean, len, it->off, PCRE2_NO_UTF_CHECK, it->match, NULL) <= 0)
            return false;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->match);
        if (ov[1] == ov[0]) { /* cannot happen with this pattern; never loop forever */
            it->off = ov[1] + 1;
            continue;
        }
        *start = ov[0], *end = ov[1];
        it->off = ov[1];
        return true;
    }
    return false;
}

void pretok_end(pretok_iter *it) {
    if (it->match) pcre2_match_data_free(it->match);
    it->match = NULL;
}
