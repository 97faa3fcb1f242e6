/* The held-out vendor check of the emoji demo: image→text retrieval over the
 * vendor's distinct captions, and zero-shot accuracy over the 9 categories
 * with one prompt per class. */
#ifndef VLP_EVAL_EMOJI_EVAL_H
#define VLP_EVAL_EMOJI_EVAL_H
#include "data/emoji.h"
#include "eval/eval.h"

#define EMOJI_PROMPT "an emoji of %s"

typedef struct emoji_eval_result {
    int images, texts;       // queries, distinct captions in the gallery
    retrieval_result i2t;
    zeroshot_result zs;
} emoji_eval_result;

vlp_err emoji_eval(clip_model *m, const vlp_tokenizer *tok, const emoji_set *s,
                   const image_norm *norm, emoji_eval_result *out, vlp_error *err);

/* The zero-shot prompts, "an emoji of <category>" (static storage). */
void emoji_prompts(char out[EMOJI_NCATEGORIES][64]);
#endif
