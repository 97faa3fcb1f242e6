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
#endif
