#include "eval/emoji_eval.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void emoji_prompts(char out[EMOJI_NCATEGORIES][64]) {
    for (int c = 0; c < EMOJI_NCATEGORIES; c++) snprintf(out[c], 64, EMOJI_PROMPT, emoji_categories[c]);
}

vlp_err emoji_eval(clip_model *m, const vlp_tokenizer *tok, const emoji_set *s,
                   const image_norm *norm, emoji_eval_result *out, vlp_error *err) {
    int n = s->n, E = m->cfg.embed_dim;
    const char **texts = malloc(sizeof(char *) * (size_t)(n + EMOJI_NCATEGORIES)), **captions = NULL;
    int *target = malloc(sizeof(int) * (size_t)n);
    float *img = malloc(sizeof(float) * (size_t)n * E);
    float *txt = malloc(sizeof(float) * (size_t)(n + EMOJI_NCATEGORIES) * E);
    vlp_err rc = VLP_OK;
    int nt = 0;
    /* distinct captions: identical captions are one gallery item */
    if (target) captions = distinct_strings((const char *const *)s->caption, n, &nt, target);
    if (!captions || !texts || !img || !txt) {
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "eval buffers for %d images", n);
        goto done;
    }
    memcpy(texts, captions, sizeof(char *) * (size_t)nt);
    char prompts[EMOJI_NCATEGORIES][64];
    emoji_prompts(prompts);
    for (int c = 0; c < EMOJI_NCATEGORIES; c++) texts[nt + c] = prompts[c];
    rc = encode_images_rgb8(m, s->rgb, n, norm, img, err);
    if (rc == VLP_OK) rc = encode_texts(m, tok, texts, nt + EMOJI_NCATEGORIES, txt, err);
    if (rc == VLP_OK) rc = retrieval_eval(img, txt, target, n, nt, E, &out->i2t, err);
    if (rc == VLP_OK)
        rc = zeroshot_eval(img, txt + (size_t)nt * E, s->category, n, EMOJI_NCATEGORIES, E, &out->zs, err);
    out->images = n, out->texts = nt;
done:
    free(captions), free(texts), free(target), free(img), free(txt);
    return rc;
}
