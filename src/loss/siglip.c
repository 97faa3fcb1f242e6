/* SigLIP's pairwise sigmoid loss (Zhai et al. 2023; open_clip SigLipLoss),
 * for the b image rows of a shard against all B texts. See loss.h. */
#include "loss/loss.h"
#include "ops/gemm.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>

/* -log σ(x) = softplus(-x), without overflow either way */
static inline double softplus_neg(double x) { return (x > 0 ? 0.0 : -x) + log1p(exp(-fabs(x))); }

vlp_err siglip_loss_forward(float *loss, float *logits, const float *img_l, const float *txt_g,
                            float logit_scale, float logit_bias, int b, int B, int offset, int D,
                            vlp_error *err) {
    VLP_CHECK_SHAPE(b > 0 && B >= b && D > 0 && offset >= 0 && offset + b <= B, err,
                    "siglip loss: %d rows at offset %d of a batch of %d (D=%d)", b, offset, B, D);
    VLP_CHECK(isfinite(logit_scale) && isfinite(logit_bias), err, VLP_ERR_NUMERIC,
              "logit_scale %f / logit_bias %f", logit_scale, logit_bias);
    float s = expf(logit_scale);
    VLP_CHECK(isfinite(s), err, VLP_ERR_NUMERIC, "exp(logit_scale = %g) overflows", logit_scale);
    vlp_sgemm(false, true, b, B, D, s, img_l, D, txt_g, D, 0.0f, logits, B);
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int i = 0; i < b; i++) {
        float *z = logits + (size_t)i * B;
        for (int j = 0; j < B; j++) {
            z[j] += logit_bias;
            total += softplus_neg(j == offset + i ? z[j] : -z[j]);
        }
    }
    *loss = (float)(total / b);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC,
              "siglip loss is not finite (logit_scale %g, bias %g); features may hold NaN/Inf",
              logit_scale, logit_bias);
    return VLP_OK;
}

void siglip_loss_backward(float *dimg_l, float *dtxt_g, float *dlogit_scale, float *dlogit_bias,
                          float dloss, float *logits, const float *img_l, const float *txt_g,
                          float logit_scale, float logit_bias, float *scratch, int b, int B,
                          int offset, int D) {
    /* z = s·img·txtᵀ + bias, y = ±1: dL/dz = −y·σ(−y·z)·dloss/b =: G (in place
     * of the logits). dimg = s·G·txt, dtxt = s·Gᵀ·img, dbias = ΣG,
     * dlogit_scale = Σ G⊙(z − bias) (d z / d logit_scale = s·img·txtᵀ). */
    float s = expf(logit_scale), c = dloss / b;
    double dls = 0.0, dlb = 0.0;
#pragma omp parallel for reduction(+ : dls, dlb) schedule(static)
    for (int i = 0; i < b; i++) {
        float *z = logits + (size_t)i * B;
        for (int j = 0; j < B; j++) {
            double y = j == offset + i ? 1.0 : -1.0, yz = y * z[j];
            double sig = yz >= 0 ? exp(-yz) / (1.0 + exp(-yz)) : 1.0 / (1.0 + exp(yz)); // σ(−yz)
            double g = -y * sig * c;
            dls += g * ((double)z[j] - logit_bias);
            dlb += g;
            z[j] = (float)g;
        }
    }
    if (dlogit_scale) *dlogit_scale += (float)dls;
    if (dlogit_bias) *dlogit_bias += (float)dlb;
    if (dimg_l) {
        vlp_sgemm(false, false, b, D, B, s, logits, B, txt_g, D, 0.0f, scratch, D);
        for (size_t k = 0; k < (size_t)b * D; k++) dimg_l[k] += scratch[k];
    }
    if (dtxt_g) vlp_sgemm(true, false, B, D, b, s, logits, B, img_l, D, 0.0f, dtxt_g, D);
}
