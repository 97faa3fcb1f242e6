#include "eval/embed_set.h"

#include <stdlib.h>
#include <string.h>

#include "data/image.h"

void embedded_set_free(embedded_set *s) {
    for (int i = 0; i < s->n; i++) free(s->caption[i]), free(s->label[i]);
    free(s->emb), free(s->caption), free(s->label);
    memset(s, 0, sizeof *s);
}

/* room for one more sample */
static vlp_err grow(embedded_set *s, int *cap, int E, vlp_error *err) {
    if (s->n < *cap) return VLP_OK;
    int c = *cap ? 2 * *cap : 256;
    float *emb = realloc(s->emb, sizeof(float) * (size_t)c * E);
    if (emb) s->emb = emb;
    char **cp = realloc(s->caption, sizeof(char *) * (size_t)c);
    if (cp) s->caption = cp;
    char **lb = realloc(s->label, sizeof(char *) * (size_t)c);
    if (lb) s->label = lb;
    VLP_CHECK(emb && cp && lb, err, VLP_ERR_NOMEM, "an evaluation set of %d samples", c);
    *cap = c;
    return VLP_OK;
}

/* one sample's pixels into pix; false (warned) when its image does not decode */
static vlp_err preprocess(const raw_sample *r, const embed_set_opts *o, const image_transform *tf,
                          float *pix, bool *used, vlp_error *err) {
    image_decode_opts dec = {.composite = o->white, .background = {255, 255, 255}};
    image_u8 im;
    vlp_error why = {0};
    *used = false;
    if (image_decode(r->image, r->image_len, r->what, &dec, &im, &why) != VLP_OK) {
        if (o->warn) o->warn(o->warn_ctx, why.message);
        return VLP_OK;
    }
    vlp_err rc = image_transform_apply(tf, &im, NULL, pix, err);
    image_free(&im);
    *used = rc == VLP_OK;
    return rc;
}

vlp_err embed_set(sample_stream *src, embed_images_fn encode, const embed_set_opts *o, embedded_set *out,
                  vlp_error *err) {
    memset(out, 0, sizeof *out);
    int S = o->image_size, E = o->embed_dim, B = o->batch, nb = 0, cap = 0;
    VLP_CHECK_ARG(S > 0 && E > 0 && B > 0, err, "image size %d, embedding %d, batch %d", S, E, B);
    image_transform tf = image_transform_default(S, false);
    size_t per = (size_t)3 * S * S;
    float *pix = malloc(sizeof(float) * (size_t)B * per);
    VLP_CHECK_ALLOC(pix, err, sizeof(float) * (size_t)B * per);
    vlp_err rc = stream_begin(src, 0, err);
    bool done = false;
    while (rc == VLP_OK && !done) {
        raw_sample r;
        rc = stream_next(src, &r, &done, err);
        if (rc != VLP_OK) break;
        bool used = false;
        if (!done && (rc = grow(out, &cap, E, err)) == VLP_OK)
            rc = preprocess(&r, o, &tf, pix + (size_t)nb * per, &used, err);
        if (used) {
            out->caption[out->n] = r.caption, out->label[out->n] = r.alt_caption;
            r.caption = r.alt_caption = NULL;
            out->n++, nb++;
        }
        if (!done) raw_sample_free(&r);
        if (rc == VLP_OK && (nb == B || (done && nb))) {
            int first = out->n - nb;
            rc = encode(o->ctx, pix, nb, out->emb + (size_t)first * E, err);
            if (rc == VLP_OK && o->batch_done) rc = o->batch_done(o->ctx, pix, out->caption + first, first, nb, err);
            if (o->progress) o->progress(o->ctx, out->n);
            nb = 0;
        }
    }
    free(pix);
    if (rc != VLP_OK) embedded_set_free(out);
    return rc;
}
