#include "data/text_clean.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct html_entity {
    const char *name, *utf8;
} html_entity;
typedef struct html_charref {
    unsigned num;
    const char *utf8;
} html_charref;
#include "data/html_entities.inc"

#define NENT (sizeof HTML_ENTITIES / sizeof HTML_ENTITIES[0])

/* a growing output buffer; on OOM data becomes NULL and stays so */
typedef struct sbuf {
    char *data;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const void *p, size_t n) {
    if (!b->data) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *g = realloc(b->data, cap);
        if (!g) {
            free(b->data);
            b->data = NULL;
            return;
        }
        b->data = g, b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void put_cp(sbuf *b, int32_t cp) {
    uint8_t u[4];
    utf8proc_ssize_t n = utf8proc_encode_char(cp, u);
    put(b, u, (size_t)n);
}

static sbuf sbuf_new(size_t hint) {
    sbuf b = {malloc(hint + 1), 0, hint + 1};
    if (b.data) b.data[0] = '\0';
    return b;
}

/* next code point of s (valid UTF-8); returns bytes consumed */
static int next_cp(const char *s, int32_t *cp) {
    utf8proc_ssize_t n = utf8proc_iterate((const uint8_t *)s, -1, cp);
    return n > 0 ? (int)n : 1;
}

char *utf8_sanitize(const char *s, size_t n) {
    sbuf b = sbuf_new(n);
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0 || cp == 0) { /* invalid byte (or NUL): replacement character */
            if (cp != 0 || k <= 0) put_cp(&b, 0xFFFD);
            i += 1;
        } else {
            put(&b, p + i, (size_t)k);
            i += (size_t)k;
        }
    }
    return b.data;
}

static int cmp_entity(const void *key, const void *e) {
    return strcmp(key, ((const html_entity *)e)->name);
}

static const char *entity(const char *name) {
    const html_entity *e = bsearch(name, HTML_ENTITIES, NENT, sizeof *HTML_ENTITIES, cmp_entity);
    return e ? e->utf8 : NULL;
}

static bool invalid_codepoint(unsigned c) {
    size_t n = sizeof HTML_INVALID_CODEPOINTS / sizeof HTML_INVALID_CODEPOINTS[0];
    for (size_t i = 0; i < n; i++)
        if (HTML_INVALID_CODEPOINTS[i] == c) return true;
    return false;
}

/* A numeric reference's replacement, as Python's html.unescape. */
static void numeric_ref(sbuf *b, unsigned long long num) {
    for (size_t i = 0; i < sizeof HTML_INVALID_CHARREFS / sizeof *HTML_INVALID_CHARREFS; i++)
        if (HTML_INVALID_CHARREFS[i].num == num) {
            put(b, HTML_INVALID_CHARREFS[i].utf8, strlen(HTML_INVALID_CHARREFS[i].utf8));
            return;
        }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) put_cp(b, 0xFFFD);
    else if (!invalid_codepoint((unsigned)num)) put_cp(b, (int32_t)num);
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f'); }

/* Python: re.sub(r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)', replace, s) */
char *html_unescape(const char *s) {
    if (!strchr(s, '&')) return strdup(s);
    size_t n = strlen(s);
    sbuf b = sbuf_new(n);
    size_t i = 0;
    while (i < n && b.data) {
        if (s[i] != '&') {
            const char *amp = strchr(s + i, '&');
            size_t run = amp ? (size_t)(amp - (s + i)) : n - i;
            put(&b, s + i, run);
            i += run;
            continue;
        }
        const char *r = s + i + 1;
        if (r[0] == '#' && (r[1] == 'x' || r[1] == 'X') && is_hex(r[2])) {
            size_t k = 2;
            unsigned long long num = 0;
            for (; is_hex(r[k]); k++)
                if (num <= 0x7FFFFFFFull) num = num * 16 + (unsigned)(r[k] <= '9' ? r[k] - '0' : (r[k] | 32) - 'a' + 10);
            if (r[k] == ';') k++;
            numeric_ref(&b, num);
            i += 1 + k;
        } else if (r[0] == '#' && r[1] >= '0' && r[1] <= '9') {
            size_t k = 1;
            unsigned long long num = 0;
            for (; r[k] >= '0' && r[k] <= '9'; k++)
                if (num <= 0x7FFFFFFFull) num = num * 10 + (unsigned)(r[k] - '0');
            if (r[k] == ';') k++;
            numeric_ref(&b, num);
            i += 1 + k;
        } else {
            /* a name: up to 32 chars of [^\t\n\f <&#;], then an optional ';' */
            size_t k = 0;
            while (k < 32 && r[k] && !strchr("\t\n\f <&#;", r[k])) k++;
            if (k == 0) {
                put(&b, "&", 1);
                i += 1;
                continue;
            }
            if (r[k] == ';') k++;
            char name[40];
            memcpy(name, r, k);
            name[k] = '\0';
            const char *rep = entity(name);
            size_t used = k;
            if (!rep) { /* the longest prefix that is a name (of at least 2 chars) */
                for (size_t x = k - 1; x > 1 && !rep; x--) {
                    name[x] = '\0';
                    if ((rep = entity(name))) used = x;
                }
            }
            if (rep) {
                put(&b, rep, strlen(rep));
                put(&b, r + used, k - used);
            } else {
                put(&b, "&", 1);
                put(&b, r, k);
            }
            i += 1 + k;
        }
    }
    return b.data;
}

bool py_isspace(int cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

char *whitespace_clean(const char *s) {
    sbuf b = sbuf_new(strlen(s));
    bool pending = false;
    for (const char *p = s; *p && b.data;) {
        int32_t cp;
        int k = next_cp(p, &cp);
        if (py_isspace(cp)) pending = b.len > 0;
        else {
            if (pending) put(&b, " ", 1);
            pending = false;
            put(&b, p, (size_t)k);
        }
        p += k;
    }
    return b.data;
}

static bool is_cased(int32_t cp) {
    return utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp || utf8proc_totitle(cp) != cp;
}

static bool is_case_ignorable(int32_t cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == 0x2019 ||
           cp == '.' || cp == ':' || cp == 0xB7;
}

char *py_lower(const char *s) {
    size_t n = strlen(s);
    /* decode once: final sigma looks both ways */
    int32_t *cps = malloc(sizeof(int32_t) * (n + 1));
    if (!cps) return NULL;
    size_t m = 0;
    for (const char *p = s; *p;) p += next_cp(p, &cps[m++]);
    sbuf b = sbuf_new(n);
    for (size_t i = 0; i < m && b.data; i++) {
        int32_t c = cps[i];
        if (c == 0x130) { /* the one unconditional multi-character lower-case mapping */
            put_cp(&b, 'i'), put_cp(&b, 0x307);
        } else if (c == 0x3A3) { /* Final_Sigma: cased before, no cased after (skipping ignorables) */
            size_t j = i;
            while (j > 0 && is_case_ignorable(cps[j - 1])) j--;
            bool before = j > 0 && is_cased(cps[j - 1]);
            size_t k = i + 1;
            while (k < m && is_case_ignorable(cps[k])) k++;
            bool after = k < m && is_cased(cps[k]);
            put_cp(&b, before && !after ? 0x3C2 : 0x3C3);
        } else {
            put_cp(&b, utf8proc_tolower(c));
        }
    }
    free(cps);
    return b.data;
}
