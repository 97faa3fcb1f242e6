/* itc-itm-mlm: ALBEF's pre-training (Li et al. 2021; BLIP's encoder part):
 * the contrastive loss (ITC) as CLIP's, image-text matching (ITM) on the
 * fusion encoder with one hard negative image per text and one hard negative
 * text per image, drawn from the in-batch similarity softmax with the
 * positive excluded, and masked language modelling (MLM) on a second text
 * pass over the captions masked by BERT's rule, fused with their images.
 * Negatives come from the micro-batch the fusion encoder reads (its rows of
 * one forward of each tower): one process with one micro-batch draws them
 * from the whole batch, as ALBEF on one GPU; with accumulation or MPI, from
 * each micro-batch of each rank (ALBEF gathers them across GPUs; vlp's local
 * loss has no other rank's tokens). The ITM loss is the mean over the
 * batch's 3·B pairs, the MLM loss the mean over its masked tokens. No
 * momentum distillation (ALBEF's MoD): not built. */
#include "train/objectives/itc_itm_mlm.h"
#include "train/objectives/shared.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "loss/loss.h"
#include "ops/ops.h"

enum { CLIP_WEIGHT, ITM_WEIGHT, MLM_WEIGHT, MASK_PROB };
static const objective_option options[] = {
    OBJECTIVE_CLIP_WEIGHT(CLIP_WEIGHT),
    OBJECTIVE_NUMBER(ITM_WEIGHT, "itm_weight", "--itm-weight", "X",
                     "weight of the image-text matching loss", 1.0f, 0.0f, 1e6f),
    OBJECTIVE_NUMBER(MLM_WEIGHT, "mlm_weight", "--mlm-weight", "X",
                     "weight of the masked language modelling loss", 1.0f, 0.0f, 1e6f),
    OBJECTIVE_NUMBER(MASK_PROB, "mask_prob", "--mask-prob", "P",
                     "the share of caption tokens MLM predicts (BERT's 15%: of them 80% [MASK], 10% a random "
                     "token, 10% kept)", 0.15f, 0.0f, 0.9f),
};

enum { MLM_LOGITS = 1 << 24 }; /* floats of MLM logits a chunk: 64 MB */

typedef struct fusion_state {
    embeddings e;
    int32_t *text_row, *image_row; // (3·mb) the ITM pairs of a micro-batch: positives, negative images, negative texts
    int32_t *itm_label;            // (mb) 1 (matched), then (mb) 0
    float *itm;                    // (mb, 2) a chunk's logits, then their gradient
    double *w;                     // (mb) a row's sampling weights
    int32_t *masked;               // (b, T) the captions as MLM reads them
    int32_t *pos, *target;         // (b·T) each micro-batch's masked positions (pair·T + t) and their tokens
    int *npos;                     // (accum) masked tokens a micro-batch
    float *mlm, *rows;             // (chunk, V) a chunk's logits, (chunk) its rows' losses
    int chunk;
} fusion_state;

static const char *requires_fusion(const clip_config *cfg) {
    return cfg->fusion.layers > 0 ? NULL : "a fusion encoder (config fusion_cfg)";
}

static void destroy(void *state) {
    fusion_state *s = state;
    if (!s) return;
    embeddings_free(&s->e);
    free(s->text_row), free(s->image_row), free(s->itm_label), free(s->itm), free(s->w);
    free(s->masked), free(s->pos), free(s->target), free(s->npos), free(s->mlm), free(s->rows);
    free(s);
}

static vlp_err create(void **state, const objective_ctx *c, vlp_error *err) {
    VLP_CHECK_ARG(c->mb >= 2, err, "itc-itm-mlm draws its negatives from the micro-batch: it needs at least 2 "
                  "samples a micro-batch (--batch / ranks / --accum is %d)", c->mb);
    fusion_state *s = calloc(1, sizeof *s);
    VLP_CHECK_ALLOC(s, err, sizeof *s);
    int mb = c->mb, T = c->m->cfg.text.context_length, V = c->m->cfg.text.vocab_size;
    size_t bt = (size_t)c->b * T;
    s->chunk = (int)((size_t)MLM_LOGITS / (size_t)V > (size_t)mb * T ? (size_t)mb * T : (size_t)MLM_LOGITS / (size_t)V);
    if (s->chunk < 1) s->chunk = 1;
    vlp_err rc = embeddings_alloc(&s->e, c, err);
    s->text_row = malloc(sizeof(int32_t) * 3 * (size_t)mb), s->image_row = malloc(sizeof(int32_t) * 3 * (size_t)mb);
    s->itm_label = malloc(sizeof(int32_t) * 2 * (size_t)mb), s->itm = malloc(sizeof(float) * 2 * (size_t)mb);
    s->w = malloc(sizeof(double) * (size_t)mb);
    s->masked = malloc(sizeof(int32_t) * bt), s->pos = malloc(sizeof(int32_t) * bt);
    s->target = malloc(sizeof(int32_t) * bt), s->npos = calloc((size_t)c->accum, sizeof(int));
    s->mlm = malloc(sizeof(float) * (size_t)s->chunk * V);
    s->rows = malloc(sizeof(float) * (size_t)(s->chunk > mb ? s->chunk : mb)); /* an MLM chunk's or an ITM chunk's */
    if (rc == VLP_OK && !(s->text_row && s->image_row && s->itm_label && s->itm && s->w && s->masked && s->pos &&
                          s->target && s->npos && s->mlm && s->rows))
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "itc-itm-mlm's buffers for %d samples", c->b);
    if (rc != VLP_OK) {
        destroy(s);
        return rc;
    }
    for (int i = 0; i < mb; i++) s->itm_label[i] = 1, s->itm_label[mb + i] = 0;
    *state = s;
    return VLP_OK;
}

/* one draw from weights w[0..n) (their sum > 0) */
static int draw_weighted(const double *w, int n, rng64 *r) {
    double total = 0;
    for (int j = 0; j < n; j++) total += w[j];
    double u = (double)rng64_uniform(r) * total, acc = 0;
    int last = -1;
    for (int j = 0; j < n; j++) {
        if (w[j] <= 0) continue;
        acc += w[j], last = j;
        if (u < acc) return j;
    }
    return last;
}

void fusion_hard_negatives(const float *img, const float *txt, int n, int E, float scale, uint64_t seed,
                           int32_t *neg_image, int32_t *neg_text, double *w) {
    for (int dir = 0; dir < 2; dir++) /* 0: an image for each text; 1: a text for each image */
        for (int i = 0; i < n; i++) {
            const float *q = (dir ? img : txt) + (size_t)i * E;
            double mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                const float *k = (dir ? txt : img) + (size_t)j * E;
                double d = 0;
                for (int e = 0; e < E; e++) d += (double)q[e] * k[e];
                w[j] = scale * d;
                mx = fmax(mx, w[j]);
            }
            double z = 0;
            for (int j = 0; j < n; j++) z += (w[j] = exp(w[j] - mx));
            for (int j = 0; j < n; j++) w[j] = w[j] / z + 1e-4; /* ALBEF's: softmax + 1e-4 ... */
            w[i] = 0;                                           /* ... and never the positive */
            rng64 r = {seed ^ ((uint64_t)dir << 62) ^ (uint64_t)i * 0x9E3779B97F4A7C15ull};
            (dir ? neg_text : neg_image)[i] = draw_weighted(w, n, &r);
        }
}

int fusion_mask_tokens(int32_t *masked, int32_t *pos, int32_t *target, const int32_t *ids, int n, int T, int V,
                       float prob, uint64_t seed) {
    int m = 0;
    for (int b = 0; b < n; b++) {
        const int32_t *r = ids + (size_t)b * T;
        int32_t *o = masked + (size_t)b * T;
        memcpy(o, r, sizeof(int32_t) * T);
        int32_t end; /* the end-of-text token, as the text tower pools (the captions have no [MASK] yet) */
        pool_index_argmax(&end, r, 1, T, -1);
        rng64 g = {seed ^ (uint64_t)b * 0xD1B54A32D192ED03ull};
        for (int t = 1; t < end; t++) { /* not the start, the end or padding */
            if (rng64_uniform(&g) >= prob) continue;
            float u = rng64_uniform(&g);
            o[t] = u < 0.8f ? V : u < 0.9f ? (int32_t)(rng64_u64(&g) % (uint64_t)(V - 2)) : r[t];
            pos[m] = b * T + t, target[m] = r[t];
            m++;
        }
    }
    return m;
}

/* a step's seed for a purpose: a function of (seed, step, the sample's place), as masks_draw */
static uint64_t draw_seed(const objective_ctx *c, uint64_t purpose, int first) {
    rng64 r = {c->seed ^ purpose};
    rng64 rs = {rng64_u64(&r) ^ (uint64_t)c->step};
    return rng64_u64(&rs) ^ (uint64_t)(c->rank * c->b + first) * 0x2545F4914F6CDD1Dull;
}

/* ITM on micro-batch k's pairs (B each: positives, negative images,
 * negative texts), its loss added to *loss (denom: the batch's pairs) */
static vlp_err itm_micro(fusion_state *s, const objective_ctx *c, int k, float dloss, double denom, float *loss,
                         vlp_error *err) {
    clip_model *m = c->m;
    int mb = c->mb, E = m->cfg.embed_dim;
    float scale = expf(*m->views.logit_scale);
    for (int i = 0; i < mb; i++) s->text_row[i] = s->image_row[i] = i;
    fusion_hard_negatives(s->e.img + (size_t)k * mb * E, s->e.txt + (size_t)k * mb * E, mb, E, scale,
                          draw_seed(c, 0x6974 /* "it" */, k * mb), s->image_row + mb, s->text_row + 2 * mb, s->w);
    for (int i = 0; i < mb; i++) s->text_row[mb + i] = i, s->image_row[2 * mb + i] = i;
    for (int chunk = 0; chunk < 3; chunk++) {
        VLP_TRY(clip_fusion_forward(m, s->text_row + chunk * mb, s->image_row + chunk * mb, mb, err));
        clip_itm_forward(m, s->itm);
        const int32_t *lab = s->itm_label + (chunk ? mb : 0);
        float part;
        VLP_TRY(caption_loss_forward(&part, s->itm, s->rows, s->itm, lab, NULL, mb, 2, denom, err));
        *loss += part;
        caption_loss_backward(s->itm, s->itm, lab, NULL, dloss, mb, 2, denom);
        clip_itm_backward(m, s->itm);
        clip_fusion_backward(m);
    }
    return VLP_OK;
}

/* MLM on micro-batch k's masked captions with their images, in chunks of
 * positions, its loss added to *loss (denom: the batch's masked tokens) */
static vlp_err mlm_micro(fusion_state *s, const objective_ctx *c, int k, int first, float dloss, double denom,
                         float *loss, vlp_error *err) {
    clip_model *m = c->m;
    int mb = c->mb, T = m->cfg.text.context_length, V = m->cfg.text.vocab_size, M = s->npos[k];
    VLP_TRY(clip_text_forward(m, s->masked + (size_t)k * mb * T, mb, err));
    clip_fusion_zero_grads(m, true, false); /* the image rows' ITM gradients stay */
    for (int i = 0; i < mb; i++) s->text_row[i] = i;
    VLP_TRY(clip_fusion_forward(m, s->text_row, s->text_row, mb, err));
    const int32_t *pos = s->pos + first, *target = s->target + first;
    for (int i0 = 0; i0 < M; i0 += s->chunk) {
        int n = M - i0 < s->chunk ? M - i0 : s->chunk;
        VLP_TRY(clip_mlm_forward(m, pos + i0, n, s->mlm, err));
        float part;
        VLP_TRY(caption_loss_forward(&part, s->mlm, s->rows, s->mlm, target + i0, NULL, n, V, denom, err));
        *loss += part;
        caption_loss_backward(s->mlm, s->mlm, target + i0, NULL, dloss, n, V, denom);
        clip_mlm_backward(m, pos + i0, s->mlm, n);
    }
    clip_fusion_backward(m);
    return VLP_OK;
}

/* ITC over the whole batch (every micro-batch encoded first), then for each
 * micro-batch: ITM (its rows of one forward of each tower, the negatives
 * drawn from its similarities), the text tower's backward (ITC + ITM), MLM
 * on a second, masked text forward and its backward, and one image backward
 * from all three losses */
static vlp_err grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    fusion_state *s = state;
    clip_model *m = c->m;
    int K = c->accum, mb = c->mb, E = m->cfg.embed_dim, T = m->cfg.text.context_length;
    float cw = c->opt[CLIP_WEIGHT], iw = c->opt[ITM_WEIGHT], lw = c->opt[MLM_WEIGHT];
    /* this step's masks, all micro-batches at once: the MLM loss divides by the batch's masked tokens */
    double masked = 0;
    for (int k = 0, at = 0; k < K; k++) {
        s->npos[k] = fusion_mask_tokens(s->masked + (size_t)k * mb * T, s->pos + at, s->target + at,
                                        c->ids + (size_t)k * mb * T, mb, T, m->cfg.text.vocab_size,
                                        c->opt[MASK_PROB], draw_seed(c, 0x6d6c6d /* "mlm" */, k * mb));
        at += s->npos[k], masked += s->npos[k];
    }
    VLP_TRY(dist_allreduce_sum_f64(c->dist, &masked, 1, err));
    VLP_TRY(embeddings_encode(&s->e, c, image_forward_plain, NULL, err));
    float contrastive, itm = 0.0f, mlm = 0.0f;
    VLP_TRY(infonce_grads(&s->e, c, cw, &contrastive, err));
    for (int k = 0, first = 0; k < K; first += s->npos[k], k++) {
        if (K > 1) { /* the fusion encoder reads this micro-batch's tokens */
            VLP_TRY(image_forward_plain(NULL, c, k, err));
            VLP_TRY(text_forward(c, k, err));
        }
        clip_fusion_zero_grads(m, true, true);
        VLP_TRY(itm_micro(s, c, k, iw, 3.0 * c->batch, &itm, err));
        clip_text_backward_with_tokens(m, s->e.dtxt + (size_t)k * mb * E, m->fusion.dtxt, mb);
        if (s->npos[k] > 0) {
            VLP_TRY(mlm_micro(s, c, k, first, lw, masked, &mlm, err));
            clip_text_backward_with_tokens(m, NULL, m->fusion.dtxt, mb);
        }
        clip_image_backward_with_tokens(m, s->e.dimg + (size_t)k * mb * E, m->fusion.dimg, mb);
    }
    VLP_TRY(sum_over_ranks(c, itm, &itm, err)); /* each rank's share of the batch's means */
    VLP_TRY(sum_over_ranks(c, mlm, &mlm, err));
    *loss = cw * contrastive + iw * itm + lw * mlm;
    return VLP_OK;
}

const objective objective_itc_itm_mlm = {
    .name = "itc-itm-mlm",
    .help = "ALBEF's: contrastive + image-text matching on hard negatives + masked language modelling over "
            "the fusion encoder; the config needs fusion_cfg",
    .options = options,
    .noptions = (int)(sizeof options / sizeof options[0]),
    .requires = requires_fusion,
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_CONTRASTIVE | CLIP_PART_FUSION,
    .create = create,
    .grads = grads,
    .free = destroy,
};
