/* Validation on the user's own pairs, for training: a set streamed from a
 * TSV/CSV or WebDataset shards in file order (resize + center crop), its
 * images and captions embedded by the model being trained:
 *   - the contrastive (InfoNCE) loss over consecutive batches, as open_clip's
 *     val loss: the mean of the batches' losses weighted by their size;
 *   - retrieval both ways over the distinct captions, R@1/5/10;
 *   - zero-shot classification when a label column is given: each class the
 *     normalised mean of its template prompts' embeddings; top-1 and
 *     class-balanced accuracy.
 * The model's activation arena is used as it is (batches of m->batch). */
#ifndef VLP_EVAL_VALIDATE_H
#define VLP_EVAL_VALIDATE_H
#include "data/dataset.h"
#include "eval/eval.h"

typedef struct val_opts {
    const char *image_key;     // a table's image column (default "filepath")
    const char *caption_key;   // caption column / json field (default "title")
    const char *label_key;     // label column for zero-shot, NULL: none
    const char *const *templates; // zero-shot prompts, "{}" the class; NULL: "{}" alone
    int ntemplates;
    int loss_batch;            // the loss's batch (the training batch); 0: the whole set
    bool zeroshot_only;        // zero-shot alone: no captions needed (the labels serve), no loss or retrieval
    void (*warn)(void *ctx, const char *msg); // a skipped sample; may be NULL
    void *warn_ctx;
} val_opts;

typedef struct val_result {
    int n;                     // images
    int texts;                 // distinct captions
    double loss;               // InfoNCE, NAN with fewer than 2 images
    retrieval_result i2t, t2i;
    int classes;               // 0: no zero-shot
    zeroshot_result zs;
} val_result;

/* Opens the set as validate_pairs will (a table's header, the shards'
 * headers): a wrong path or column is an error before training starts. */
vlp_err validate_check(const char *spec, const val_opts *o, vlp_error *err);

vlp_err validate_pairs(clip_model *m, const text_tokenizer *tok, const char *spec,
                       const val_opts *o, val_result *out, vlp_error *err);
#endif
