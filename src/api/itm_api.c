/* vlp_itm_scores (include/vlp.h): the fusion encoder's image-text matching
 * probability of pairs, the rule of `vlp match` and of the Python package's
 * Model.match. Each image and text runs through its tower once, kept as the
 * fusion encoder reads it (eval/itm.h); the pairs then go through the fusion
 * encoder a batch at a time. */
#include "api/model_internal.h"
#include "core/error.h"
#include "eval/itm.h"
#include "vlp.h"

#include <stdlib.h>

vlp_err vlp_itm_scores(vlp_model *v, const float *pixels, int n_images, const char *const *texts, int n_texts,
                       const int *pairs, long n_pairs, float *out, vlp_error *err) {
    VLP_CHECK_ARG(v && out, err, "vlp_itm_scores needs a model and an output");
    VLP_CHECK_ARG(n_images >= 0 && n_texts >= 0 && (pairs ? n_pairs >= 0 : 1), err,
                  "vlp_itm_scores: %d images, %d texts, %ld pairs", n_images, n_texts, pairs ? n_pairs : 0L);
    VLP_CHECK_ARG((pixels || !n_images) && (texts || !n_texts), err, "vlp_itm_scores: %s NULL", pixels || !n_images
                  ? "texts" : "pixels");
    VLP_CHECK_ARG(v->m.fusion.on, err, "the model has no fusion encoder (its config has no fusion_cfg): no ITM head");
    long P = pairs ? n_pairs : (long)n_images * n_texts;
    for (long p = 0; pairs && p < P; p++)
        VLP_CHECK_ARG(pairs[2 * p] >= 0 && pairs[2 * p] < n_images && pairs[2 * p + 1] >= 0 &&
                          pairs[2 * p + 1] < n_texts,
                      err, "vlp_itm_scores: pair %ld is (image %d, text %d) of %d images and %d texts", p, pairs[2 * p],
                      pairs[2 * p + 1], n_images, n_texts);
    if (P == 0) return VLP_OK;
    itm_store keep = {0};
    int *img_of = malloc(sizeof(int) * (size_t)P), *txt_of = malloc(sizeof(int) * (size_t)P);
    vlp_err rc = img_of && txt_of ? VLP_OK
                                  : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%ld image-text pairs", P);
    for (long p = 0; rc == VLP_OK && p < P; p++) {
        img_of[p] = pairs ? pairs[2 * p] : (int)(p / n_texts);
        txt_of[p] = pairs ? pairs[2 * p + 1] : (int)(p % n_texts);
    }
    if (rc == VLP_OK) rc = model_encode_images_keeping(v, pixels, n_images, NULL, &keep, err);
    if (rc == VLP_OK) rc = model_encode_texts_keeping(v, texts, n_texts, NULL, &keep, err);
    if (rc == VLP_OK) rc = itm_pair_scores(&v->m, &keep, img_of, txt_of, P, out, NULL, NULL, err);
    if (rc == VLP_OK) itm_probabilities(out, P);
    itm_store_free(&keep);
    free(img_of), free(txt_of);
    return rc;
}
