/*
 * The one pass every evaluation makes over a set: each sample's image
 * decoded and normalised as its model's config says (alpha dropped or
 * composited on white; the mean and std), CLIP's eval transform,
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
#include "data/image.h"

/* (n, 3, S, S) preprocessed images → (n, E) embeddings */
typedef vlp_err (*embed_images_fn)(void *ctx, const float *pixels, int n, float *out, vlp_error *err);

/* The batch every pass that embeds images fills: each image decoded (the
 * model's alpha rule), put through CLIP's eval transform into
 * the next slot, and the slots encoded in one call. embed_set (below) drives
 * it over a stream; a pass with its own walk over samples (curation's
 * passes, the probe's shots) drives it itself. */
typedef struct embed_batch {
    int S, E, B;             // image size, embedding width, slots (0: decoding only)
    int n;                   // images in it
    image_transform tf;
    image_decode_opts decode;
    float *pixels;           // (B, 3, S, S)
    float *emb;              // (B, E): the last embed_batch_encode's
    embed_images_fn encode;  // NULL: decoding only
    void *ctx;
} embed_batch;

/* B slots of S×S images encoded to E floats by encode(ctx, ...); B 0 and
 * encode NULL: a batch that only decodes (curation without a model) */
vlp_err embed_batch_init(embed_batch *b, int S, int E, int B, const image_preprocess *pre, embed_images_fn encode,
                         void *ctx, vlp_error *err);
void embed_batch_free(embed_batch *b);
/* an image's bytes decoded as the batch decodes (im freed by the caller) */
vlp_err embed_batch_decode(const embed_batch *b, const uint8_t *bytes, size_t n, const char *what, image_u8 *im,
                           vlp_error *err);
/* a decoded image through the eval transform into the next slot */
vlp_err embed_batch_add(embed_batch *b, const image_u8 *im, vlp_error *err);
static inline bool embed_batch_full(const embed_batch *b) { return b->n == b->B; }
/* the n images into b->emb (n, E); the caller reads them and empties the batch (b->n = 0) */
vlp_err embed_batch_encode(embed_batch *b, vlp_error *err);

typedef struct embed_set_opts {
    int image_size, embed_dim; // S, E
    int batch;                 // images a call of the encoder
    const image_preprocess *pre; // the model's normalisation and alpha rule (NULL: open_clip's default)
    void (*warn)(void *ctx, const char *msg); // a skipped image; may be NULL
    void *warn_ctx;
    bool stop_on_bad;          // an image that does not decode is an error (else skipped, counted)
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
    int64_t undecodable;         // images skipped because they did not decode
    char first_undecodable[512]; // the first one's message
} embedded_set;

/* The stream's epoch 0 from its first sample (begun here), in its order. */
vlp_err embed_set(sample_stream *src, embed_images_fn encode, const embed_set_opts *o, embedded_set *out,
                  vlp_error *err);
void embedded_set_free(embedded_set *s);
#endif
