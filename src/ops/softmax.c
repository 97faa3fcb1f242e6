#include "ops/ops.h"
#include "ops/softmax_row.h"
#include "core/parallel.h"

void softmax_forward(float *out, const float *inp, int N, int C) {
    VLP_OMP_FOR
    for (int n = 0; n < N; n++) softmax_row(out + (size_t)n * C, inp + (size_t)n * C, C, C);
}

void softmax_backward(float *dinp, const float *dout, const float *out, int N, int C) {
    VLP_OMP_FOR
    for (int n = 0; n < N; n++)
        softmax_row_backward_add(dinp + (size_t)n * C, dout + (size_t)n * C,
                                 out + (size_t)n * C, C);
}
