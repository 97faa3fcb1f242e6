/* What of a loaded model (include/vlp.h's vlp_model) the library's own
 * layers work on, without opening the handle: its CLIP and its tokenizer
 * (vlp adapt's prompt learner trains on them). */
#ifndef VLP_API_MODEL_ACCESS_H
#define VLP_API_MODEL_ACCESS_H
#include "data/tokenizer.h"
#include "model/clip.h"
#include "vlp.h"

clip_model *model_clip(vlp_model *m);
const text_tokenizer *model_tokenizer(const vlp_model *m);
/* vlp_encode_images / vlp_encode_texts that also keep each item's fusion
 * encoder input in keep (may be NULL; out may be NULL with keep) */
struct itm_store;
vlp_err model_encode_images_keeping(vlp_model *m, const float *pixels, int n, float *out, struct itm_store *keep,
                                    vlp_error *err);
vlp_err model_encode_texts_keeping(vlp_model *m, const char *const *texts, int n, float *out, struct itm_store *keep,
                                   vlp_error *err);
#endif
