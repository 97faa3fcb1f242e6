#ifndef VLP_LOSS_H
#define VLP_LOSS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

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

/* The same loss for one shard of a global batch of B (open_clip's ClipLoss
 * with local_loss and gather_with_grad): the shard holds rows
 * [offset, offset+b) and every rank has gathered the whole batch's features.
 *   logits_i2t = s · img_l · txt_gᵀ  (b, B),  logits_t2i = s · txt_l · img_gᵀ  (b, B)
 *   loss = ½ (CE(logits_i2t, offset+i) + CE(logits_t2i, offset+i)), mean over the b rows
 * With W equal shards, the mean of the W losses is the full batch's loss; with
 * dloss = 1/W on every shard, summing the shards' parameter gradients and
 * their dimg_g/dtxt_g (each shard keeping the rows it owns: a reduce-scatter)
 * gives the full batch's gradient. */
vlp_err clip_loss_local_forward(float *loss,
                                float *probs_i2t,  // (b, B)
                                float *probs_t2i,  // (b, B)
                                const float *img_l, const float *txt_l, // (b, D) this shard's
                                const float *img_g, const float *txt_g, // (B, D) everybody's
                                float logit_scale, int b, int B, int offset, int D,
                                vlp_error *err);
/* dimg_l/dtxt_l (b, D) and dlogit_scale accumulate (any may be NULL);
 * dimg_g/dtxt_g (B, D) are written: this shard's contribution to every
 * feature's gradient, to be summed over the shards. The probabilities are
 * overwritten with the logits' gradients. */
void clip_loss_local_backward(float *dimg_l, float *dtxt_l, float *dimg_g, float *dtxt_g,
                              float *dlogit_scale, float dloss, float *probs_i2t,
                              float *probs_t2i, const float *img_l, const float *txt_l,
                              const float *img_g, const float *txt_g, float logit_scale, int b,
                              int B, int offset, int D);

/* SigLIP's sigmoid loss (open_clip SigLipLoss) for the b images of a shard
 * at rows [offset, offset+b) of a batch of B, against all B texts:
 *   z = exp(logit_scale) · img_l · txt_gᵀ + logit_bias      (b, B), saved in logits
 *   loss = −Σ log σ(y_ij z_ij) / b,  y = +1 for the pair (i, offset+i), −1 else
 * One process: b = B, offset 0. With W shards and dloss = 1/W, the summed
 * gradients (dtxt_g reduce-scattered) are the whole batch's. */
vlp_err siglip_loss_forward(float *loss, float *logits, const float *img_l, const float *txt_g,
                            float logit_scale, float logit_bias, int b, int B, int offset, int D,
                            vlp_error *err);
/* dimg_l (b, D), dlogit_scale, dlogit_bias accumulate (any may be NULL);
 * dtxt_g (B, D) is written; scratch holds b·D floats; the logits are
 * overwritten with their gradients. */
void siglip_loss_backward(float *dimg_l, float *dtxt_g, float *dlogit_scale, float *dlogit_bias,
                          float dloss, float *logits, const float *img_l, const float *txt_g,
                          float logit_scale, float logit_bias, float *scratch, int b, int B,
                          int offset, int D);

/* FILIP (Yao et al. 2021): token-wise late interaction. img (B, Ti, D) and
 * txt (B, Tt, D) are L2-normalised token features; caption j has lens[j]
 * tokens, the rest of its row is padding and never matched.
 *   sI[i][j] = mean over image tokens k of max over text tokens r<len_j of ⟨img_ik, txt_jr⟩
 *   sT[i][j] = mean over text tokens r<len_j of max over image tokens k of ⟨img_ik, txt_jr⟩
 *   loss = ½ (CE(s·sI, diag) + CE(s·sTᵀ, diag)),  s = exp(logit_scale)
 * sims (2·B·B) keeps sI then sT, argmax (filip_saved_ints) the matches;
 * scratch: filip_scratch_floats (one image's token similarities). */
size_t filip_scratch_floats(int B, int Ti, int Tt);
size_t filip_saved_ints(int B, int Ti, int Tt);
vlp_err filip_loss_forward(float *loss, float *probs_i2t, float *probs_t2i, float *sims,
                           int32_t *argmax, const float *img, const float *txt,
                           const int32_t *lens, float logit_scale, float *scratch, int B, int Ti,
                           int Tt, int D, vlp_error *err);
/* dimg (B, Ti, D), dtxt (B, Tt, D) and dlogit_scale accumulate (any may be
 * NULL); the probabilities are overwritten with the similarities' gradients */
void filip_loss_backward(float *dimg, float *dtxt, float *dlogit_scale, float dloss,
                         float *probs_i2t, float *probs_t2i, const float *sims,
                         const int32_t *argmax, const float *img, const float *txt,
                         const int32_t *lens, float logit_scale, int B, int Ti, int Tt, int D);

/* FILIP for one shard of a batch of B (as clip_loss_local_*): the shard's
 * images (rows offset..offset+b) against all gathered texts and all
 * gathered images against its texts. logits (b, B) each; sims 4·b·B;
 * argmax filip_local_saved_ints; scratch filip_scratch_floats(B, …); dsT
 * (B, b) scratch of the backward. dimg_l/dtxt_l and dlogit_scale
 * accumulate; dimg_g (B, Ti, D) and dtxt_g (B, Tt, D) are written, to be
 * reduce-scattered. With W shards and dloss = 1/W the sums are the whole
 * batch's gradients. */
size_t filip_local_saved_ints(int b, int B, int Ti, int Tt);
vlp_err filip_loss_local_forward(float *loss, float *logits_i2t, float *logits_t2i, float *sims,
                                 int32_t *argmax, const float *img_l, const float *txt_l,
                                 const int32_t *lens_l, const float *img_g, const float *txt_g,
                                 const int32_t *lens_g, float logit_scale, float *scratch, int b,
                                 int B, int offset, int Ti, int Tt, int D, vlp_error *err);
void filip_loss_local_backward(float *dimg_l, float *dtxt_l, float *dimg_g, float *dtxt_g,
                               float *dlogit_scale, float dloss, float *probs_i2t,
                               float *probs_t2i, float *dsT, const float *sims,
                               const int32_t *argmax, const float *img_l, const float *txt_l,
                               const int32_t *lens_l, const float *img_g, const float *txt_g,
                               const int32_t *lens_g, float logit_scale, int b, int B, int offset,
                               int Ti, int Tt, int D);
/* ---- captioning (CoCa's caption loss, PRIOR's token weights) ---------------------
 * Next-token targets of tokenised captions: labels[b][t] = ids[b][t+1] for t
 * before the end token (the largest id, as the text tower pools it), −1
 * (no target) from there on; padding is never a target. Returns the number
 * of targets. */
long caption_targets(int32_t *labels, const int32_t *ids, int B, int T); // (B, T) both

/* loss = Σ_i w_i · CE(logits_i, labels_i) / denom over rows with a target;
 * w NULL: 1 (open_clip's CoCa caption loss when denom is the number of
 * targets). denom is the caller's, so micro-batches and ranks that split a
 * batch divide by the batch's count. probs (N, V) may be logits itself;
 * row_loss (N) gets each row's unweighted −log p (0 without a target). */
vlp_err caption_loss_forward(float *loss, float *probs, float *row_loss, const float *logits,
                             const int32_t *labels, const float *weights, int N, int V,
                             double denom, vlp_error *err);
/* dlogits (N, V) is WRITTEN (it may be probs itself): dloss·w_i/denom·(p − onehot) */
void caption_loss_backward(float *dlogits, const float *probs, const int32_t *labels,
                           const float *weights, float dloss, int N, int V, double denom);
/* logp[i] = log softmax(logits_i)[labels_i] (0 without a target), in double */
void caption_target_logprobs(float *logp, const float *logits, const int32_t *labels, int N,
                             int V);
/* PRIOR (Chen et al. 2025, arXiv 2505.08971): w = (1 − p_ref)^α for each
 * target from the text-only reference LM's log-probability, normalised per
 * caption to k·w/Σw (k targets, so the weights average 1); 0 where there is
 * no target. α = 0 is plain next-token prediction. */
void prior_weights(float *w, const float *ref_logp, const int32_t *labels, int B, int T,
                   float alpha);

/* ---- masked image modeling (MAE) ----------------------------------------------------
 * MAE's loss with norm_pix_loss: each masked patch's target is its pixels
 * normalised by their own mean and unbiased variance, (x − μ)/√(σ² + 1e-6);
 * the loss is the per-pixel mean squared error of a masked patch, summed
 * over the masked patches and divided by denom (the caller's: the number of
 * masked patches in the whole batch, as MAE's (loss·mask).sum()/mask.sum()).
 * pred (B, NP+1, K): row 0 of each sample (the class token) is not a
 * prediction; pixels (B, NP, K) the unfolded patches; keep (B, NK) the
 * visible patches, ascending: everything else is masked. */
vlp_err mae_loss_forward(float *loss, const float *pred, const float *pixels, const int32_t *keep,
                         int B, int NP, int NK, int K, double denom, vlp_error *err);
/* dpred (B, NP+1, K) is WRITTEN: dloss·2(pred − target)/(K·denom) on masked
 * patches, 0 elsewhere. */
void mae_loss_backward(float *dpred, const float *pred, const float *pixels, const int32_t *keep,
                       float dloss, int B, int NP, int NK, int K, double denom);

#endif
