/* itc-itm-mlm's draws (src/train/objectives/itc_itm_mlm.c), for its tests. */
#ifndef VLP_TRAIN_OBJECTIVES_ITC_ITM_MLM_H
#define VLP_TRAIN_OBJECTIVES_ITC_ITM_MLM_H
#include <stdint.h>

/* ALBEF/BLIP's hard negatives among n pairs of normalised embeddings img,
 * txt (n, E): for text i an image j ≠ i drawn with weight softmax_j(scale ·
 * txt_i · img_j) + 1e-4 (neg_image[i]), for image i a text likewise
 * (neg_text[i]); never the positive. seed: the draw's; w (n) scratch. */
void fusion_hard_negatives(const float *img, const float *txt, int n, int E, float scale, uint64_t seed,
                           int32_t *neg_image, int32_t *neg_text, double *w);
/* BERT's masking of n tokenised captions (n, T): each token between the
 * start and the end token (the largest id) with probability prob, then 80%
 * [MASK] (id V), 10% a random token below V − 2 (not the start or end
 * token), 10% kept; masked (n, T) the captions so, pos / target the flat
 * positions (b · T + t) and their tokens. Returns their count. */
int fusion_mask_tokens(int32_t *masked, int32_t *pos, int32_t *target, const int32_t *ids, int n, int T, int V,
                       float prob, uint64_t seed);
#endif
