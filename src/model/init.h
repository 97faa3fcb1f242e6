/* The initialisations the models and the prompt learners draw from a seeded
 * rng64, as PyTorch defines them: one definition, so the same seed gives
 * the same numbers wherever a parameter is made. */
#ifndef VLP_MODEL_INIT_H
#define VLP_MODEL_INIT_H
#include <math.h>
#include <stddef.h>

#include "core/rng.h"

static inline void init_normal(rng64 *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng64_normal(r);
}

static inline void init_uniform(rng64 *r, float *x, size_t n, float bound) {
    for (size_t i = 0; i < n; i++) x[i] = bound * (2.0f * rng64_uniform(r) - 1.0f);
}

static inline void init_const(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

/* PyTorch's nn.Linear default: kaiming-uniform(a=√5) weight (out, in) and
 * bias (out; NULL: none), both U(±1/√in) */
static inline void init_linear(rng64 *r, float *w, float *b, int out, int in) {
    float bound = 1.0f / sqrtf((float)in);
    init_uniform(r, w, (size_t)out * in, bound);
    if (b) init_uniform(r, b, (size_t)out, bound);
}
#endif
