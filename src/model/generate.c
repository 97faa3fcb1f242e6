#include "model/generate.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct hyp {
    int32_t *ids; // (T)
    int len;      // ids so far, the start token included
    double logp;  // sum over the generated tokens
} hyp;

typedef struct cand {
    double logp;
    int from;
    int32_t tok;
} cand;

static int by_logp_desc(const void *a, const void *b) {
    double x = ((const cand *)a)->logp, y = ((const cand *)b)->logp;
    return x < y ? 1 : x > y ? -1 : 0;
}

static double normalised(double logp, int generated) { return logp / (generated > 0 ? generated : 1); }

vlp_err caption_generate(clip_model *m, const float *image, int beam, int32_t sot, int32_t eot,
                         int32_t *out, float *score, vlp_error *err) {
    VLP_CHECK_ARG(m->coca.on, err, "the model has no caption decoder (config multimodal_cfg)");
    VLP_CHECK_ARG(beam >= 1 && beam <= m->batch, err,
                  "beam %d must be in 1..%d (the model's reserved batch)", beam, m->batch);
    int T = m->cfg.text.context_length, V = m->cfg.text.vocab_size;
    size_t tok = (size_t)m->image_dims.T * m->cfg.embed_dim;
    VLP_CHECK_ARG(sot >= 0 && eot >= 0 && sot < V && eot < V && T >= 2, err,
                  "start/end ids %d/%d outside the vocabulary of %d", sot, eot, V);
    VLP_TRY(clip_image_forward(m, image, 1, err));
    for (int b = 1; b < beam; b++) /* every hypothesis attends to the same image */
        memcpy(m->image_acts.tok_feat + b * tok, m->image_acts.tok_feat, sizeof(float) * tok);

    int32_t *ids = calloc((size_t)4 * beam * T, sizeof(int32_t)); // live, next, batch, best
    /* 2·beam continuations per hypothesis (as HF): finished ones do not
     * take a live slot, so the live set stays full */
    int per = 2 * beam;
    cand *cands = malloc(sizeof(cand) * (size_t)beam * per);
    double *lp = malloc(sizeof(double) * (size_t)V);
    hyp live[beam], next[beam];
    if (!ids || !cands || !lp) {
        free(ids), free(cands), free(lp);
        VLP_FAIL(err, VLP_ERR_NOMEM, "beam search buffers for %d hypotheses", beam);
    }
    int32_t *batch = ids + (size_t)2 * beam * T, *best_ids = batch + (size_t)beam * T;
    for (int b = 0; b < beam; b++) {
        live[b] = (hyp){.ids = ids + (size_t)b * T};
        next[b] = (hyp){.ids = ids + (size_t)(beam + b) * T};
    }
    live[0].ids[0] = sot, live[0].len = 1;
    int nlive = 1, nbest = 0, best_len = 0;
    double best = -INFINITY, best_raw = 0;
    vlp_err rc = VLP_OK;
    for (int t = 1; t < T && nlive > 0; t++) {
        for (int b = 0; b < nlive; b++) memcpy(batch + (size_t)b * T, live[b].ids, sizeof(int32_t) * T);
        rc = clip_text_forward(m, batch, nlive, err);
        if (rc == VLP_OK) rc = clip_caption_forward(m, true, nlive, err);
        if (rc != VLP_OK) break;
        int nc = 0;
        for (int b = 0; b < nlive; b++) {
            const float *x = m->coca.acts.logits + ((size_t)b * T + (t - 1)) * V; /* predicts position t */
            float mx = -INFINITY;
            for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
            double sum = 0;
            for (int j = 0; j < V; j++) sum += exp((double)(x[j] - mx));
            double lse = mx + log(sum);
            for (int j = 0; j < V; j++) lp[j] = j == sot ? -INFINITY : x[j] - lse;
            /* this hypothesis's best continuations */
            for (int k = 0; k < per && k < V; k++) {
                int arg = 0;
                for (int j = 1; j < V; j++) arg = lp[j] > lp[arg] ? j : arg;
                cands[nc++] = (cand){live[b].logp + lp[arg], b, arg};
                lp[arg] = -INFINITY;
            }
        }
        qsort(cands, (size_t)nc, sizeof *cands, by_logp_desc);
        int nn = 0;
        for (int c = 0; c < nc && nn < beam; c++) {
            const hyp *h = &live[cands[c].from];
            if (cands[c].tok == eot || t == T - 1) { /* finished: the end token, or no room left */
                double s = normalised(cands[c].logp, t);
                if (s > best) {
                    best = s, best_raw = cands[c].logp, best_len = t + 1, nbest++;
                    memcpy(best_ids, h->ids, sizeof(int32_t) * T);
                    best_ids[t] = cands[c].tok;
                }
                if (beam == 1) break;
                continue;
            }
            hyp *n = &next[nn++];
            memcpy(n->ids, h->ids, sizeof(int32_t) * T);
            n->ids[t] = cands[c].tok, n->len = t + 1, n->logp = cands[c].logp;
        }
        /* stop when no live hypothesis can still beat the best finished one:
         * log-probabilities only fall, and the divisor grows at most to T−1 */
        double bound = -INFINITY;
        for (int b = 0; b < nn; b++) {
            double s = next[b].logp / (next[b].logp < 0 ? (T - 1) : (next[b].len - 1));
            bound = s > bound ? s : bound;
        }
        if (nbest && bound <= best) nn = 0;
        for (int b = 0; b < nn; b++) { /* swap the live and next sets */
            hyp tmp = live[b];
            live[b] = next[b], next[b] = tmp;
        }
        nlive = nn;
    }
    if (rc == VLP_OK) {
        memset(out, 0, sizeof(int32_t) * T);
        memcpy(out, best_ids, sizeof(int32_t) * best_len);
        *score = (float)normalised(best_raw, best_len - 1);
    }
    free(ids), free(cands), free(lp);
    return rc;
}
