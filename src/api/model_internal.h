/* The model handle of include/vlp.h, for the library's other API files
 * and the tools. */
#ifndef VLP_API_MODEL_INTERNAL_H
#define VLP_API_MODEL_INTERNAL_H
#include "data/tokenizer.h"
#include "model/clip.h"
#include "vlp.h"

struct vlp_model {
    clip_model m;
    vlp_tokenizer tok;
    vlp_model_opts o;
    float *pixels;   // (batch, 3, S, S) staging for file encoding
    int32_t *ids;    // (batch, ctx)
    char warning[256]; // "" or what the user should know about the load
};

/* vlp_model_load; trainable: a model whose towers can run their backward
 * (prompt learning), with its activations kept and a gradient buffer */
vlp_err model_load(vlp_model **out, const char *path, const vlp_model_opts *opts, bool trainable, vlp_error *err);
/* dir/tokenizer.merges for a model file dir/x: the tokenizer a model's
 * directory gives it when the caller names none */
void model_vocab_beside(const char *weights, char *out, size_t n);
/* b image files (at most the model's batch) preprocessed for it (CLIP's eval
 * transform, alpha dropped) into v->pixels */
vlp_err model_file_pixels(vlp_model *v, const char *const *paths, int b, vlp_error *err);
#endif
