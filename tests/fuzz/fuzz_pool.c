/* The curation tools' pool: a shard (or, by the first byte, a TSV table)
 * read sample by sample with every member or column, written back as shards
 * (a table from a table), and the output read back: a round trip. The
 * writer's count and what a reader finds in the output must equal what was
 * added, sample by sample (a shard's members with their bytes and
 * extensions, a table's captions by the TSV rule: tabs and line breaks
 * become spaces), or the target aborts (issue 31: two kept samples with one
 * key were read back as one, and the report said 2). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "curate/pool.h"
#include "data/tar.h"
#include "fuzz.h"

#define MAX_SAMPLES 64

/* what was added: a shard sample's members (name's extension, bytes) or a table row's caption */
typedef struct {
    int n;
    char **ext;
    uint8_t **data;
    size_t *len;
    char *caption;
} added;

static void added_free(added *a) {
    for (int i = 0; i < a->n; i++) free(a->ext[i]), free(a->data[i]);
    free(a->ext), free(a->data), free(a->len), free(a->caption);
}

static char *dup_bytes(const void *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) memcpy(d, p, n), d[n] = '\0';
    return d;
}

static void remember(added *a, const pool_sample *s) {
    *a = (added){0};
    if (s->fields) { /* TSV: what the writer's field rule makes of the caption */
        a->caption = strdup(s->caption);
        for (char *c = a->caption; c && *c; c++)
            if (*c == '\t' || *c == '\n' || *c == '\r') *c = ' ';
        return;
    }
    a->n = s->nmembers;
    a->ext = calloc((size_t)a->n + 1, sizeof *a->ext), a->data = calloc((size_t)a->n + 1, sizeof *a->data);
    a->len = calloc((size_t)a->n + 1, sizeof *a->len);
    for (int i = 0; a->ext && a->data && a->len && i < a->n; i++) {
        char key[4096];
        const char *ext;
        wds_split_key(s->members[i].name, key, sizeof key, &ext);
        a->ext[i] = strdup(ext);
        a->data[i] = (uint8_t *)dup_bytes(s->members[i].data, s->members[i].len);
        a->len[i] = s->members[i].len;
    }
}

static bool same(const added *a, const pool_sample *s) {
    if (a->caption) return s->caption && !strcmp(a->caption, s->caption);
    if (s->nmembers != a->n) return false;
    for (int i = 0; i < a->n; i++) {
        char key[4096];
        const char *ext;
        wds_split_key(s->members[i].name, key, sizeof key, &ext);
        if (!a->ext[i] || strcmp(ext, a->ext[i]) || s->members[i].len != a->len[i] ||
            memcmp(s->members[i].data, a->data[i], a->len[i]))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool table = size > 0 && data[0] == 'f'; /* "filepath\t..." */
    const char *path = fuzz_file(data, size, table ? ".tsv" : ".tar");
    pool_opts o = pool_opts_default();
    o.read_images = false;
    pool *p;
    if (!path || pool_open(&p, path, &o, NULL) != VLP_OK) return 0;
    char out[64];
    snprintf(out, sizeof out, "/tmp/vlp-fuzz-pool-%d%s", (int)getpid(), table ? ".tsv" : "");
    pool_writer *w = NULL;
    if (pool_writer_open(&w, out, p, 4, NULL) != VLP_OK) abort();
    pool_sample s = {0};
    added in[MAX_SAMPLES];
    int n = 0;
    while (n < MAX_SAMPLES) {
        bool done;
        if (pool_next(p, &s, &done, NULL) != VLP_OK || done) break;
        if (pool_writer_add(w, &s, NULL) != VLP_OK) { /* a name ustar cannot hold: refused, said, nothing left */
            pool_sample_free(&s);
            pool_writer_free(w);
            pool_free(p);
            for (int i = 0; i < n; i++) added_free(&in[i]);
            if (access(out, F_OK) == 0 || (snprintf(out + strlen(out), 16, "-00000.tar"), access(out, F_OK) == 0))
                abort();
            return 0;
        }
        remember(&in[n++], &s);
    }
    pool_sample_free(&s);
    int64_t written = -1;
    long shards = 0;
    bool finished = pool_writer_finish(w, &written, &shards, NULL) == VLP_OK;
    pool_writer_free(w);
    pool_free(p);
    if (!finished || written != n) abort();
    /* the output as a reader finds it */
    char spec[64 * 20 + 16] = "";
    if (table) snprintf(spec, sizeof spec, "%s", out);
    for (long k = 0; !table && k < shards && k < 20; k++)
        snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s%s-%05ld.tar", k ? "::" : "", out, k);
    int got = 0;
    if (spec[0] && pool_open(&p, spec, &o, NULL) == VLP_OK) {
        for (;;) {
            bool done;
            if (pool_next(p, &s, &done, NULL) != VLP_OK) abort();
            if (done) break;
            if (got >= n || !same(&in[got], &s)) abort();
            got++;
        }
        pool_sample_free(&s);
        if (pool_skipped(p, NULL)) abort();
        pool_free(p);
    }
    if (got != n) abort();
    for (int i = 0; i < n; i++) added_free(&in[i]);
    char shard[96];
    for (long k = 0; k < shards; k++) { /* what the writer left */
        snprintf(shard, sizeof shard, "%s-%05ld.tar", out, k);
        unlink(shard);
    }
    unlink(out);
    return 0;
}
