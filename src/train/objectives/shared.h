/* Pieces several objectives share: the whole batch's embeddings and their
 * gradients (contrastive losses), MAE's masks, the caption loss. Each
 * objective file composes them; none of them knows which objective calls. */
#ifndef VLP_TRAIN_OBJECTIVES_SHARED_H
#define VLP_TRAIN_OBJECTIVES_SHARED_H
#include "train/objective.h"

/* ---- what objectives declare alike -------------------------------------------------------- */
/* `requires` of the objectives with a text decoder / an MAE decoder */
const char *requires_text_decoder(const clip_config *cfg);
const char *requires_mae_decoder(const clip_config *cfg);

/* ---- across ranks -------------------------------------------------------------------------- */
/* *loss = the mean of the ranks' losses: the batch's loss */
vlp_err mean_over_ranks(const objective_ctx *c, float local, float *loss, vlp_error *err);
/* *sum = the sum of the ranks' parts (a loss each rank divided by the batch's count) */
vlp_err sum_over_ranks(const objective_ctx *c, float local, float *sum, vlp_error *err);
/* local (n) += the sum over ranks of their gradients for this rank's rows, out
 * of global (world·n); landing (n) is scratch */
vlp_err add_reduce_scattered(const objective_ctx *c, const float *global, float *landing,
                             float *local, size_t n, vlp_error *err);

/* ---- contrastive: the whole batch's pooled embeddings ---------------------------------------- */
typedef struct embeddings {
    float *img, *txt;            // (b, E) this process's, every micro-batch's
    float *dimg, *dtxt;          // (b, E) the loss's gradients for them
    float *probs_i2t, *probs_t2i; // (b, B) the loss's saved rows
    float *scratch;              // clip_loss_scratch_floats(B, E) (≥ b·E)
    float *img_g, *txt_g, *dimg_g, *dtxt_g; // (B, E) everybody's, over MPI only
} embeddings;

vlp_err embeddings_alloc(embeddings *e, const objective_ctx *c, vlp_error *err);
void embeddings_free(embeddings *e);
/* An objective whose whole state is the embeddings: its create and free */
vlp_err embeddings_create(void **state, const objective_ctx *c, vlp_error *err);
void embeddings_destroy(void *state);

/* Micro-batch k's images through the image tower (an objective may mask them) */
typedef vlp_err (*image_forward_fn)(void *state, const objective_ctx *c, int k, vlp_error *err);
vlp_err image_forward_plain(void *state, const objective_ctx *c, int k, vlp_error *err);
vlp_err text_forward(const objective_ctx *c, int k, vlp_error *err);

/* Every micro-batch's embeddings into e->img / e->txt; the activations of
 * the last micro-batch stay in the model. */
vlp_err embeddings_encode(embeddings *e, const objective_ctx *c, image_forward_fn fwd, void *state,
                          vlp_error *err);
/* Symmetric InfoNCE over the whole batch: *loss the batch's (unweighted),
 * e->dimg/e->dtxt (overwritten) and the logit scale's gradient its
 * gradient times `weight`. One process: the (B, B) loss; a rank: its rows
 * against everybody's gathered embeddings, the gradients summed back to
 * their owners (open_clip's local loss). */
vlp_err infonce_grads(embeddings *e, const objective_ctx *c, float weight, float *loss,
                      vlp_error *err);
/* Each micro-batch back-propagated from its slice of e->dimg / e->dtxt,
 * re-encoded first when there are several (a locked image tower needs no
 * activations). */
vlp_err embeddings_backward(embeddings *e, const objective_ctx *c, image_forward_fn fwd,
                            void *state, vlp_error *err);

/* ---- MAE: masks and the reconstruction loss -------------------------------------------------- */
typedef struct masks {
    int32_t *keep; // (b, nkeep) the visible patches of this process's images
    int nkeep;
} masks;
/* "mask ratio r masks none of the patches" when it does not mask */
vlp_err masks_check(const clip_model *m, float mask_ratio, vlp_error *err);
vlp_err masks_alloc(masks *k, const objective_ctx *c, float mask_ratio, vlp_error *err);
/* this step's masks: a function of (seed, step, the sample's place in the
 * whole batch), so micro-batches and ranks mask as one process would */
void masks_draw(masks *k, const objective_ctx *c);
/* micro-batch k's visible patches through the image tower */
vlp_err masked_image_forward(const masks *k, const objective_ctx *c, int mb_index, vlp_error *err);
/* MAE's decoder and loss on the model's last masked image forward: *loss =
 * the reconstruction loss of its masked patches divided by denom (see
 * mae_loss_forward); with dloss != 0 also the backward: the decoder's
 * gradients (accumulated) and the image tokens' in m->mae.dimg (overwritten),
 * for clip_image_backward_with_tokens. */
vlp_err clip_mae_step(clip_model *m, int B, double denom, float dloss, float *loss,
                      vlp_error *err);
/* after the masked forward: the micro-batch's MAE loss (added to *sum),
 * and its backward with demb (NULL: none) for the pooled embedding */
vlp_err mae_micro(const masks *k, const objective_ctx *c, const float *demb, float dloss,
                  float *sum, vlp_error *err);

/* ---- captioning: next-token loss on the captions --------------------------------------------- */
typedef struct captions {
    int32_t *labels;  // (b, T) next-token targets of this process's captions
    float *rows;      // (mb, T) each row's loss
    float *w, *ref_logp; // (mb, T) PRIOR's weights and the reference's log-probabilities, or NULL
    clip_model *ref;  // PRIOR's reference (caller's), NULL: plain
    float alpha;      // PRIOR's exponent
} captions;
vlp_err captions_alloc(captions *cp, const objective_ctx *c, bool prior, vlp_error *err);
void captions_free(captions *cp);
/* PRIOR's reference: a text-only LM on the same tokenizer; reserves its activations */
vlp_err captions_set_reference(captions *cp, const objective_ctx *c, clip_model *ref, vlp_error *err);
/* the targets of this process's captions and the whole batch's count: the divisor */
vlp_err captions_targets(captions *cp, const objective_ctx *c, double *denom, vlp_error *err);
/* micro-batch k's caption loss (added to *loss) after the model's text (and,
 * with_image, image) forward, and the backward into the decoder; the towers'
 * gradients are left in m->coca.dtxt / m->coca.dimg */
vlp_err captions_micro(captions *cp, const objective_ctx *c, int k, bool with_image, double denom,
                       float dloss, float *loss, vlp_error *err);
#endif
