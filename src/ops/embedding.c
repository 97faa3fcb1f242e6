#include "ops/ops.h"
#include "ops/reduce.h"
#include "core/error.h"
#include "core/parallel.h"

#include <string.h>

vlp_err embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                          int B, int T, int C, int V, vlp_error *err) {
    /* validate every id before touching memory: a bad id in the data must be
     * an error naming it, never a read outside the table */
    for (int i = 0; i < B * T; i++)
        VLP_CHECK_ARG(ids[i] >= 0 && ids[i] < V, err,
                      "token id %d at sequence %d position %d is outside the vocabulary [0, %d)",
                      ids[i], i / T, i % T, V);
    VLP_OMP_FOR
    for (int i = 0; i < B * T; i++) {
        float *o = out + (size_t)i * C;
        const float *e = wte + (size_t)ids[i] * C;
        if (wpe) {
            const float *p = wpe + (size_t)(i % T) * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        } else {
            memcpy(o, e, sizeof(float) * C);
        }
    }
    return VLP_OK;
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids, int B,
                        int T, int C, int V) {
    (void)V;
    if (dwte) {
        /* tokens repeat, so rows of dwte collide: split by column instead */
        int width = col_width(C), nblocks = col_blocks(C, width);
        VLP_OMP_FOR
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * width, w = col_block_width(blk, C, width);
            for (int i = 0; i < B * T; i++) {
                float *d = dwte + (size_t)ids[i] * C + c0;
                const float *g = dout + (size_t)i * C + c0;
                for (int c = 0; c < w; c++) d[c] += g[c];
            }
        }
    }
    if (dwpe) {
        VLP_OMP_FOR
        for (int t = 0; t < T; t++) {
            float *d = dwpe + (size_t)t * C;
            for (int b = 0; b < B; b++) {
                const float *g = dout + ((size_t)b * T + t) * C;
                for (int c = 0; c < C; c++) d[c] += g[c];
            }
        }
    }
}
