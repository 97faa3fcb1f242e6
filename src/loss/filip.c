/* FILIP's token-wise late interaction (Yao et al. 2021) with CLIP's
 * symmetric cross-entropy over the two token-wise similarities. See loss.h.
 * The B·B·Ti·Tt token similarities are never held at once: one image's
 * (Ti, B·Tt) block at a time; the arg-maxes are kept for the backward. */
#include "loss/loss.h"
#include "ops/gemm.h"
#include "ops/softmax_row.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

size_t filip_scratch_floats(int B, int Ti, int Tt) { return (size_t)Ti * B * Tt; }
size_t filip_saved_ints(int B, int Ti, int Tt) { return (size_t)B * B * (Ti + Tt); }

vlp_err filip_loss_forward(float *loss, float *probs_i2t, float *probs_t2i, float *sims,
                           int32_t *argmax, const float *img, const float *txt,
                           const int32_t *lens, float logit_scale, float *scratch, int B, int Ti,
                           int Tt, int D, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && Ti > 0 && Tt > 0 && D > 0, err,
                    "filip loss needs positive sizes, got B=%d Ti=%d Tt=%d D=%d", B, Ti, Tt, D);
    for (int j = 0; j < B; j++)
        VLP_CHECK_SHAPE(lens[j] >= 1 && lens[j] <= Tt, err,
                        "filip loss: caption %d has %d tokens (1..%d)", j, lens[j], Tt);
    VLP_CHECK(isfinite(logit_scale), err, VLP_ERR_NUMERIC, "logit_scale is %f", logit_scale);
    float s = expf(logit_scale);
    VLP_CHECK(isfinite(s), err, VLP_ERR_NUMERIC, "exp(logit_scale = %g) overflows", logit_scale);
    float *sI = sims, *sT = sims + (size_t)B * B; // (B, B) each, [image][text]
    int32_t *arg_r = argmax, *arg_k = argmax + (size_t)B * B * Ti;
    int BT = B * Tt;
    for (int i = 0; i < B; i++) {
        /* (Ti, B·Tt): image i's tokens against every text token */
        vlp_sgemm(false, true, Ti, BT, D, 1.0f, img + (size_t)i * Ti * D, D, txt, D, 0.0f,
                  scratch, BT);
        VLP_OMP_FOR
        for (int j = 0; j < B; j++) {
            int n = lens[j];
            int32_t *ar = arg_r + ((size_t)i * B + j) * Ti, *ak = arg_k + ((size_t)i * B + j) * Tt;
            double si = 0.0, st = 0.0;
            for (int k = 0; k < Ti; k++) { /* image token k: its best text token */
                const float *row = scratch + (size_t)k * BT + (size_t)j * Tt;
                int best = 0;
                for (int r = 1; r < n; r++) best = row[r] > row[best] ? r : best;
                ar[k] = best;
                si += row[best];
            }
            for (int r = 0; r < Tt; r++) { /* text token r: its best image token */
                if (r >= n) {
                    ak[r] = -1;
                    continue;
                }
                int best = 0;
                for (int k = 1; k < Ti; k++)
                    best = scratch[(size_t)k * BT + (size_t)j * Tt + r] >
                                   scratch[(size_t)best * BT + (size_t)j * Tt + r]
                               ? k
                               : best;
                ak[r] = best;
                st += scratch[(size_t)best * BT + (size_t)j * Tt + r];
            }
            sI[(size_t)i * B + j] = (float)(si / Ti);
            sT[(size_t)i * B + j] = (float)(st / n);
        }
    }
    /* logits: image i over texts (s·sI), text j over images (s·sTᵀ) */
    double total = 0.0;
    for (int i = 0; i < B; i++) {
        float *r = probs_i2t + (size_t)i * B, *c = probs_t2i + (size_t)i * B;
        for (int j = 0; j < B; j++) {
            r[j] = s * sI[(size_t)i * B + j];
            c[j] = s * sT[(size_t)j * B + i];
        }
        float tr = r[i], tc = c[i];
        total += (double)(softmax_row(r, r, B, B) - tr) + (double)(softmax_row(c, c, B, B) - tc);
    }
    *loss = (float)(total / (2.0 * B));
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "filip loss is not finite (logit_scale %g); token features may hold NaN/Inf",
              logit_scale);
    return VLP_OK;
}

void filip_loss_backward(float *dimg, float *dtxt, float *dlogit_scale, float dloss,
                         const float *probs_i2t, const float *probs_t2i, const float *sims,
                         const int32_t *argmax, const float *img, const float *txt,
                         const int32_t *lens, float logit_scale, int B, int Ti, int Tt, int D) {
    /* G1[i][j] = c·(P_i2t − I), G2[j][i] = c·(P_t2i − I), c = dloss/2B;
     * dsI[i][j] = s·G1[i][j], dsT[i][j] = s·G2[j][i]; dlogit_scale = Σ G⊙logits.
     * A similarity is a mean of maxima: its gradient goes to the arg-max pair
     * of each token, scaled by 1/Ti (sI) or 1/len_j (sT). */
    float s = expf(logit_scale), c = dloss / (2.0f * B);
    const float *sI = sims, *sT = sims + (size_t)B * B;
    const int32_t *arg_r = argmax, *arg_k = argmax + (size_t)B * B * Ti;
    double dls = 0.0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double g1 = c * (probs_i2t[(size_t)i * B + j] - (i == j));
            double g2 = c * (probs_t2i[(size_t)j * B + i] - (i == j));
            dls += g1 * s * sI[(size_t)i * B + j] + g2 * s * sT[(size_t)i * B + j];
        }
    if (dlogit_scale) *dlogit_scale += (float)dls;
    /* d of the (i, j) similarities: coefficient of each token pair */
#define DSI(i, j) (s * c * (probs_i2t[(size_t)(i) * B + (j)] - ((i) == (j))) / Ti)
#define DST(i, j) (s * c * (probs_t2i[(size_t)(j) * B + (i)] - ((i) == (j))) / lens[j])
    if (dimg) {
        VLP_OMP_FOR
        for (int i = 0; i < B; i++) /* image i's tokens: one thread each, no races */
            for (int j = 0; j < B; j++) {
                float a = DSI(i, j), b = DST(i, j);
                const int32_t *ar = arg_r + ((size_t)i * B + j) * Ti;
                const int32_t *ak = arg_k + ((size_t)i * B + j) * Tt;
                for (int k = 0; k < Ti; k++) {
                    float *dx = dimg + ((size_t)i * Ti + k) * D;
                    const float *y = txt + ((size_t)j * Tt + ar[k]) * D;
                    for (int d = 0; d < D; d++) dx[d] += a * y[d];
                }
                for (int r = 0; r < lens[j]; r++) {
                    float *dx = dimg + ((size_t)i * Ti + ak[r]) * D;
                    const float *y = txt + ((size_t)j * Tt + r) * D;
                    for (int d = 0; d < D; d++) dx[d] += b * y[d];
                }
            }
    }
    if (dtxt) {
        VLP_OMP_FOR
        for (int j = 0; j < B; j++) /* text j's tokens */
            for (int i = 0; i < B; i++) {
                float a = DSI(i, j), b = DST(i, j);
                const int32_t *ar = arg_r + ((size_t)i * B + j) * Ti;
                const int32_t *ak = arg_k + ((size_t)i * B + j) * Tt;
                for (int k = 0; k < Ti; k++) {
                    float *dy = dtxt + ((size_t)j * Tt + ar[k]) * D;
                    const float *x = img + ((size_t)i * Ti + k) * D;
                    for (int d = 0; d < D; d++) dy[d] += a * x[d];
                }
                for (int r = 0; r < lens[j]; r++) {
                    float *dy = dtxt + ((size_t)j * Tt + r) * D;
                    const float *x = img + ((size_t)i * Ti + ak[r]) * D;
                    for (int d = 0; d < D; d++) dy[d] += b * x[d];
                }
            }
    }
#undef DSI
#undef DST
}
