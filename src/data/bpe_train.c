#include "data/bpe_train.h"
#include "core/error.h"
#include "core/hashmap.h"
#include "data/bpe.h"
#include "data/pretok.h"
#include "io/atomic.h"

#include <stdlib.h>
#include <string.h>

typedef struct word {
    int32_t *sym;
    int len;
    int64_t count;
} word;

typedef struct trainer_state {
    word *words;
    int nwords, cap;
    char **sym_str;  // (nsyms) UTF-8 of each symbol
    int nsyms, sym_cap;
} tstate;

static void tstate_free(tstate *t) {
    for (int i = 0; i < t->nwords; i++) free(t->words[i].sym);
    for (int i = 0; i < t->nsyms; i++) free(t->sym_str[i]);
    free(t->words), free(t->sym_str);
}

static bool add_symbol(tstate *t, char *s) {
    if (!s) return false;
    if (t->nsyms == t->sym_cap) {
        char **g = realloc(t->sym_str, sizeof(char *) * (size_t)(t->sym_cap = t->sym_cap ? 2 * t->sym_cap : 1024));
        if (!g) return free(s), false;
        t->sym_str = g;
    }
    t->sym_str[t->nsyms++] = s;
    return true;
}

/* distinct words with counts; words are the pieces of the pre-tokenizer */
static vlp_err count_words(tstate *t, const char *const *texts, int n, vlp_error *err) {
    pretok *pre;
    VLP_TRY(pretok_create(&pre, err));
    str_map index;
    int32_t cp_of_id[256], id_of_byte[256];
    bpe_byte_symbols(cp_of_id, id_of_byte);
    bool ok = str_map_init(&index, 4096);
    for (int i = 0; ok && i < n; i++) {
        char *clean = pretok_clean(texts[i]);
        pretok_iter it = {0};
        if (!clean || !pretok_begin(pre, &it)) {
            free(clean), pretok_end(&it);
            ok = false;
            break;
        }
        size_t len = strlen(clean), s, e;
        while (ok && pretok_next(pre, &it, clean, len, &s, &e)) {
            if ((e - s == 15 && !memcmp(clean + s, "<start_of_text>", 15)) ||
                (e - s == 13 && !memcmp(clean + s, "<end_of_text>", 13)))
                continue; /* special tokens are not learnt */
            int32_t w = str_map_get(&index, clean + s, e - s);
            if (w >= 0) {
                t->words[w].count++;
                continue;
            }
            if (t->nwords == t->cap) {
                word *g = realloc(t->words, sizeof(word) * (size_t)(t->cap = t->cap ? 2 * t->cap : 1024));
                if (!g) { ok = false; break; }
                t->words = g;
            }
            word *wd = &t->words[t->nwords];
            wd->sym = malloc(sizeof(int32_t) * (e - s));
            if (!wd->sym || !str_map_put(&index, clean + s, e - s, t->nwords)) {
                free(wd->sym);
                ok = false;
                break;
            }
            for (size_t k = s; k < e; k++) wd->sym[k - s] = id_of_byte[(uint8_t)clean[k]];
            wd->sym[e - s - 1] += 256;
            wd->len = (int)(e - s), wd->count = 1;
            t->nwords++;
        }
        pretok_end(&it);
        free(clean);
    }
    str_map_free(&index);
    pretok_free(pre);
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "word counts of %d texts", n);
    /* the 512 base symbols' strings */
    char buf[16];
    for (int id = 0; ok && id < 512; id++) {
        size_t k = bpe_symbol_utf8(buf, cp_of_id[id % 256]);
        if (id >= 256) memcpy(buf + k, "</w>", 4), k += 4;
        buf[k] = '\0';
        ok = add_symbol(t, strdup(buf));
    }
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "symbol table");
    return VLP_OK;
}

static uint64_t pair_key(int32_t x, int32_t y) { return (uint64_t)(uint32_t)x << 32 | (uint32_t)y; }

/* the most frequent pair (ties: smallest strings); false when none reaches min_count */
static bool best_pair(const tstate *t, int min_count, int32_t *bx, int32_t *by, vlp_err *rc) {
    u64_map counts;
    if (!u64_map_init(&counts, 1 << 14)) return *rc = VLP_ERR_NOMEM, false;
    int64_t best = 0;
    for (int w = 0; w < t->nwords; w++) {
        const word *wd = &t->words[w];
        for (int i = 0; i + 1 < wd->len; i++) {
            /* counts as two int32 halves: lo in v[0], hi in v[1] */
            int32_t *v = u64_map_slot(&counts, pair_key(wd->sym[i], wd->sym[i + 1]), 0, 0);
            if (!v) {
                u64_map_free(&counts);
                return *rc = VLP_ERR_NOMEM, false;
            }
            int64_t c = ((int64_t)v[1] << 31 | v[0]) + wd->count;
            v[0] = (int32_t)(c & 0x7FFFFFFF), v[1] = (int32_t)(c >> 31);
            int32_t x = wd->sym[i], y = wd->sym[i + 1];
            int cmp = 0;
            if (c == best) {
                cmp = strcmp(t->sym_str[x], t->sym_str[*bx]);
                if (!cmp) cmp = strcmp(t->sym_str[y], t->sym_str[*by]);
            }
            if (c > best || (c == best && cmp < 0)) best = c, *bx = x, *by = y;
        }
    }
    u64_map_free(&counts);
    return best >= min_count && best > 0;
}

static bool apply_merge(tstate *t, int32_t x, int32_t y) {
    size_t lx = strlen(t->sym_str[x]), ly = strlen(t->sym_str[y]);
    char *s = malloc(lx + ly + 1);
    if (!s) return false;
    memcpy(s, t->sym_str[x], lx), memcpy(s + lx, t->sym_str[y], ly + 1);
    int32_t id = t->nsyms;
    if (!add_symbol(t, s)) return false;
    for (int w = 0; w < t->nwords; w++) {
        word *wd = &t->words[w];
        int m = 0;
        for (int i = 0; i < wd->len; i++) {
            if (i + 1 < wd->len && wd->sym[i] == x && wd->sym[i + 1] == y) wd->sym[m++] = id, i++;
            else wd->sym[m++] = wd->sym[i];
        }
        wd->len = m;
    }
    return true;
}

vlp_err bpe_train(const char *const *texts, int n, int merges, int min_count, const char *out_path,
                  int *learnt, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && merges > 0 && min_count > 0, err,
                  "need texts (%d), merges > 0 (%d) and min_count > 0 (%d)", n, merges, min_count);
    tstate t = {0};
    vlp_err rc = count_words(&t, texts, n, err);
    int made = 0;
    atomic_file af = {0};
    if (rc == VLP_OK) rc = atomic_open(&af, out_path, err);
    if (rc == VLP_OK) {
        const char *hdr = "#version: 0.2 - learnt by vlp data tokenizer";
        atomic_write(&af, hdr, strlen(hdr));
        for (; made < merges; made++) {
            int32_t x = 0, y = 0;
            vlp_err e = VLP_OK;
            if (!best_pair(&t, min_count, &x, &y, &e)) {
                if (e != VLP_OK) rc = vlp_error_set(err, e, __FILE__, __LINE__, "pair counts");
                break;
            }
            /* newline before each merge, none after the last: open_clip would read an
             * empty last line as one more vocabulary entry */
            atomic_write(&af, "\n", 1);
            atomic_write(&af, t.sym_str[x], strlen(t.sym_str[x]));
            atomic_write(&af, " ", 1);
            atomic_write(&af, t.sym_str[y], strlen(t.sym_str[y]));
            if (!apply_merge(&t, x, y)) {
                rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "merge %d", made + 1);
                break;
            }
        }
        if (rc == VLP_OK && made == 0)
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                               "no pair of symbols occurs %d times in %d texts: nothing to learn",
                               min_count, n);
        if (rc == VLP_OK) rc = atomic_commit(&af, err);
        else atomic_abort(&af);
    }
    tstate_free(&t);
    if (rc == VLP_OK && learnt) *learnt = made;
    return rc;
}
