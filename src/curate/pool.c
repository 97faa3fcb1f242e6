#include "curate/pool.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/table.h"
#include "data/shard_writer.h"
#include "io/atomic.h"
#include "io/file.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


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
    bool is_table, table_open, csv, rewrite_paths, finished;
    char *made_dir; // the table's directory when this writer made it: a failed run takes it away if empty
    int64_t written;
    /* shards */
    shard_writer *shards;
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
    pool_writer *w = calloc(1, sizeof *w);
    VLP_CHECK_ALLOC(w, err, sizeof *w);
    w->in = in, w->is_table = table, w->csv = csv;
    vlp_err rc = VLP_OK;
    if (!table) rc = shard_writer_open(&w->shards, path, per_shard, err);
    else {
        char *dir = dir_of(path);
        if (!dir) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "path");
        else if (dir[0]) rc = out_dir_make(dir, &w->made_dir, err);
        /* image paths resolve against the table's directory: kept as they are
         * when the output sits beside the input, made absolute otherwise */
        if (rc == VLP_OK) {
            w->rewrite_paths = strcmp(dir, in->dir) != 0;
            rc = atomic_open(&w->table, path, err);
        }
        if (rc == VLP_OK) {
            w->table_open = true;
            for (int k = 0; k < in->ncols; k++) {
                if (k) putc(w->csv ? ',' : '\t', w->table.fp);
                if (w->csv) table_write_csv_field(w->table.fp, in->columns[k]);
                else fputs(in->columns[k], w->table.fp);
            }
            putc('\n', w->table.fp);
        }
        free(dir);
    }
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

/* a table's sample into shards: the image file's bytes and a json of the other columns */
static vlp_err add_pair(pool_writer *w, const pool_sample *s, vlp_error *err) {
    const char *keys[w->in->ncols], *values[w->in->ncols];
    int n = 0;
    for (int k = 0; k < w->in->ncols; k++)
        if (k != w->in->image_col) keys[n] = w->in->columns[k], values[n++] = s->fields[k];
    return shard_writer_add_pair(w->shards, s->image, s->image_len, keys, values, n, s->what, err);
}

vlp_err pool_writer_add(pool_writer *w, const pool_sample *s, vlp_error *err) {
    if (w->is_table) VLP_TRY(add_row(w, s, err));
    else if (s->fields) {
        /* the image bytes are needed for a table's sample written to shards */
        VLP_CHECK_ARG(s->image, err, "%s: the pool was read without its images", s->what);
        VLP_TRY(add_pair(w, s, err));
    } else VLP_TRY(shard_writer_add_members(w->shards, s->members, s->nmembers, err));
    w->written++;
    return VLP_OK;
}

vlp_err pool_writer_finish(pool_writer *w, int64_t *written, long *shards, vlp_error *err) {
    if (shards) *shards = 0;
    if (w->is_table) {
        w->table_open = false;
        VLP_TRY(atomic_commit(&w->table, err));
    } else VLP_TRY(shard_writer_finish(w->shards, NULL, shards, err));
    if (written) *written = w->written;
    w->finished = true;
    return VLP_OK;
}

void pool_writer_free(pool_writer *w) {
    if (!w) return;
    if (w->table_open) atomic_abort(&w->table);
    shard_writer_free(w->shards); /* unfinished: its shards go */
    out_dir_release(w->made_dir, !w->finished);
    free(w);
}
