/* Image-text matching (ITM) by the fusion encoder on pairs of a set: each
 * image's and each text's tower output kept once, as the fusion encoder
 * reads it, then any of their pairs scored (ALBEF's retrieval keeps its
 * set's features the same way). Memory: Tv·E floats an image and T·W a text
 * (ViT-B-16-fusion: 0.4 MB an image, 0.16 MB a text). */
#ifndef VLP_EVAL_ITM_H
#define VLP_EVAL_ITM_H
#include <stdint.h>

#include "model/clip.h"

typedef struct itm_store {
    int n_img, n_txt, cap_img, cap_txt, cap_pool;
    float *img;    // (n_img, Tv, E): the image tower's projected tokens
    float *txt;    // (n_txt, T, W): the text tower's last block output
    int32_t *pool; // (n_txt): each text's end-of-text position
} itm_store;

/* The last image / text forward's first b rows appended. */
vlp_err itm_store_images(itm_store *s, const clip_model *m, int b, vlp_error *err);
vlp_err itm_store_texts(itm_store *s, const clip_model *m, int b, vlp_error *err);
void itm_store_free(itm_store *s);

/* For P pairs, image img_of[p] and text txt_of[p] of the store: the ITM
 * head's margin, logit(matched) − logit(not matched) → margin (P); the
 * probability that they match (the head's 2-way softmax) is its logistic,
 * itm_probabilities. Ranks read the margin: the probability rounds to 1.0f
 * past a margin of ~17, where confident pairs would tie. m->batch pairs a
 * fusion forward; progress (may be NULL) after each with the pairs done, a
 * nonzero return stops it (an error). */
vlp_err itm_pair_scores(clip_model *m, const itm_store *s, const int *img_of, const int *txt_of, long P,
                        float *margin, int (*progress)(void *ctx, long done), void *ctx, vlp_error *err);
/* margins → probabilities, in place */
void itm_probabilities(float *x, long n);
#endif
