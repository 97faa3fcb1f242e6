#include "curate/pool.h"
#include "io/json_text.h"
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

#define MAX_KEY 4096 /* as the stream's WebDataset reader: the same grouping */

/* The pool reads through the sample stream (data/dataset.h) with whole
 * records: a table line by line with every field, shards with every member. */
struct pool {
    pool_opts o;
    char *spec;
    sample_stream *s;
    bool is_table;
    char *dir;              // a table's directory, with its '/', or ""
    const char *const *columns; // a table's header (ncols), the stream's
    int ncols, image_col, caption_col;
    int64_t skipped_before; // the stream's skips before this pass
};

pool_opts pool_opts_default(void) {
    return (pool_opts){.image_key = "filepath", .caption_key = "title", .read_images = true};
}

vlp_err pool_open(pool **out, const char *spec, const pool_opts *o, vlp_error *err) {
    *out = NULL;
    struct stat st;
    VLP_CHECK_ARG(!(stat(spec, &st) == 0 && S_ISDIR(st.st_mode)), err,
                  "%s is a folder: a pool to curate is a .tsv/.csv table or WebDataset shards (a folder of "
                  "class folders is read for training, evaluation and adaptation, not curated in place)", spec);
    pool *p = calloc(1, sizeof *p);
    VLP_CHECK_ALLOC(p, err, sizeof *p);
    p->o = *o;
    dataset_opts d = dataset_opts_default();
    d.image_key = o->image_key, d.caption_key = o->caption_key, d.shuffle = false, d.records = true;
    d.skip_table_images = !o->read_images, d.warn = o->warn, d.warn_ctx = o->warn_ctx;
    p->spec = strdup(spec);
    const char *slash = strrchr(spec, '/');
    p->dir = strndup(spec, slash ? (size_t)(slash - spec + 1) : 0);
    vlp_err rc = p->spec && p->dir ? stream_open(&p->s, spec, &d, err)
                                   : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "pool spec");
    if (rc == VLP_OK) rc = stream_begin(p->s, 0, err);
    if (rc != VLP_OK) {
        pool_free(p);
        return rc;
    }
    p->columns = stream_columns(p->s, &p->ncols, &p->image_col, &p->caption_col);
    p->is_table = p->columns != NULL;
    *out = p;
    return VLP_OK;
}

vlp_err pool_rewind(pool *p, vlp_error *err) {
    p->skipped_before = stream_skipped(p->s, NULL);
    return stream_begin(p->s, 0, err);
}

void pool_sample_free(pool_sample *s) {
    raw_sample_free(&s->raw);
    memset(s, 0, sizeof *s);
}

vlp_err pool_next(pool *p, pool_sample *s, bool *done, vlp_error *err) {
    raw_sample_free(&s->raw);
    memset(s, 0, sizeof *s);
    vlp_err rc = stream_next(p->s, &s->raw, done, err);
    if (rc != VLP_OK || *done) {
        raw_sample_free(&s->raw);
        return rc;
    }
    raw_sample *r = &s->raw;
    int64_t epoch, index;
    stream_position(p->s, &epoch, &index);
    s->index = index - 1;
    snprintf(s->what, sizeof s->what, "%s", r->what);
    s->image = r->image, s->image_len = r->image_len, s->caption = r->caption;
    s->fields = r->fields, s->image_path = r->image_path;
    s->members = r->members, s->nmembers = r->nmembers;
    return VLP_OK;
}

int64_t pool_skipped(const pool *p, const char **first) {
    return stream_skipped(p->s, first) - p->skipped_before;
}

const char *const *pool_columns(const pool *p, int *n, int *image_col, int *caption_col) {
    if (n) *n = p->ncols;
    if (image_col) *image_col = p->image_col;
    if (caption_col) *caption_col = p->caption_col;
    return p->columns;
}

const char *pool_spec(const pool *p) { return p->spec; }

void pool_free(pool *p) {
    if (!p) return;
    stream_free(p->s);
    free(p->spec), free(p->dir);
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
    char *made_dir; // the output's directory when this writer made it: a failed run takes it away if empty
};

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return strndup(path, slash ? (size_t)(slash - path + 1) : 0);
}

vlp_err pool_writer_open(pool_writer **out, const char *path, const pool *in, long per_shard, vlp_error *err) {
    *out = NULL;
    bool csv, table = table_spec(path, &csv);
    VLP_CHECK_ARG(!table || in->is_table, err,
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
    else if (dir[0]) {
        if (access(dir, F_OK) != 0) w->made_dir = strdup(dir);
        rc = make_dirs(dir, err);
    }
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
            char *key = utf8_repaired(w->in->columns[k]), *val = utf8_repaired(s->fields[k]);
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
        /* the members under a key made unique by the sample's index in the
         * output, INDEX_KEY: two kept samples with one key from two input
         * shards (most writers number from 000000000 in each) would
         * otherwise stand side by side and be read as one. A name ustar
         * cannot hold (a key from a long path) keeps the index alone. */
        bool long_key = false;
        for (int i = 0; i < s->nmembers; i++) long_key = long_key || strlen(s->members[i].name) + 11 >= TAR_NAME_MAX;
        for (int i = 0; i < s->nmembers; i++) {
            char name[TAR_NAME_MAX + 64], key[MAX_KEY];
            const char *ext;
            wds_split_key(s->members[i].name, key, sizeof key, &ext);
            if (long_key) snprintf(name, sizeof name, "%09lld.%.40s", (long long)w->written, ext);
            else snprintf(name, sizeof name, "%09lld_%.100s.%.40s", (long long)w->written, key, ext);
            VLP_TRY(tar_add(&w->tar, name, s->members[i].data, s->members[i].len, err));
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
    if (!w->finished && w->made_dir) rmdir(w->made_dir); /* only when empty: nothing of anyone else's goes */
    free(w->made_dir);
    free(w->prefix);
    free(w);
}
