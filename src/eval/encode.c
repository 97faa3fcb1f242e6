#include "core/error.h"
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vlp_err encode_images_rgb8(clip_model *m, const uint8_t *rgb, int n, const image_norm *norm,
                           float *out, vlp_error *err) {
    VLP_CHECK_ARG(m->batch > 0, err, "reserve a batch (clip_reserve) before encoding");
    int S = m->cfg.vision.image_size, E = m->cfg.embed_dim, B = m->batch;
    size_t img = (size_t)3 * S * S;
    float *x = malloc(sizeof(float) * img * B);
    VLP_CHECK_ALLOC(x, err, sizeof(float) * img * B);
    vlp_err rc = VLP_OK;
    for (int i0 = 0; rc == VLP_OK && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int i = 0; i < b; i++) rgb8_to_chw(x + i * img, rgb + (size_t)(i0 + i) * S * S * 3, S, norm);
        rc = clip_image_forward(m, x, b, err);
        if (rc == VLP_OK) memcpy(out + (size_t)i0 * E, m->image_acts.emb, sizeof(float) * b * E);
    }
    free(x);
    return rc;
}

vlp_err encode_texts(clip_model *m, const text_tokenizer *tok, const char *const *texts, int n,
                     float *out, vlp_error *err) {
    VLP_CHECK_ARG(m->batch > 0, err, "reserve a batch (clip_reserve) before encoding");
    int T = m->cfg.text.context_length, E = m->cfg.embed_dim, B = m->batch;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * B);
    VLP_CHECK_ALLOC(ids, err, sizeof(int32_t) * (size_t)T * B);
    vlp_err rc = VLP_OK;
    for (int i0 = 0; rc == VLP_OK && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int i = 0; i < b; i++) tok->encode(tok->impl, texts[i0 + i], ids + (size_t)i * T, T);
        rc = clip_text_forward(m, ids, b, err);
        if (rc == VLP_OK) memcpy(out + (size_t)i0 * E, m->text_acts.emb, sizeof(float) * b * E);
    }
    free(ids);
    return rc;
}

char *class_prompt(const char *tpl, const char *cls) {
    const char *at = strstr(tpl, "{}");
    size_t len = strlen(tpl) + strlen(cls) + 2;
    char *p = malloc(len);
    if (!p) return NULL;
    if (at) snprintf(p, len, "%.*s%s%s", (int)(at - tpl), tpl, cls, at + 2);
    else snprintf(p, len, "%s %s", tpl, cls);
    return p;
}

vlp_err encode_classes(clip_model *m, const text_tokenizer *tok, const char *const *classes, int C,
                       const char *const *templates, int nt, float *out, vlp_error *err) {
    VLP_CHECK_ARG(classes && templates && out && C > 0 && nt > 0, err,
                  "class embeddings: %d classes, %d templates", C, nt);
    int E = m->cfg.embed_dim;
    char **prompts = calloc((size_t)nt, sizeof(char *));
    float *pe = malloc(sizeof(float) * (size_t)nt * E);
    vlp_err rc = prompts && pe ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "prompts");
    for (int c = 0; rc == VLP_OK && c < C; c++) {
        for (int t = 0; rc == VLP_OK && t < nt; t++)
            if (!(prompts[t] = class_prompt(templates[t], classes[c])))
                rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "prompt");
        if (rc == VLP_OK) rc = encode_texts(m, tok, (const char *const *)prompts, nt, pe, err);
        for (int t = 0; t < nt; t++) free(prompts[t]), prompts[t] = NULL;
        float *w = out + (size_t)c * E;
        double norm = 0;
        for (int k = 0; k < E; k++) {
            double sum = 0;
            for (int t = 0; t < nt; t++) sum += pe[(size_t)t * E + k];
            w[k] = (float)(sum / nt);
            norm += (double)w[k] * w[k];
        }
        for (int k = 0; k < E; k++) w[k] = (float)(w[k] / sqrt(norm > 0 ? norm : 1));
    }
    free(prompts), free(pe);
    return rc;
}
