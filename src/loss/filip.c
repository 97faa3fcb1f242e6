/* FILIP's token-wise late interaction (Yao et al. 2021) with CLIP's
 * symmetric cross-entropy over the two token-wise similarities. See loss.h.
 * The token similarities of a block of nI images × nT texts are never held
 * at once: one image's (Ti, nT·Tt) slab at a time; the arg-maxes are kept
 * for the backward. The whole batch is one block; a shard of it two (its
 * images against all texts, all images against its texts). */
#include "loss/loss.h"
#include "ops/gemm.h"
#include "loss/contrastive_rows.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

size_t filip_scratch_floats(int B, int Ti, int Tt) { return (size_t)Ti * B * Tt; }
size_t filip_saved_ints(int B, int Ti, int Tt) { return (size_t)B * B * (Ti + Tt); }

/* sI, sT (nI, nT) of images × texts; arg_r (nI, nT, Ti) the best text token
 * of each image token, arg_k (nI, nT, Tt) the best image token of each text
 * token (−1 on padding) */
static void block_sims(float *sI, float *sT, int32_t *arg_r, int32_t *arg_k, const float *img,
                       int nI, const float *txt, const int32_t *lens, int nT, float *scratch,
                       int Ti, int Tt, int D) {
    int NT = nT * Tt;
    for (int i = 0; i < nI; i++) {
        /* (Ti, nT·Tt): image i's tokens against every text token */
        vlp_sgemm(false, true, Ti, NT, D, 1.0f, img + (size_t)i * Ti * D, D, txt, D, 0.0f,
                  scratch, NT);
        VLP_OMP_FOR
        for (int j = 0; j < nT; j++) {
            int n = lens[j];
            int32_t *ar = arg_r + ((size_t)i * nT + j) * Ti, *ak = arg_k + ((size_t)i * nT + j) * Tt;
            const float *blk = scratch + (size_t)j * Tt; // row k at blk + k·NT
            double si = 0.0, st = 0.0;
            for (int k = 0; k < Ti; k++) { /* image token k: its best text token */
                const float *row = blk + (size_t)k * NT;
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
                    best = blk[(size_t)k * NT + r] > blk[(size_t)best * NT + r] ? k : best;
                ak[r] = best;
                st += blk[(size_t)best * NT + r];
            }
            sI[(size_t)i * nT + j] = (float)(si / Ti);
            sT[(size_t)i * nT + j] = (float)(st / n);
        }
    }
}

/* The gradients of a block from dsI, dsT (nI, nT; either may be NULL):
 * a similarity is a mean of maxima, so each token's share goes to its
 * arg-max partner. dimg (nI, Ti, D) and dtxt (nT, Tt, D) accumulate (either
 * may be NULL). Threads own images for dimg, texts for dtxt: no races. */
static void block_backward(float *dimg, float *dtxt, const float *dsI, const float *dsT,
                           const int32_t *arg_r, const int32_t *arg_k, const float *img, int nI,
                           const float *txt, const int32_t *lens, int nT, int Ti, int Tt, int D) {
#define COEF_I(i, j) (dsI ? dsI[(size_t)(i) * nT + (j)] / Ti : 0.0f)
#define COEF_T(i, j) (dsT ? dsT[(size_t)(i) * nT + (j)] / lens[j] : 0.0f)
    if (dimg) {
        VLP_OMP_FOR
        for (int i = 0; i < nI; i++)
            for (int j = 0; j < nT; j++) {
                float a = COEF_I(i, j), b = COEF_T(i, j);
                const int32_t *ar = arg_r + ((size_t)i * nT + j) * Ti;
                const int32_t *ak = arg_k + ((size_t)i * nT + j) * Tt;
                for (int k = 0; a != 0.0f && k < Ti; k++) {
                    float *dx = dimg + ((size_t)i * Ti + k) * D;
                    const float *y = txt + ((size_t)j * Tt + ar[k]) * D;
                    for (int d = 0; d < D; d++) dx[d] += a * y[d];
                }
                for (int r = 0; b != 0.0f && r < lens[j]; r++) {
                    float *dx = dimg + ((size_t)i * Ti + ak[r]) * D;
                    const float *y = txt + ((size_t)j * Tt + r) * D;
                    for (int d = 0; d < D; d++) dx[d] += b * y[d];
                }
            }
    }
    if (dtxt) {
        VLP_OMP_FOR
        for (int j = 0; j < nT; j++)
            for (int i = 0; i < nI; i++) {
                float a = COEF_I(i, j), b = COEF_T(i, j);
                const int32_t *ar = arg_r + ((size_t)i * nT + j) * Ti;
                const int32_t *ak = arg_k + ((size_t)i * nT + j) * Tt;
                for (int k = 0; a != 0.0f && k < Ti; k++) {
                    float *dy = dtxt + ((size_t)j * Tt + ar[k]) * D;
                    const float *x = img + ((size_t)i * Ti + k) * D;
                    for (int d = 0; d < D; d++) dy[d] += a * x[d];
                }
                for (int r = 0; b != 0.0f && r < lens[j]; r++) {
                    float *dy = dtxt + ((size_t)j * Tt + r) * D;
                    const float *x = img + ((size_t)i * Ti + ak[r]) * D;
                    for (int d = 0; d < D; d++) dy[d] += b * x[d];
                }
            }
    }
#undef COEF_I
#undef COEF_T
}

static vlp_err check_args(const int32_t *lens, int n, int Tt, float logit_scale, float *s,
                          vlp_error *err) {
    for (int j = 0; j < n; j++)
        VLP_CHECK_SHAPE(lens[j] >= 1 && lens[j] <= Tt, err,
                        "filip loss: caption %d has %d tokens (1..%d)", j, lens[j], Tt);
    VLP_CHECK(isfinite(logit_scale), err, VLP_ERR_NUMERIC, "logit_scale is %f", logit_scale);
    *s = expf(logit_scale);
    VLP_CHECK(isfinite(*s), err, VLP_ERR_NUMERIC, "exp(logit_scale = %g) overflows", logit_scale);
    return VLP_OK;
}

vlp_err filip_loss_forward(float *loss, float *probs_i2t, float *probs_t2i, float *sims,
                           int32_t *argmax, const float *img, const float *txt,
                           const int32_t *lens, float logit_scale, float *scratch, int B, int Ti,
                           int Tt, int D, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && Ti > 0 && Tt > 0 && D > 0, err,
                    "filip loss needs positive sizes, got B=%d Ti=%d Tt=%d D=%d", B, Ti, Tt, D);
    float s;
    VLP_TRY(check_args(lens, B, Tt, logit_scale, &s, err));
    float *sI = sims, *sT = sims + (size_t)B * B; // (B, B) each, [image][text]
    block_sims(sI, sT, argmax, argmax + (size_t)B * B * Ti, img, B, txt, lens, B, scratch, Ti, Tt,
               D);
    /* logits: image i over texts (s·sI), text j over images (s·sTᵀ) */
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            probs_i2t[(size_t)i * B + j] = s * sI[(size_t)i * B + j];
            probs_t2i[(size_t)i * B + j] = s * sT[(size_t)j * B + i];
        }
    *loss = (float)symmetric_ce_rows(probs_i2t, probs_t2i, B, B, 0);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "filip loss is not finite (logit_scale %g); token features may hold NaN/Inf",
              logit_scale);
    return VLP_OK;
}

void filip_loss_backward(float *dimg, float *dtxt, float *dlogit_scale, float dloss,
                         float *probs_i2t, float *probs_t2i, const float *sims,
                         const int32_t *argmax, const float *img, const float *txt,
                         const int32_t *lens, float logit_scale, int B, int Ti, int Tt, int D) {
    /* G1 = c·(P_i2t − I), G2 = c·(P_t2i − I), c = dloss/2B; dsI = s·G1,
     * dsT[i][j] = s·G2[j][i]; dlogit_scale = Σ G⊙logits. The probabilities
     * become dsI (i2t) and dsT (t2i, transposed in place). */
    float s = expf(logit_scale), c = dloss / (2.0f * B);
    const float *sI = sims, *sT = sims + (size_t)B * B;
    double dls = 0.0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float *g1 = &probs_i2t[(size_t)i * B + j];
            *g1 = s * c * (*g1 - (i == j));
            dls += (double)*g1 * sI[(size_t)i * B + j];
        }
    for (int i = 0; i < B; i++) /* transpose t2i into [image][text] */
        for (int j = i; j < B; j++) {
            float a = probs_t2i[(size_t)j * B + i], b = probs_t2i[(size_t)i * B + j];
            probs_t2i[(size_t)i * B + j] = s * c * (a - (i == j));
            probs_t2i[(size_t)j * B + i] = s * c * (b - (i == j));
        }
    for (size_t k = 0; k < (size_t)B * B; k++) dls += (double)probs_t2i[k] * sT[k];
    if (dlogit_scale) *dlogit_scale += (float)dls;
    block_backward(dimg, dtxt, probs_i2t, probs_t2i, argmax, argmax + (size_t)B * B * Ti, img, B,
                   txt, lens, B, Ti, Tt, D);
}

/* ---- one shard of the batch ----------------------------------------------------------- */

size_t filip_local_saved_ints(int b, int B, int Ti, int Tt) {
    return 2 * (size_t)b * B * (Ti + Tt);
}

vlp_err filip_loss_local_forward(float *loss, float *logits_i2t, float *logits_t2i, float *sims,
                                 int32_t *argmax, const float *img_l, const float *txt_l,
                                 const int32_t *lens_l, const float *img_g, const float *txt_g,
                                 const int32_t *lens_g, float logit_scale, float *scratch, int b,
                                 int B, int offset, int Ti, int Tt, int D, vlp_error *err) {
    VLP_CHECK_SHAPE(b > 0 && B >= b && offset >= 0 && offset + b <= B && Ti > 0 && Tt > 0 && D > 0,
                    err, "sharded filip loss: %d rows at offset %d of a batch of %d", b, offset, B);
    float s;
    VLP_TRY(check_args(lens_g, B, Tt, logit_scale, &s, err));
    /* block A: this shard's images × all texts (its i2t rows); block B: all
     * images × this shard's texts (its t2i rows) */
    size_t bB = (size_t)b * B;
    float *sIa = sims, *sTa = sIa + bB, *sIb = sTa + bB, *sTb = sIb + bB;
    int32_t *ara = argmax, *aka = ara + bB * Ti, *arb = aka + bB * Tt, *akb = arb + bB * Ti;
    block_sims(sIa, sTa, ara, aka, img_l, b, txt_g, lens_g, B, scratch, Ti, Tt, D);
    block_sims(sIb, sTb, arb, akb, img_g, B, txt_l, lens_l, b, scratch, Ti, Tt, D);
    for (int i = 0; i < b; i++)
        for (int j = 0; j < B; j++) {
            logits_i2t[(size_t)i * B + j] = s * sIa[(size_t)i * B + j]; // image offset+i, text j
            logits_t2i[(size_t)i * B + j] = s * sTb[(size_t)j * b + i]; // text offset+i, image j
        }
    *loss = (float)symmetric_ce_rows(logits_i2t, logits_t2i, b, B, offset);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "filip loss is not finite (logit_scale %g); token features may hold NaN/Inf",
              logit_scale);
    return VLP_OK;
}

void filip_loss_local_backward(float *dimg_l, float *dtxt_l, float *dimg_g, float *dtxt_g,
                               float *dlogit_scale, float dloss, float *probs_i2t,
                               float *probs_t2i, float *dsT, const float *sims,
                               const int32_t *argmax, const float *img_l, const float *txt_l,
                               const int32_t *lens_l, const float *img_g, const float *txt_g,
                               const int32_t *lens_g, float logit_scale, int b, int B, int offset,
                               int Ti, int Tt, int D) {
    float s = expf(logit_scale), c = dloss / (2.0f * b);
    size_t bB = (size_t)b * B;
    const float *sIa = sims, *sTb = sims + 3 * bB;
    const int32_t *ara = argmax, *aka = ara + bB * Ti, *arb = aka + bB * Tt, *akb = arb + bB * Ti;
    double dls = 0.0;
    for (int i = 0; i < b; i++)
        for (int j = 0; j < B; j++) {
            float *g1 = &probs_i2t[(size_t)i * B + j], g2 = probs_t2i[(size_t)i * B + j];
            *g1 = s * c * (*g1 - (j == offset + i));
            dls += (double)*g1 * sIa[(size_t)i * B + j];
            /* text offset+i over image j: block B's [image j][text i] */
            float d = s * c * (g2 - (j == offset + i));
            dsT[(size_t)j * b + i] = d;
            dls += (double)d * sTb[(size_t)j * b + i];
        }
    if (dlogit_scale) *dlogit_scale += (float)dls;
    memset(dimg_g, 0, sizeof(float) * (size_t)B * Ti * D);
    memset(dtxt_g, 0, sizeof(float) * (size_t)B * Tt * D);
    /* block A: own images (local gradient) × all texts (to be reduce-scattered) */
    block_backward(dimg_l, dtxt_g, probs_i2t, NULL, ara, aka, img_l, b, txt_g, lens_g, B, Ti, Tt,
                   D);
    /* block B: all images (to be reduce-scattered) × own texts (local) */
    block_backward(dimg_g, dtxt_l, NULL, dsT, arb, akb, img_g, B, txt_l, lens_l, b, Ti, Tt, D);
}
