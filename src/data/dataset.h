/*
 * Streams of image-caption samples from where the field keeps them, each
 * kind one file and one table entry (src/data/source_kind.h):
 *   - a TSV or CSV file with a header; the image path and caption columns are
 *     chosen by name (open_clip's defaults: filepath, title); paths relative
 *     to the file; CSV quoting as RFC 4180 (source_rows.c);
 *   - a folder with one folder of images a class (torchvision's
 *     ImageFolder): the class, its name with '_' read as a space, is both the
 *     caption and the label (source_rows.c);
 *   - WebDataset tar shards: members grouped by key (the name up to the first
 *     dot of its last path part), the image from jpg/jpeg/png/webp/gif/tif/tiff, the caption
 *     from txt or a field of json; shard lists brace-expanded
 *     ("train-{00000..00099}.tar", "{a,b}.tar") and joined with '::'
 *     (source_wds.c).
 * Every epoch has an order fixed by (seed, epoch): rows permuted, or shards
 * permuted and samples passed through a shuffle buffer; rank r of w takes
 * every w-th row or shard. A sample that cannot be used (a row with the wrong
 * number of fields, a missing file, an empty caption, no image, a corrupt or
 * truncated shard) is skipped, counted and reported through opts.warn; never
 * fatal. A dataset with no usable sample is an error.
 */
#ifndef VLP_DATA_DATASET_H
#define VLP_DATA_DATASET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* the help lines of the flags that name a set's columns, one text for every
 * command (docs/cli.md) */
#define HELP_IMAGE_KEY "a table's image column"
#define HELP_CAPTION_KEY "a table's caption column, or a shard's json field (a txt member first)"
#define HELP_LABEL_KEY "a table's label column, or a shard's json field"

typedef struct dataset_opts {
    const char *image_key;   // TSV/CSV column (default "filepath")
    const char *caption_key; // TSV/CSV column, or the json field of a shard (default "title")
    const char *alt_caption_key; // optional second caption column / json field (or NULL)
    bool shuffle;            // false: file order (evaluation)
    int shuffle_buffer;      // WebDataset sample buffer (default 1000)
    uint64_t seed;
    int rank, world;         // this reader's share
    /* called once for every sample skipped, with a message naming the file and
     * line or shard and key (from the thread that reads the stream); may be NULL */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
    /* curation: every sample with its whole record (a table's fields, a
     * shard's members), in file order for one reader, read as it streams
     * (a table is not loaded: memory does not grow with the set) */
    bool records;
    bool skip_table_images; // with records: a table's image files only checked, not read
} dataset_opts;

dataset_opts dataset_opts_default(void);

/* one member of a shard's sample, as the shard holds it */
typedef struct raw_member {
    char *name;     // "key.ext"
    uint8_t *data;  // its bytes, NUL-terminated (a txt member is a string)
    size_t len;
} raw_member;

typedef struct raw_sample {
    uint8_t *image;     // encoded bytes (malloc'd; the sample owns them; NULL: not read)
    size_t image_len;
    char *caption, *alt_caption; // malloc'd; alt_caption may be NULL
    char what[512];     // where it came from, for messages
    /* with dataset_opts.records, the record (all malloc'd, the sample's) */
    char *row;          // a table's line; fields point into it
    char **fields;      // (nfields) its fields
    int nfields;
    char *image_path;   // a table's image path, resolved against the table's directory
    raw_member *members; // (nmembers) a shard sample's members
    int nmembers;
} raw_sample;

void raw_sample_free(raw_sample *s);

typedef struct sample_stream sample_stream;

/* spec: a .tsv/.csv file, a folder of class folders, or tar shard patterns.
 * Counts the samples of this rank (for tar: reads every header once). */
vlp_err stream_open(sample_stream **out, const char *spec, const dataset_opts *o, vlp_error *err);
void stream_free(sample_stream *s);
int64_t stream_epoch_size(const sample_stream *s);
/* Start epoch e from its first sample. */
vlp_err stream_begin(sample_stream *s, int64_t epoch, vlp_error *err);
/* The next sample of the epoch; *done at its end. Unusable samples are
 * skipped (see stream_skipped). Errors only for what stops the whole stream. */
vlp_err stream_next(sample_stream *s, raw_sample *out, bool *done, vlp_error *err);
/* Where the stream is: the epoch begun last and the samples handed out of it. */
void stream_position(const sample_stream *s, int64_t *epoch, int64_t *index);
/* a table's header (n columns) and its image and caption columns; NULL for
 * the other kinds */
const char *const *stream_columns(const sample_stream *s, int *n, int *image_col, int *caption_col);
/* its kind's name: "table", "folder", "webdataset" */
const char *stream_kind(const sample_stream *s);
/* the kinds a spec may be, in the order they are tried: each one's name and
 * what its spec looks like (at most cap of them; returns how many) */
int stream_kinds(const char **names, const char **specs, int cap);
/* Samples skipped so far, and the first reason. */
int64_t stream_skipped(const sample_stream *s, const char **first_reason);
/* Where the skips are reported from now on (in place of opts.warn): a reader
 * that runs ahead of its consumer reports them when they are consumed. */
void stream_set_warn(sample_stream *s, void (*warn)(void *ctx, const char *msg), void *ctx);

/* Brace expansion of one pattern; returns the count (or -1 on a malformed
 * pattern / OOM), names in *out (malloc'd array of malloc'd strings). */
int brace_expand(const char *pattern, char ***out);
/* The shards of a spec: brace patterns joined with '::', expanded in order;
 * *out a malloc'd array of malloc'd names. */
vlp_err shard_list(const char *spec, char ***out, int *n, vlp_error *err);
/* A string field of a json member (malloc'd), or NULL. */
char *wds_json_field(const uint8_t *data, size_t n, const char *key);
#endif
