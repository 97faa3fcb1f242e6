#include "data/bpe.h"
#include "core/error.h"
#include "core/hashmap.h"
#include "data/pretok.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NBYTES 256

typedef struct bpe {
    str_map strs;  // symbol string → id
    u64_map pairs; // (a << 32 | b) → (rank, id of a+b)
    int nmerges, vocab;
    int32_t sot, eot;
    int32_t byte_id[NBYTES]; // byte → id of its printable symbol
    pretok *pre;
    /* decoding: id's text at text + text_off[id] .. text_off[id + 1] (bytes,
     * "</w>" as a space); the start/end tokens decode to nothing */
    char *text;
    uint32_t *text_off; // (vocab + 1)
} bpe;

static uint64_t pair_key(int32_t x, int32_t y) { return (uint64_t)(uint32_t)x << 32 | (uint32_t)y; }

static void bpe_free(void *impl) {
    bpe *b = impl;
    if (!b) return;
    str_map_free(&b->strs);
    u64_map_free(&b->pairs);
    pretok_free(b->pre);
    free(b->text), free(b->text_off);
    free(b);
}

/* bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n */
void bpe_byte_symbols(int32_t cp_of_id[NBYTES], int32_t id_of_byte[NBYTES]) {
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

size_t bpe_symbol_utf8(char *out, int32_t cp) {
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
            int32_t rank, m;
            if (u64_map_get(&b->pairs, pair_key(sym[i], sym[i + 1]), &rank, &m) && rank < best)
                best = rank, x = sym[i], y = sym[i + 1], merged = m;
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

int bpe_encode_ids(const text_tokenizer *t, const char *text, int32_t *ids, int cap) {
    const bpe *b = t->impl;
    char *clean = pretok_clean(text);
    size_t len = clean ? strlen(clean) : 0;
    int32_t *sym = clean ? malloc(sizeof(int32_t) * (len + 1)) : NULL;
    pretok_iter it = {0};
    if (!sym || !pretok_begin(b->pre, &it)) {
        free(clean), free(sym);
        return -1;
    }
    int n = 0;
    size_t s, e;
    while (pretok_next(b->pre, &it, clean, len, &s, &e)) {
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
    pretok_end(&it);
    free(clean), free(sym);
    return n;
}

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (bad lead or continuation byte, overlong form, surrogate, > U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
    int len = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
            : s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    for (int k = 1; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (len == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return len;
}

static size_t bpe_decode(const void *impl, const int32_t *ids, int n, char *out, size_t cap) {
    const bpe *b = impl;
    /* the ids' bytes, then as UTF-8 with each invalid byte replaced by U+FFFD
     * (open_clip's errors="replace"): byte-level tokens can split a character */
    size_t raw = 0;
    for (int i = 0; i < n && ids[i] != b->eot; i++)
        if (ids[i] >= 0 && ids[i] < b->sot) raw += b->text_off[ids[i] + 1] - b->text_off[ids[i]];
    uint8_t *bytes = malloc(raw + 1);
    if (!bytes) {
        if (cap) out[0] = '\0';
        return 0;
    }
    size_t k = 0;
    for (int i = 0; i < n && ids[i] != b->eot; i++) { /* the padding after the end token too */
        if (ids[i] < 0 || ids[i] >= b->sot) continue;
        size_t s0 = b->text_off[ids[i]], e = b->text_off[ids[i] + 1];
        memcpy(bytes + k, b->text + s0, e - s0), k += e - s0;
    }
    while (k > 0 && bytes[k - 1] == ' ') k--; /* the last word's </w> */
    size_t len = 0, written = 0;
    bool full = false; /* cut at a character boundary; the full length is still counted */
    for (size_t i = 0; i < k;) {
        int v = utf8_valid(bytes + i, k - i);
        const uint8_t *c = v ? bytes + i : (const uint8_t *)"\xEF\xBF\xBD";
        size_t cl = v ? (size_t)v : 3;
        if (!full && written + cl < cap) memcpy(out + written, c, cl), written += cl;
        else full = true;
        len += cl;
        i += v ? (size_t)v : 1;
    }
    if (cap) out[written] = '\0';
    free(bytes);
    return len;
}

/* A symbol string of the byte alphabet (UTF-8 of bytes_to_unicode's code
 * points, "</w>" ending a word) as the bytes it stands for; returns the count. */
static size_t symbol_bytes(const char *sym, size_t n, const uint8_t byte_of_cp[2 * NBYTES], char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 4 && !memcmp(sym + i, "</w>", 4)) {
            out[k++] = ' ', i += 4;
            continue;
        }
        uint8_t c = (uint8_t)sym[i];
        int32_t cp = c < 0x80 ? c : c < 0xE0 ? (c & 31) << 6 | (sym[i + 1] & 63) : 0;
        i += c < 0x80 ? 1 : c < 0xE0 ? 2 : 3;
        out[k++] = (char)byte_of_cp[cp < 2 * NBYTES ? cp : 0];
    }
    return k;
}

static bool build_decoder(bpe *b, char **lines, int n) {
    int32_t cp_of_id[NBYTES], id_of_byte[NBYTES];
    bpe_byte_symbols(cp_of_id, id_of_byte);
    uint8_t byte_of_cp[2 * NBYTES] = {0};
    for (int x = 0; x < NBYTES; x++) byte_of_cp[cp_of_id[id_of_byte[x]]] = (uint8_t)x;
    size_t total = 4 * NBYTES;
    for (int r = 0; r < n; r++) total += strlen(lines[r]);
    b->text = malloc(total + 1);
    int vocab = 2 * NBYTES + n + 2; /* bytes, bytes ending a word, merges, start, end */
    b->text_off = malloc(sizeof(uint32_t) * ((size_t)vocab + 1));
    if (!b->text || !b->text_off) return false;
    size_t k = 0;
    for (int id = 0; id < 2 * NBYTES; id++) { /* a byte, then the byte ending a word */
        b->text_off[id] = (uint32_t)k;
        b->text[k++] = (char)byte_of_cp[cp_of_id[id % NBYTES]];
        if (id >= NBYTES) b->text[k++] = ' ';
    }
    for (int r = 0; r < n; r++) {
        b->text_off[2 * NBYTES + r] = (uint32_t)k;
        const char *sp = strchr(lines[r], ' ');
        if (!sp) continue;
        k += symbol_bytes(lines[r], (size_t)(sp - lines[r]), byte_of_cp, b->text + k);
        k += symbol_bytes(sp + 1, strlen(sp + 1), byte_of_cp, b->text + k);
    }
    for (int id = 2 * NBYTES + n; id <= vocab; id++) b->text_off[id] = (uint32_t)k;
    return true;
}

static void bpe_encode_ctx(const void *impl, const char *text, int32_t *ids, int ctx) {
    const bpe *b = impl;
    text_tokenizer t = {.impl = (void *)impl};
    ids[0] = b->sot;
    int n = bpe_encode_ids(&t, text, ids + 1, ctx - 1);
    if (n < 0) n = 0; /* out of memory: an empty text rather than garbage */
    if (n + 2 > ctx) ids[ctx - 1] = b->eot; /* open_clip: cut to ctx, the last id the end token */
    else {
        ids[n + 1] = b->eot;
        memset(ids + n + 2, 0, sizeof(int32_t) * (size_t)(ctx - n - 2));
    }
}

/* The lines after the header, up to max, as open_clip reads them:
 * content.split('\n')[1:max + 1]. An empty line is an entry too (a merge
 * of nothing, which takes an id and is never produced), and so is the empty
 * string after a final newline when fewer than max lines came before it. */
#define MERGE_LINE_MAX (1 << 20) /* a merge of two symbols of a word: any learnt one fits */

/* One line of any length up to MERGE_LINE_MAX into *buf (grown): false at
 * the end of the file, or with *too_long when a line exceeds the bound. */
static bool gz_line(gzFile gz, char **buf, size_t *cap, bool *too_long) {
    size_t len = 0;
    *too_long = false;
    for (;;) {
        if (*cap - len < 2) {
            size_t ncap = *cap ? 2 * *cap : 256;
            char *g = ncap <= MERGE_LINE_MAX + 2 ? realloc(*buf, ncap) : NULL;
            if (!g) {
                *too_long = true;
                return false;
            }
            *buf = g, *cap = ncap;
        }
        if (!gzgets(gz, *buf + len, (int)(*cap - len))) return len > 0;
        len += strlen(*buf + len);
        if (len && (*buf)[len - 1] == '\n') return true;
        if (gzeof(gz)) return true;
    }
}

static vlp_err read_merges(const char *path, int max, char ***lines_out, int *n_out, vlp_error *err) {
    gzFile gz = gzopen(path, "rb");
    VLP_CHECK_IO(gz, err, "cannot open %s", path);
    char *line = NULL;
    size_t line_cap = 0;
    char **lines = NULL;
    size_t cap = 0;
    int n = 0, lineno = 0, real = 0;
    bool ended_nl = false;
    vlp_err rc = VLP_OK;
    for (;;) {
        bool too_long = false;
        bool got = n < max && gz_line(gz, &line, &line_cap, &too_long);
        if (too_long) {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s:%d: a line longer than %d bytes", path, lineno + 1, MERGE_LINE_MAX);
            break;
        }
        if (!got) {
            if (n < max && ended_nl && lineno >= 1) { /* the split's last, empty entry */
                if (!line && !(line = malloc(line_cap = 1))) {
                    rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: a line", path);
                    break;
                }
                line[0] = '\0';
            } else break;
        } else {
            lineno++;
            size_t l = strlen(line);
            ended_nl = l && line[l - 1] == '\n';
            if (ended_nl) line[--l] = '\0';
            if (lineno == 1) continue; /* "#version: 0.2" */
            char *sp = strchr(line, ' ');
            if (l > 0 && (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                                   "%s:%d: a merge is two symbols separated by one space", path, lineno);
                break;
            }
            real += l > 0;
        }
        char **g = (size_t)n < cap ? lines : realloc(lines, sizeof(char *) * (cap = cap ? 2 * cap : 1024));
        if (g) lines = g;
        if (!g || !(lines[n] = strdup(line))) {
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: merge %d", path, n + 1);
            break;
        }
        n++;
        if (!got) break;
    }
    int zerr = Z_OK;
    gzerror(gz, &zerr);
    if (rc == VLP_OK && zerr < 0 && zerr != Z_BUF_ERROR)
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "%s: read error (corrupt gzip?)", path);
    gzclose(gz);
    free(line);
    if (rc == VLP_OK && real == 0)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: no merges after the header", path);
    if (rc != VLP_OK) {
        for (int i = 0; i < n; i++) free(lines[i]);
        free(lines);
        return rc;
    }
    *lines_out = lines, *n_out = n;
    return VLP_OK;
}

static vlp_err build_tables(bpe *b, char **lines, int n, const char *path, vlp_error *err) {
    if (!str_map_init(&b->strs, (size_t)n + 2 * NBYTES) || !u64_map_init(&b->pairs, (size_t)n))
        VLP_FAIL(err, VLP_ERR_NOMEM, "tokenizer tables of %d merges", n);
    int32_t cp_of_id[NBYTES];
    bpe_byte_symbols(cp_of_id, b->byte_id);
    char sym[16];
    bool ok = true;
    for (int id = 0; id < NBYTES; id++) {
        size_t k = bpe_symbol_utf8(sym, cp_of_id[id]);
        ok = ok && str_map_put(&b->strs, sym, k, id);
        memcpy(sym + k, "</w>", 4);
        ok = ok && str_map_put(&b->strs, sym, k + 4, NBYTES + id);
    }
    /* every symbol string first (later ones win, as Python's dict), then the pairs */
    for (int r = 0; ok && r < n; r++) {
        char *sp = strchr(lines[r], ' ');
        if (!sp) continue; /* an empty entry: an id, no symbol */
        size_t la = (size_t)(sp - lines[r]), lb = strlen(sp + 1);
        memmove(sp, sp + 1, lb + 1); /* "a b" → "ab" */
        ok = str_map_put(&b->strs, lines[r], la + lb, 2 * NBYTES + r);
        memmove(sp + 1, sp, lb + 1), *sp = ' '; /* back to "a b" */
    }
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "tokenizer tables of %d merges", n);
    for (int r = 0; r < n; r++) {
        char *sp = strchr(lines[r], ' ');
        if (!sp) continue;
        size_t la = (size_t)(sp - lines[r]), lb = strlen(sp + 1);
        int32_t x = str_map_get(&b->strs, lines[r], la), y = str_map_get(&b->strs, sp + 1, lb);
        VLP_CHECK_FORMAT(x >= 0 && y >= 0, err, "%s: merge %d ('%s') uses a symbol that no line makes",
                         path, r + 1, lines[r]);
        memmove(sp, sp + 1, lb + 1);
        int32_t merged = str_map_get(&b->strs, lines[r], la + lb);
        VLP_CHECK(u64_map_put(&b->pairs, pair_key(x, y), r, merged), err, VLP_ERR_NOMEM, "merge table");
    }
    b->nmerges = n;
    b->sot = 2 * NBYTES + n, b->eot = b->sot + 1, b->vocab = b->eot + 1;
    return pretok_create(&b->pre, err);
}

vlp_err bpe_load(const char *path, int max_merges, text_tokenizer *out, vlp_error *err) {
    char **lines = NULL;
    int n = 0;
    VLP_TRY(read_merges(path, max_merges > 0 ? max_merges : BPE_CLIP_MERGES, &lines, &n, err));
    bpe *b = calloc(1, sizeof *b);
    /* the decoder first: build_tables joins the lines' pairs in place */
    vlp_err rc = !b ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "tokenizer")
                 : !build_decoder(b, lines, n)
                     ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the tokenizer's decoding table")
                     : build_tables(b, lines, n, path, err);
    for (int r = 0; r < n; r++) free(lines[r]);
    free(lines);
    if (rc != VLP_OK) {
        bpe_free(b);
        return rc;
    }
    *out = (text_tokenizer){.impl = b, .vocab_size = b->vocab, .encode = bpe_encode_ctx,
                           .decode = bpe_decode, .free = bpe_free};
    return VLP_OK;
}
