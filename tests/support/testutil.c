#include "testutil.h"
#include "core/error.h"
#include "loss/loss.h"
#include "model/clip.h"
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fill_normal(rng *r, float *x, size_t n, float scale, float shift) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r) * scale + shift;
}

float *falloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) fail_msg("out of memory allocating %zu floats", n);
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

const char *ref_path(const char *name) {
    static char buf[4][1024]; /* a few at a time, tests only */
    static int k;
    const char *dir = getenv("VLP_REF_DIR");
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir && *dir ? dir : "tests/ref", name);
    return p;
}

vlpt_file *ref_open(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s.vlpt", ref_path(name));
    vlpt_file *f = NULL;
    vlp_error err = {0};
    if (vlpt_read(path, &f, &err) != VLP_OK) {
        char buf[600];
        fail_msg("reference %s: %s", path, vlp_error_format(&err, buf, sizeof buf));
    }
    return f;
}

static const vlpt_tensor *ref_tensor(const vlpt_file *f, const char *name, vlpt_dtype dt,
                                     size_t numel) {
    const vlpt_tensor *t = NULL;
    vlp_error err = {0};
    if (vlpt_get(f, name, dt, -1, NULL, &t, &err) != VLP_OK) {
        char buf[600];
        fail_msg("%s", vlp_error_format(&err, buf, sizeof buf));
    }
    if (t->numel != numel) fail_msg("reference tensor '%s' has %zu elements, test expects %zu",
                                    name, t->numel, numel);
    return t;
}

const float *ref_f32(const vlpt_file *f, const char *name, size_t numel) {
    return ref_tensor(f, name, VLPT_F32, numel)->data;
}

const int32_t *ref_i32(const vlpt_file *f, const char *name, size_t numel) {
    return ref_tensor(f, name, VLPT_I32, numel)->data;
}

float *ref_f32_copy(const vlpt_file *f, const char *name, size_t numel) {
    float *p = falloc(numel);
    memcpy(p, ref_f32(f, name, numel), numel * sizeof(float));
    return p;
}

void ref_load_weights(clip_model *m, const vlpt_file *f) {
    vlp_error err = {0};
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        const vlpt_tensor *t = NULL;
        if (vlpt_get(f, p->name, VLPT_F32, p->ndim, p->shape, &t, &err) != VLP_OK) {
            char buf[600];
            fail_msg("%s", vlp_error_format(&err, buf, sizeof buf));
        }
        memcpy(m->weights + p->offset, t->data, p->numel * sizeof(float));
    }
}

void train_steps(trainer *t, int n, float *losses) {
    vlp_error err = {0};
    for (int i = 0; i < n; i++) {
        train_step_info info;
        if (trainer_step(t, &info, &err) != VLP_OK) {
            char buf[600];
            fail_msg("step %d: %s", i + 1, vlp_error_format(&err, buf, sizeof buf));
        }
        if (losses) losses[i] = info.loss;
    }
}

clip_config ref_clip_config(const vlpt_file *f, int *batch, int extra, const int32_t **extra_out) {
    const int32_t *c = ref_i32(f, "config", 15 + (size_t)extra);
    clip_config cfg = {
        .embed_dim = c[0],
        .vision = {.image_size = c[1], .patch_size = c[2], .width = c[3], .layers = c[4],
                   .heads = c[5], .mlp_width = c[6]},
        .text = {.context_length = c[7], .vocab_size = c[8], .width = c[9], .layers = c[10],
                 .heads = c[11], .mlp_width = c[12]},
        .quick_gelu = c[13],
    };
    *batch = c[14];
    if (extra_out) *extra_out = c + 15;
    return cfg;
}

void assert_close(const char *what, const float *got, const float *want, size_t n, double atol,
                  double rtol) {
    size_t bad = 0, worst = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        /* NaN fails: !(diff <= tol) */
        if (!(diff <= tol)) {
            bad++;
            double excess = isnan(diff) ? INFINITY : diff / tol;
            if (excess > worst_excess) worst_excess = excess, worst = i;
        }
    }
    if (bad)
        fail_msg("%s: %zu of %zu values differ beyond atol %g + rtol %g; worst at [%zu]: got "
                 "%.9g, want %.9g",
                 what, bad, n, atol, rtol, worst, got[worst], want[worst]);
}

static double test_loss(const gc_op *op) {
    op->forward(op->ctx);
    double L = 0.0;
    for (size_t i = 0; i < op->nout; i++) L += (double)op->out[i] * op->dout[i];
    return L;
}

#define GC_PREFILL 0.25f
#define GC_MAX_POINTS 48

void gradcheck(const gc_op *op) {
    if (op->nin < 1 || op->nin > (int)(sizeof op->in / sizeof op->in[0]))
        fail_msg("%s: %d inputs, gradcheck takes 1..%zu", op->name, op->nin,
                 sizeof op->in / sizeof op->in[0]);
    for (int k = 0; k < op->nin; k++)
        for (size_t i = 0; i < op->in[k].n; i++) op->in[k].grad[i] = GC_PREFILL;
    op->forward(op->ctx);
    op->backward(op->ctx);
    rng r = {0x5eedull};
    double worst = 0.0;
    for (int k = 0; k < op->nin; k++) {
        const gc_input *in = &op->in[k];
        size_t npts = in->n <= GC_MAX_POINTS ? in->n : GC_MAX_POINTS;
        for (size_t p = 0; p < npts; p++) {
            size_t i = in->n <= GC_MAX_POINTS ? p : (size_t)(rng_u64(&r) % in->n);
            float x0 = in->x[i];
            in->x[i] = x0 + (float)op->h;
            double hp = (double)in->x[i] - x0; // the step actually taken in fp32
            double lp = test_loss(op);
            in->x[i] = x0 - (float)op->h;
            double hm = x0 - (double)in->x[i];
            double lm = test_loss(op);
            in->x[i] = x0;
            double num = (lp - lm) / (hp + hm);
            double ana = (double)in->grad[i] - GC_PREFILL;
            double tol = op->atol + op->rtol * fabs(num);
            if (fabs(num - ana) / tol > worst) worst = fabs(num - ana) / tol;
            if (!(fabs(num - ana) <= tol))
                fail_msg("%s: d/d%s[%zu]: analytic %.7g, finite difference %.7g "
                         "(|diff| %.3g > atol %g + rtol %g·|fd|)",
                         op->name, in->name, i, ana, num, fabs(num - ana), op->atol, op->rtol);
        }
    }
    op->forward(op->ctx);
    print_message("# %s: worst |fd - analytic| is %.2f of the tolerance\n", op->name, worst);
}

void synthetic_pairs(uint64_t seed, uint8_t *rgb, size_t rgb_bytes, char (*captions)[64], int n) {
    static const char *words[] = {"red", "green", "blue", "circle", "square", "small", "big",
                                  "emoji", "of", "a", "face", "cat"};
    rng r = {seed};
    for (size_t i = 0; i < rgb_bytes; i++) rgb[i] = (uint8_t)(rng_u64(&r) >> 56);
    for (int i = 0; i < n; i++) {
        int nw = 2 + (int)(rng_u64(&r) % 4), k = 0;
        for (int w = 0; w < nw; w++)
            k += snprintf(captions[i] + k, 64 - (size_t)k, "%s ",
                          words[rng_u64(&r) % (sizeof words / sizeof *words)]);
    }
}

vlp_err clip_step_forward(clip_step *s, clip_model *m, const float *images, const int32_t *ids,
                          int B, vlp_error *err) {
    int E = m->cfg.embed_dim;
    if (B > s->cap) {
        clip_step_free(s);
        s->probs_i2t = falloc((size_t)B * B), s->probs_t2i = falloc((size_t)B * B);
        s->demb_img = falloc((size_t)B * E), s->demb_txt = falloc((size_t)B * E);
        s->scratch = falloc(clip_loss_scratch_floats(B, E));
        s->cap = B;
    }
    VLP_TRY(clip_image_forward(m, images, B, err));
    VLP_TRY(clip_text_forward(m, ids, B, err));
    return clip_loss_forward(&s->loss, s->probs_i2t, s->probs_t2i, m->image_acts.emb, m->text_acts.emb,
                             *m->views.logit_scale, B, E, err);
}

void clip_step_backward(clip_step *s, clip_model *m, int B) {
    int E = m->cfg.embed_dim;
    memset(s->demb_img, 0, sizeof(float) * (size_t)B * E);
    memset(s->demb_txt, 0, sizeof(float) * (size_t)B * E);
    clip_loss_backward(s->demb_img, s->demb_txt, m->grad_views.logit_scale, 1.0f, s->probs_i2t,
                       s->probs_t2i, m->image_acts.emb, m->text_acts.emb, *m->views.logit_scale, s->scratch, B, E);
    clip_image_backward(m, s->demb_img, B);
    clip_text_backward(m, s->demb_txt, B);
}

void clip_step_free(clip_step *s) {
    free(s->probs_i2t), free(s->probs_t2i), free(s->demb_img), free(s->demb_txt), free(s->scratch);
    memset(s, 0, sizeof *s);
}
