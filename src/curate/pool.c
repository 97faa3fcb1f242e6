#include "curate/pool.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/table.h"
#include "data/tar.h"
#include "io/atomic.h"
#include "io/file.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_COLUMNS 256
#define MAX_MEMBERS 64 /* a sample with more members is cut there, and said so */
#define MAX_KEY 4096   /* as the trainer's reader (src/data/dataset.c): the same grouping */

struct pool {
    pool_opts o;
    char *spec;
    int64_t index, skipped;
    char first_skip[512];
    /* a table */
    FILE *fp;
    bool csv;
    char sep;
    char **columns; // (ncols) the header
    int ncols, image_col, caption_col;
    char *dir;      // the table's directory, with its '/', or ""
    char *line;
    size_t cap;
    long lineno;
    /* shards */
    char **shards;
    int nshards, shard;
    tar_reader tar;
    bool tar_open, have_next; // have_next: tar's current member starts the next sample
};

pool_opts pool_opts_default(void) {
    return (pool_opts){.image_key = "filepath", .caption_key = "title", .read_images = true};
}

static void skip(pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void skip(pool *p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!p->skipped++) snprintf(p->first_skip, sizeof p->first_skip, "%s", msg);
    if (p->o.warn) p->o.warn(p->o.warn_ctx, msg);
}

static vlp_err open_header(pool *p, vlp_error *err) {
    bool too_long;
    ssize_t len = table_line(p->fp, &p->line, &p->cap, &too_long);
    VLP_CHECK_FORMAT(len >= 0 && !too_long, err, "%s:1: %s", p->spec,
                     too_long ? "the header is too long" : "the file is empty (a header is needed)");
    p->lineno = 1;
    while (len > 0 && (p->line[len - 1] == '\n' || p->line[len - 1] == '\r')) p->line[--len] = '\0';
    char *f[MAX_COLUMNS];
    int n = table_split(p->line, p->sep, p->csv, f, MAX_COLUMNS);
    p->columns = calloc((size_t)n, sizeof(char *));
    VLP_CHECK_ALLOC(p->columns, err, sizeof(char *) * (size_t)n);
    p->ncols = n, p->image_col = p->caption_col = -1;
    for (int k = 0; k < n; k++) {
        VLP_CHECK_ALLOC(p->columns[k] = strdup(f[k]), err, strlen(f[k]) + 1);
        if (!strcmp(f[k], p->o.image_key)) p->image_col = k;
        if (!strcmp(f[k], p->o.caption_key)) p->caption_col = k;
    }
    VLP_CHECK_FORMAT(p->image_col >= 0 && p->caption_col >= 0, err, "%s:1: the header lacks column '%s'",
                     p->spec, p->image_col < 0 ? p->o.image_key : p->o.caption_key);
    return VLP_OK;
}

vlp_err pool_open(pool **out, const char *spec, const pool_opts *o, vlp_error *err) {
    *out = NULL;
    pool *p = calloc(1, sizeof *p);
    VLP_CHECK_ALLOC(p, err, sizeof *p);
    p->o = *o;
    p->spec = strdup(spec);
    vlp_err rc = p->spec ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "pool spec");
    struct stat st;
    if (rc == VLP_OK && stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) /* not shards: say what a pool is */
        rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                           "%s is a folder: a pool to curate is a .tsv/.csv table or WebDataset shards "
                           "(a folder of class folders is read for training, evaluation and adaptation, "
                           "not curated in place)", spec);
    else if (rc == VLP_OK && table_spec(spec, &p->csv)) {
        p->sep = p->csv ? ',' : '\t';
        const char *slash = strrchr(spec, '/');
        p->dir = strndup(spec, slash ? (size_t)(slash - spec + 1) : 0);
        p->fp = fopen(spec, "r");
        if (!p->dir) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "pool dir");
        else if (!p->fp)
            rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot open %s: %s", spec, strerror(errno));
        else rc = open_header(p, err);
    } else if (rc == VLP_OK) {
        rc = shard_list(spec, &p->shards, &p->nshards, err);
    }
    if (rc != VLP_OK) {
        pool_free(p);
        return rc;
    }
    *out = p;
    return VLP_OK;
}

vlp_err pool_rewind(pool *p, vlp_error *err) {
    p->index = p->skipped = 0, p->first_skip[0] = '\0';
    if (p->fp) {
        VLP_CHECK_IO(fseek(p->fp, 0, SEEK_SET) == 0, err, "%s: cannot seek: %s", p->spec, strerror(errno));
        bool too_long;
        VLP_CHECK_FORMAT(table_line(p->fp, &p->line, &p->cap, &too_long) >= 0, err, "%s: the header is gone",
                         p->spec);
        p->lineno = 1;
        return VLP_OK;
    }
    if (p->tar_open) tar_close(&p->tar);
    p->tar_open = p->have_next = false, p->shard = 0;
    return VLP_OK;
}

void pool_sample_free(pool_sample *s) {
    free(s->image_owned), free(s->caption_owned), free(s->row), free(s->fields), free(s->image_path);
    for (int i = 0; i < s->nmembers; i++) free(s->members[i].name), free(s->members[i].data);
    free(s->members);
    memset(s, 0, sizeof *s);
}

/* drops what the sample held from the last call, keeping its buffers' room */
static void clear(pool_sample *s) {
    free(s->image_owned), free(s->caption_owned), free(s->image_path);
    s->image_owned = NULL, s->caption_owned = NULL, s->image_path = NULL;
    for (int i = 0; i < s->nmembers; i++) free(s->members[i].name), free(s->members[i].data);
    s->nmembers = 0, s->image = NULL, s->image_len = 0, s->caption = NULL, s->what[0] = '\0';
}

static vlp_err table_next(pool *p, pool_sample *s, bool *done, vlp_error *err) {
    for (;;) {
        bool too_long;
        ssize_t len = table_line(p->fp, &p->line, &p->cap, &too_long);
        if (len < 0) {
            VLP_CHECK_IO(!ferror(p->fp), err, "%s: read error after line %ld", p->spec, p->lineno);
            *done = true;
            return VLP_OK;
        }
        p->lineno++;
        if (too_long) {
            skip(p, "%s:%ld: a row longer than %d bytes", p->spec, p->lineno, TABLE_MAX_LINE);
            continue;
        }
        while (len > 0 && (p->line[len - 1] == '\n' || p->line[len - 1] == '\r')) p->line[--len] = '\0';
        if (len == 0) continue;
        free(s->row);
        VLP_CHECK_ALLOC(s->row = strdup(p->line), err, (size_t)len + 1);
        free(s->fields);
        VLP_CHECK_ALLOC(s->fields = malloc(sizeof(char *) * MAX_COLUMNS), err, sizeof(char *) * MAX_COLUMNS);
        int nf = table_split(s->row, p->sep, p->csv, s->fields, MAX_COLUMNS);
        if (nf != p->ncols) {
            skip(p, "%s:%ld: %d fields, the header has %d", p->spec, p->lineno, nf, p->ncols);
            continue;
        }
        const char *path = s->fields[p->image_col];
        if (!path[0] || table_blank(s->fields[p->caption_col])) {
            skip(p, "%s:%ld: an empty image path or caption", p->spec, p->lineno);
            continue;
        }
        size_t dl = path[0] == '/' ? 0 : strlen(p->dir), pl = strlen(path);
        VLP_CHECK_ALLOC(s->image_path = malloc(dl + pl + 1), err, dl + pl + 1);
        memcpy(s->image_path, p->dir, dl), memcpy(s->image_path + dl, path, pl + 1);
        snprintf(s->what, sizeof s->what, "%.200s:%ld (%.250s)", p->spec, p->lineno, path);
        s->caption = s->fields[p->caption_col];
        if (!p->o.read_images && access(s->image_path, R_OK) != 0) { /* as a pass that reads it would skip it */
            skip(p, "%.200s: cannot open %.250s: %s", s->what, s->image_path, strerror(errno));
            free(s->image_path), s->image_path = NULL;
            continue;
        }
        if (p->o.read_images) {
            vlp_error why = {0};
            if (read_whole_file(s->image_path, (size_t)1 << 30, &s->image_owned, &s->image_len, &why) != VLP_OK) {
                skip(p, "%.200s: %.300s", s->what, why.message);
                free(s->image_path), s->image_path = NULL;
                continue;
            }
            s->image = s->image_owned;
        }
        return VLP_OK;
    }
}

/* the current tar member into the sample's members */
static vlp_err take(pool *p, pool_sample *s, vlp_error *err) {
    if (s->nmembers == s->members_cap) {
        int cap = s->members_cap ? 2 * s->members_cap : 4;
        pool_member *g = realloc(s->members, sizeof(pool_member) * (size_t)cap);
        VLP_CHECK_ALLOC(g, err, sizeof(pool_member) * (size_t)cap);
        s->members = g, s->members_cap = cap;
    }
    pool_member *m = &s->members[s->nmembers];
    m->name = strdup(p->tar.name);
    m->data = malloc(p->tar.size + 1); /* NUL-terminated: a txt member is the caption string */
    if (!m->name || !m->data) {
        free(m->name), free(m->data);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: member %s", p->tar.path, p->tar.name);
    }
    memcpy(m->data, p->tar.data, p->tar.size);
    m->data[p->tar.size] = '\0';
    m->len = p->tar.size;
    s->nmembers++;
    return VLP_OK;
}

/* the image and the caption among a complete sample's members; false if it has none */
static bool find_fields(pool *p, pool_sample *s) {
    const char *json_caption = NULL;
    for (int i = 0; i < s->nmembers; i++) {
        char key[MAX_KEY];
        const char *ext;
        wds_split_key(s->members[i].name, key, sizeof key, &ext);
        if (wds_is_image_ext(ext) && !s->image) s->image = s->members[i].data, s->image_len = s->members[i].len;
        else if (!strcmp(ext, "txt") && !s->caption) s->caption = (const char *)s->members[i].data;
        else if (!strcmp(ext, "json") && !s->caption_owned && !json_caption)
            json_caption = s->caption_owned = wds_json_field(s->members[i].data, s->members[i].len, p->o.caption_key);
    }
    if (!s->caption) s->caption = s->caption_owned;
    return s->image && s->caption && !table_blank(s->caption);
}

static vlp_err shards_next(pool *p, pool_sample *s, bool *done, vlp_error *err) {
    for (;;) {
        if (!p->tar_open) {
            if (p->shard >= p->nshards) {
                *done = true;
                return VLP_OK;
            }
            vlp_error e2 = {0};
            if (tar_open(&p->tar, p->shards[p->shard++], &e2) != VLP_OK) {
                skip(p, "%s", e2.message);
                continue;
            }
            p->tar_open = true, p->have_next = false;
        }
        /* the members of one key: the first may have been read by the last call */
        char key[MAX_KEY] = "";
        bool cut_members = false;
        bool end = false;
        for (;;) {
            if (!p->have_next) {
                vlp_error e2 = {0};
                if (tar_next(&p->tar, &end, &e2) != VLP_OK) {
                    skip(p, "%s (rest of the shard skipped)", e2.message);
                    end = true;
                }
                if (end) break;
            }
            p->have_next = false;
            char k[MAX_KEY];
            const char *ext;
            wds_split_key(p->tar.name, k, sizeof k, &ext);
            if (s->nmembers && strcmp(k, key)) {
                p->have_next = true; /* the next sample's first member */
                break;
            }
            if (!s->nmembers) snprintf(key, sizeof key, "%s", k);
            if (s->nmembers < MAX_MEMBERS) VLP_TRY(take(p, s, err));
            else cut_members = true;
        }
        if (end) tar_close(&p->tar), p->tar_open = false;
        if (!s->nmembers) continue;
        snprintf(s->what, sizeof s->what, "%.250s: %.250s", p->shards[p->shard - 1], key);
        if (cut_members && p->o.warn) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s: more than %d members; the rest are left out", s->what, MAX_MEMBERS);
            p->o.warn(p->o.warn_ctx, msg);
        }
        if (find_fields(p, s)) return VLP_OK; /* a cut shard's last whole members still make a sample */
        skip(p, "%s: no image (jpg/jpeg/png/webp) or no caption", s->what);
        clear(s);
    }
}

vlp_err pool_next(pool *p, pool_sample *s, bool *done, vlp_error *err) {
    *done = false;
    clear(s);
    vlp_err rc = p->fp ? table_next(p, s, done, err) : shards_next(p, s, done, err);
    if (rc == VLP_OK && !*done) s->index = p->index++;
    return rc;
}

int64_t pool_skipped(const pool *p, const char **first) {
    if (first) *first = p->first_skip;
    return p->skipped;
}

const char *const *pool_columns(const pool *p, int *n, int *image_col, int *caption_col) {
    if (n) *n = p->ncols;
    if (image_col) *image_col = p->image_col;
    if (caption_col) *caption_col = p->caption_col;
    return p->fp ? (const char *const *)p->columns : NULL;
}

const char *pool_spec(const pool *p) { return p->spec; }

void pool_free(pool *p) {
    if (!p) return;
    if (p->fp) fclose(p->fp);
    for (int i = 0; i < p->ncols; i++) free(p->columns[i]);
    free(p->columns), free(p->dir), free(p->line), free(p->spec);
    for (int i = 0; i < p->nshards; i++) free(p->shards[i]);
    free(p->shards);
    if (p->tar_open) tar_close(&p->tar);
    free(p);
}

/* ---- the writer ---------------------------------------------------------------------------- */

struct pool_writer {
    const pool *in;
    /* a table */
    atomic_file table;
    bool is_table, table_open, csv, rewrite_paths;
    /* shards */
    char *prefix;
    long per_shard, shard;
    tar_writer tar;
    bool tar_open, finished;
    int64_t written, in_shard;
};

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return strndup(path, slash ? (size_t)(slash - path + 1) : 0);
}

vlp_err pool_writer_open(pool_writer **out, const char *path, const pool *in, long per_shard, vlp_error *err) {
    *out = NULL;
    bool csv, table = table_spec(path, &csv);
    VLP_CHECK_ARG(!table || in->fp, err,
                  "--out %s: a table can be written from a table only (the images of shards have no path); "
                  "give a shard prefix", path);
    VLP_CHECK_ARG(per_shard >= 1, err, "%ld samples a shard", per_shard);
    pool_writer *w = calloc(1, sizeof *w);
    VLP_CHECK_ALLOC(w, err, sizeof *w);
    w->in = in, w->is_table = table, w->per_shard = per_shard;
    w->csv = csv;
    vlp_err rc = VLP_OK;
    char *dir = dir_of(path);
    if (!dir) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "path");
    else if (dir[0]) rc = make_dirs(dir, err);
    if (rc == VLP_OK && table) {
        /* image paths resolve against the table's directory: kept as they are
         * when the output sits beside the input, made absolute otherwise */
        w->rewrite_paths = strcmp(dir, in->dir) != 0;
        rc = atomic_open(&w->table, path, err);
        if (rc == VLP_OK) {
            w->table_open = true;
            for (int k = 0; k < in->ncols; k++) {
                if (k) putc(w->csv ? ',' : '\t', w->table.fp);
                if (w->csv) table_write_csv_field(w->table.fp, in->columns[k]);
                else fputs(in->columns[k], w->table.fp);
            }
            putc('\n', w->table.fp);
        }
    } else if (rc == VLP_OK) {
        w->prefix = strdup(path);
        if (!w->prefix) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "prefix");
    }
    free(dir);
    if (rc != VLP_OK) {
        pool_writer_free(w);
        return rc;
    }
    *out = w;
    return VLP_OK;
}

/* a json string must be UTF-8: each byte that does not start a valid
 * sequence becomes U+FFFD, as the tokenizer reads it (malloc'd, or NULL) */
static char *valid_utf8(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int len = u[i] < 0x80 ? 1 : (u[i] >> 5) == 6 ? 2 : (u[i] >> 4) == 14 ? 3 : (u[i] >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) { /* overlong forms, surrogates and values above U+10FFFF are not UTF-8 */
            uint32_t c = u[i] & (0x7F >> len);
            for (int k = 1; k < len; k++) c = c << 6 | (u[i + k] & 0x3F);
            ok = c >= (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
        }
        if (ok) memcpy(o, u + i, (size_t)len), o += len, i += (size_t)len;
        else memcpy(o, "\xEF\xBF\xBD", 3), o += 3, i++;
    }
    *o = '\0';
    return out;
}

/* a TSV field cannot hold a tab or a line break: they become spaces */
static void write_tsv_field(FILE *fp, const char *f) {
    for (; *f; f++) putc(*f == '\t' || *f == '\n' || *f == '\r' ? ' ' : *f, fp);
}

static vlp_err add_row(pool_writer *w, const pool_sample *s, vlp_error *err) {
    FILE *fp = w->table.fp;
    for (int k = 0; k < w->in->ncols; k++) {
        const char *f = s->fields[k];
        char *abs = NULL;
        if (k == w->in->image_col && w->rewrite_paths && f[0] != '/') f = abs = realpath(s->image_path, NULL);
        if (!f) f = s->image_path; /* realpath failed (the file is gone): the joined path */
        if (k) putc(w->csv ? ',' : '\t', fp);
        if (w->csv) table_write_csv_field(fp, f);
        else write_tsv_field(fp, f);
        free(abs);
    }
    VLP_CHECK_IO(putc('\n', fp) != EOF, err, "%s: %s", w->table.path, strerror(errno));
    return VLP_OK;
}

static vlp_err add_members(pool_writer *w, const pool_sample *s, vlp_error *err) {
    if (!w->tar_open) {
        char path[4096];
        snprintf(path, sizeof path, "%s-%05ld.tar", w->prefix, w->shard);
        VLP_TRY(tar_create(&w->tar, path, err));
        w->tar_open = true, w->in_shard = 0;
    }
    if (s->fields) { /* a table's sample: the image file's bytes and a json of the other columns */
        const char *ext = image_format_ext(s->image, s->image_len);
        VLP_CHECK_FORMAT(ext, err, "%s: not a JPEG, PNG or WebP image", s->what);
        char name[64];
        snprintf(name, sizeof name, "%09lld.%s", (long long)w->written, ext);
        VLP_TRY(tar_add(&w->tar, name, s->image, s->image_len, err));
        json_t *j = json_object();
        for (int k = 0; j && k < w->in->ncols; k++) {
            if (k == w->in->image_col) continue;
            char *key = valid_utf8(w->in->columns[k]), *val = valid_utf8(s->fields[k]);
            if (key && val) json_object_set_new(j, key, json_string(val));
            else json_decref(j), j = NULL;
            free(key), free(val);
        }
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        VLP_CHECK(text, err, VLP_ERR_NOMEM, "%s: json", s->what);
        snprintf(name, sizeof name, "%09lld.json", (long long)w->written);
        vlp_err rc = tar_add(&w->tar, name, text, strlen(text), err);
        free(text);
        VLP_TRY(rc);
    } else {
        /* the members as they were; a name ustar cannot hold (100 bytes and
         * more: a key from a long path) renames the sample's members to its
         * index, so they stay one sample */
        bool rename = false;
        for (int i = 0; i < s->nmembers; i++) rename = rename || strlen(s->members[i].name) >= TAR_NAME_MAX;
        for (int i = 0; i < s->nmembers; i++) {
            char name[64], key[MAX_KEY];
            const char *ext;
            if (rename) {
                wds_split_key(s->members[i].name, key, sizeof key, &ext);
                snprintf(name, sizeof name, "%09lld.%.40s", (long long)w->written, ext);
            }
            VLP_TRY(tar_add(&w->tar, rename ? name : s->members[i].name, s->members[i].data, s->members[i].len, err));
        }
    }
    if (++w->in_shard == w->per_shard) {
        w->tar_open = false, w->shard++;
        VLP_TRY(tar_finish(&w->tar, err));
    }
    return VLP_OK;
}

vlp_err pool_writer_add(pool_writer *w, const pool_sample *s, vlp_error *err) {
    if (w->is_table) VLP_TRY(add_row(w, s, err));
    else {
        /* the image bytes are needed for a table's sample written to shards */
        VLP_CHECK_ARG(!s->fields || s->image, err, "%s: the pool was read without its images", s->what);
        VLP_TRY(add_members(w, s, err));
    }
    w->written++;
    return VLP_OK;
}

vlp_err pool_writer_finish(pool_writer *w, int64_t *written, long *shards, vlp_error *err) {
    if (w->is_table) {
        w->table_open = false;
        VLP_TRY(atomic_commit(&w->table, err));
    } else if (w->tar_open) {
        w->tar_open = false;
        VLP_TRY(tar_finish(&w->tar, err));
        w->shard++;
    }
    if (written) *written = w->written;
    if (shards) *shards = w->is_table ? 0 : w->shard;
    w->finished = true;
    return VLP_OK;
}

void pool_writer_free(pool_writer *w) {
    if (!w) return;
    if (w->table_open) atomic_abort(&w->table);
    if (w->tar_open) tar_abort(&w->tar);
    for (long k = 0; !w->finished && !w->is_table && k < w->shard; k++) { /* a failed run leaves no part of its output */
        char path[4096];
        snprintf(path, sizeof path, "%s-%05ld.tar", w->prefix, k);
        unlink(path);
    }
    free(w->prefix);
    free(w);
}
