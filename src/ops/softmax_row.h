/* Row kernels shared by softmax, attention and the contrastive losses. */
#ifndef VLP_OPS_SOFTMAX_ROW_H
#define VLP_OPS_SOFTMAX_ROW_H
#include <math.h>

/* y[0..n) = softmax(x[0..n)); y[n..C) = 0 (the masked tail of a causal row).
 * x and y may alias. Returns log Σ exp(x - max) + max (the log-partition). */
static inline float softmax_row(float *y, const float *x, int n, int C) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        float e = expf(x[j] - mx);
        y[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) y[j] *= inv;
    for (int j = n; j < C; j++) y[j] = 0.0f;
    return mx + logf(sum);
}

/* dx += y ⊙ (dy − ⟨y, dy⟩) over one row of length n. */
static inline void softmax_row_backward_add(float *dx, const float *dy, const float *y, int n) {
    float dot = 0.0f;
    for (int j = 0; j < n; j++) dot += y[j] * dy[j];
    for (int j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
}
#endif
