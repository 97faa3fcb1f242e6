/*
 * Prompt learning on a frozen CLIP: a few vectors learnt in place of words,
 * from a few labelled images per class.
 *   - CoOp (Zhou et al. 2022, "Learning to Prompt for Vision-Language
 *     Models"): M context vectors of the text width in place of the words
 *     before the class name: "[SOT] v1 .. vM <class name> . [EOT]"; shared by
 *     the classes, or one set per class (CSC);
 *   - CoCoOp (Zhou et al. 2022, conditional prompt learning): the same, plus a
 *     meta-net Linear(E, E/16) -> ReLU -> Linear(E/16, width) of the image
 *     feature whose output is added to every context vector, so each image
 *     has its own prompts;
 *   - MaPLe (Khattak et al. 2023): n context tokens in the text tower's input
 *     and, through a linear coupling each (text width -> image width), as
 *     extra tokens of the image tower; deeper prompts in the input of layers
 *     1..J-1 of both towers, the image's again coupled from the text's.
 * Logits are the model's logit scale times the cosine of the image and class
 * features; the loss is their cross-entropy. Only the prompt parameters
 * learn: the towers' weights are never written (clip_set_prompts freezes
 * them and their backward computes no weight gradient).
 *
 * The parameters live in one buffer with named views (the reference
 * implementations' state-dict names: prompt_learner.ctx, ...), updated by
 * SGD with momentum and weight decay (Dassl's, the papers' trainer). A method
 * is one file and one entry of the table in prompt.c.
 */
#ifndef VLP_ADAPT_PROMPT_H
#define VLP_ADAPT_PROMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "data/tokenizer.h"
#include "io/safetensors.h"
#include "model/clip.h"

#define PROMPT_MAX_DEPTH 48
#define PROMPT_MAX_PARAMS (3 * PROMPT_MAX_DEPTH + 8)
#define PROMPT_FORMAT "vlp-prompts"
#define PROMPT_FORMAT_VERSION "1"

typedef struct prompt_learner prompt_learner;

/* What a method is: its defaults (the paper's) and its three operations.
 * Images are preprocessed (B, 3, S, S); img are normalised image features. */
typedef struct prompt_method {
    const char *name, *summary;
    int n_ctx;            // default context tokens
    const char *init;     // default phrase the context starts from (NULL: N(0, 0.02))
    double lr;            // SGD learning rate
    int batch;            // images a step
    int epochs[5];        // for 1, 2, 4, 8 and 16 shots a class (more: the last)
    bool csc;             // takes one context per class
    bool deep;            // has a prompt depth (prompts in deeper layers of both towers)
    /* registers the method's parameters after ctx (pl_reg) */
    void (*layout)(prompt_learner *pl);
    /* initial values of the method's own parameters (ctx is done) */
    void (*init_params)(prompt_learner *pl, rng64 *r);
    /* image features under the method's image prompts (B, E), normalised */
    vlp_err (*embed_images)(prompt_learner *pl, const float *images, int B, float *out, vlp_error *err);
    /* cosines of B image features with the C classes' prompts → out (B, C) */
    vlp_err (*scores)(prompt_learner *pl, const float *img, int B, float *out, vlp_error *err);
    /* the loss on a batch (mean cross-entropy) and, accumulated into
     * pl->grads, its gradient; *correct the arg-max hits */
    vlp_err (*step)(prompt_learner *pl, const float *images, const int *labels, int B, float *loss,
                    int *correct, vlp_error *err);
    /* a classifier fitted at once instead of stepped (the linear probe): from
     * the image features (n, E) of every shot; NULL for the prompt methods */
    vlp_err (*fit)(prompt_learner *pl, const float *img, const int *labels, int n, double l2, vlp_error *err);
} prompt_method;

extern const prompt_method *const prompt_methods[];
extern const int prompt_method_count;
const prompt_method *prompt_method_find(const char *name);
/* "coop, cocoop, maple" */
const char *prompt_method_names(void);

typedef struct prompt_cfg {
    int n_ctx;          // context tokens; < 0: the method's default (the phrase's tokens with init)
    bool csc;           // CoOp: one context per class
    int depth;          // MaPLe: layers holding prompts, J; <= 0: min(9, each tower's layers)
    const char *init;   // phrase for the context's start ("a photo of a"); "": N(0, 0.02); NULL: the method's
    int batch;          // the largest image batch that will be passed (training batch)
    uint64_t seed;
} prompt_cfg;

struct prompt_learner {
    const prompt_method *method;
    clip_model *m;               // frozen; not owned
    const text_tokenizer *tok;    // not owned
    int n, depth, C, W, Wv, E, T;
    bool csc;
    char init[128];              // the phrase the text prompts start with ("" : placeholders)
    char **classes;              // (C) owned
    int32_t *ids;                // (C, T) the classes' prompts: start, n context, ..., end
    int chunk;                   // text sequences a forward (the model's reserved batch)
    int text_c0;                 // the first class of the text tower's last forward (-1: none)
    int batch;                   // the image batch the buffers hold
    /* parameters: one buffer, named views */
    clip_param params[PROMPT_MAX_PARAMS];
    int nparams;
    size_t nfloats;
    float *weights, *grads, *momentum; // (nfloats) each
    float **slots[PROMPT_MAX_PARAMS];  // where each parameter's view goes
    bool per_class[PROMPT_MAX_PARAMS]; // a row for each class (CSC's context, the probe)
    float *ctx;                  // (n, W), (C, n, W) with csc
    float *meta_w1, *meta_b1;    // CoCoOp (H, E) (H), H = E / 16
    float *meta_w2, *meta_b2;    // CoCoOp (W, H) (W)
    float *probe_w, *probe_b;    // the linear probe (C, E) (C)
    float *deep;                 // MaPLe (depth-1, n, W) the text's deep prompts
    float *couple_w[PROMPT_MAX_DEPTH], *couple_b[PROMPT_MAX_DEPTH]; // MaPLe (Wv, W) (Wv): proj, then the deep ones'
    int hidden;                  // CoCoOp's H
    /* work buffers, sized at creation: no allocation in a step */
    float *tin, *dtin;           // (chunk, n, W) text prompts of a forward, their gradient
    float *vin, *dvin;           // (batch, n, Wv) image prompts
    float *vdeep, *dvdeep;       // (depth-1, n, Wv)
    float *tfeat, *dtfeat;       // (C, E) class features, their gradient
    bool tfeat_fresh;            // tfeat is the current weights' (CoOp, MaPLe)
    float *img, *dimg;           // (batch, E)
    float *logits;               // (batch, C)
    float *bias, *dbias;         // CoCoOp (batch, W) the meta-net's output, its gradient
    float *hid;                  // CoCoOp (batch, H) after the ReLU
    float *dhid;                 // CoCoOp (H)
};

/* A learner of `method` for the classes on the frozen model m (trainable:
 * clip_init, not clip_init_inference, when it will be trained), its
 * parameters initialised from cfg.seed. Sets the model's prompts and reserves
 * its batch. */
vlp_err prompt_create(prompt_learner **out, const prompt_method *method, const prompt_cfg *cfg, clip_model *m,
                      const text_tokenizer *tok, const char *const *classes, int C, vlp_error *err);
void prompt_free(prompt_learner *pl);
/* Points the model at this learner's prompts again (after another user of it). */
vlp_err prompt_attach(prompt_learner *pl, vlp_error *err);
/* Takes the prompts off the model: it encodes as before. */
void prompt_detach(prompt_learner *pl);

/* Other class names for the same learnt context (CoOp's and CoCoOp's
 * base-to-new transfer); parameters with a row a class (a class-specific
 * context, the probe) keep their own classes: each name must be one of them. */
vlp_err prompt_set_classes(prompt_learner *pl, const char *const *classes, int C, vlp_error *err);

/* One SGD step (momentum 0.9, weight decay wd) on a batch: zeroes the
 * gradients, runs the method's step, updates. */
vlp_err prompt_train_step(prompt_learner *pl, const float *images, const int *labels, int B, float lr, float wd,
                          float *loss, int *correct, vlp_error *err);
/* Dassl's schedule: lr(epoch) = 0.5·lr·(1 + cos(π·epoch/epochs)), and a
 * constant 1e-5 for the first epoch (warm-up). */
float prompt_lr(double lr, int epoch, int epochs);
/* The method's epochs for `shots` images a class. */
int prompt_default_epochs(const prompt_method *method, int shots);

/* The model's identity: XXH3-64 of its weights, as 16 hex digits. */
void prompt_model_hash(const clip_model *m, char out[17]);
/* Writes the parameters and, as metadata: format, version, method, n_ctx,
 * csc, depth, init, classes (JSON), model_hash and the caller's extra pairs. */
vlp_err prompt_save(const prompt_learner *pl, const char *path, const st_meta *extra, int nextra, vlp_error *err);
/* A learner from a file written by prompt_save, for model m: the file's
 * method, shapes and classes; a model other than the one it was learnt on
 * (another hash) is an error naming both. */
vlp_err prompt_load(prompt_learner **out, const char *path, clip_model *m, const text_tokenizer *tok, int batch,
                    vlp_error *err);

/* Registration, for the methods' layout functions: a parameter of up to 3
 * dims whose view lands in *slot. */
void pl_reg(prompt_learner *pl, const char *name, float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2);
/* the same for a parameter with a row a class (d0 = the classes) */
void pl_reg_per_class(prompt_learner *pl, const char *name, float **slot, int ndim, int64_t d1, int64_t d2);

/* The pieces the methods share (prompt.c). */
/* Class features (C, E) of the text prompts: context (+ bias (W), CoCoOp's
 * shift; NULL none) in chunks → pl->tfeat. */
vlp_err pl_text_features(prompt_learner *pl, const float *bias, vlp_error *err);
/* Their backward from dfeat (C, E): context gradient into pl->grads' ctx
 * (and deep prompts through the model), the shift's into dbias (W) when not
 * NULL (accumulated). Follows pl_text_features with the same bias. */
vlp_err pl_text_backward(prompt_learner *pl, const float *bias, const float *dfeat, float *dbias, vlp_error *err);
/* Mean cross-entropy of logit_scale · scores (B, C) with labels; the
 * gradient of the scores into dscores (B, C) when not NULL; arg-max hits. */
float pl_cross_entropy(const float *scores, const int *labels, int B, int C, float scale, float *dscores,
                       int *correct);
/* exp(logit_scale), as the methods' code (CLIP training keeps it at most 100) */
float pl_logit_scale(const prompt_learner *pl);
/* B plain image features (the image tower without prompts) → out (B, E) */
vlp_err pl_plain_images(prompt_learner *pl, const float *images, int B, float *out, vlp_error *err);
/* out (B, C) = img (B, E) · tfeatᵀ */
void pl_scores_from_features(const prompt_learner *pl, const float *img, int B, float *out);
/* The same with the class features of the current weights, computed once
 * until the next step (prompts that do not depend on the image: CoOp, MaPLe) */
vlp_err pl_scores_cached(prompt_learner *pl, const float *img, int B, float *out, vlp_error *err);
#endif
