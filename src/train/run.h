/*
 * A training run as a whole, in the library: the run directory (config,
 * tokenizer, data.json, checkpoints, state, metrics), the model and its
 * tokenizer, the data, the objective's reference models, the resume state
 * (one check: train_opts_resume for the math, the data table for data.json),
 * the checkpoint and evaluation schedule. `vlp train` is parse → run_open →
 * run_step until done → report; the C API (vlp_train_*) is the same calls.
 *
 * Nothing here prints: what a person should read goes to opts.say (one
 * line a call, no newline), sample warnings to opts.warn.
 */
#ifndef VLP_TRAIN_RUN_H
#define VLP_TRAIN_RUN_H
#include <jansson.h>
#include <stdbool.h>

#include "core/optdesc.h"
#include "dist/dist.h"
#include "eval/validate.h"
#include "train/trainer.h"

#define RUN_MAX_GIVEN 64

typedef void (*run_say_fn)(void *ctx, const char *line);

/* Everything a run is given. Strings are the caller's and must outlive the
 * run_open call (the run copies what it keeps). */
typedef struct run_opts {
    train_opts o;             // the math: the training state's options
    /* a new run's, refused on resume */
    const char *model_config; // an open_clip name or a JSON file
    const char *vocab;        // BPE merges; NULL: learn them
    long tokenizer_merges;
    double epochs;            // > 0: steps from the epoch size
    const char *init_image;   // visual.* from this checkpoint (LiT)
    /* the data (run/data.json): given again on resume they must agree, but the evaluation sets */
    const char *train_data, *data, *vendors, *image_key, *caption_key, *alt_caption_key;
    double alt_caption_prob;
    long shuffle_buffer;
    bool white_background, hflip;
    double crop_scale;
    const char *val_data, *zeroshot_data, *label_key, *templates;
    /* this session's */
    const char *out;
    long workers, save_every, eval_every, keep;
    bool resume;
    /* the objective's options as given, applied once the objective is known
     * (the run's on resume): flag and value text */
    struct { const char *flag, *value; } obj_args[RUN_MAX_GIVEN];
    int nobj_args;
    /* the keys given (run_opts_set): a resumed run compares them with its own */
    const char *given[RUN_MAX_GIVEN];
    int ngiven;
    run_say_fn say;           // NULL: silent
    void (*warn)(void *ctx, const char *msg); // skipped samples; NULL: silent
    void *ctx;                // for say and warn
} run_opts;

/* The options of run_opts outside train_opts (offsets into run_opts). */
extern const opt_desc run_opt_table[];
extern const int run_opt_count;

run_opts run_opts_defaults(void);
/* One option by key or flag, from text (a switch: NULL): the run's, the
 * math's, or an objective's (kept until the objective is known). The text
 * must outlive the run_open call. */
vlp_err run_opts_set(run_opts *r, const char *key_or_flag, const char *text, vlp_error *err);
/* records that the option of this key was given (run_opts_set does it) */
void run_opts_mark_given(run_opts *r, const char *key);
/* whether some built-in objective has this option (key or flag) */
bool run_objective_option(const char *key_or_flag);
/* whether the key (or an objective option's flag) was given */
bool run_opts_given(const run_opts *r, const char *key);

/* data.json, the record of a run's data options: the entries of the table
 * marked OPT_DATA, a path made absolute (*out is the caller's; a path or key
 * that is not UTF-8 is refused, since JSON cannot hold it) */
vlp_err run_data_record(const run_opts *c, const char *path, json_t **out, vlp_error *err);
/* A record read into c: an option given (run_opts_given) must agree with
 * it, unless it may change (the evaluation sets); the others take the
 * record's value, with the ranges and types of the flag that sets it.
 * c's strings then point into the record. */
vlp_err run_data_record_read(const json_t *record, run_opts *c, const char *path, vlp_error *err);

/* What the run is judged by: validation pairs and a zero-shot set. */
typedef struct run_evals {
    long step; // when
    bool val, zs;
    val_result v, z;
} run_evals;

typedef struct run run;

/* Sets up the run (new, or resumed from opts.out with opts.resume): checks
 * the evaluation sets, writes config/tokenizer/data.json, builds model and
 * loader, creates the trainer and loads the state. dist: NULL or the job. */
vlp_err run_open(run **out, const run_opts *opts, dist_group *dist, vlp_error *err);
void run_close(run *r);

/* the options in force (the run's on resume, the epochs turned into steps) */
const run_opts *run_options(const run *r);
long run_step_count(const run *r);
bool run_done(const run *r);
/* the step the run started at this session (0 for a new run) */
long run_start_step(const run *r);
clip_model *run_model(run *r);
const text_tokenizer *run_tokenizer(const run *r);
int64_t run_epoch_size(const run *r);
/* epochs the run's steps make */
double run_epochs(const run *r);
/* unusable samples the streaming loader skipped, and why the first was */
int64_t run_skipped_samples(const run *r, char *why, size_t cap);

/* One optimizer step, its metrics line, and the checkpoint / evaluation the
 * schedule puts after it (not after the last step: run_finish's). An
 * evaluation that fails is said and training goes on; *evaluated tells
 * whether one ran (NULL: not wanted). */
vlp_err run_step(run *r, train_step_info *info, bool *evaluated, vlp_error *err);
/* whether any rank was asked to stop (collective: every rank calls it at
 * the same step); local: this process's request */
vlp_err run_stop_requested(run *r, bool local, bool *stop, vlp_error *err);
/* a checkpoint now; *written (may be NULL) its path */
vlp_err run_save(run *r, char *written, size_t cap, vlp_error *err);
/* validation and zero-shot on the run's sets now (rank 0; the others: nothing) */
vlp_err run_eval(run *r, vlp_error *err);
/* the last evaluation, or NULL */
const run_evals *run_last_eval(const run *r);
#endif
