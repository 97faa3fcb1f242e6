/* The cross-entropy half every contrastive loss here shares: rows of
 * logits, image→text and text→image, whose target is column offset+i. */
#ifndef VLP_LOSS_CONTRASTIVE_ROWS_H
#define VLP_LOSS_CONTRASTIVE_ROWS_H
#include <stddef.h>

#include "ops/softmax_row.h"

/* i2t and t2i: b rows of B logits each, turned into probabilities in place.
 * Returns ½ (mean CE of the i2t rows + mean CE of the t2i rows). */
static inline double symmetric_ce_rows(float *i2t, float *t2i, int b, int B, int offset) {
    double total = 0.0;
    for (int i = 0; i < b; i++) {
        float *r = i2t + (size_t)i * B, *c = t2i + (size_t)i * B;
        float tr = r[offset + i], tc = c[offset + i];
        float lse_r = softmax_row(r, r, B, B);
        float lse_c = softmax_row(c, c, B, B);
        total += (double)(lse_r - tr) + (double)(lse_c - tc);
    }
    return total / (2.0 * b);
}
#endif
