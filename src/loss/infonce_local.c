/* CLIP's InfoNCE for one shard of a global batch, with the semantics of
 * open_clip's ClipLoss(local_loss=True, gather_with_grad=True): the shard's
 * rows against every feature of the batch. See loss.h. */
#include "loss/loss.h"
#include "ops/gemm.h"
#include "loss/contrastive_rows.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>

vlp_err clip_loss_local_forward(float *loss, float *probs_i2t, float *probs_t2i,
                                const float *img_l, const float *txt_l, const float *img_g,
                                const float *txt_g, float logit_scale, int b, int B, int offset,
                                int D, vlp_error *err) {
    VLP_CHECK_SHAPE(b > 0 && B >= b && D > 0 && offset >= 0 && offset + b <= B, err,
                    "sharded clip loss: %d rows at offset %d of a batch of %d (D=%d)", b, offset, B,
                    D);
    VLP_CHECK(isfinite(logit_scale), err, VLP_ERR_NUMERIC, "logit_scale is %f", logit_scale);
    float s = expf(logit_scale);
    VLP_CHECK(isfinite(s), err, VLP_ERR_NUMERIC, "exp(logit_scale = %g) overflows", logit_scale);
    /* row i: image (offset+i) against all texts, and text (offset+i) against all images */
    vlp_sgemm(false, true, b, B, D, s, img_l, D, txt_g, D, 0.0f, probs_i2t, B);
    vlp_sgemm(false, true, b, B, D, s, txt_l, D, img_g, D, 0.0f, probs_t2i, B);
    *loss = (float)symmetric_ce_rows(probs_i2t, probs_t2i, b, B, offset);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "clip loss is not finite (logit_scale %g); features may hold NaN/Inf",
              logit_scale);
    return VLP_OK;
}

void clip_loss_local_backward(float *dimg_l, float *dtxt_l, float *dimg_g, float *dtxt_g,
                              float *dlogit_scale, float dloss, float *probs_i2t,
                              float *probs_t2i, const float *img_l, const float *txt_l,
                              const float *img_g, const float *txt_g, float logit_scale, int b,
                              int B, int offset, int D) {
    /* G1 = c·(P_i2t − Y), G2 = c·(P_t2i − Y), Y the one-hot rows at offset+i,
     * c = dloss / 2b, formed in place of the probabilities. With
     * logits1 = s·img_l·txt_gᵀ and logits2 = s·txt_l·img_gᵀ:
     *   dimg_l += s·G1·txt_g    dtxt_g  = s·G1ᵀ·img_l
     *   dtxt_l += s·G2·img_g    dimg_g  = s·G2ᵀ·txt_l
     *   dlogit_scale += Σ G1⊙logits1 + Σ G2⊙logits2 = ⟨img_l, s·G1·txt_g⟩ + ⟨txt_l, s·G2·img_g⟩ */
    float s = expf(logit_scale), c = dloss / (2.0f * b);
    VLP_OMP_FOR
    for (int i = 0; i < b; i++) {
        float *g1 = probs_i2t + (size_t)i * B, *g2 = probs_t2i + (size_t)i * B;
        g1[offset + i] -= 1.0f;
        g2[offset + i] -= 1.0f;
        for (int j = 0; j < B; j++) g1[j] *= c, g2[j] *= c;
    }
    double dls = 0.0;
    /* dimg_l and dtxt_l accumulate; the products go through dimg_g/dtxt_g's
     * first b rows as scratch before those are written */
    float *m = dimg_g; // (b, D) scratch
    vlp_sgemm(false, false, b, D, B, s, probs_i2t, B, txt_g, D, 0.0f, m, D);
    for (size_t k = 0; k < (size_t)b * D; k++) {
        dls += (double)img_l[k] * m[k];
        if (dimg_l) dimg_l[k] += m[k];
    }
    m = dtxt_g;
    vlp_sgemm(false, false, b, D, B, s, probs_t2i, B, img_g, D, 0.0f, m, D);
    for (size_t k = 0; k < (size_t)b * D; k++) {
        dls += (double)txt_l[k] * m[k];
        if (dtxt_l) dtxt_l[k] += m[k];
    }
    if (dlogit_scale) *dlogit_scale += (float)dls;
    vlp_sgemm(true, false, B, D, b, s, probs_i2t, B, img_l, D, 0.0f, dtxt_g, D);
    vlp_sgemm(true, false, B, D, b, s, probs_t2i, B, txt_l, D, 0.0f, dimg_g, D);
}
