#ifndef VLP_OPS_REDUCE_H
#define VLP_OPS_REDUCE_H
/* dst[c] += Σ_n src[n·ld + c] for c < C. Threads split the columns, each
 * sums its rows in order: the result does not depend on the thread count. */
void colsum_add(float *dst, const float *src, int N, int C, int ld);

/* Column-partitioned reductions work on blocks of VLP_COL_BLOCK columns:
 * col_blocks(C) of them; block blk starts at blk·VLP_COL_BLOCK and is
 * col_block_width(blk, C) wide. */
#define VLP_COL_BLOCK 32
static inline int col_blocks(int C) { return (C + VLP_COL_BLOCK - 1) / VLP_COL_BLOCK; }
static inline int col_block_width(int blk, int C) {
    int left = C - blk * VLP_COL_BLOCK;
    return left < VLP_COL_BLOCK ? left : VLP_COL_BLOCK;
}
#endif
