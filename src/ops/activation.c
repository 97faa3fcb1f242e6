/* GELU and QuickGELU: the level's kernels (ops/eltwise.h, levels/eltwise.c) */
#include "ops/eltwise.h"
#include "ops/ops.h"

void gelu_forward(float *out, const float *inp, size_t N) { eltwise()->act_forward(VLP_ACT_GELU, out, inp, N); }

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t N) {
    eltwise()->act_backward(VLP_ACT_GELU, dinp, dout, inp, N, false);
}

void quickgelu_forward(float *out, const float *inp, size_t N) {
    eltwise()->act_forward(VLP_ACT_QUICKGELU, out, inp, N);
}

void quickgelu_backward(float *dinp, const float *dout, const float *inp, size_t N) {
    eltwise()->act_backward(VLP_ACT_QUICKGELU, dinp, dout, inp, N, false);
}

void act_forward(vlp_act act, float *out, const float *inp, size_t N) {
    eltwise()->act_forward(act, out, inp, N);
}

void act_forward_bf16(vlp_act act, uint16_t *out, const float *inp, size_t N) {
    eltwise()->act_forward_bf16(act, out, inp, N);
}

void act_backward(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N) {
    eltwise()->act_backward(act, dinp, dout, inp, N, false);
}

void act_backward_write(vlp_act act, float *dinp, const float *dout, const float *inp, size_t N) {
    eltwise()->act_backward(act, dinp, dout, inp, N, true);
}
