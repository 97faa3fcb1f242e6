#include "core/error.h"
#include "eval/eval.h"

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
        if (rc == VLP_OK) memcpy(out + (size_t)i0 * E, m->va.emb, sizeof(float) * b * E);
    }
    free(x);
    return rc;
}

vlp_err encode_texts(clip_model *m, const vlp_tokenizer *tok, const char *const *texts, int n,
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
        if (rc == VLP_OK) memcpy(out + (size_t)i0 * E, m->ta.emb, sizeof(float) * b * E);
    }
    free(ids);
    return rc;
}
