/*
 * What a kind of sample source implements (a table, a folder of class
 * folders, WebDataset shards): one file defining a `const source_kind`,
 * plus its line in the table of src/data/dataset.c. The stream (dataset.h) owns the options, the skip
 * accounting and the position; a kind owns its own state.
 */
#ifndef VLP_DATA_SOURCE_KIND_H
#define VLP_DATA_SOURCE_KIND_H
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/dataset.h"

typedef struct source_kind {
    const char *name;  // "table", "folder", "webdataset"
    const char *spec;  // what a spec of this kind looks like, for messages and --help
    /* whether spec, read with these options, is of this kind (the first kind
     * of the table that claims it opens it) */
    bool (*claims)(const char *spec, const dataset_opts *o);
    /* reads what the source holds for this reader (rank of world); *epoch_size its samples */
    vlp_err (*open)(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err);
    /* epoch e from its first sample: the order a function of (seed, epoch) */
    vlp_err (*begin)(sample_stream *s, void *state, int64_t epoch, vlp_error *err);
    /* the next usable sample (unusable ones go to stream_skip); *done at the epoch's end */
    vlp_err (*next)(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err);
    void (*free)(void *state);
    /* a table's header; NULL: not a table */
    const char *const *(*columns)(const void *state, int *n, int *image_col, int *caption_col);
    bool unlisted; // a way of reading a kind listed already (whole records): not in --help
} source_kind;

/* For kinds whose samples are rows known when opened (an image path, a
 * caption, a second caption), as the table and the class folders are: the
 * rows are kept here, dealt to the readers, ordered each epoch, and each
 * image is read when its row comes. A kind's open fills them
 * (source_rows_add) and ends with source_rows_ready; its begin, next and
 * free are these. */
typedef struct source_rows source_rows;
source_rows *source_rows_new(void);
/* path is taken (malloc'd, freed on failure), the strings copied; line: the
 * file's line for messages, 0 for none. false: out of memory */
bool source_rows_add(source_rows *t, char *path, const char *caption, const char *alt, int line);
vlp_err source_rows_ready(const sample_stream *s, source_rows *t, int64_t *epoch_size, vlp_error *err);
vlp_err source_rows_begin(sample_stream *s, void *state, int64_t epoch, vlp_error *err);
vlp_err source_rows_next(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err);
void source_rows_free(void *state);

/* for the kinds: the stream's options and spec, a skipped sample's report,
 * the epoch's random order */
const dataset_opts *stream_opts(const sample_stream *s);
const char *stream_spec(const sample_stream *s);
void stream_skip(sample_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
rng64 stream_epoch_rng(const sample_stream *s, int64_t epoch, uint64_t salt);
void stream_permute(int64_t *v, int64_t n, rng64 *r);
/* a's first la bytes, b's first lb, then c, in one malloc'd string (NULL: out of memory) */
char *str_join3(const char *a, size_t la, const char *b, size_t lb, const char *c);
#endif
