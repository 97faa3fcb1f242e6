#include "eval/validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "eval/embed_set.h"
#include "loss/loss.h"

typedef embedded_set val_set;

/* the training model as embed_set's encoder: its image tower, batch by batch */
static vlp_err encode_images(void *ctx, const float *pixels, int n, float *out, vlp_error *err) {
    clip_model *m = ctx;
    VLP_TRY(clip_image_forward(m, pixels, n, err));
    memcpy(out, m->image_acts.emb, sizeof(float) * (size_t)n * m->cfg.embed_dim);
    return VLP_OK;
}

/* file order; a zero-shot set needs no captions: its labels serve */
static dataset_opts set_opts(const val_opts *o) {
    dataset_opts d = dataset_opts_default();
    d.shuffle = false, d.caption_key = o->caption_key ? o->caption_key : "title";
    if (o->image_key) d.image_key = o->image_key;
    if (o->zeroshot_only) d.caption_key = o->label_key;
    d.alt_caption_key = o->label_key, d.warn = o->warn, d.warn_ctx = o->warn_ctx;
    return d;
}

vlp_err validate_check(const char *spec, const val_opts *o, vlp_error *err) {
    VLP_CHECK_ARG(!o->zeroshot_only || o->label_key, err, "%s: zero-shot needs a label column", spec);
    dataset_opts d = set_opts(o);
    sample_stream *st;
    VLP_TRY(stream_open(&st, spec, &d, err));
    stream_free(st);
    return VLP_OK;
}

static vlp_err load(clip_model *m, const char *spec, const val_opts *o, val_set *s, vlp_error *err) {
    dataset_opts d = set_opts(o);
    sample_stream *st;
    VLP_TRY(stream_open(&st, spec, &d, err));
    embed_set_opts eo = {.image_size = m->cfg.vision.image_size, .embed_dim = m->cfg.embed_dim,
                         .batch = m->batch, .pre = &m->cfg.vision.pre, .warn = o->warn,
                         .warn_ctx = o->warn_ctx, .ctx = m};
    vlp_err rc = embed_set(st, encode_images, &eo, s, err);
    stream_free(st);
    return rc;
}

/* InfoNCE over consecutive batches of `lb`, weighted by their size */
static vlp_err batched_loss(const clip_model *m, const float *img, const float *txt, int n, int lb,
                            double *loss, vlp_error *err) {
    int E = m->cfg.embed_dim;
    if (lb <= 0 || lb > n) lb = n;
    float *probs = malloc(sizeof(float) * 2 * (size_t)lb * lb);
    VLP_CHECK_ALLOC(probs, err, sizeof(float) * 2 * (size_t)lb * lb);
    double sum = 0;
    int counted = 0;
    vlp_err rc = VLP_OK;
    for (int i0 = 0; rc == VLP_OK && i0 + 1 < n; i0 += lb) {
        int b = n - i0 < lb ? n - i0 : lb;
        if (b < 2) break; /* a lone last pair has no negatives */
        float l;
        rc = clip_loss_forward(&l, probs, probs + (size_t)b * b, img + (size_t)i0 * E,
                               txt + (size_t)i0 * E, *m->views.logit_scale, b, E, err);
        sum += (double)l * b, counted += b;
    }
    free(probs);
    *loss = counted ? sum / counted : NAN;
    return rc;
}

/* retrieval over the distinct captions; txt holds every sample's caption embedding */
static vlp_err retrieval(const val_set *s, const float *txt, int E, val_result *out, vlp_error *err) {
    int nt = 0, *cap_of = malloc(sizeof(int) * (size_t)s->n);
    const char **caps = cap_of ? distinct_strings((const char *const *)s->caption, s->n, &nt, cap_of) : NULL;
    float *g = caps ? malloc(sizeof(float) * (size_t)nt * E) : NULL;
    vlp_err rc = g ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "retrieval gallery");
    /* identical captions have identical embeddings: any sample's will do */
    for (int i = 0; rc == VLP_OK && i < s->n; i++)
        if (cap_of[i] >= 0) memcpy(g + (size_t)cap_of[i] * E, txt + (size_t)i * E, sizeof(float) * E);
    if (rc == VLP_OK) rc = retrieval_eval(s->emb, g, cap_of, s->n, nt, E, &out->i2t, err);
    if (rc == VLP_OK) rc = retrieval_eval_multi(g, s->emb, cap_of, nt, s->n, E, &out->t2i, err);
    out->texts = nt;
    free(cap_of), free(caps), free(g);
    return rc;
}

static vlp_err zeroshot(clip_model *m, const text_tokenizer *tok, const char *spec,
                        const val_set *s, const val_opts *o, val_result *out, vlp_error *err) {
    int E = m->cfg.embed_dim, C = 0, *y = malloc(sizeof(int) * (size_t)s->n);
    const char **cls = y ? distinct_strings((const char *const *)s->label, s->n, &C, y) : NULL;
    float *W = cls && C ? malloc(sizeof(float) * (size_t)C * E) : NULL;
    vlp_err rc = cls ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "labels");
    if (rc == VLP_OK && !C)
        rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "%s: no sample has a label in '%s'",
                           spec, o->label_key);
    if (rc == VLP_OK && !W) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "class embeddings");
    static const char *const bare[] = {"{}"};
    if (rc == VLP_OK)
        rc = encode_classes(m, tok, cls, C, o->templates ? o->templates : bare,
                            o->templates ? o->ntemplates : 1, W, err);
    if (rc == VLP_OK) rc = zeroshot_eval(s->emb, W, y, s->n, C, E, &out->zs, err);
    out->classes = rc == VLP_OK ? C : 0;
    free(y), free(cls), free(W);
    return rc;
}

vlp_err validate_pairs(clip_model *m, const text_tokenizer *tok, const char *spec,
                       const val_opts *o, val_result *out, vlp_error *err) {
    VLP_CHECK_ARG(m->batch > 0, err, "reserve a batch (clip_reserve) before validating");
    memset(out, 0, sizeof *out);
    val_set s = {0};
    vlp_err rc = load(m, spec, o, &s, err);
    if (rc == VLP_OK && s.n == 0)
        rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "%s holds no usable samples", spec);
    int E = m->cfg.embed_dim;
    bool pairs = !o->zeroshot_only;
    float *txt = rc == VLP_OK && pairs ? malloc(sizeof(float) * (size_t)s.n * E) : NULL;
    if (rc == VLP_OK && pairs && !txt)
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "caption embeddings");
    if (rc == VLP_OK && pairs) rc = encode_texts(m, tok, (const char *const *)s.caption, s.n, txt, err);
    if (rc == VLP_OK && pairs) rc = batched_loss(m, s.emb, txt, s.n, o->loss_batch, &out->loss, err);
    if (rc == VLP_OK && pairs) rc = retrieval(&s, txt, E, out, err);
    if (rc == VLP_OK && o->label_key) rc = zeroshot(m, tok, spec, &s, o, out, err);
    out->n = s.n;
    free(txt);
    embedded_set_free(&s);
    return rc;
}
