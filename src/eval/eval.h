/* Yardsticks on L2-normalised embeddings (rows), and batched encoders that
 * fill them. Similarities are computed a block of rows at a time, so memory
 * stays O(block × N) however large the sets. */
#ifndef VLP_EVAL_EVAL_H
#define VLP_EVAL_EVAL_H
#include <stdint.h>

#include "data/loader.h"
#include "model/clip.h"

/* The distinct non-empty strings of v, sorted (pointers into v; malloc'd
 * array, NULL when out of memory); idx[i] is v[i]'s position among them,
 * -1 for an empty or NULL one (idx may be NULL). Identical captions become one gallery item,
 * identical labels one class. */
const char **distinct_strings(const char *const *v, int n, int *nd, int *idx);

typedef struct retrieval_result {
    int n;                 // queries
    double r1, r5, r10;    // fraction of queries whose target ranks within 1, 5, 10
    double mean_rank, median_rank; // ranks from 1
} retrieval_result;

/* For each query i, the rank of gallery item target[i] among all gallery
 * items by cosine (1 = best; ties count against the target). */
vlp_err retrieval_eval(const float *query,   // (nq, E)
                       const float *gallery, // (ng, E)
                       const int *target,    // (nq)
                       int nq, int ng, int E, retrieval_result *out, vlp_error *err);

/* Several positives per query: gallery item g belongs to query owner[g];
 * the rank of query q is that of its best-scoring own item. */
vlp_err retrieval_eval_multi(const float *query,   // (nq, E)
                             const float *gallery, // (ng, E)
                             const int *owner,     // (ng)
                             int nq, int ng, int E, retrieval_result *out, vlp_error *err);

/* Two-stage retrieval (ALBEF, BLIP): each query's top K (nq, K) by the dual
 * encoder (vlp_search's: best first, ties to the lower index) re-ordered by
 * a second scorer's score (nq, K) (the fusion encoder's ITM), higher first;
 * the items past the top K stay behind them in cosine order. The ranks as
 * retrieval_eval (target) or retrieval_eval_multi (owner) give them, ties
 * counting against the query's own item. */
vlp_err retrieval_eval_reranked(const float *query, const float *gallery, const int *target, const int *owner, int nq,
                                int ng, int E, const int *top, const float *score, int K, retrieval_result *out,
                                vlp_error *err);

typedef struct zeroshot_result {
    int n, classes;
    double top1;          // plain accuracy
    double balanced;      // mean over classes present of per-class accuracy
    double majority;      // accuracy of always answering the most frequent class
    double top5;          // the label among the 5 best classes
} zeroshot_result;

/* label[i] < 0 skips item i. */
vlp_err zeroshot_eval(const float *img,     // (n, E)
                      const float *classes, // (C, E) one normalised embedding per class
                      const int *label, int n, int C, int E, zeroshot_result *out,
                      vlp_error *err);
/* the same, and per class c: images[c] of it, correct_of[c] classified right
 * (both (C), caller-owned; may be NULL) */
vlp_err zeroshot_eval_per_class(const float *img, const float *classes, const int *label, int n, int C, int E,
                                zeroshot_result *out, int *images, int *correct_of, vlp_error *err);

/* the same from the scores (n, C) of any classifier (the arg-max is the class) */
vlp_err zeroshot_eval_scores(const float *scores, const int *label, int n, int C, zeroshot_result *out, int *images,
                             int *correct_of, vlp_error *err);
/* Embeddings of n images (n, 3, S, S as RGB8 (n, S, S, 3)) / n texts, through
 * the model in batches of at most m->batch; out (n, E). */
vlp_err encode_images_rgb8(clip_model *m, const uint8_t *rgb, int n, const image_norm *norm,
                           float *out, vlp_error *err);
vlp_err encode_texts(clip_model *m, const text_tokenizer *tok, const char *const *texts, int n,
                     float *out, vlp_error *err);
/* A template with "{}" replaced by the class name (without "{}": the name
 * appended after a space); malloc'd, NULL when out of memory. */
char *class_prompt(const char *tpl, const char *cls);
/* Zero-shot templates: a name shipped with vlp ("default", "openai-imagenet":
 * templates/NAME.txt of the data directory) or a file, a template a line;
 * an empty file is refused. Free each line and the array. */
vlp_err templates_load(const char *name_or_file, char ***out, int *n, vlp_error *err);
/* One normalised embedding per class: the mean of its prompts' normalised
 * embeddings, each template with "{}" replaced by the class name (a template
 * without "{}" gets the name appended); out (C, E). */
vlp_err encode_classes(clip_model *m, const text_tokenizer *tok, const char *const *classes, int C,
                       const char *const *templates, int nt, float *out, vlp_error *err);
#endif
