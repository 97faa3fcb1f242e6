#include "data/dataset.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/table.h"
#include "data/tar.h"
#include "io/file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dataset_opts dataset_opts_default(void) {
    return (dataset_opts){.image_key = "filepath", .caption_key = "title", .shuffle = true,
                          .shuffle_buffer = 1000, .seed = 0, .rank = 0, .world = 1};
}

void raw_sample_free(raw_sample *s) {
    free(s->image), free(s->caption), free(s->alt_caption);
    s->image = NULL, s->caption = s->alt_caption = NULL;
}

/* ---- brace expansion ---------------------------------------------------------------------- */

typedef struct strvec {
    char **v;
    int n, cap;
} strvec;

static bool push(strvec *s, char *str) {
    if (!str) return false;
    if (s->n == s->cap) {
        char **g = realloc(s->v, sizeof(char *) * (size_t)(s->cap = s->cap ? 2 * s->cap : 16));
        if (!g) return free(str), false;
        s->v = g;
    }
    s->v[s->n++] = str;
    return true;
}

static void strvec_free(strvec *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static char *join3(const char *a, size_t la, const char *b, size_t lb, const char *c) {
    size_t lc = strlen(c);
    char *r = malloc(la + lb + lc + 1);
    if (!r) return NULL;
    memcpy(r, a, la), memcpy(r + la, b, lb), memcpy(r + la + lb, c, lc + 1);
    return r;
}

/* expands the first {...} of p, recursing on the rest */
static bool expand(const char *p, strvec *out) {
    const char *open = strchr(p, '{');
    if (!open) return push(out, strdup(p));
    const char *close = strchr(open, '}');
    if (!close) return false;
    size_t pre = (size_t)(open - p);
    char body[256];
    size_t bl = (size_t)(close - open - 1);
    if (bl >= sizeof body) return false;
    memcpy(body, open + 1, bl), body[bl] = '\0';
    const char *dots = strstr(body, "..");
    if (dots) { /* numeric range, zero-padded to the width of the first bound */
        char *e1, *e2;
        long lo = strtol(body, &e1, 10), hi = strtol(dots + 2, &e2, 10);
        if (e1 != dots || *e2 || hi < lo || hi - lo > 10000000) return false;
        int width = (int)(dots - body);
        for (long v = lo; v <= hi; v++) {
            char num[32];
            snprintf(num, sizeof num, "%0*ld", width, v);
            char *head = join3(p, pre, num, strlen(num), "");
            char *full = head ? join3(head, strlen(head), "", 0, close + 1) : NULL;
            free(head);
            if (!full) return false;
            bool ok = expand(full, out);
            free(full);
            if (!ok) return false;
        }
        return true;
    }
    char *save, *alt = strtok_r(body, ",", &save); /* {a,b,c} */
    if (!alt) return false;
    for (; alt; alt = strtok_r(NULL, ",", &save)) {
        char *full = join3(p, pre, alt, strlen(alt), close + 1);
        if (!full) return false;
        bool ok = expand(full, out);
        free(full);
        if (!ok) return false;
    }
    return true;
}

int brace_expand(const char *pattern, char ***out) {
    strvec v = {0};
    if (!expand(pattern, &v)) {
        strvec_free(&v);
        return -1;
    }
    *out = v.v;
    return v.n;
}

/* ---- the stream -------------------------------------------------------------------------- */

typedef struct row {
    char *path, *caption, *alt;
    int line;
} row;

struct sample_stream {
    dataset_opts o;
    char *spec;
    int64_t epoch_size;
    int64_t skipped;
    char first_skip[512];
    /* TSV/CSV */
    row *rows;
    int64_t nrows;
    int64_t *order; // this epoch's rows of this rank
    int64_t norder, pos;
    /* WebDataset */
    strvec shards;
    int *shard_order;
    int nmine, shard_pos;
    tar_reader tar;
    bool tar_open;
    raw_sample pending; // a sample being assembled from members
    char pending_key[4096];
    bool have_pending;
    raw_sample *buf;    // shuffle buffer
    int nbuf;
    vlp_rng rng;
    bool shards_done;
};

static void skip(sample_stream *s, const char *fmt, const char *a, const char *b) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a, b);
    if (!s->skipped++) snprintf(s->first_skip, sizeof s->first_skip, "%s", msg);
    if (s->o.warn) s->o.warn(s->o.warn_ctx, msg);
}

int64_t stream_skipped(const sample_stream *s, const char **first) {
    if (first) *first = s->first_skip;
    return s->skipped;
}

int64_t stream_epoch_size(const sample_stream *s) { return s->epoch_size; }

void stream_set_warn(sample_stream *s, void (*warn)(void *ctx, const char *msg), void *ctx) {
    s->o.warn = warn, s->o.warn_ctx = ctx;
}

void stream_free(sample_stream *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->nrows; i++) free(s->rows[i].path), free(s->rows[i].caption), free(s->rows[i].alt);
    free(s->rows), free(s->order);
    strvec_free(&s->shards);
    free(s->shard_order);
    if (s->tar_open) tar_close(&s->tar);
    raw_sample_free(&s->pending);
    for (int i = 0; i < s->nbuf; i++) raw_sample_free(&s->buf[i]);
    free(s->buf), free(s->spec);
    free(s);
}

/* ---- TSV / CSV ------------------------------------------------------------------------------ */

static vlp_err open_table(sample_stream *s, const char *path, vlp_error *err) {
    bool csv;
    table_spec(path, &csv);
    char sep = csv ? ',' : '\t';
    FILE *fp = fopen(path, "r");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL, *fields[256];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, ci = -1, ii = -1, ai = -1, ncols = 0;
    int64_t rcap = 0;
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
    vlp_err rc = VLP_OK;
    bool too_long;
    while ((len = table_line(fp, &line, &cap, &too_long)) >= 0) {
        lineno++;
        if (too_long) {
            if (lineno == 1) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                                   "%s:1: the header is longer than %d bytes", path, TABLE_MAX_LINE);
                break;
            }
            char where[96];
            snprintf(where, sizeof where, "%d: a row longer than %d bytes", lineno, TABLE_MAX_LINE);
            skip(s, "%s:%s", path, where);
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        int nf = table_split(line, sep, csv, fields, 256);
        if (lineno == 1) {
            ncols = nf;
            for (int k = 0; k < nf; k++) {
                if (!strcmp(fields[k], s->o.image_key)) ii = k;
                if (!strcmp(fields[k], s->o.caption_key)) ci = k;
                if (s->o.alt_caption_key && !strcmp(fields[k], s->o.alt_caption_key)) ai = k;
            }
            if (ii < 0 || ci < 0 || (s->o.alt_caption_key && ai < 0)) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                                   "%s:1: the header lacks column '%s' (columns: %s%s...)", path,
                                   ii < 0 ? s->o.image_key : ci < 0 ? s->o.caption_key : s->o.alt_caption_key,
                                   nf ? fields[0] : "", nf > 1 ? ", " : "");
                break;
            }
            continue;
        }
        if (len == 0) continue;
        char where[64];
        snprintf(where, sizeof where, "%d", lineno);
        if (nf != ncols) {
            char msg[128];
            snprintf(msg, sizeof msg, "%d: %d fields, the header has %d", lineno, nf, ncols);
            skip(s, "%s:%s", path, msg);
            continue;
        }
        if (!fields[ii][0] || table_blank(fields[ci])) {
            skip(s, "%s:%s: an empty image path or caption", path, where);
            continue;
        }
        if (s->nrows == rcap) {
            row *g = realloc(s->rows, sizeof(row) * (size_t)(rcap = rcap ? 2 * rcap : 1024));
            if (!g) { rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: rows", path); break; }
            s->rows = g;
        }
        row *r = &s->rows[s->nrows];
        r->path = fields[ii][0] == '/' ? strdup(fields[ii]) : join3(path, dirlen, fields[ii], strlen(fields[ii]), "");
        r->caption = strdup(fields[ci]);
        r->alt = ai >= 0 ? strdup(fields[ai]) : NULL;
        r->line = lineno;
        if (!r->path || !r->caption || (ai >= 0 && !r->alt)) {
            free(r->path), free(r->caption), free(r->alt);
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: rows", path);
            break;
        }
        s->nrows++;
    }
    free(line);
    fclose(fp);
    VLP_TRY(rc);
    VLP_CHECK_FORMAT(s->nrows > 0, err, "%s: no samples after the header", path);
    s->order = malloc(sizeof(int64_t) * (size_t)s->nrows);
    VLP_CHECK_ALLOC(s->order, err, sizeof(int64_t) * (size_t)s->nrows);
    s->epoch_size = (s->nrows - s->o.rank + s->o.world - 1) / s->o.world;
    return VLP_OK;
}

static vlp_rng epoch_rng(const sample_stream *s, int64_t epoch, uint64_t salt) {
    vlp_rng r = {s->o.seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)) ^ salt};
    vlp_rng_u64(&r);
    return r;
}

static void permute(int64_t *v, int64_t n, vlp_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(vlp_rng_u64(r) % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j], v[j] = t;
    }
}

static vlp_err table_next(sample_stream *s, raw_sample *out, bool *done, vlp_error *err) {
    while (s->pos < s->norder) {
        const row *r = &s->rows[s->order[s->pos++]];
        vlp_error why = {0};
        memset(out, 0, sizeof *out);
        snprintf(out->what, sizeof out->what, "%s:%d (%s)", s->spec, r->line, r->path);
        if (read_whole_file(r->path, (size_t)1 << 30, &out->image, &out->image_len, &why) != VLP_OK) {
            skip(s, "%.200s: %.300s", out->what, why.message);
            continue;
        }
        out->caption = strdup(r->caption);
        out->alt_caption = r->alt ? strdup(r->alt) : NULL;
        VLP_CHECK(out->caption && (!r->alt || out->alt_caption), err, VLP_ERR_NOMEM, "caption");
        return VLP_OK;
    }
    *done = true;
    return VLP_OK;
}

/* ---- WebDataset ---------------------------------------------------------------------------- */

/* json caption field → malloc'd string or NULL */
char *wds_json_field(const uint8_t *d, size_t n, const char *key) {
    json_t *j = json_loadb((const char *)d, n, 0, NULL);
    json_t *v = j ? json_object_get(j, key) : NULL;
    char *r = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    json_decref(j);
    return r;
}

/* takes the current tar member into the pending sample */
static bool take_member(sample_stream *s, const char *ext) {
    tar_reader *t = &s->tar;
    raw_sample *p = &s->pending;
    if (wds_is_image_ext(ext) && !p->image) {
        p->image = malloc(t->size ? t->size : 1);
        if (!p->image) return false;
        memcpy(p->image, t->data, t->size);
        p->image_len = t->size;
    } else if (!strcmp(ext, "txt") && !p->caption) {
        if (!(p->caption = strdup((const char *)t->data))) return false;
    } else if (!strcmp(ext, "json")) {
        if (!p->caption && s->o.caption_key) p->caption = wds_json_field(t->data, t->size, s->o.caption_key);
        if (!p->alt_caption && s->o.alt_caption_key) p->alt_caption = wds_json_field(t->data, t->size, s->o.alt_caption_key);
    } else if (s->o.alt_caption_key && !strcmp(ext, s->o.alt_caption_key) && !p->alt_caption) {
        if (!(p->alt_caption = strdup((const char *)t->data))) return false;
    }
    return true;
}

/* the pending sample, if complete, into *out; else counted as skipped */
static bool finish_pending(sample_stream *s, raw_sample *out) {
    raw_sample *p = &s->pending;
    bool ok = p->image && p->caption;
    if (!s->have_pending) return false;
    s->have_pending = false;
    if (ok && table_blank(p->caption)) {
        skip(s, "%.200s: sample '%.200s' has an empty caption", s->tar.path ? s->tar.path : "", s->pending_key);
        raw_sample_free(p);
        return false;
    }
    if (!ok) {
        skip(s, "%.200s: sample '%.200s' lacks an image (jpg/jpeg/png/webp) or a caption", s->tar.path ? s->tar.path : "", s->pending_key);
        raw_sample_free(p);
        return false;
    }
    *out = *p;
    snprintf(out->what, sizeof out->what, "%.200s:%.100s", s->tar.path, s->pending_key);
    memset(p, 0, sizeof *p);
    return true;
}

/* the next complete sample straight from the shards (no shuffle buffer) */
static vlp_err shard_sample(sample_stream *s, raw_sample *out, bool *got, vlp_error *err) {
    *got = false;
    for (;;) {
        if (!s->tar_open) {
            if (s->shard_pos >= s->nmine) {
                *got = finish_pending(s, out);
                s->shards_done = !*got;
                return VLP_OK;
            }
            const char *path = s->shards.v[s->shard_order[s->shard_pos++]];
            vlp_error e2 = {0};
            if (tar_open(&s->tar, path, &e2) != VLP_OK) {
                skip(s, "%s%s", e2.message, ""); /* it names the path */
                continue;
            }
            s->tar_open = true;
        }
        bool end;
        vlp_error e2 = {0};
        if (tar_next(&s->tar, &end, &e2) != VLP_OK) { /* a corrupt shard: keep what came before */
            skip(s, "%s (rest of the shard skipped)%s", e2.message, "");
            end = true;
        }
        if (end) {
            bool g = finish_pending(s, out);
            tar_close(&s->tar);
            s->tar_open = false;
            if (g) return *got = true, VLP_OK;
            continue;
        }
        char key[4096];
        const char *ext;
        wds_split_key(s->tar.name, key, sizeof key, &ext);
        bool g = false;
        if (s->have_pending && strcmp(key, s->pending_key)) g = finish_pending(s, out);
        if (!s->have_pending) {
            snprintf(s->pending_key, sizeof s->pending_key, "%s", key);
            s->have_pending = true;
        }
        VLP_CHECK(take_member(s, ext), err, VLP_ERR_NOMEM, "%s: member %s", s->tar.path, s->tar.name);
        if (g) return *got = true, VLP_OK;
    }
}

static vlp_err tar_stream_next(sample_stream *s, raw_sample *out, bool *done, vlp_error *err) {
    int K = s->o.shuffle ? s->o.shuffle_buffer : 0;
    /* fill the buffer, then each draw takes a random slot and refills it */
    while (s->nbuf < K && !s->shards_done) {
        bool got;
        VLP_TRY(shard_sample(s, &s->buf[s->nbuf], &got, err));
        if (got) s->nbuf++;
    }
    if (K == 0) {
        bool got;
        VLP_TRY(shard_sample(s, out, &got, err));
        if (!got) *done = true;
        return VLP_OK;
    }
    if (s->nbuf == 0) {
        *done = true;
        return VLP_OK;
    }
    int i = (int)(vlp_rng_u64(&s->rng) % (uint64_t)s->nbuf);
    *out = s->buf[i];
    bool got = false;
    if (!s->shards_done) VLP_TRY(shard_sample(s, &s->buf[i], &got, err));
    if (!got) s->buf[i] = s->buf[--s->nbuf];
    return VLP_OK;
}

vlp_err shard_list(const char *spec, char ***out, int *count, vlp_error *err) {
    *out = NULL, *count = 0;
    strvec v = {0};
    char *copy = strdup(spec);
    VLP_CHECK_ALLOC(copy, err, strlen(spec) + 1);
    bool ok = true;
    for (char *p = copy, *next; p && ok; p = next) { /* patterns joined with '::' */
        char *sep = strstr(p, "::");
        next = sep ? sep + 2 : NULL;
        if (sep) *sep = '\0';
        char **names;
        int n = brace_expand(p, &names);
        if (n < 0) {
            vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                          "'%s': malformed shard pattern (use name-{000..123}.tar or {a,b})", p);
            free(copy);
            strvec_free(&v);
            return VLP_ERR_ARG;
        }
        for (int i = 0; i < n; i++) ok = ok && push(&v, names[i]);
        free(names);
    }
    free(copy);
    if (!ok) strvec_free(&v);
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "shard list");
    *out = v.v, *count = v.n;
    return VLP_OK;
}

static vlp_err open_shards(sample_stream *s, const char *spec, vlp_error *err) {
    VLP_TRY(shard_list(spec, &s->shards.v, &s->shards.n, err));
    s->shards.cap = s->shards.n;
    VLP_CHECK_ARG(s->shards.n >= s->o.world, err, "%d shards for %d readers: every reader needs one",
                  s->shards.n, s->o.world);
    s->shard_order = malloc(sizeof(int) * (size_t)s->shards.n);
    s->buf = malloc(sizeof(raw_sample) * (size_t)(s->o.shuffle_buffer + 1));
    VLP_CHECK(s->shard_order && s->buf, err, VLP_ERR_NOMEM, "shard tables");
    /* count this rank's samples: every header once (bodies skipped by seek) */
    int64_t count = 0;
    char first_problem[600] = ""; /* why a shard stopped early, for the message below */
    for (int i = s->o.rank; i < s->shards.n; i += s->o.world) {
        tar_reader t;
        vlp_error e2 = {0};
        if (tar_open(&t, s->shards.v[i], &e2) != VLP_OK) {
            tar_close(&t);
            VLP_FAIL(err, VLP_ERR_IO, "%s", e2.message);
        }
        char last[4096] = "";
        bool end = false;
        vlp_err trc = VLP_OK;
        while (!end && (trc = tar_next(&t, &end, &e2)) == VLP_OK && !end) {
            char key[4096];
            const char *ext;
            wds_split_key(t.name, key, sizeof key, &ext);
            if (strcmp(key, last)) count++, snprintf(last, sizeof last, "%s", key);
        }
        if (trc != VLP_OK && !first_problem[0]) snprintf(first_problem, sizeof first_problem, "%s", e2.message);
        tar_close(&t);
    }
    VLP_CHECK_FORMAT(count > 0, err, "'%s': no samples in this reader's shards%s%s%s", spec,
                     first_problem[0] ? " (" : "", first_problem, first_problem[0] ? ")" : "");
    s->epoch_size = count;
    return VLP_OK;
}

vlp_err stream_open(sample_stream **out, const char *spec, const dataset_opts *o, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(o->world > 0 && o->rank >= 0 && o->rank < o->world && o->shuffle_buffer >= 0, err,
                  "rank %d of %d readers, shuffle buffer %d", o->rank, o->world, o->shuffle_buffer);
    sample_stream *s = calloc(1, sizeof *s);
    VLP_CHECK_ALLOC(s, err, sizeof *s);
    s->o = *o;
    s->spec = strdup(spec);
    vlp_err rc = !s->spec ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "spec")
                 : table_spec(spec, NULL) ? open_table(s, spec, err)
                                                                          : open_shards(s, spec, err);
    if (rc != VLP_OK) {
        stream_free(s);
        return rc;
    }
    *out = s;
    return VLP_OK;
}

vlp_err stream_begin(sample_stream *s, int64_t epoch, vlp_error *err) {
    VLP_CHECK_ARG(epoch >= 0, err, "epoch %lld", (long long)epoch);
    if (s->rows) {
        int64_t *all = s->order, n = s->nrows;
        for (int64_t i = 0; i < n; i++) all[i] = i;
        vlp_rng r = epoch_rng(s, epoch, 1);
        if (s->o.shuffle) permute(all, n, &r);
        s->norder = 0; /* keep every world-th, in place */
        for (int64_t i = s->o.rank; i < n; i += s->o.world) all[s->norder++] = all[i];
        s->pos = 0;
        return VLP_OK;
    }
    if (s->tar_open) tar_close(&s->tar), s->tar_open = false;
    raw_sample_free(&s->pending);
    s->have_pending = false;
    for (int i = 0; i < s->nbuf; i++) raw_sample_free(&s->buf[i]);
    s->nbuf = 0;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)s->shards.n);
    VLP_CHECK_ALLOC(perm, err, sizeof(int64_t) * (size_t)s->shards.n);
    for (int i = 0; i < s->shards.n; i++) perm[i] = i;
    vlp_rng r = epoch_rng(s, epoch, 2);
    if (s->o.shuffle) permute(perm, s->shards.n, &r);
    s->nmine = 0;
    for (int i = s->o.rank; i < s->shards.n; i += s->o.world) s->shard_order[s->nmine++] = (int)perm[i];
    free(perm);
    s->shard_pos = 0;
    s->shards_done = false;
    s->rng = epoch_rng(s, epoch, 3 + (uint64_t)s->o.rank);
    return VLP_OK;
}

vlp_err stream_next(sample_stream *s, raw_sample *out, bool *done, vlp_error *err) {
    *done = false;
    memset(out, 0, sizeof *out);
    return s->rows ? table_next(s, out, done, err) : tar_stream_next(s, out, done, err);
}
