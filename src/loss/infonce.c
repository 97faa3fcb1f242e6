/* CLIP's symmetric InfoNCE (open_clip ClipLoss, single process). */
#include "loss/loss.h"
#include "ops/gemm.h"
#include "loss/contrastive_rows.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>

vlp_err clip_loss_forward(float *loss, float *probs_i2t, float *probs_t2i, const float *img,
                          const float *txt, float logit_scale, int B, int D, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && D > 0, err, "clip loss needs B > 0 and D > 0, got B=%d D=%d", B, D);
    VLP_CHECK(isfinite(logit_scale), err, VLP_ERR_NUMERIC, "logit_scale is %f", logit_scale);
    float s = expf(logit_scale);
    VLP_CHECK(isfinite(s), err, VLP_ERR_NUMERIC, "exp(logit_scale = %g) overflows", logit_scale);
    /* logits (B, B) go to probs_i2t and, transposed, to probs_t2i; both are
     * then turned into probabilities in place */
    vlp_sgemm(false, true, B, B, D, s, img, D, txt, D, 0.0f, probs_i2t, B);
    VLP_OMP_FOR
    for (int j = 0; j < B; j++)
        for (int i = 0; i < B; i++) probs_t2i[(size_t)j * B + i] = probs_i2t[(size_t)i * B + j];
    *loss = (float)symmetric_ce_rows(probs_i2t, probs_t2i, B, B, 0);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "clip loss is not finite (logit_scale %g); features may hold NaN/Inf",
              logit_scale);
    return VLP_OK;
}

size_t clip_loss_scratch_floats(int B, int D) { return (size_t)B * D; }

void clip_loss_backward(float *dimg, float *dtxt, float *dlogit_scale, float dloss,
                        const float *probs_i2t, const float *probs_t2i, const float *img,
                        const float *txt, float logit_scale, float *scratch, int B, int D) {
    /* dlogits G = c·((P_i2t − I) + (P_t2iᵀ − I)), c = dloss / 2B. With
     * logits = s·img·txtᵀ:  dimg = s·G·txt,  dtxt = s·Gᵀ·img, and since
     * d logits / d logit_scale = logits,  dlogit_scale = Σ G⊙logits = ⟨img, s·G·txt⟩.
     * G is never formed: each product splits into two GEMMs on the saved
     * probabilities and a diagonal term. */
    float s = expf(logit_scale);
    float a = s * dloss / (2.0f * B);
    float *m = scratch; // (B, D)
    if (dimg || dlogit_scale) {
        vlp_sgemm(false, false, B, D, B, a, probs_i2t, B, txt, D, 0.0f, m, D);
        vlp_sgemm(true, false, B, D, B, a, probs_t2i, B, txt, D, 1.0f, m, D);
        double dls = 0.0;
        for (size_t k = 0; k < (size_t)B * D; k++) {
            m[k] -= 2.0f * a * txt[k];
            dls += (double)img[k] * m[k];
            if (dimg) dimg[k] += m[k];
        }
        if (dlogit_scale) *dlogit_scale += (float)dls;
    }
    if (dtxt) {
        vlp_sgemm(true, false, B, D, B, a, probs_i2t, B, img, D, 0.0f, m, D);
        vlp_sgemm(false, false, B, D, B, a, probs_t2i, B, img, D, 1.0f, m, D);
        for (size_t k = 0; k < (size_t)B * D; k++) dtxt[k] += m[k] - 2.0f * a * img[k];
    }
}
