/*
 * WebDataset shards PREFIX-00000.tar, PREFIX-00001.tar, ... written sample by
 * sample, a new shard every per_shard samples. Every sample's members are
 * named by its place in the output (INDEX, nine digits), so no two samples
 * share a key: readers group a shard's members by key, and two samples with
 * one key from two input shards would be read as one (issue 31). Each shard
 * is written under a temporary name and renamed when whole; a writer freed
 * before shard_writer_finish removes every shard it wrote and the directory
 * it made (when empty): a failed or interrupted run leaves no part of its
 * output. Used by `vlp data shards` and the curation tools' pool writer.
 */
#ifndef VLP_DATA_SHARD_WRITER_H
#define VLP_DATA_SHARD_WRITER_H
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

typedef struct shard_writer shard_writer;

/* per_shard >= 1; PREFIX's directory is made if missing */
vlp_err shard_writer_open(shard_writer **out, const char *prefix, long per_shard, vlp_error *err);
/* A sample of an image file's bytes and text fields: INDEX.<jpg|png|webp> (by
 * the bytes' signature; anything else is refused, naming `what`) and
 * INDEX.json {keys[k]: values[k]}. Keys and values are free text: bytes
 * that are not UTF-8 become U+FFFD (JSON cannot hold them). */
vlp_err shard_writer_add_pair(shard_writer *w, const uint8_t *image, size_t image_len, const char *const *keys,
                              const char *const *values, int nfields, const char *what, vlp_error *err);
/* A shard sample's members as they are, each "KEY.EXT" written as
 * INDEX_KEY.EXT (INDEX.EXT when a key is too long for a ustar name). */
vlp_err shard_writer_add_members(shard_writer *w, const raw_member *members, int n, vlp_error *err);
/* samples written so far */
int64_t shard_writer_count(const shard_writer *w);
/* The last shard closed; the samples written and the shards they fill. */
vlp_err shard_writer_finish(shard_writer *w, int64_t *samples, long *shards, vlp_error *err);
/* After finish: frees. Before: removes what this writer wrote, then frees. */
void shard_writer_free(shard_writer *w);
#endif
