#include "ops/ops.h"
#include "core/parallel.h"

#include <math.h>

#define L2_EPS 1e-12f /* F.normalize's default eps */

void l2norm_forward(float *out, float *norm, const float *inp, int N, int C) {
    VLP_OMP_FOR
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float nr = sqrtf(ss);
        norm[n] = nr;
        float inv = 1.0f / (nr > L2_EPS ? nr : L2_EPS);
        for (int c = 0; c < C; c++) y[c] = x[c] * inv;
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int N,
                     int C) {
    VLP_OMP_FOR
    for (int n = 0; n < N; n++) {
        const float *y = out + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        if (norm[n] > L2_EPS) {
            /* y = x/‖x‖: dx = (dy − y⟨y,dy⟩)/‖x‖ */
            float dot = 0.0f;
            for (int c = 0; c < C; c++) dot += y[c] * dy[c];
            float inv = 1.0f / norm[n];
            for (int c = 0; c < C; c++) dx[c] += (dy[c] - y[c] * dot) * inv;
        } else {
            /* the clamp is active: y = x/eps, a linear map */
            for (int c = 0; c < C; c++) dx[c] += dy[c] / L2_EPS;
        }
    }
}
