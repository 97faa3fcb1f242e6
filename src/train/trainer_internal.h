/* The trainer's state, shared by its files: trainer.c (create, the step),
 * rundir.c (the run directory: lock, checkpoints, metrics) and resume.c. */
#ifndef VLP_TRAIN_TRAINER_INTERNAL_H
#define VLP_TRAIN_TRAINER_INTERNAL_H
#include <stdio.h>

#include "io/safetensors.h"
#include "train/trainer.h"

#define TRAIN_PATH_CAP 4096

struct trainer {
    clip_model *m;
    batch_loader *data;
    train_opts o;
    char *dir;
    long step;
    float *exp_avg, *exp_avg_sq; // (nfloats) AdamW moments, the parameters' layout
    float *images;               // (b, 3, S, S) this process's share of the step
    int32_t *ids;                // (b, ctx)
    objective_ctx ctx;           // what the objective's step sees
    void *obj_state;             // the objective's buffers
    FILE *metrics;
    int lock_fd;                 // run_dir/lock, locked: one process per run directory
    dist_group *dist;              // NULL: one process
    int rank, world;
};

/* dir/name into out (TRAIN_PATH_CAP) */
void run_path(char *out, const trainer *t, const char *name);
/* A rank's own data position at a checkpoint (ranks > 0; rank 0's is in the state) */
vlp_err load_rank_pos(trainer *t, long step, data_pos *pos, vlp_error *err);
/* run_dir/latest.state, checked to be a training state of this version */
vlp_err open_state(const char *dir, st_file **out, vlp_error *err);
/* drops metrics.jsonl's lines of steps after t->step: a resumed run redoes them */
vlp_err truncate_metrics(trainer *t, vlp_error *err);
#endif
