/* The caption loss (CoCa, the text-only LM) and PRIOR's token weights. */
#include "train/objectives/shared.h"

#include <stdlib.h>
#include <string.h>

#include "loss/loss.h"

#define PRIOR_CHUNK 16 /* captions per forward pass of PRIOR's reference */

const char *requires_text_decoder(const clip_config *cfg) {
    return cfg->multimodal.layers > 0 ? NULL : "a text decoder (config multimodal_cfg)";
}

vlp_err captions_alloc(captions *cp, const objective_ctx *c, bool prior, vlp_error *err) {
    memset(cp, 0, sizeof *cp);
    int T = c->m->cfg.text.context_length;
    size_t mbt = (size_t)c->mb * T; /* targets for the whole share, the rest per micro-batch */
    cp->labels = malloc(sizeof(int32_t) * (size_t)c->b * T);
    cp->rows = malloc(sizeof(float) * mbt);
    bool ok = cp->labels && cp->rows;
    if (ok && prior) {
        cp->w = malloc(sizeof(float) * mbt);
        cp->ref_logp = malloc(sizeof(float) * mbt);
        ok = cp->w && cp->ref_logp;
    }
    if (ok) return VLP_OK;
    captions_free(cp);
    VLP_FAIL(err, VLP_ERR_NOMEM, "caption buffers for %d captions", c->b);
}

void captions_free(captions *cp) {
    free(cp->labels), free(cp->rows), free(cp->w), free(cp->ref_logp);
    memset(cp, 0, sizeof *cp);
}

vlp_err captions_set_reference(captions *cp, const objective_ctx *c, clip_model *ref,
                               vlp_error *err) {
    const clip_config *a = &c->m->cfg, *r = &ref->cfg;
    VLP_CHECK_ARG(cp->w, err, "the run does not use PRIOR weighting");
    VLP_CHECK_ARG(ref->coca.on, err, "PRIOR's reference has no text decoder (config multimodal_cfg)");
    VLP_CHECK_ARG(r->text.vocab_size == a->text.vocab_size &&
                      r->text.context_length == a->text.context_length,
                  err, "PRIOR's reference reads %d tokens of a %d-token vocabulary, the model %d of "
                  "%d: train it on the same tokenizer", r->text.context_length,
                  r->text.vocab_size, a->text.context_length, a->text.vocab_size);
    VLP_TRY(clip_reserve(ref, c->mb < PRIOR_CHUNK ? c->mb : PRIOR_CHUNK, err));
    cp->ref = ref;
    return VLP_OK;
}

vlp_err captions_targets(captions *cp, const objective_ctx *c, double *denom, vlp_error *err) {
    int T = c->m->cfg.text.context_length;
    double n = (double)caption_targets(cp->labels, c->ids, c->b, T);
    VLP_TRY(dist_allreduce_sum_f64(c->dist, &n, 1, err));
    VLP_CHECK_ARG(n > 0, err, "no caption of the batch has a token after its start token");
    *denom = n;
    return VLP_OK;
}

/* PRIOR's weights of micro-batch k's targets from the reference, in chunks
 * of the batch it reserved: its activations would otherwise cost as much as
 * the model's */
static vlp_err prior_micro(captions *cp, const objective_ctx *c, int k, vlp_error *err) {
    int mb = c->mb, T = c->m->cfg.text.context_length, V = c->m->cfg.text.vocab_size;
    size_t N = (size_t)mb * T;
    const int32_t *labels = cp->labels + (size_t)k * N;
    clip_model *r = cp->ref;
    for (int c0 = 0; c0 < mb; c0 += r->batch) {
        int n = mb - c0 < r->batch ? mb - c0 : r->batch;
        VLP_TRY(clip_text_forward(r, c->ids + (size_t)k * N + (size_t)c0 * T, n, err));
        VLP_TRY(clip_caption_forward(r, false, n, err));
        caption_target_logprobs(cp->ref_logp + (size_t)c0 * T, r->coca.acts.logits,
                                labels + (size_t)c0 * T, n * T, V);
    }
    prior_weights(cp->w, cp->ref_logp, labels, mb, T, cp->alpha);
    return VLP_OK;
}

vlp_err captions_micro(captions *cp, const objective_ctx *c, int k, bool with_image, double denom,
                       float dloss, float *loss, vlp_error *err) {
    clip_model *m = c->m;
    int mb = c->mb, T = m->cfg.text.context_length, V = m->cfg.text.vocab_size, N = mb * T;
    const int32_t *labels = cp->labels + (size_t)k * N;
    if (cp->w) VLP_TRY(prior_micro(cp, c, k, err));
    VLP_TRY(clip_caption_forward(m, with_image, mb, err));
    float part;
    VLP_TRY(caption_loss_forward(&part, m->coca.acts.logits, cp->rows, m->coca.acts.logits, labels, cp->w, N, V,
                                 denom, err));
    *loss += part;
    caption_loss_backward(m->coca.acts.logits, m->coca.acts.logits, labels, cp->w, dloss, N, V, denom);
    clip_caption_backward(m, m->coca.acts.logits, mb);
    return VLP_OK;
}
