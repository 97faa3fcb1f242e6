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

#include "core/optdesc.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "model/clip.h"
#include "train/objective.h"
#include "train/optim.h"

/* the most steps a run may take (--steps, --warmup, the state's step and
 * epoch): 2^40, far beyond any run, and far from overflowing a counter */
#define TRAIN_MAX_STEPS ((int64_t)1 << 40)

/* The options of a run. Everything here changes the math and is recorded
 * in the training state; a resumed run must give the same values, except
 * `steps` (train_opts_resume). */
typedef struct train_opts {
    const objective *objective; // what the towers are trained for (objective.h)
    float obj[OBJECTIVE_MAX_OPTIONS]; // its options, in its table's order
    int batch;        // samples per step: what the loss sees
    int accum;        // micro-batches per step (batch % accum == 0)
    long steps;       // total optimizer steps
    long warmup;      // linear warmup steps
    adamw_cfg adam;
    double grad_clip; // max global gradient norm; 0: off
    uint64_t seed;    // initialisation and data order
    int lock_image;   // LiT: -1 off, else the image tower's unlocked groups (0: all locked)
    matmul_precision precision; // the blocks' matmuls; trainer_create sets the model's
    /* a step whose loss or gradient norm is not finite: false stops with an
     * error naming it (nothing updated: the last checkpoint stays good);
     * true skips its update and goes on (train_step_info.skipped) */
    bool skip_nonfinite;
    /* recompute each block's activations in the backward (clip_set_checkpointing):
     * the same gradients in less memory; a resumed run may change it */
    bool grad_checkpointing;
} train_opts;

/* The options of train_opts (offsets into it): the command line, the C API,
 * the training state and the resume check all read this table. */
extern const opt_desc train_opt_table[];
extern const int train_opt_count;
/* The objective's option i as an entry of the same kind (its value in o->obj[i]) */
opt_desc objective_option_desc(const objective *obj, int i);

/* The flag of the option some built-in objective has by this key or flag; NULL: none */
const char *objective_option_flag(const char *key_or_flag);

/* CLIP, batch 128, 1000 steps, open_clip's AdamW defaults */
train_opts train_opts_defaults(void);
/* Switches the objective; its options take their defaults. */
void train_opts_set_objective(train_opts *o, const objective *obj);
/* One option of the objective by key or flag ("clip_weight", "--clip-weight");
 * refused, naming the objectives that have it, when this one has not. */
vlp_err train_opts_set(train_opts *o, const char *key, float value, vlp_error *err);
/* Its value; NAN when the objective has no such option. */
float train_opts_get(const train_opts *o, const char *key);
/* Checks ranges and combinations; the message names the option. */
vlp_err train_opts_check(const train_opts *o, vlp_error *err);

/* The one resume check, for the library and the CLI alike. `run` holds the
 * run's options (from its state); `given` the caller's, of which those whose
 * keys are in given_keys (NULL: all) were given. A given option that may
 * change (steps) replaces the run's; any other given option must equal the
 * run's, else the error names it and both values. `what` names the run. */
vlp_err train_opts_resume(train_opts *run, const train_opts *given, const char *const *given_keys,
                          int ngiven, const char *what, vlp_error *err);
/* The options as one JSON object (malloc'd), as the training state holds
 * them, and back; parsing names `what` (the file) in its errors. */
char *train_opts_to_json(const train_opts *o);
vlp_err train_opts_from_json(const char *text, const char *what, train_opts *o, vlp_error *err);
/* "--lr 0.001 --batch 128 ..." of every recorded option, for a log line */
void train_opts_describe(const train_opts *o, char *buf, size_t cap);

typedef struct train_step_info {
    long step;          // steps done, after this one
    float loss, lr, logit_scale; // logit_scale as the multiplier exp(param)
    double grad_norm;   // before clipping
    data_pos pos;       // where the data is now
    bool skipped;       // not finite and skipped (train_opts.skip_nonfinite): no update
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
/* The model's matmuls are set to o->precision here (clip_set_precision). */
vlp_err trainer_create(trainer **out, clip_model *m, batch_loader *data, const train_opts *o,
                       const char *run_dir, dist_group *dist, vlp_error *err);
void trainer_free(trainer *t);
long trainer_step_count(const trainer *t);

/* The model for an objective's objective_model option (key or flag), e.g.
 * coca's PRIOR reference; owned by the caller. Needed before the first step
 * when the option is set. */
vlp_err trainer_set_model(trainer *t, const char *option, clip_model *ref, vlp_error *err);

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
