/* The sample stream: a source of one of the kinds below, with the options,
 * the skip accounting and the position every kind shares. */
#include "data/dataset.h"
#include "core/error.h"
#include "data/source_kind.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the kinds, in the order they are asked whether a spec is theirs (the
 * last claims everything) */
extern const source_kind source_table_records, source_table, source_folder, source_webdataset;
static const source_kind *const kinds[] = {&source_table_records, &source_table, &source_folder,
                                           &source_webdataset};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))

struct sample_stream {
    dataset_opts o;
    char *spec;
    const source_kind *kind;
    void *state;
    int64_t epoch_size;
    int64_t skipped;
    char first_skip[512];
    int64_t epoch, pos; // the epoch begun last and the samples handed out of it
};

dataset_opts dataset_opts_default(void) {
    return (dataset_opts){.image_key = "filepath", .caption_key = "title", .shuffle = true,
                          .shuffle_buffer = 1000, .seed = 0, .rank = 0, .world = 1};
}

void raw_sample_free(raw_sample *s) {
    free(s->image), free(s->caption), free(s->alt_caption);
    free(s->row), free(s->fields), free(s->image_path);
    for (int i = 0; i < s->nmembers; i++) free(s->members[i].name), free(s->members[i].data);
    free(s->members);
    s->image = NULL, s->caption = s->alt_caption = NULL;
    s->row = s->image_path = NULL, s->fields = NULL, s->nfields = 0;
    s->members = NULL, s->nmembers = 0;
}

const char *const *stream_columns(const sample_stream *s, int *n, int *image_col, int *caption_col) {
    if (s->kind->columns) return s->kind->columns(s->state, n, image_col, caption_col);
    if (n) *n = 0;
    return NULL;
}

char *str_join3(const char *a, size_t la, const char *b, size_t lb, const char *c) {
    size_t lc = strlen(c);
    char *r = malloc(la + lb + lc + 1);
    if (!r) return NULL;
    memcpy(r, a, la), memcpy(r + la, b, lb), memcpy(r + la + lb, c, lc + 1);
    return r;
}

const dataset_opts *stream_opts(const sample_stream *s) { return &s->o; }
const char *stream_spec(const sample_stream *s) { return s->spec; }
const char *stream_kind(const sample_stream *s) { return s->kind->name; }

void stream_skip(sample_stream *s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!s->skipped++) snprintf(s->first_skip, sizeof s->first_skip, "%s", msg);
    if (s->o.warn) s->o.warn(s->o.warn_ctx, msg);
}

int64_t stream_skipped(const sample_stream *s, const char **first) {
    if (first) *first = s->first_skip;
    return s->skipped;
}

int64_t stream_epoch_size(const sample_stream *s) { return s->epoch_size; }

void stream_position(const sample_stream *s, int64_t *epoch, int64_t *index) {
    *epoch = s->epoch, *index = s->pos;
}

void stream_set_warn(sample_stream *s, void (*warn)(void *ctx, const char *msg), void *ctx) {
    s->o.warn = warn, s->o.warn_ctx = ctx;
}

rng64 stream_epoch_rng(const sample_stream *s, int64_t epoch, uint64_t salt) {
    rng64 r = {s->o.seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)) ^ salt};
    rng64_u64(&r);
    return r;
}

void stream_permute(int64_t *v, int64_t n, rng64 *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng64_u64(r) % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j], v[j] = t;
    }
}

void stream_free(sample_stream *s) {
    if (!s) return;
    if (s->kind && s->state) s->kind->free(s->state);
    free(s->spec);
    free(s);
}

int stream_kinds(const char **names, const char **specs, int cap) {
    int n = 0;
    for (int i = 0; i < NKINDS && n < cap; i++)
        if (!kinds[i]->unlisted) names[n] = kinds[i]->name, specs[n] = kinds[i]->spec, n++;
    return n;
}

vlp_err stream_open(sample_stream **out, const char *spec, const dataset_opts *o, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(o->world > 0 && o->rank >= 0 && o->rank < o->world && o->shuffle_buffer >= 0, err,
                  "rank %d of %d readers, shuffle buffer %d", o->rank, o->world, o->shuffle_buffer);
    VLP_CHECK_ARG(!o->records || (!o->shuffle && o->world == 1), err,
                  "whole records are read in file order by one reader");
    sample_stream *s = calloc(1, sizeof *s);
    VLP_CHECK_ALLOC(s, err, sizeof *s);
    s->o = *o;
    s->spec = strdup(spec);
    for (int i = 0; i < NKINDS && !s->kind; i++)
        if (kinds[i]->claims(spec, o)) s->kind = kinds[i];
    vlp_err rc = !s->spec ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "spec")
                          : s->kind->open(s, &s->state, &s->epoch_size, err);
    if (rc != VLP_OK) {
        stream_free(s);
        return rc;
    }
    *out = s;
    return VLP_OK;
}

vlp_err stream_begin(sample_stream *s, int64_t epoch, vlp_error *err) {
    VLP_CHECK_ARG(epoch >= 0, err, "epoch %lld", (long long)epoch);
    VLP_TRY(s->kind->begin(s, s->state, epoch, err));
    s->epoch = epoch, s->pos = 0;
    return VLP_OK;
}

vlp_err stream_next(sample_stream *s, raw_sample *out, bool *done, vlp_error *err) {
    *done = false;
    memset(out, 0, sizeof *out);
    VLP_TRY(s->kind->next(s, s->state, out, done, err));
    s->pos += !*done;
    return VLP_OK;
}
