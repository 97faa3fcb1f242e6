/*
 * The CLIP training loop, one optimizer step at a time, and the run
 * directory that makes it resumable:
 *
 *   run/config.json                 the model config (open_clip field names)
 *   run/ckpt-00000100.safetensors   weights: an open_clip state dict
 *   run/ckpt-00000100.state         training state: AdamW moments, step, data
 *                                   position, options (safetensors, metadata
 *                                   "format": "vlp-train-state", "version": "1")
 *   run/latest.safetensors, run/latest.state   symlinks to the newest pair
 *   run/metrics.jsonl               one JSON object per step / eval
 *
 * Every file is written atomically and the state is written after its
 * checkpoint; the state names its checkpoint, so a process killed at any
 * moment leaves the previous pair loadable. Data order is a function of
 * (seed, epoch), so (epoch, index) is the whole data/RNG state; a resumed run
 * repeats the uninterrupted run's losses bit for bit on the same thread count.
 *
 * Gradient accumulation is the contrastive kind: with accum = K the batch is
 * split into K micro-batches, all are encoded without keeping activations,
 * the loss and its gradient w.r.t. the embeddings are computed over the whole
 * batch, then each micro-batch is re-encoded and back-propagated from its
 * slice of that gradient. The gradient equals the full batch's; memory for
 * activations is that of one micro-batch.
 */
#ifndef VLP_TRAIN_TRAINER_H
#define VLP_TRAIN_TRAINER_H
#include <stdbool.h>
#include <stdint.h>

#include "data/loader.h"
#include "dist/dist.h"
#include "model/clip.h"
#include "train/optim.h"

/* What the towers are trained for (open_clip's loss names). */
typedef enum vlp_objective {
    VLP_OBJECTIVE_CLIP = 0,   // symmetric InfoNCE (ClipLoss)
    VLP_OBJECTIVE_SIGLIP = 1, // pairwise sigmoid (SigLipLoss); the model needs logit_bias
    VLP_OBJECTIVE_FILIP = 2,  // token-wise late interaction (Yao et al. 2021)
    VLP_OBJECTIVE_COCA = 3,   // contrastive + captioning (CoCaLoss); the model needs multimodal_cfg
    VLP_OBJECTIVE_TEXTLM = 4, // the decoder as a text-only LM on the captions (PRIOR's reference)
    VLP_OBJECTIVE_MAE = 5,    // masked image modeling alone; the model needs mae_cfg
    VLP_OBJECTIVE_CLIP_MAE = 6, // contrastive on the masked images (FLIP) + weighted MAE
} vlp_objective;

const char *vlp_objective_name(vlp_objective o);
/* "clip" / "siglip" → the objective; false for anything else */
bool vlp_objective_parse(const char *name, vlp_objective *out);

typedef struct train_opts {
    vlp_objective objective;
    int batch;        // samples per step: what the loss sees
    int accum;        // micro-batches per step (batch % accum == 0)
    long steps;       // total optimizer steps
    long warmup;      // linear warmup steps
    adamw_cfg adam;
    double grad_clip; // max global gradient norm; 0: off
    uint64_t seed;    // initialisation and data order
    int lock_image;   // LiT: -1 off, else the image tower's unlocked groups (0: all locked)
    /* CoCa: loss = clip_weight · contrastive + caption_weight · caption
     * (open_clip's defaults 1 and 2) */
    float clip_weight, caption_weight;
    /* PRIOR: caption tokens weighted by (1 − p_ref)^prior_alpha from a
     * text-only reference LM (trainer_set_prior_ref) */
    bool prior;
    float prior_alpha;
    /* MAE: the share of patches masked (MAE's 0.75); clip-mae's loss is
     * clip_weight · contrastive + mae_weight · reconstruction */
    float mask_ratio, mae_weight;
} train_opts;

train_opts train_opts_defaults(void);

typedef struct train_step_info {
    long step;          // steps done, after this one
    float loss, lr, logit_scale; // logit_scale as the multiplier exp(param)
    double grad_norm;   // before clipping
    data_pos pos;       // where the data is now
    double seconds;     // this step's wall time
    double data_seconds; // of which waiting for the loader's batch
} train_step_info;

typedef struct trainer trainer;

/* Locks run_dir/lock for this process (taking it again in the same process
 * succeeds); a directory another live process holds is refused, naming it.
 * Closing *fd releases it. trainer_create takes it too. */
vlp_err run_dir_lock(const char *dir, int *fd, vlp_error *err);

/* The model and loader stay owned by the caller and must outlive the trainer.
 * Reserves the model's activations for one micro-batch.
 * dist (NULL: one process): data-parallel over its ranks. batch is the
 * global batch; each rank's loader hands out batch/world samples a step
 * (its share: pair_loader_shard or the shards of its own dataset); the
 * loss sees the whole batch (open_clip's local loss with gathered
 * features) and the gradients are summed over the ranks, so the ranks stay
 * identical and equal one process with the whole batch. Rank 0 owns the
 * run directory: lock, checkpoints, state, metrics. An error on one rank
 * leaves the others waiting in the next collective: callers must stop the
 * job (dist_abort) when trainer_step or trainer_save fails, as vlp train
 * does. */
vlp_err trainer_create(trainer **out, clip_model *m, vlp_loader *data, const train_opts *o,
                       const char *run_dir, vlp_dist *dist, vlp_error *err);
void trainer_free(trainer *t);
long trainer_step_count(const trainer *t);

/* PRIOR's reference: a model with a decoder trained as a text-only LM
 * (objective textlm) on the same tokenizer, owned by the caller; needed
 * before the first step when opts.prior. Reserves its activations. */
vlp_err trainer_set_prior_ref(trainer *t, clip_model *ref, vlp_error *err);

/* One optimizer step. */
vlp_err trainer_step(trainer *t, train_step_info *info, vlp_error *err);

/* Checkpoint + state into the run directory, keeping the newest `keep` pairs.
 * *written (may be NULL) receives the checkpoint's path. */
vlp_err trainer_save(trainer *t, int keep, char *written, size_t cap, vlp_error *err);

/* The options a run was started with, from run_dir/latest.state. */
vlp_err trainer_saved_opts(const char *run_dir, train_opts *o, vlp_error *err);
/* Load weights, moments, step and data position from run_dir/latest.state;
 * the trainer's options must match the saved ones (steps may differ). */
vlp_err trainer_resume(trainer *t, vlp_error *err);

/* Append one line to run_dir/metrics.jsonl (a JSON object without newline). */
vlp_err trainer_log(trainer *t, const char *json_line, vlp_error *err);
#endif
