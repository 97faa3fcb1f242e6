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
    /* whether spec is of this kind (the first kind of the table that claims it opens it) */
    bool (*claims)(const char *spec);
    /* reads what the source holds for this reader (rank of world); *epoch_size its samples */
    vlp_err (*open)(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err);
    /* epoch e from its first sample: the order a function of (seed, epoch) */
    vlp_err (*begin)(sample_stream *s, void *state, int64_t epoch, vlp_error *err);
    /* the next usable sample (unusable ones go to stream_skip); *done at the epoch's end */
    vlp_err (*next)(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err);
    void (*free)(void *state);
} source_kind;

/* for the kinds: the stream's options and spec, a skipped sample's report,
 * the epoch's random order */
const dataset_opts *stream_opts(const sample_stream *s);
const char *stream_spec(const sample_stream *s);
void stream_skip(sample_stream *s, const char *fmt, const char *a, const char *b);
rng64 stream_epoch_rng(const sample_stream *s, int64_t epoch, uint64_t salt);
void stream_permute(int64_t *v, int64_t n, rng64 *r);
/* a's first la bytes, b's first lb, then c, in one malloc'd string (NULL: out of memory) */
char *str_join3(const char *a, size_t la, const char *b, size_t lb, const char *c);
#endif
