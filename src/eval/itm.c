#include "eval/itm.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* room for b more rows of `row` floats: capacity doubled */
static vlp_err grow(float **data, int *cap, int n, int b, size_t row, const char *what, vlp_error *err) {
    if (n + b <= *cap) return VLP_OK;
    VLP_CHECK(n <= INT_MAX / 2 - b, err, VLP_ERR_NOMEM, "the fusion encoder's input for over %d %s", n, what);
    int c = *cap ? *cap : 64;
    while (c < n + b) c *= 2;
    float *d = realloc(*data, sizeof(float) * row * (size_t)c);
    VLP_CHECK(d, err, VLP_ERR_NOMEM, "the fusion encoder's input for %d %s (%.1f MB)", c, what,
              sizeof(float) * row * (double)c / 1e6);
    *data = d, *cap = c;
    return VLP_OK;
}

/* the last forward's rows are the fusion encoder's input: unprompted, every image token */
static vlp_err keepable(const clip_model *m, vlp_error *err) {
    VLP_CHECK_ARG(m->fusion.on, err, "the model has no fusion encoder (config fusion_cfg)");
    VLP_CHECK_ARG(!m->image_prompts.n && !m->text_prompts.n, err, "the fusion encoder does not read prompted towers");
    VLP_CHECK_ARG(m->mae.nkeep == m->image_dims.T - 1, err,
                  "the fusion encoder reads every image token: the last image forward was masked");
    return VLP_OK;
}

vlp_err itm_store_images(itm_store *s, const clip_model *m, int b, vlp_error *err) {
    VLP_TRY(keepable(m, err));
    size_t row = (size_t)m->image_dims.T * m->cfg.embed_dim;
    VLP_TRY(grow(&s->img, &s->cap_img, s->n_img, b, row, "images", err));
    memcpy(s->img + (size_t)s->n_img * row, m->image_acts.tok_feat, sizeof(float) * row * (size_t)b);
    s->n_img += b;
    return VLP_OK;
}

vlp_err itm_store_texts(itm_store *s, const clip_model *m, int b, vlp_error *err) {
    VLP_TRY(keepable(m, err));
    size_t row = (size_t)m->text_dims.T * m->text_dims.C;
    if (s->n_txt + b > s->cap_pool) { /* the positions first: the rows' capacity says what both hold */
        int c = s->cap_pool ? s->cap_pool : 64;
        while (c < s->n_txt + b && c <= INT_MAX / 2) c *= 2;
        int32_t *pool = realloc(s->pool, sizeof(int32_t) * (size_t)c);
        VLP_CHECK(pool && c >= s->n_txt + b, err, VLP_ERR_NOMEM, "the end-of-text positions of %d texts", c);
        s->pool = pool, s->cap_pool = c;
    }
    VLP_TRY(grow(&s->txt, &s->cap_txt, s->n_txt, b, row, "texts", err));
    memcpy(s->txt + (size_t)s->n_txt * row, m->text_acts.xs[m->cfg.text.layers], sizeof(float) * row * (size_t)b);
    memcpy(s->pool + s->n_txt, m->text_acts.pool_index, sizeof(int32_t) * (size_t)b);
    s->n_txt += b;
    return VLP_OK;
}

void itm_store_free(itm_store *s) {
    free(s->img), free(s->txt), free(s->pool);
    memset(s, 0, sizeof *s);
}

vlp_err itm_pair_scores(clip_model *m, const itm_store *s, const int *img_of, const int *txt_of, long P,
                        float *margin, int (*progress)(void *ctx, long done), void *ctx, vlp_error *err) {
    int B = m->batch;
    VLP_CHECK_ARG(B > 0, err, "reserve a batch (clip_reserve) before scoring pairs");
    int32_t *ti = malloc(sizeof(int32_t) * (size_t)B), *ii = malloc(sizeof(int32_t) * (size_t)B);
    float *logits = malloc(sizeof(float) * 2 * (size_t)B);
    vlp_err rc = ti && ii && logits ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "ITM's pairs");
    for (long p0 = 0; rc == VLP_OK && p0 < P; p0 += B) {
        int b = P - p0 < B ? (int)(P - p0) : B;
        for (int i = 0; i < b; i++) ti[i] = txt_of[p0 + i], ii[i] = img_of[p0 + i];
        rc = clip_fusion_forward_rows(m, s->txt, s->pool, s->n_txt, ti, s->img, s->n_img, ii, b, err);
        if (rc != VLP_OK) break;
        clip_itm_forward(m, logits);
        for (int i = 0; i < b; i++) margin[p0 + i] = logits[2 * i + 1] - logits[2 * i];
        if (progress && progress(ctx, p0 + b))
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "stopped by the caller after %ld pairs", p0 + b);
    }
    free(ti), free(ii), free(logits);
    return rc;
}

void itm_probabilities(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
}
