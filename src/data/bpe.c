#include "data/bpe.h"
#include "core/error.h"
#include "data/text_clean.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NBYTES 256
#define CLIP_MERGES (49152 - 256 - 2)

/* open addressing, keys never removed */
typedef struct str_slot {
    char *key;
    int32_t id;
} str_slot;

typedef struct pair_slot {
    uint64_t key; // (a << 32 | b) + 1, 0 = empty
    int32_t rank, merged;
} pair_slot;

typedef struct bpe {
    str_slot *strs;   // symbol string → id
    size_t nstr_cap;
    pair_slot *pairs; // (a, b) → rank and the id of a+b
    size_t npair_cap;
    int nmerges, vocab;
    int32_t sot, eot;
    int32_t byte_id[NBYTES]; // byte → id of its printable symbol
    pcre2_code *re;
} bpe;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33;
    return x;
}

/* inserts or overwrites (later entries win, as Python's dict(zip(...))) */
static bool str_put(bpe *b, const char *key, size_t len, int32_t id) {
    size_t mask = b->nstr_cap - 1;
    char tmp[512];
    if (len >= sizeof tmp) return false;
    memcpy(tmp, key, len), tmp[len] = '\0';
    for (size_t i = hash_str(tmp) & mask;; i = (i + 1) & mask) {
        if (!b->strs[i].key) {
            if (!(b->strs[i].key = strdup(tmp))) return false;
            b->strs[i].id = id;
            return true;
        }
        if (!strcmp(b->strs[i].key, tmp)) {
            b->strs[i].id = id;
            return true;
        }
    }
}

static int32_t str_get(const bpe *b, const char *key) {
    size_t mask = b->nstr_cap - 1;
    for (size_t i = hash_str(key) & mask; b->strs[i].key; i = (i + 1) & mask)
        if (!strcmp(b->strs[i].key, key)) return b->strs[i].id;
    return -1;
}

static void pair_put(bpe *b, int32_t x, int32_t y, int32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)x << 32) | (uint32_t)y) + 1;
    size_t mask = b->npair_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask)
        if (!b->pairs[i].key || b->pairs[i].key == key) {
            b->pairs[i] = (pair_slot){key, rank, merged};
            return;
        }
}

static const pair_slot *pair_get(const bpe *b, int32_t x, int32_t y) {
    uint64_t key = (((uint64_t)(uint32_t)x << 32) | (uint32_t)y) + 1;
    size_t mask = b->npair_cap - 1;
    for (size_t i = hash_u64(key) & mask; b->pairs[i].key; i = (i + 1) & mask)
        if (b->pairs[i].key == key) return &b->pairs[i];
    return NULL;
}

static void bpe_free(void *impl) {
    bpe *b = impl;
    if (!b) return;
    for (size_t i = 0; b->strs && i < b->nstr_cap; i++) free(b->strs[i].key);
    free(b->strs), free(b->pairs);
    if (b->re) pcre2_code_free(b->re);
    free(b);
}

/* bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n */
static void byte_symbols(int32_t cp_of_id[NBYTES], int32_t id_of_byte[NBYTES]) {
    int n = 0, k = 0;
    bool printable[NBYTES] = {false};
    for (int b = '!'; b <= '~'; b++) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
    for (int b = 0; b < NBYTES; b++)
        if (printable[b]) cp_of_id[k] = b, id_of_byte[b] = k++;
    for (int b = 0; b < NBYTES; b++)
        if (!printable[b]) cp_of_id[k] = NBYTES + n++, id_of_byte[b] = k++;
}

static size_t utf8_put(char *out, int32_t cp) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), 2;
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 63));
    out[2] = (char)(0x80 | (cp & 63));
    return 3;
}

static int32_t bpe_merge_word(const bpe *b, int32_t *sym, int n) {
    while (n > 1) {
        int32_t best = INT32_MAX, x = 0, y = 0, merged = 0;
        for (int i = 0; i + 1 < n; i++) {
            const pair_slot *p = pair_get(b, sym[i], sym[i + 1]);
            if (p && p->rank < best) best = p->rank, x = sym[i], y = sym[i + 1], merged = p->merged;
        }
        if (best == INT32_MAX) break;
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (i + 1 < n && sym[i] == x && sym[i + 1] == y) sym[m++] = merged, i++;
            else sym[m++] = sym[i];
        }
        n = m;
    }
    return n;
}

int bpe_encode_ids(const vlp_tokenizer *t, const char *text, int32_t *ids, int cap) {
    const bpe *b = t->impl;
    char *clean = NULL, *a = utf8_sanitize(text, strlen(text));
    char *u1 = a ? html_unescape(a) : NULL;
    char *u2 = u1 ? html_unescape(u1) : NULL;
    char *ws = u2 ? whitespace_clean(u2) : NULL;
    clean = ws ? py_lower(ws) : NULL;
    free(a), free(u1), free(u2), free(ws);
    pcre2_match_data *md = clean ? pcre2_match_data_create_from_pattern(b->re, NULL) : NULL;
    size_t len = clean ? strlen(clean) : 0;
    int32_t *sym = clean ? malloc(sizeof(int32_t) * (len + 1)) : NULL;
    if (!sym || !md) {
        free(clean), free(sym);
        if (md) pcre2_match_data_free(md);
        return -1;
    }
    int n = 0;
    size_t off = 0;
    while (off < len && pcre2_match(b->re, (PCRE2_SPTR)clean, len, off, PCRE2_NO_UTF_CHECK, md, NULL) > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e == s) { /* cannot happen with this pattern; never loop forever */
            off = e + 1;
            continue;
        }
        off = e;
        int k = 0;
        if (e - s == 15 && !memcmp(clean + s, "<start_of_text>", 15)) sym[k++] = b->sot;
        else if (e - s == 13 && !memcmp(clean + s, "<end_of_text>", 13)) sym[k++] = b->eot;
        else {
            for (size_t i = s; i < e; i++) sym[k++] = b->byte_id[(uint8_t)clean[i]];
            sym[k - 1] += NBYTES; /* the last symbol carries </w> */
            k = bpe_merge_word(b, sym, k);
        }
        for (int i = 0; i < k; i++, n++)
            if (n < cap) ids[n] = sym[i];
    }
    pcre2_match_data_free(md);
    free(clean), free(sym);
    return n;
}

static void bpe_encode_ctx(const void *impl, const char *text, int32_t *ids, int ctx) {
    const bpe *b = impl;
    vlp_tokenizer t = {.impl = (void *)impl};
    ids[0] = b->sot;
    int n = bpe_encode_ids(&t, text, ids + 1, ctx - 1);
    if (n < 0) n = 0; /* out of memory: an empty text rather than garbage */
    if (n + 2 > ctx) ids[ctx - 1] = b->eot; /* open_clip: cut to ctx, the last id the end token */
    else {
        ids[n + 1] = b->eot;
        memset(ids + n + 2, 0, sizeof(int32_t) * (size_t)(ctx - n - 2));
    }
}

vlp_err bpe_load(const char *path, int max_merges, vlp_tokenizer *out, vlp_error *err) {
    if (max_merges <= 0) max_merges = 1 << 20;
    gzFile gz = gzopen(path, "rb");
    VLP_CHECK_IO(gz, err, "cannot open %s", path);
    bpe *b = calloc(1, sizeof *b);
    size_t cap = 1;
    while (cap < 4 * (size_t)(max_merges < CLIP_MERGES ? max_merges : CLIP_MERGES) + 4 * NBYTES) cap *= 2;
    if (b) {
        b->nstr_cap = b->npair_cap = cap;
        b->strs = calloc(cap, sizeof(str_slot));
        b->pairs = calloc(cap, sizeof(pair_slot));
    }
    if (!b || !b->strs || !b->pairs) {
        gzclose(gz);
        bpe_free(b);
        VLP_FAIL(err, VLP_ERR_NOMEM, "tokenizer tables of %zu entries", cap);
    }
    int32_t cp_of_id[NBYTES];
    byte_symbols(cp_of_id, b->byte_id);
    char sym[16];
    for (int id = 0; id < NBYTES; id++) {
        size_t k = utf8_put(sym, cp_of_id[id]);
        str_put(b, sym, k, id);
        memcpy(sym + k, "</w>", 4);
        str_put(b, sym, k + 4, NBYTES + id);
    }
    /* two passes over the merges: strings → ids first (later ones win), then pairs */
    char line[1024];
    vlp_err rc = VLP_OK;
    int lineno = 0, n = 0;
    char **lines = malloc(sizeof(char *) * 64);
    size_t lines_cap = 64;
    while (n < max_merges && gzgets(gz, line, sizeof line)) {
        lineno++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n') line[--l] = '\0';
        if (lineno == 1) continue; /* "#version: 0.2" */
        if (l == 0) break;         /* Python's split('\n') gives a last empty line */
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' ')) {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s:%d: a merge is two symbols separated by one space", path, lineno);
            break;
        }
        char **g = (size_t)n < lines_cap || !lines ? lines : realloc(lines, sizeof(char *) * (lines_cap *= 2));
        if (g) lines = g;
        if (!g || !(lines[n] = strdup(line))) {
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: merge %d", path, n + 1);
            break;
        }
        memmove(sp, sp + 1, strlen(sp)); /* the merged symbol: a and b joined */
        if (!str_put(b, line, l - 1, 2 * NBYTES + n)) {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s:%d: symbol too long", path, lineno);
            n++;
            break;
        }
        n++;
    }
    gzclose(gz);
    if (rc == VLP_OK && n == 0)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: no merges after the header", path);
    for (int r = 0; rc == VLP_OK && r < n; r++) {
        char *sp = strchr(lines[r], ' ');
        *sp = '\0';
        int32_t x = str_get(b, lines[r]), y = str_get(b, sp + 1);
        *sp = ' ';
        size_t la = strlen(lines[r]);
        memmove(lines[r] + (sp - lines[r]), sp + 1, la - (size_t)(sp - lines[r]));
        int32_t merged = str_get(b, lines[r]);
        if (x < 0 || y < 0)
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s: merge %d uses a symbol no earlier line made", path, r + 1);
        else pair_put(b, x, y, r, merged);
    }
    for (int r = 0; lines && r < n; r++) free(lines[r]);
    free(lines);
    if (rc == VLP_OK) {
        b->nmerges = n;
        b->sot = 2 * NBYTES + n, b->eot = b->sot + 1, b->vocab = b->eot + 1;
        int ecode;
        PCRE2_SIZE eoff;
        const char *pat = "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
        b->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS,
                              &ecode, &eoff, NULL);
        if (!b->re) rc = vlp_error_set(err, VLP_ERR_UNSUPPORTED, __FILE__, __LINE__,
                                       "PCRE2 cannot compile the pre-tokenizer (error %d)", ecode);
    }
    if (rc != VLP_OK) {
        bpe_free(b);
        return rc;
    }
    *out = (vlp_tokenizer){.impl = b, .vocab_size = b->vocab, .encode = bpe_encode_ctx, .free = bpe_free};
    return VLP_OK;
}
