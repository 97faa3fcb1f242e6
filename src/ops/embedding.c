#include "ops/ops.h"
#include "ops/reduce.h"
#include "core/error.h"
#include "core/parallel.h"

#include <string.h>

vlp_err embedding_forward(float *out, const int32_t *ids, const float *wte, const float *wpe,
                          int B, int T, int C, int V, vlp_error *err) {
    return embedding_forward_extra(out, ids, wte, wpe, NULL, B, T, C, V, err);
}

vlp_err embedding_forward_extra(float *out, const int32_t *ids, const float *wte, const float *wpe,
                                const float *extra, int B, int T, int C, int V, vlp_error *err) {
    /* validate every id before touching memory: a bad id in the data must be
     * an error naming it, never a read outside the table */
    int top = extra ? V + 1 : V;
    for (int i = 0; i < B * T; i++)
        VLP_CHECK_ARG(ids[i] >= 0 && ids[i] < top, err,
                      "token id %d at sequence %d position %d is outside the vocabulary [0, %d)",
                      ids[i], i / T, i % T, top);
    VLP_OMP_FOR
    for (int i = 0; i < B * T; i++) {
        float *o = out + (size_t)i * C;
        const float *e = ids[i] == V ? extra : wte + (size_t)ids[i] * C;
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
    embedding_backward_extra(dwte, dwpe, NULL, dout, ids, B, T, C, V);
}

void embedding_backward_extra(float *dwte, float *dwpe, float *dextra, const float *dout, const int32_t *ids, int B,
                              int T, int C, int V) {
    if (dwte || dextra) {
        /* tokens repeat, so rows of dwte collide: split by column instead */
        int width = col_width(C), nblocks = col_blocks(C, width);
        VLP_OMP_FOR
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * width, w = col_block_width(blk, C, width);
            for (int i = 0; i < B * T; i++) {
                float *d = ids[i] == V ? (dextra ? dextra + c0 : NULL) : dwte ? dwte + (size_t)ids[i] * C + c0 : NULL;
                if (!d) continue;
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
