/* The model handle of include/vlp.h, for the library's other API files
 * and the tools. */
#ifndef VLP_API_MODEL_INTERNAL_H
#define VLP_API_MODEL_INTERNAL_H
#include "data/tokenizer.h"
#include "model/clip.h"
#include "vlp.h"
#include "api/model_access.h"

struct vlp_model {
    clip_model m;
    text_tokenizer tok;
    vlp_model_opts o;
    float *pixels;   // (batch, 3, S, S) staging for file encoding
    int32_t *ids;    // (batch, ctx)
    char warning[256]; // "" or what the user should know about the load
};

/* b image files (at most the model's batch) preprocessed for it (CLIP's eval
 * transform, alpha dropped) into v->pixels */
vlp_err model_file_pixels(vlp_model *v, const char *const *paths, int b, vlp_error *err);
#endif
