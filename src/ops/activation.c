#include "ops/ops.h"
#include "core/parallel.h"
#include "ops/bf16.h"
#include "ops/fastmath.h"

#include <math.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define QUICKGELU_ALPHA 1.702f

static inline float gelu_value(float x) { return 0.5f * x * (1.0f + vlp_erff(x * INV_SQRT2)); }

void gelu_forward(float *out, const float *inp, size_t N) {
    VLP_OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) out[i] = gelu_value(inp[i]);
}

/* d act(x) / dx */
static inline float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + vlp_erff(x * INV_SQRT2));
    float pdf = INV_SQRT_2PI * vlp_expf(-0.5f * x * x);
    return cdf + x * pdf;
}

static inline float sigmoidf(float z) { return 1.0f / (1.0f + vlp_expf(-z)); }

static inline float quickgelu_value(float x) { return x * sigmoidf(QUICKGELU_ALPHA * x); }

static inline float quickgelu_grad(float x) {
    float s = sigmoidf(QUICKGELU_ALPHA * x);
    return s + QUICKGELU_ALPHA * x * s * (1.0f - s);
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t N) {
    VLP_OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) dinp[i] += dout[i] * gelu_grad(inp[i]);
}

void quickgelu_forward(float *out, const float *inp, size_t N) {
    VLP_OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) out[i] = quickgelu_value(inp[i]);
}

void quickgelu_backward(float *dinp, const float *dout, const float *inp, size_t N) {
    VLP_OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) dinp[i] += dout[i] * quickgelu_grad(inp[i]);
}

void act_forward(vlp_act act, float *out, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) quickgelu_forward(out, inp, N);
    else gelu_forward(out, inp, N);
}

void act_forward_bf16(vlp_act act, uint16_t *out, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = bf16_bits(quickgelu_value(inp[i]));
    } else {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) out[i] = bf16_bits(gelu_value(inp[i]));
    }
}

void act_backward(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) quickgelu_backward(dinp, dout, inp, N);
    else gelu_backward(dinp, dout, inp, N);
}

void act_backward_write(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N) {
    if (act == VLP_ACT_QUICKGELU) {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] = dout[i] * quickgelu_grad(inp[i]);
    } else {
        VLP_OMP_FOR_SIMD
        for (size_t i = 0; i < N; i++) dinp[i] = dout[i] * gelu_grad(inp[i]);
    }
}
