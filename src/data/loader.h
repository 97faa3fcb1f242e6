/*
 * The trainer's view of data: a loader hands out batches of normalised
 * images (B, 3, S, S) and token ids (B, ctx), in an order fixed by a seed, and
 * can say and restore where it is (epoch, samples consumed) so a resumed run
 * sees exactly the batches the uninterrupted one would have. Each epoch is a
 * fresh permutation; a partial last batch is dropped, as open_clip does.
 *
 * The in-memory pair loader below serves small corpora (the emoji demo); the
 * streaming TSV/WebDataset loaders of the data pipeline fill the same
 * interface.
 */
#ifndef VLP_DATA_LOADER_H
#define VLP_DATA_LOADER_H
#include <stdint.h>

#include "data/image.h"
#include "data/tokenizer.h"
#include "core/error.h"

typedef struct data_pos {
    int64_t epoch; // from 0
    int64_t index; // samples of this epoch already handed out
} data_pos;

typedef struct batch_loader {
    void *impl;
    int64_t epoch_size; // samples per epoch
    /* ranks drawing from this epoch together (a sharded pair loader: the
     * world; 0 or 1: this process alone, e.g. its own shards) */
    int epoch_ranks;
    vlp_err (*next)(void *impl, int B, float *images, int32_t *ids, vlp_error *err);
    data_pos (*tell)(const void *impl);
    vlp_err (*seek)(void *impl, data_pos p, vlp_error *err);
    void (*free)(void *impl);
} batch_loader;

/* Samples of the loader's epoch one step uses, when this process takes
 * per_rank samples a step (every rank drawing from the same epoch counts) */
static inline int64_t loader_samples_per_step(const batch_loader *l, int per_rank) {
    return (int64_t)per_rank * (l->epoch_ranks > 1 ? l->epoch_ranks : 1);
}

static inline void loader_free(batch_loader *l) {
    if (l && l->free) l->free(l->impl);
}

/* One (S, S, 3) RGB8 image → (3, S, S) normalised floats. */
void rgb8_to_chw(float *out, const uint8_t *rgb, int S, const image_norm *n);

/* In-memory pairs: rgb (n, S, S, 3) stays owned by the caller and must
 * outlive the loader. captions (n, ncap): ncap alternative captions per image,
 * tokenized once here; each time a sample is served one of them is chosen,
 * uniformly, as a function of (seed, epoch, sample) — so resumable. */
vlp_err pair_loader_create(batch_loader *out, const uint8_t *rgb, const char *const *captions,
                           int ncap, int64_t n, int S, const text_tokenizer *tok, int ctx,
                           const image_norm *norm, uint64_t seed, vlp_error *err);

/* Data parallel: rank `rank` of `world` then takes, at each next(B), its
 * slice of the global batch of world·B the one-process loader would have
 * handed out, so world ranks see exactly one process's batches. The
 * position (epoch, samples of the epoch) is the global one, the same on
 * every rank. */
vlp_err pair_loader_shard(batch_loader *l, int rank, int world, vlp_error *err);
#endif
