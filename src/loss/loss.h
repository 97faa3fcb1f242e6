#ifndef VLP_LOSS_H
#define VLP_LOSS_H
#include "vlp.h"

/* CLIP symmetric InfoNCE with a learnable temperature, as open_clip ClipLoss:
 *   logits = exp(logit_scale) · img · txtᵀ                        (B, B)
 *   loss   = ½ (CE(logits, diag) + CE(logitsᵀ, diag))
 * img and txt are the L2-normalised features. The softmax probabilities of
 * both directions are saved for the backward. */
vlp_err clip_loss_forward(float *loss,           // scalar
                          float *probs_i2t,      // (B, B) row i: image i over texts
                          float *probs_t2i,      // (B, B) row j: text j over images
                          const float *img,      // (B, D)
                          const float *txt,      // (B, D)
                          float logit_scale,     // the parameter (log of the scale)
                          int B, int D, vlp_error *err);
size_t clip_loss_scratch_floats(int B, int D);
void clip_loss_backward(float *dimg,             // (B, D) or NULL
                        float *dtxt,             // (B, D) or NULL
                        float *dlogit_scale,     // scalar or NULL
                        float dloss,             // upstream gradient, 1 for a plain loss
                        const float *probs_i2t, const float *probs_t2i,
                        const float *img, const float *txt, float logit_scale,
                        float *scratch,          // clip_loss_scratch_floats()
                        int B, int D);
#endif
