/*
 * An objective: what the towers are trained for, and everything about it the
 * trainer and the CLI need — its name and help, what the model must have, its
 * options (parsed, checked, saved in the training state, compared on resume),
 * its buffers, and the loss with the parameters' gradients for one step.
 *
 * One file per objective in src/train/objectives/, one entry in the table
 * (objectives/table.c). The trainer never asks which objective it runs; a
 * caller may also pass an objective of its own (train_opts.objective) that is
 * in no table, as tests/test_train.c does.
 */
#ifndef VLP_TRAIN_OBJECTIVE_H
#define VLP_TRAIN_OBJECTIVE_H
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/optdesc.h"
#include "dist/dist.h"
#include "model/clip.h"

#define OBJECTIVE_MAX_OPTIONS 8

/* An option of an objective: an opt_desc (core/optdesc.h: key, flag, value
 * name, type, range, help) whose value is the objective's opt[i] (offset
 * i · sizeof(float) into its option values), and its default. A number
 * (opt_float), or a reference model the caller passes (objective_model:
 * the value is 1 given, 0 not; the file is the caller's, trainer_set_model). */
typedef struct objective_option {
    opt_desc d;
    float def;
} objective_option;

extern const opt_type objective_model;

/* entry i of an objective's table */
#define OBJECTIVE_NUMBER(i, key, flag, arg, help, def, lo, hi)                                    \
    [i] = {{key, NULL, flag, arg, &opt_float, (i) * sizeof(float), lo, hi, OPT_STATE, help, NULL}, def}
#define OBJECTIVE_MODEL(i, key, flag, arg, help)                                                  \
    [i] = {{key, NULL, flag, arg, &objective_model, (i) * sizeof(float), 0, 0, OPT_STATE, help, NULL}, 0}
/* the weight of the contrastive loss, in every objective that adds others to it */
#define OBJECTIVE_CLIP_WEIGHT(i) \
    OBJECTIVE_NUMBER(i, "clip_weight", "--clip-weight", "X", "weight of the contrastive loss", 1.0f, 0.0f, 1e6f)
/* whether option i is a reference model */
#define OBJECTIVE_IS_MODEL(o, i) ((o)->options[i].d.type == &objective_model)

/* Whether --lock-image (LiT) applies. An objective that does not train
 * the image tower (no CLIP_PART_IMAGE in `trains`) has it frozen whole. */
typedef enum objective_lock {
    LOCK_OPTIONAL, // the caller's choice
    LOCK_REFUSED,  // the objective trains the image tower: locking it is an error
} objective_lock;

/* the parts of the model the contrastive objectives train */
#define TRAINS_TOWERS (CLIP_PART_IMAGE | CLIP_PART_TEXT | CLIP_PART_TEXT_POOL)
#define TRAINS_CONTRASTIVE (TRAINS_TOWERS | CLIP_PART_LOGIT_SCALE)

/* What an objective's step sees: the trainer's model, data and process. */
typedef struct objective_ctx {
    clip_model *m;
    const float *opt;      // [noptions] the objective's option values, its table's order
    dist_group *dist;        // NULL: one process
    int rank, world;
    int batch;             // the global batch: what the loss sees
    int b;                 // this process's share: batch / world
    int accum, mb;         // micro-batches of this share and their size b / accum
    const float *images;   // (b, 3, S, S) this step's
    const int32_t *ids;    // (b, T)
    long step;             // steps done before this one
    uint64_t seed;
} objective_ctx;

typedef struct objective {
    const char *name;
    const char *help; // a few words for --help
    const objective_option *options;
    int noptions;
    /* a new run's config as the objective wants it (SigLIP's logit bias); NULL: as given */
    void (*configure)(clip_config *cfg);
    /* NULL when the config has what the objective needs, else what is
     * missing, naming the config field ("a text decoder (config multimodal_cfg)") */
    const char *(*requires)(const clip_config *cfg);
    objective_lock lock;
    /* the parts of the model it trains (clip_part bits): an allow-list;
     * every other parameter is frozen, without weight decay either, so the
     * heads a model carries for other objectives stay as they are */
    unsigned trains;
    /* checks option values beyond their ranges and against the model; NULL: none */
    vlp_err (*check)(const float *opt, const clip_model *m, vlp_error *err);
    /* its buffers for the ctx's shapes (images/ids/step not yet set); may
     * adjust the model before its activations are reserved (a token head) */
    vlp_err (*create)(void **state, const objective_ctx *c, vlp_error *err);
    /* a model for an objective_model option; NULL if it has none */
    vlp_err (*set_model)(void *state, const objective_ctx *c, int option, clip_model *ref,
                         vlp_error *err);
    /* before a step: everything set_model must have given; NULL: nothing */
    vlp_err (*ready)(void *state, const float *opt, vlp_error *err);
    /* One step's loss (the whole batch's: the ranks' mean) and the gradients
     * of this process's samples, accumulated into m->grads (the trainer sums
     * them over the ranks). */
    vlp_err (*grads)(void *state, const objective_ctx *c, float *loss, vlp_error *err);
    void (*free)(void *state);
} objective;

/* The built-in objectives (objectives/table.c), NULL-terminated. */
extern const objective *const vlp_objectives[];
/* NULL when no built-in objective has that name */
const objective *objective_find(const char *name);
/* "clip, siglip, ..., clip-mae" into buf */
const char *objective_names(char *buf, size_t cap);
/* What the objective needs of a config, as an error naming the field */
vlp_err objective_check_config(const objective *o, const clip_config *cfg, const char *what,
                               vlp_error *err);
/* The option's index in o's table, -1 if o has none by that key or flag */
int objective_option_index(const objective *o, const char *key_or_flag);
#endif
