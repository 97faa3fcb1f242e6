/*
 * The streaming loader: a reader thread pulls encoded samples from a
 * sample_stream (in the stream's order), worker threads decode, transform and
 * tokenize them into a ring of prefetched samples, and the trainer's call
 * takes them in order. Randomness per sample (crop, flip, caption choice)
 * comes from (seed, epoch, index), so batches are the same whatever the
 * thread timing, and a resumed run repeats them. A sample whose image does
 * not decode is skipped and counted. Implements batch_loader.
 */
#ifndef VLP_DATA_STREAM_LOADER_H
#define VLP_DATA_STREAM_LOADER_H
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"

typedef struct stream_loader_opts {
    int workers;             // decode threads (default 2)
    int prefetch;            // decoded samples kept ready (default 512)
    image_transform tf;      // size, train or eval, augmentation, normalisation
    image_decode_opts decode;
    float alt_prob;          // probability of the alternative caption, when a sample has one
    int ctx;                 // token ids per caption
    const text_tokenizer *tok; // must outlive the loader
    uint64_t seed;
    /* called for every image that does not decode, as the batch that would
     * have held it is formed (the trainer's thread); may be NULL */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} stream_loader_opts;

stream_loader_opts stream_loader_defaults(int image_size, bool train, int ctx, const text_tokenizer *tok);

/* Takes ownership of the stream. */
vlp_err stream_loader_create(batch_loader *out, sample_stream *s, const stream_loader_opts *o,
                             vlp_error *err);

/* Samples skipped and the first reason: images that did not decode among the
 * samples handed out, plus rows/members the reader could not use so far (the
 * reader runs ahead of the batches by up to the prefetch depth). */
int64_t stream_loader_skipped(const batch_loader *l, char *first_reason, size_t cap);
#endif
