/* Sources whose samples are known when opened, one row each: a TSV/CSV
 * table (open_clip's csv layout) and a folder of class folders (the layout of
 * torchvision's ImageFolder: the class is the folder's name, '_' read as a
 * space; it is the caption and the label). Rows are permuted per epoch and
 * dealt to the readers; an image file is read when its row comes. */
#include "data/source_kind.h"
#include "data/table.h"
#include "data/tar.h"
#include "io/file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct row {
    char *path, *caption, *alt;
    int line; // the table's line; 0 in a folder
} row;

struct source_rows {
    row *v;
    int64_t n, cap;
    int64_t *order; // this epoch's rows of this rank
    int64_t norder, pos;
};

void source_rows_free(void *state) {
    source_rows *t = state;
    if (!t) return;
    for (int64_t i = 0; i < t->n; i++) free(t->v[i].path), free(t->v[i].caption), free(t->v[i].alt);
    free(t->v), free(t->order), free(t);
}

source_rows *source_rows_new(void) { return calloc(1, sizeof(source_rows)); }

/* a row (copies of its strings); false when out of memory */
bool source_rows_add(source_rows *t, char *path, const char *caption, const char *alt, int line) {
    if (t->n == t->cap) {
        row *g = realloc(t->v, sizeof(row) * (size_t)(t->cap = t->cap ? 2 * t->cap : 1024));
        if (!g) return free(path), false;
        t->v = g;
    }
    row *r = &t->v[t->n];
    r->path = path, r->caption = strdup(caption), r->alt = alt ? strdup(alt) : NULL, r->line = line;
    if (!r->path || !r->caption || (alt && !r->alt)) {
        free(r->path), free(r->caption), free(r->alt);
        return false;
    }
    t->n++;
    return true;
}

/* this reader's share of the rows, and room for their order */
vlp_err source_rows_ready(const sample_stream *s, source_rows *t, int64_t *epoch_size, vlp_error *err) {
    const dataset_opts *o = stream_opts(s);
    t->order = malloc(sizeof(int64_t) * (size_t)t->n);
    VLP_CHECK_ALLOC(t->order, err, sizeof(int64_t) * (size_t)t->n);
    *epoch_size = (t->n - o->rank + o->world - 1) / o->world;
    return VLP_OK;
}

vlp_err source_rows_begin(sample_stream *s, void *state, int64_t epoch, vlp_error *err) {
    source_rows *t = state;
    const dataset_opts *o = stream_opts(s);
    int64_t *all = t->order, n = t->n;
    for (int64_t i = 0; i < n; i++) all[i] = i;
    rng64 r = stream_epoch_rng(s, epoch, 1);
    if (o->shuffle) stream_permute(all, n, &r);
    t->norder = 0; /* keep every world-th, in place */
    for (int64_t i = o->rank; i < n; i += o->world) all[t->norder++] = all[i];
    t->pos = 0;
    return VLP_OK;
}

vlp_err source_rows_next(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err) {
    source_rows *t = state;
    while (t->pos < t->norder) {
        const row *r = &t->v[t->order[t->pos++]];
        vlp_error why = {0};
        memset(out, 0, sizeof *out);
        if (r->line) snprintf(out->what, sizeof out->what, "%s:%d (%s)", stream_spec(s), r->line, r->path);
        else snprintf(out->what, sizeof out->what, "%s", r->path);
        if (read_whole_file(r->path, (size_t)1 << 30, &out->image, &out->image_len, &why) != VLP_OK) {
            stream_skip(s, "%.200s: %.300s", out->what, why.message);
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

/* ---- TSV / CSV ------------------------------------------------------------------------------ */

static bool claims_table(const char *spec, const dataset_opts *o) { return table_spec(spec, NULL); }

static vlp_err open_table(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err) {
    const char *path = stream_spec(s);
    const dataset_opts *o = stream_opts(s);
    source_rows *t = source_rows_new();
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    *state = t;
    bool csv;
    table_spec(path, &csv);
    char sep = csv ? ',' : '\t';
    FILE *fp = fopen(path, "r");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL, *fields[256];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, ci = -1, ii = -1, ai = -1, ncols = 0;
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
            stream_skip(s, "%s:%s", path, where);
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        int nf = lineno == 1 ? table_header(line, sep, csv, fields, 256) : table_split(line, sep, csv, fields, 256);
        if (lineno == 1) {
            ncols = nf;
            char msg[sizeof err->message];
            if ((ii = table_column(fields, nf, o->image_key, path, msg, sizeof msg)) < 0 ||
                (ci = table_column(fields, nf, o->caption_key, path, msg, sizeof msg)) < 0 ||
                (o->alt_caption_key && (ai = table_column(fields, nf, o->alt_caption_key, path, msg, sizeof msg)) < 0)) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s", msg);
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
            stream_skip(s, "%s:%s", path, msg);
            continue;
        }
        if (!fields[ii][0] || table_blank(fields[ci])) {
            stream_skip(s, "%s:%s: an empty image path or caption", path, where);
            continue;
        }
        char *full = fields[ii][0] == '/' ? strdup(fields[ii]) : str_join3(path, dirlen, fields[ii], strlen(fields[ii]), "");
        if (!source_rows_add(t, full, fields[ci], ai >= 0 ? fields[ai] : NULL, lineno)) {
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: rows", path);
            break;
        }
    }
    free(line);
    fclose(fp);
    VLP_TRY(rc);
    VLP_CHECK_FORMAT(t->n > 0, err, "%s: no samples after the header", path);
    return source_rows_ready(s, t, epoch_size, err);
}

const source_kind source_table = {
    .name = "table", .spec = "a .tsv or .csv file with a header (columns --image-key and --caption-key)",
    .claims = claims_table, .open = open_table, .begin = source_rows_begin, .next = source_rows_next, .free = source_rows_free};

/* ---- a folder of class folders ----------------------------------------------------------------- */

static bool claims_folder(const char *spec, const dataset_opts *o) {
    struct stat st;
    return stat(spec, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* every image of every class folder, both in name order */
static vlp_err open_folder(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err) {
    const char *root = stream_spec(s);
    source_rows *t = source_rows_new();
    VLP_CHECK_ALLOC(t, err, sizeof *t);
    *state = t;
    struct dirent **cls;
    int nc = scandir(root, &cls, NULL, alphasort);
    VLP_CHECK_IO(nc >= 0, err, "cannot list %s: %s", root, strerror(errno));
    vlp_err rc = VLP_OK;
    int classes = 0;
    for (int i = 0; i < nc; i++) {
        char dir[4096], label[256];
        snprintf(dir, sizeof dir, "%s/%s", root, cls[i]->d_name);
        if (rc != VLP_OK || cls[i]->d_name[0] == '.' || !is_dir(dir)) continue;
        snprintf(label, sizeof label, "%s", cls[i]->d_name);
        for (char *p = label; *p; p++)
            if (*p == '_') *p = ' ';
        struct dirent **files;
        int nf = scandir(dir, &files, NULL, alphasort), images = 0;
        if (nf < 0) rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot list %s: %s", dir, strerror(errno));
        for (int f = 0; f < nf; f++) {
            const char *dot = strrchr(files[f]->d_name, '.');
            if (rc == VLP_OK && dot && wds_is_image_ext(dot + 1)) {
                if (!source_rows_add(t, str_join3(dir, strlen(dir), "/", 1, files[f]->d_name), label, label, 0))
                    rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: images", dir);
                images++;
            }
            free(files[f]);
        }
        if (nf >= 0) free(files);
        if (rc == VLP_OK && !images) stream_skip(s, "%s: class folder '%s' holds no image (jpg/jpeg/png/webp/gif/tif/tiff)", root, cls[i]->d_name);
        classes += images > 0;
    }
    for (int i = 0; i < nc; i++) free(cls[i]);
    free(cls);
    VLP_TRY(rc);
    VLP_CHECK_FORMAT(t->n > 0, err, "%s: no class folder with images (the layout: %s/CLASS/IMAGE.jpg)", root, root);
    return source_rows_ready(s, t, epoch_size, err);
}

const source_kind source_folder = {
    .name = "folder", .spec = "a folder with one folder of images a class (its name is the class)",
    .claims = claims_folder, .open = open_folder, .begin = source_rows_begin, .next = source_rows_next, .free = source_rows_free};
