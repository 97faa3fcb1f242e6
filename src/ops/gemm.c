#include "ops/gemm.h"

#include <cblas.h>
#include <string.h>

#include "core/parallel.h"

void vlp_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

void vlp_gemm(const matmul_cfg *mm, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (mm && mm->precision == VLP_PRECISION_BF16 &&
        gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL,
                  mm->workspace, mm->threads))
        return;
    /* fp32, or a thread the bf16 workspace has no slot for */
    vlp_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void vlp_gemm_bias(const matmul_cfg *mm, bool trans_a, bool trans_b, int M, int N, int K,
                   const float *A, int lda, const float *B, int ldb, const float *bias, float *C,
                   int ldc) {
    if (mm && mm->precision == VLP_PRECISION_BF16 &&
        gemm_bf16(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, bias,
                  mm->workspace, mm->threads))
        return;
    /* seed every row with the bias and let the GEMM add on top of it */
    VLP_OMP_FOR
    for (int i = 0; i < M; i++) memcpy(C + (size_t)i * ldc, bias, sizeof(float) * N);
    vlp_sgemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}
