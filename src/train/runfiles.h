/* The files of a run directory that a resumed run reads back: the training
 * state's metadata (ckpt-N.state) and a rank's data position (ckpt-N.rankR.pos).
 * One reader for each, every number with the range a run can make (a file
 * never carries a value the run could not have written: an epoch near 2^63
 * would overflow the data order's epoch + 1), and a writer whose output the
 * reader gives back unchanged (tests/fuzz/fuzz_run.c checks the round trip).
 * data.json is the data options' record: run.h. */
#ifndef VLP_TRAIN_RUNFILES_H
#define VLP_TRAIN_RUNFILES_H
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/loader.h"
#include "io/safetensors.h"

#define RUN_STATE_FORMAT "vlp-train-state"
#define RUN_STATE_VERSION "1"
#define RUN_MAX_EPOCH ((int64_t)1 << 52) /* epochs smaller than a batch: many a step */
#define RUN_MAX_INDEX ((int64_t)1 << 62)
#define RUN_MAX_WORLD ((int64_t)1 << 20)
#define RUN_CHECKPOINT_CAP 256

/* a training state's metadata */
typedef struct run_state {
    int64_t step;                      // 0..TRAIN_MAX_STEPS
    data_pos pos;                      // rank 0's: epoch 0..RUN_MAX_EPOCH, index 0..RUN_MAX_INDEX
    int64_t world;                     // 1..RUN_MAX_WORLD processes (1 when the state has none)
    char checkpoint[RUN_CHECKPOINT_CAP]; // the weights' file name, in the run directory
    const char *options;               // the training options' JSON (train_opts_from_json), in the file's memory
} run_state;

/* A whole number in 0..max written in decimal, nothing else: `what` of
 * `where` names it in the message. */
vlp_err run_number(const char *text, const char *where, const char *what, int64_t max, int64_t *out,
                   vlp_error *err);
/* f's format and version, or an error naming the file */
vlp_err run_state_check(const st_file *f, vlp_error *err);
/* f's metadata (checked as run_state_check, then every value) into s */
vlp_err run_state_read(const st_file *f, run_state *s, vlp_error *err);
/* The state with the AdamW moments (nfloats each), atomically. */
vlp_err run_state_write(const char *path, const run_state *s, const float *exp_avg, const float *exp_avg_sq,
                        size_t nfloats, vlp_error *err);

/* a rank's data position file: "epoch index\n" */
#define RUN_POS_CAP 64
int run_pos_format(char line[RUN_POS_CAP], data_pos p);
vlp_err run_pos_parse(const char *text, const char *path, data_pos *p, vlp_error *err);
#endif
