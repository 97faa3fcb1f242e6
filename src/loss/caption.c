/* Captioning: next-token cross-entropy with per-token weights (1 for plain
 * NTP, PRIOR's importance weights otherwise). */
#include "loss/loss.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/softmax_row.h"

#include <math.h>
#include <string.h>

/* The end token is the largest id (CLIP's tokenizer), so its position is the
 * first argmax, as the text tower pools it. */
static int end_position(const int32_t *row, int T) {
    int best = 0;
    for (int t = 1; t < T; t++)
        if (row[t] > row[best]) best = t;
    return best;
}

long caption_targets(int32_t *labels, const int32_t *ids, int B, int T) {
    long n = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (size_t)b * T;
        int32_t *lab = labels + (size_t)b * T;
        int end = end_position(row, T);
        for (int t = 0; t < T; t++) {
            lab[t] = t < end ? row[t + 1] : -1;
            n += t < end;
        }
    }
    return n;
}

vlp_err caption_loss_forward(float *loss, float *probs, float *row_loss, const float *logits,
                             const int32_t *labels, const float *weights, int N, int V,
                             double denom, vlp_error *err) {
    VLP_CHECK_ARG(N > 0 && V > 0 && denom > 0, err,
                  "caption loss: N %d, vocab %d and target count %g must be positive", N, V, denom);
    for (int i = 0; i < N; i++)
        VLP_CHECK_ARG(labels[i] < V && labels[i] >= -1, err,
                      "caption loss: target %d at row %d is outside the vocabulary of %d",
                      labels[i], i, V);
    VLP_OMP_FOR
    for (int i = 0; i < N; i++) {
        /* logits and probs may be one buffer: the target's logit first */
        float target = labels[i] >= 0 ? logits[(size_t)i * V + labels[i]] : 0.0f;
        float lse = softmax_row(probs + (size_t)i * V, logits + (size_t)i * V, V, V);
        row_loss[i] = labels[i] >= 0 ? lse - target : 0.0f;
    }
    /* summed in row order: the same result on any thread count */
    double sum = 0.0;
    for (int i = 0; i < N; i++)
        if (labels[i] >= 0) sum += (double)(weights ? weights[i] : 1.0f) * row_loss[i];
    *loss = (float)(sum / denom);
    return VLP_OK;
}

void caption_loss_backward(float *dlogits, const float *probs, const int32_t *labels,
                           const float *weights, float dloss, int N, int V, double denom) {
    float s = (float)(dloss / denom);
    VLP_OMP_FOR
    for (int i = 0; i < N; i++) {
        float *d = dlogits + (size_t)i * V;
        const float *p = probs + (size_t)i * V;
        if (labels[i] < 0) {
            memset(d, 0, sizeof(float) * V);
            continue;
        }
        float g = s * (weights ? weights[i] : 1.0f);
        for (int j = 0; j < V; j++) d[j] = g * p[j];
        d[labels[i]] -= g;
    }
}

void caption_target_logprobs(float *logp, const float *logits, const int32_t *labels, int N,
                             int V) {
    VLP_OMP_FOR
    for (int i = 0; i < N; i++) {
        if (labels[i] < 0) {
            logp[i] = 0.0f;
            continue;
        }
        const float *x = logits + (size_t)i * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < V; j++) sum += exp((double)(x[j] - mx));
        logp[i] = (float)((double)(x[labels[i]] - mx) - log(sum));
    }
}

void prior_weights(float *w, const float *ref_logp, const int32_t *labels, int B, int T,
                   float alpha) {
    for (int b = 0; b < B; b++) {
        const float *lp = ref_logp + (size_t)b * T;
        const int32_t *lab = labels + (size_t)b * T;
        float *wb = w + (size_t)b * T;
        double sum = 0.0;
        int k = 0;
        for (int t = 0; t < T; t++) {
            if (lab[t] < 0) {
                wb[t] = 0.0f;
                continue;
            }
            /* 1 − p with p = exp(log p) ≤ 1; pow(0, 0) = 1 keeps α = 0 plain NTP */
            double one_minus_p = -expm1((double)lp[t]);
            wb[t] = (float)pow(one_minus_p > 0 ? one_minus_p : 0.0, alpha);
            sum += wb[t];
            k++;
        }
        /* k·w/Σw: the caption's weights average 1, so the loss keeps NTP's
         * scale; a caption the reference predicts perfectly (Σw = 0) keeps
         * plain weights */
        for (int t = 0; t < T; t++)
            if (lab[t] >= 0) wb[t] = sum > 0 ? (float)(k * wb[t] / sum) : 1.0f;
    }
}
