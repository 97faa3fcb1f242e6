/* Shared helpers of vlp's C tests (cmocka). */
#ifndef VLP_TESTUTIL_H
#define VLP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/rng.h"
#include "io/tensorfile.h"

/* Deterministic random numbers: the library's own generator. */
typedef rng64 rng;
#define rng_u64 rng64_u64
#define rng_uniform rng64_uniform
#define rng_normal rng64_normal
void fill_normal(rng *r, float *x, size_t n, float scale, float shift);

/* 64-byte aligned zeroed floats; freed with free(). Fails the test on OOM. */
float *falloc(size_t n);

/* A file of the references: $VLP_REF_DIR/<name>, default tests/ref/<name>
 * (a static buffer, one of 4 in turn). */
const char *ref_path(const char *name);
/* Reference files: $VLP_REF_DIR/<name>.vlpt, default tests/ref. */
vlpt_file *ref_open(const char *name);
/* A float32 tensor of the reference with exactly numel elements. */
const float *ref_f32(const vlpt_file *f, const char *name, size_t numel);
const int32_t *ref_i32(const vlpt_file *f, const char *name, size_t numel);
/* A float32 copy the test may modify (inputs, gradient accumulators). */
float *ref_f32_copy(const vlpt_file *f, const char *name, size_t numel);

/* Copies every parameter of the model from the reference tensor of the same
 * name, failing the test when one is missing or has another shape. */
struct clip_model;
void ref_load_weights(struct clip_model *m, const vlpt_file *f);
/* The model config the reference scripts store as the int32 tensor
 * "config": embed_dim, vision (image, patch, width, layers, heads, mlp),
 * text (context, vocab, width, layers, heads, mlp), quick_gelu, batch (in
 * *batch), then `extra` more ints (returned in extra_out) */
#include "model/config.h"
clip_config ref_clip_config(const vlpt_file *f, int *batch, int extra, const int32_t **extra_out);

/* n optimizer steps, failing the test on an error; losses (n) may be NULL. */
struct trainer;
void train_steps(struct trainer *t, int n, float *losses);

/* Fails the test unless |got - want| <= atol + rtol·|want| everywhere; the
 * message names the tensor, the worst index and both values. */
void assert_close(const char *what, const float *got, const float *want, size_t n, double atol,
                  double rtol);

/* Finite-difference gradient check. The op computes `out` (nout floats)
 * from its inputs; the test loss is L = Σ out ⊙ dout. For each input, the
 * analytic gradient (backward, which must ACCUMULATE: every gradient buffer
 * is pre-filled with 0.25 and that is subtracted again) is compared with the
 * central difference (L(x+h) − L(x−h)) / 2h, L summed in double, at every
 * element (at most 48 chosen at random for big inputs):
 *     |numeric − analytic| <= atol + rtol·|numeric|                          */
typedef struct gc_input {
    const char *name;
    float *x, *grad;
    size_t n;
} gc_input;

typedef struct gc_op {
    const char *name;
    void *ctx;
    void (*forward)(void *ctx);
    void (*backward)(void *ctx);
    float *out, *dout;
    size_t nout;
    gc_input in[16];
    int nin;
    double h, atol, rtol;
} gc_op;

void gradcheck(const gc_op *op);

/* Synthetic image-caption pairs for training tests: random RGB bytes and
 * captions of 2–5 words from a small vocabulary, all from `seed`. */
void synthetic_pairs(uint64_t seed, uint8_t *rgb, size_t rgb_bytes, char (*captions)[64], int n);


/* CLIP's whole step on one batch as the clip objective computes it in one
 * process (the model is the towers; the loss is src/loss's): both towers,
 * InfoNCE into s->loss, and with clip_step_backward its gradient into
 * m->grads (accumulated). Buffers grow with B; free with clip_step_free. */
#include "model/clip.h"
typedef struct clip_step {
    float loss;
    int cap;                           // batch the buffers hold
    float *probs_i2t, *probs_t2i;      // (B, B)
    float *demb_img, *demb_txt;        // (B, E)
    float *scratch;
} clip_step;
vlp_err clip_step_forward(clip_step *s, clip_model *m, const float *images, const int32_t *ids,
                          int B, vlp_error *err);
void clip_step_backward(clip_step *s, clip_model *m, int B);
void clip_step_free(clip_step *s);
#endif
