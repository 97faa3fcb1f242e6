#include "data/wordtok.h"
#include "core/error.h"
#include "io/atomic.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORD_MAX 64
#define MAGIC "vlp-wordtok 1\n"

typedef struct word {
    char *text;
    int count;
} word;

typedef struct wordtok {
    int nwords;
    word *words;   // sorted by text, for lookup
    int *id_of;    // id of words[i]
    char **by_id;  // text of id 2 + k
} wordtok;

/* The next word of *s into buf (lower-cased, cut at WORD_MAX-1 bytes); 0 at the end. */
static int next_word(const char **s, char *buf) {
    const unsigned char *p = (const unsigned char *)*s;
    while (*p && !isalnum(*p)) p++;
    if (!*p) return 0;
    int n = 0;
    while (*p && isalnum(*p)) {
        if (n < WORD_MAX - 1) buf[n++] = (char)tolower(*p);
        p++;
    }
    buf[n] = '\0';
    *s = (const char *)p;
    return 1;
}

static int by_text(const void *a, const void *b) {
    return strcmp(((const word *)a)->text, ((const word *)b)->text);
}

static void wt_free(void *impl) {
    wordtok *w = impl;
    if (!w) return;
    for (int i = 0; i < w->nwords; i++) free(w->words[i].text);
    free(w->words), free(w->id_of), free(w->by_id), free(w);
}

static void wt_encode(const void *impl, const char *text, int32_t *ids, int ctx) {
    const wordtok *w = impl;
    int sot = w->nwords + 2, eot = sot + 1, n = 0;
    char buf[WORD_MAX];
    ids[n++] = sot;
    while (n < ctx && next_word(&text, buf)) {
        word key = {buf, 0};
        word *hit = bsearch(&key, w->words, (size_t)w->nwords, sizeof(word), by_text);
        ids[n++] = hit ? w->id_of[hit - w->words] : WORDTOK_UNK;
    }
    if (n < ctx) ids[n++] = eot;
    else ids[ctx - 1] = eot; /* open_clip: truncate, the last id becomes the end token */
    while (n < ctx) ids[n++] = WORDTOK_PAD;
}

/* words sorted by text; assigns ids in the order of `order` (indices into words) */
static vlp_err finish(wordtok *w, const int *order, vlp_tokenizer *out, vlp_error *err) {
    w->id_of = malloc(sizeof(int) * (size_t)(w->nwords + 1));
    w->by_id = malloc(sizeof(char *) * (size_t)(w->nwords + 1));
    if (!w->id_of || !w->by_id) {
        int nw = w->nwords;
        wt_free(w);
        VLP_FAIL(err, VLP_ERR_NOMEM, "tokenizer of %d words", nw);
    }
    for (int k = 0; k < w->nwords; k++) {
        w->id_of[order[k]] = 2 + k;
        w->by_id[k] = w->words[order[k]].text;
    }
    *out = (vlp_tokenizer){.impl = w, .vocab_size = w->nwords + 4, .encode = wt_encode,
                           .free = wt_free};
    return VLP_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* most frequent first, ties alphabetical: the same ids on every machine */
static int by_count(const void *a, const void *b, void *ctx) {
    const word *ws = ctx, *x = &ws[*(const int *)a], *y = &ws[*(const int *)b];
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->text, y->text);
}

static void free_strings(char **s, size_t n) {
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

vlp_err wordtok_build(const char *const *texts, int n, int min_count, vlp_tokenizer *out,
                      vlp_error *err) {
    /* every word occurrence, then sort and count the runs */
    size_t cap = 1024, len = 0;
    char **all = malloc(cap * sizeof(char *));
    VLP_CHECK_ALLOC(all, err, cap * sizeof(char *));
    char buf[WORD_MAX];
    for (int i = 0; i < n; i++) {
        const char *s = texts[i];
        while (next_word(&s, buf)) {
            char **grown = len == cap ? realloc(all, (cap * 2) * sizeof(char *)) : all;
            char *copy = grown ? strdup(buf) : NULL;
            if (!copy) {
                free_strings(grown ? grown : all, len);
                VLP_FAIL(err, VLP_ERR_NOMEM, "word list of %zu words", len);
            }
            if (grown != all) cap *= 2;
            all = grown;
            all[len++] = copy;
        }
    }
    qsort(all, len, sizeof(char *), cmp_str);
    wordtok *w = calloc(1, sizeof *w);
    word *ws = w ? malloc(sizeof(word) * (len + 1)) : NULL;
    int *order = ws ? malloc(sizeof(int) * (len + 1)) : NULL;
    if (!order) {
        free(w), free(ws);
        free_strings(all, len);
        VLP_FAIL(err, VLP_ERR_NOMEM, "tokenizer of %zu words", len);
    }
    int nw = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && !strcmp(all[j], all[i])) j++;
        if ((int)(j - i) >= min_count) {
            ws[nw] = (word){all[i], (int)(j - i)};
            all[i] = NULL; /* kept */
            nw++;
        }
        i = j;
    }
    free_strings(all, len);
    w->words = ws;
    w->nwords = nw;
    for (int k = 0; k < nw; k++) order[k] = k;
    qsort_r(order, (size_t)nw, sizeof(int), by_count, ws);
    vlp_err rc = finish(w, order, out, err);
    free(order);
    return rc;
}

vlp_err wordtok_save(const vlp_tokenizer *t, const char *path, vlp_error *err) {
    const wordtok *w = t->impl;
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    atomic_write(&af, MAGIC, strlen(MAGIC));
    for (int k = 0; k < w->nwords; k++) {
        atomic_write(&af, w->by_id[k], strlen(w->by_id[k]));
        atomic_write(&af, "\n", 1);
    }
    return atomic_commit(&af, err);
}

vlp_err wordtok_load(const char *path, vlp_tokenizer *out, vlp_error *err) {
    FILE *fp = fopen(path, "rb");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    char line[WORD_MAX + 2];
    if (!fgets(line, sizeof line, fp) || strcmp(line, MAGIC)) {
        fclose(fp);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: line 1 is not \"vlp-wordtok 1\"", path);
    }
    wordtok *w = calloc(1, sizeof *w);
    size_t cap = 0;
    int lineno = 1;
    vlp_err rc = w ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "tokenizer");
    while (rc == VLP_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n') {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s:%d: word longer than %d bytes or no final newline", path,
                               lineno, WORD_MAX - 1);
            break;
        }
        line[--l] = '\0';
        bool ok = l > 0;
        for (size_t i = 0; ok && i < l; i++)
            ok = isalnum((unsigned char)line[i]) && !isupper((unsigned char)line[i]);
        if (!ok) {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s:%d: '%s' is not a lower-case word", path, lineno, line);
            break;
        }
        word *g = (size_t)w->nwords < cap ? w->words
                                          : realloc(w->words, sizeof(word) * (cap = cap ? 2 * cap : 1024));
        if (g) w->words = g;
        char *copy = g ? strdup(line) : NULL;
        if (!copy) {
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: line %d", path, lineno);
            break;
        }
        /* count holds the id order until the words are sorted */
        w->words[w->nwords] = (word){copy, w->nwords};
        w->nwords++;
    }
    if (rc == VLP_OK && ferror(fp))
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "%s: read error after line %d", path, lineno);
    fclose(fp);
    int *order = rc == VLP_OK ? malloc(sizeof(int) * (size_t)(w->nwords + 1)) : NULL;
    if (rc == VLP_OK && !order) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "tokenizer");
    if (rc == VLP_OK) {
        qsort(w->words, (size_t)w->nwords, sizeof(word), by_text);
        for (int i = 0; rc == VLP_OK && i < w->nwords; i++) {
            if (i > 0 && !strcmp(w->words[i - 1].text, w->words[i].text))
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                                   "%s: '%s' is listed twice", path, w->words[i].text);
            order[w->words[i].count] = i;
        }
    }
    if (rc != VLP_OK) {
        free(order);
        wt_free(w);
        return rc;
    }
    rc = finish(w, order, out, err);
    free(order);
    return rc;
}
