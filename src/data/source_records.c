/* A TSV/CSV table read line by line with every row's fields (curation's
 * pool: dataset_opts.records): nothing is loaded, so memory does not grow
 * with the table; file order, one reader. The rules for an unusable row are
 * the table kind's (source_rows.c). */
#include "data/source_kind.h"
#include "data/table.h"
#include "io/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_COLUMNS 256

typedef struct records {
    FILE *fp;
    bool csv;
    char sep;
    char **columns; // (ncols) the header
    int ncols, image_col, caption_col;
    char *dir;      // the table's directory, with its '/', or ""
    char *line;
    size_t cap;
    long lineno;
    long body;      // where the first row starts
} records;

static bool claims(const char *spec, const dataset_opts *o) { return o->records && table_spec(spec, NULL); }

static void records_free(void *state) {
    records *t = state;
    if (!t) return;
    if (t->fp) fclose(t->fp);
    for (int i = 0; i < t->ncols; i++) free(t->columns[i]);
    free(t->columns), free(t->dir), free(t->line);
    free(t);
}

static vlp_err open_records(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err) {
    const char *spec = stream_spec(s);
    const dataset_opts *o = stream_opts(s);
    records *t = calloc(1, sizeof *t);
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    *state = t;
    *epoch_size = -1; /* not counted: one pass is what the caller reads */
    table_spec(spec, &t->csv);
    t->sep = t->csv ? ',' : '\t';
    const char *slash = strrchr(spec, '/');
    t->dir = strndup(spec, slash ? (size_t)(slash - spec + 1) : 0);
    VLP_CHECK_ALLOC(t->dir, err, strlen(spec) + 1);
    t->fp = fopen(spec, "r");
    VLP_CHECK_IO(t->fp, err, "cannot open %s: %s", spec, strerror(errno));
    bool too_long;
    ssize_t len = table_line(t->fp, &t->line, &t->cap, &too_long);
    VLP_CHECK_FORMAT(len >= 0 && !too_long, err, "%s:1: %s", spec,
                     too_long ? "the header is too long" : "the file is empty (a header is needed)");
    t->body = ftell(t->fp);
    while (len > 0 && (t->line[len - 1] == '\n' || t->line[len - 1] == '\r')) t->line[--len] = '\0';
    char *f[MAX_COLUMNS];
    int n = table_header(t->line, t->sep, t->csv, f, MAX_COLUMNS);
    t->columns = calloc((size_t)n, sizeof(char *));
    VLP_CHECK_ALLOC(t->columns, err, sizeof(char *) * (size_t)n);
    for (int k = 0; k < n; k++) {
        VLP_CHECK_ALLOC(t->columns[k] = strdup(f[k]), err, strlen(f[k]) + 1);
        t->ncols++;
    }
    char msg[sizeof err->message];
    VLP_CHECK_FORMAT((t->image_col = table_column(f, n, o->image_key, spec, msg, sizeof msg)) >= 0 &&
                         (t->caption_col = table_column(f, n, o->caption_key, spec, msg, sizeof msg)) >= 0,
                     err, "%s", msg);
    return VLP_OK;
}

static vlp_err begin(sample_stream *s, void *state, int64_t epoch, vlp_error *err) {
    records *t = state;
    VLP_CHECK_IO(fseek(t->fp, t->body, SEEK_SET) == 0, err, "%s: cannot seek: %s", stream_spec(s), strerror(errno));
    t->lineno = 1;
    return VLP_OK;
}

static vlp_err next(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err) {
    records *t = state;
    const char *spec = stream_spec(s);
    const dataset_opts *o = stream_opts(s);
    for (;;) {
        bool too_long;
        ssize_t len = table_line(t->fp, &t->line, &t->cap, &too_long);
        if (len < 0) {
            raw_sample_free(out); /* what a skipped last row left */
            VLP_CHECK_IO(!ferror(t->fp), err, "%s: read error after line %ld", spec, t->lineno);
            *done = true;
            return VLP_OK;
        }
        t->lineno++;
        if (too_long) {
            stream_skip(s, "%s:%ld: a row longer than %d bytes", spec, t->lineno, TABLE_MAX_LINE);
            continue;
        }
        while (len > 0 && (t->line[len - 1] == '\n' || t->line[len - 1] == '\r')) t->line[--len] = '\0';
        if (len == 0) continue;
        raw_sample_free(out);
        VLP_CHECK_ALLOC(out->row = strdup(t->line), err, (size_t)len + 1);
        VLP_CHECK_ALLOC(out->fields = malloc(sizeof(char *) * MAX_COLUMNS), err, sizeof(char *) * MAX_COLUMNS);
        int nf = table_split(out->row, t->sep, t->csv, out->fields, MAX_COLUMNS);
        out->nfields = nf;
        if (nf != t->ncols) {
            stream_skip(s, "%s:%ld: %d fields, the header has %d", spec, t->lineno, nf, t->ncols);
            continue;
        }
        const char *path = out->fields[t->image_col];
        if (!path[0] || table_blank(out->fields[t->caption_col])) {
            stream_skip(s, "%s:%ld: an empty image path or caption", spec, t->lineno);
            continue;
        }
        VLP_CHECK_ALLOC(out->image_path = str_join3(path[0] == '/' ? "" : t->dir, path[0] == '/' ? 0 : strlen(t->dir),
                                                    path, strlen(path), ""),
                        err, strlen(path) + strlen(t->dir) + 1);
        snprintf(out->what, sizeof out->what, "%.200s:%ld (%.250s)", spec, t->lineno, path);
        VLP_CHECK_ALLOC(out->caption = strdup(out->fields[t->caption_col]), err, 1);
        if (o->skip_table_images) {
            if (access(out->image_path, R_OK) != 0) { /* as a pass that reads it would skip it */
                stream_skip(s, "%.200s: cannot open %.250s: %s", out->what, out->image_path, strerror(errno));
                continue;
            }
        } else {
            vlp_error why = {0};
            if (read_whole_file(out->image_path, (size_t)1 << 30, &out->image, &out->image_len, &why) != VLP_OK) {
                stream_skip(s, "%.200s: %.300s", out->what, why.message);
                continue;
            }
        }
        return VLP_OK;
    }
}

static const char *const *columns(const void *state, int *n, int *image_col, int *caption_col) {
    const records *t = state;
    if (n) *n = t->ncols;
    if (image_col) *image_col = t->image_col;
    if (caption_col) *caption_col = t->caption_col;
    return (const char *const *)t->columns;
}

const source_kind source_table_records = {
    .name = "table", .spec = "a .tsv or .csv file with a header (columns --image-key and --caption-key)",
    .claims = claims, .open = open_records, .begin = begin, .next = next, .free = records_free,
    .columns = columns, .unlisted = true};
