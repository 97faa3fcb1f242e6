#ifndef VLP_OPS_REDUCE_H
#define VLP_OPS_REDUCE_H
#include "core/parallel.h"

/* dst[c] += Σ_n src[n·ld + c] for c < C. Threads split the columns, each
 * sums its rows in order: the result does not depend on the thread count. */
void colsum_add(float *dst, const float *src, int N, int C, int ld);

/* Column-partitioned reductions split C into blocks of col_width(C)
 * columns: about C / threads each (up to VLP_COL_BLOCK_MAX: then some
 * threads take two), so each walks its
 * rows in long contiguous runs the hardware prefetcher follows (blocks of
 * 32 columns were two cache lines a row, a row apart: misses), a multiple
 * of 16, at most VLP_COL_BLOCK_MAX (a block's sums live on the stack).
 * Each column is still summed alone, in row order: the same bits whatever
 * the width. Block blk starts at blk·width and is col_block_width(blk, C,
 * width) wide; there are col_blocks(C, width). */
#define VLP_COL_BLOCK_MAX 1024
static inline int col_width(int C) {
    int threads = omp_get_max_threads();
    int w = (C + threads - 1) / (threads > 0 ? threads : 1);
    w = (w + 15) / 16 * 16;
    return w < 16 ? 16 : w > VLP_COL_BLOCK_MAX ? VLP_COL_BLOCK_MAX : w;
}
static inline int col_blocks(int C, int width) { return (C + width - 1) / width; }
static inline int col_block_width(int blk, int C, int width) {
    int left = C - blk * width;
    return left < width ? left : width;
}
#endif
