#include "ops/ops.h"
#include "core/parallel.h"

#include <string.h>

void token_pool_forward(float *out, const float *inp, const int32_t *index, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * C, inp + ((size_t)b * T + index[b]) * C, sizeof(float) * C);
}

void token_pool_backward(float *dinp, const float *dout, const int32_t *index, int B, int T,
                         int C) {
    for (int b = 0; b < B; b++) {
        float *d = dinp + ((size_t)b * T + index[b]) * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

void pool_index_first(int32_t *index, int B) { memset(index, 0, sizeof(int32_t) * B); }

void pool_index_argmax(int32_t *index, const int32_t *ids, int B, int T, int32_t skip) {
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (size_t)b * T;
        int best = -1;
        for (int t = 0; t < T; t++) // strict: the first maximum wins, as torch.argmax
            if (row[t] != skip && (best < 0 || row[t] > row[best])) best = t;
        index[b] = best < 0 ? 0 : best;
    }
}
