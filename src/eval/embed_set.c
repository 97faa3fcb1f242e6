#include "eval/embed_set.h"

#include <stdio.h>
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

vlp_err embed_batch_init(embed_batch *b, int S, int E, int B, const image_preprocess *pre, embed_images_fn encode,
                         void *ctx, vlp_error *err) {
    *b = (embed_batch){.S = S, .E = E, .B = B, .encode = encode, .ctx = ctx, .decode = image_decode_for(pre)};
    if (B == 0) return VLP_OK;
    VLP_CHECK_ARG(S > 0 && E > 0 && B > 0 && encode, err, "image size %d, embedding %d, batch %d", S, E, B);
    b->tf = image_transform_for(pre, S, false);
    b->pixels = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    b->emb = malloc(sizeof(float) * (size_t)B * E);
    if (!b->pixels || !b->emb) {
        embed_batch_free(b);
        VLP_FAIL(err, VLP_ERR_NOMEM, "a batch of %d images of %dx%d", B, S, S);
    }
    return VLP_OK;
}

void embed_batch_free(embed_batch *b) {
    free(b->pixels), free(b->emb);
    b->pixels = b->emb = NULL, b->n = 0;
}

vlp_err embed_batch_decode(const embed_batch *b, const uint8_t *bytes, size_t n, const char *what, image_u8 *im,
                           vlp_error *err) {
    memset(im, 0, sizeof *im);
    return image_decode(bytes, n, what, &b->decode, im, err);
}

vlp_err embed_batch_add(embed_batch *b, const image_u8 *im, vlp_error *err) {
    VLP_CHECK_ARG(b->n < b->B, err, "the batch of %d images is full", b->B);
    rng64 rng = {0}; /* the eval transform draws nothing */
    VLP_TRY(image_transform_apply(&b->tf, im, &rng, b->pixels + (size_t)b->n * 3 * b->S * b->S, err));
    b->n++;
    return VLP_OK;
}

vlp_err embed_batch_encode(embed_batch *b, vlp_error *err) {
    return b->n ? b->encode(b->ctx, b->pixels, b->n, b->emb, err) : VLP_OK;
}

vlp_err embed_set(sample_stream *src, embed_images_fn encode, const embed_set_opts *o, embedded_set *out,
                  vlp_error *err) {
    memset(out, 0, sizeof *out);
    int E = o->embed_dim, cap = 0;
    embed_batch b;
    VLP_TRY(embed_batch_init(&b, o->image_size, E, o->batch, o->pre, encode, o->ctx, err));
    vlp_err rc = stream_begin(src, 0, err);
    bool done = false;
    while (rc == VLP_OK && !done) {
        raw_sample r;
        rc = stream_next(src, &r, &done, err);
        if (rc != VLP_OK) break;
        if (!done && (rc = grow(out, &cap, E, err)) == VLP_OK) {
            image_u8 im;
            vlp_error why = {0};
            if (embed_batch_decode(&b, r.image, r.image_len, r.what, &im, &why) != VLP_OK) {
                if (o->stop_on_bad) {
                    if (err) *err = why;
                    rc = why.code ? why.code : VLP_ERR_FORMAT;
                } else { /* skipped, as training skips it: named and counted */
                    if (o->warn) o->warn(o->warn_ctx, why.message);
                    if (!out->undecodable++)
                        snprintf(out->first_undecodable, sizeof out->first_undecodable, "%s", why.message);
                }
            } else {
                rc = embed_batch_add(&b, &im, err);
                image_free(&im);
                if (rc == VLP_OK) {
                    out->caption[out->n] = r.caption, out->label[out->n] = r.alt_caption;
                    r.caption = r.alt_caption = NULL;
                    out->n++;
                }
            }
        }
        if (!done) raw_sample_free(&r);
        if (rc == VLP_OK && (embed_batch_full(&b) || (done && b.n))) {
            int first = out->n - b.n;
            rc = embed_batch_encode(&b, err);
            if (rc == VLP_OK) memcpy(out->emb + (size_t)first * E, b.emb, sizeof(float) * (size_t)b.n * E);
            if (rc == VLP_OK && o->batch_done)
                rc = o->batch_done(o->ctx, b.pixels, out->caption + first, first, b.n, err);
            if (o->progress) o->progress(o->ctx, out->n);
            b.n = 0;
        }
    }
    embed_batch_free(&b);
    if (rc != VLP_OK) embedded_set_free(out);
    return rc;
}
