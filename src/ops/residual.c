#include "ops/ops.h"
#include "core/parallel.h"

void residual_forward(float *out, const float *a, const float *b, size_t N) {
    VLP_OMP_FOR
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, size_t N) {
    if (da) {
        VLP_OMP_FOR
        for (size_t i = 0; i < N; i++) da[i] += dout[i];
    }
    if (db) {
        VLP_OMP_FOR
        for (size_t i = 0; i < N; i++) db[i] += dout[i];
    }
}
