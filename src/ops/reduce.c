#include "ops/reduce.h"
#include "core/parallel.h"

#include <stddef.h>

void colsum_add(float *dst, const float *src, int N, int C, int ld) {
    int width = col_width(C), nblocks = col_blocks(C, width);
    VLP_OMP_FOR
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * width, w = col_block_width(blk, C, width);
        float acc[VLP_COL_BLOCK_MAX] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = src + (size_t)n * ld + c0;
            for (int c = 0; c < w; c++) acc[c] += row[c];
        }
        for (int c = 0; c < w; c++) dst[c0 + c] += acc[c];
    }
}
