#include "train/optim.h"
#include "core/parallel.h"
#include "ops/eltwise.h"

#include <math.h>

adamw_cfg adamw_defaults(void) {
    return (adamw_cfg){.lr = 5e-4f, .beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f,
                       .weight_decay = 0.2f, .decay_embeddings = true};
}

void adamw_step(const adamw_cfg *c, float lr, long step, const clip_param *params, int nparams,
                float *w, const float *g, float *m, float *v) {
    /* torch.optim.AdamW: p *= 1 - lr·wd; m, v updated; p -= lr/bc1 · m / (√v/√bc2 + eps) */
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    for (int k = 0; k < nparams; k++) {
        const clip_param *p = &params[k];
        if (p->frozen) continue; /* locked: weights and moments stay as they are */
        bool decay = p->decay && (c->decay_embeddings || !p->embedding);
        float shrink = decay ? 1.0f - lr * c->weight_decay : 1.0f;
        eltwise()->adamw(w + p->offset, g + p->offset, m + p->offset, v + p->offset, (long)p->numel, b1,
                         b2, eps, shrink, step_size, inv_sqrt_bc2);
    }
}

float lr_at(float base_lr, long step, long warmup, long steps) {
    if (step < warmup) return base_lr * (float)(step + 1) / (float)warmup;
    long e = step - warmup, es = steps - warmup;
    if (es <= 0) return base_lr;
    return (float)(0.5 * (1.0 + cos(M_PI * (double)e / (double)es)) * base_lr);
}

double clip_grad_norm(float *g, size_t n, double max_norm) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i]; /* ordered: same on any thread count */
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / (norm + 1e-6));
        VLP_OMP_FOR
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

void clamp_logit_scale(float *ls) {
    const float hi = logf(100.0f);
    if (*ls < 0.0f) *ls = 0.0f;
    if (*ls > hi) *ls = hi;
}
