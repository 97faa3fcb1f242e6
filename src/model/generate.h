/* Caption generation with CoCa's decoder: greedy decoding, or beam search
 * with length-normalised scores (log-probability sum / generated tokens,
 * HF's length_penalty 1, as open_clip's generate with beam search). The
 * text tower and decoder run on the whole prefix at every step (no key/value
 * cache: captions are short). */
#ifndef VLP_MODEL_GENERATE_H
#define VLP_MODEL_GENERATE_H
#include "model/clip.h"

/* One image (3, S, S) → ids (T) [sot, tokens…, eot, 0…] (eot missing when the
 * context ran out) and *score (the mean log-probability of the generated
 * tokens). beam 1: greedy. The model must be reserved for batch ≥ beam. */
vlp_err caption_generate(clip_model *m, const float *image, int beam, int32_t sot, int32_t eot,
                         int32_t *ids, float *score, vlp_error *err);
#endif
