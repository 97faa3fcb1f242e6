/*
 * The one pass every evaluation makes over a set: each sample's image
 * decoded (alpha dropped, or composited on white), CLIP's eval transform,
 * encoded in batches; captions and labels kept with the embeddings. An image
 * that does not decode is skipped and warned, as training skips it.
 * Validation during training, vlp eval and what else embeds a set call it,
 * each with its encoder (the training model, a loaded model, learnt prompts).
 */
#ifndef VLP_EVAL_EMBED_SET_H
#define VLP_EVAL_EMBED_SET_H
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "data/dataset.h"

/* (n, 3, S, S) preprocessed images → (n, E) embeddings */
typedef vlp_err (*embed_images_fn)(void *ctx, const float *pixels, int n, float *out, vlp_error *err);

typedef struct embed_set_opts {
    int image_size, embed_dim; // S, E
    int batch;                 // images a call of the encoder
    bool white;                // composite transparent pixels on white (else drop alpha)
    void (*warn)(void *ctx, const char *msg); // a skipped image; may be NULL
    void *warn_ctx;
    /* after each batch (may be NULL): its pixels, and the samples' captions,
     * from `first` on (the set's indices) */
    vlp_err (*batch_done)(void *ctx, const float *pixels, char *const *captions, int first, int n,
                          vlp_error *err);
    void (*progress)(void *ctx, int64_t done); // images so far; may be NULL
    void *ctx;                 // for the encoder, batch_done and progress
} embed_set_opts;

typedef struct embedded_set {
    int n;
    float *emb;     // (n, E)
    char **caption; // (n)
    char **label;   // (n): the stream's alt caption (the label column), NULL where none
} embedded_set;

/* The stream's epoch 0 from its first sample (begun here), in its order. */
vlp_err embed_set(sample_stream *src, embed_images_fn encode, const embed_set_opts *o, embedded_set *out,
                  vlp_error *err);
void embedded_set_free(embedded_set *s);
#endif
