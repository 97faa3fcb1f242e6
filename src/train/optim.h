/* AdamW (decoupled weight decay, PyTorch's update order and bias correction),
 * open_clip's warmup + cosine schedule, global-norm clipping, and the
 * logit_scale clamp. The moments use the parameter buffer's layout, so each
 * is one flat loop per parameter view. */
#ifndef VLP_TRAIN_OPTIM_H
#define VLP_TRAIN_OPTIM_H
#include <stddef.h>

#include "model/clip.h"

typedef struct adamw_cfg {
    float lr;           // peak learning rate
    float beta1, beta2; // open_clip ViT defaults: 0.9, 0.98
    float eps;          // 1e-6
    float weight_decay; // 0.2, applied to parameters with clip_param.decay
    bool decay_embeddings; // true (open_clip): embedding tables decay too; false exempts them
} adamw_cfg;

adamw_cfg adamw_defaults(void);

/* One step (step counts from 1) at learning rate lr on every parameter. */
void adamw_step(const adamw_cfg *c, float lr, long step, const clip_param *params, int nparams,
                float *w, const float *g, float *m, float *v);

/* open_clip's cosine_lr: linear warmup over `warmup` steps to base_lr, then a
 * half cosine to 0 at `steps`. step counts from 0. */
float lr_at(float base_lr, long step, long warmup, long steps);

/* Global L2 norm of the gradient; when max_norm > 0 and the norm exceeds it,
 * scales the gradient by max_norm / (norm + 1e-6) as torch's clip_grad_norm_. */
double clip_grad_norm(float *g, size_t n, double max_norm);

/* logit_scale into [0, ln 100] after each step, as open_clip. */
void clamp_logit_scale(float *logit_scale);
#endif
