/*
 * A pool of image-caption samples read once, in order, with each sample's
 * whole record (through the sample stream, data/dataset.h, with
 * dataset_opts.records), and written back after curation in the same form:
 *   - a TSV/CSV table: the row's fields (every column, as the file has them);
 *     written to a TSV or CSV with the input's header;
 *   - WebDataset shards: every member of the sample (image, txt, json, any
 *     other), written to shards as they were.
 * A table may also be written as shards (the image file's bytes, and a json
 * of the other columns). One sample is held at a time: memory does not grow
 * with the pool. Samples that cannot be used (as the training reader's
 * rules: a short row, an empty caption, a member-less key, a cut shard) are
 * skipped, counted and reported through warn; a sample's index counts the
 * usable ones, so two passes over the same pool see the same indices.
 */
#ifndef VLP_CURATE_POOL_H
#define VLP_CURATE_POOL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

typedef struct pool_opts {
    const char *image_key;   // table column (default "filepath")
    const char *caption_key; // table column, or the json field of a shard (default "title"; "txt" members too)
    bool read_images;        // false: a table's image files are not read (caption-only passes)
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} pool_opts;

pool_opts pool_opts_default(void);

/* a shard sample's member: name "key.ext", its bytes (NUL-terminated) */
typedef raw_member pool_member;

typedef struct pool_sample {
    int64_t index;          // usable samples before this one
    char what[512];         // "file.tsv:12 (img/a.jpg)" or "shard.tar: key"
    const uint8_t *image;   // encoded bytes (NULL for a table read without images)
    size_t image_len;
    const char *caption;
    /* the record */
    char **fields;          // table: the row's fields (ncolumns of them)
    char *image_path;       // table: the image path resolved against the table's directory
    pool_member *members;   // shards
    int nmembers;
    raw_sample raw;         // what the stream gave: owns all of the above
} pool_sample;

typedef struct pool pool;

/* spec: a .tsv/.csv file, or shard patterns as the trainer takes them */
vlp_err pool_open(pool **out, const char *spec, const pool_opts *o, vlp_error *err);
/* the next usable sample into *s (its previous contents freed); *done at the end */
vlp_err pool_next(pool *p, pool_sample *s, bool *done, vlp_error *err);
/* back to the first sample (a second pass) */
vlp_err pool_rewind(pool *p, vlp_error *err);
void pool_sample_free(pool_sample *s);
void pool_free(pool *p);
/* samples skipped so far (this pass), and the first reason */
int64_t pool_skipped(const pool *p, const char **first);
/* table pools: the header's columns (n of them) and the image and caption
 * columns' indices; NULL for shards */
const char *const *pool_columns(const pool *p, int *n, int *image_col, int *caption_col);
const char *pool_spec(const pool *p);

/* ---- writing what is kept ---- */

typedef struct pool_writer pool_writer;

/* out: FILE.tsv or FILE.csv (a table pool only: the input's columns; image
 * paths rewritten when the output is in another directory), or a shard
 * prefix: PREFIX-00000.tar, ... of per_shard samples. Files appear under
 * their names only whole (a table when finished, a shard when full). */
vlp_err pool_writer_open(pool_writer **out, const char *path, const pool *in, long per_shard, vlp_error *err);
vlp_err pool_writer_add(pool_writer *w, const pool_sample *s, vlp_error *err);
/* the last shard or the table committed; *written the samples written */
vlp_err pool_writer_finish(pool_writer *w, int64_t *written, long *shards, vlp_error *err);
/* after an error (not finished): the unfinished file removed, and the shards
 * this writer completed too, so a failed run leaves no part of its output */
void pool_writer_free(pool_writer *w);
#endif
