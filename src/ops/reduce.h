#ifndef VLP_OPS_REDUCE_H
#define VLP_OPS_REDUCE_H
/* dst[c] += Σ_n src[n·ld + c] for c < C. Threads split the columns, each
 * sums its rows in order: the result does not depend on the thread count. */
void colsum_add(float *dst, const float *src, int N, int C, int ld);

/* Columns per block for column-partitioned reductions. */
#define VLP_COL_BLOCK 32
#endif
