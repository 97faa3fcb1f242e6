#ifndef VLP_OPS_GEMM_H
#define VLP_OPS_GEMM_H
#include <stdbool.h>

/* The one GEMM entry of vlp, row-major:
 *   C (M,N) = alpha · op(A) · op(B) + beta · C
 * op(A) is (M,K): A itself when !trans_a, else A is stored (K,M).
 * op(B) is (K,N): B itself when !trans_b, else B is stored (N,K).
 * lda/ldb/ldc are row strides in elements, so per-head slices of a fused
 * q|k|v tensor are passed without copying. Called inside an OpenMP region,
 * OpenBLAS (OpenMP build) runs it on the calling thread alone. */
void vlp_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
