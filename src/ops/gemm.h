#ifndef VLP_OPS_GEMM_H
#define VLP_OPS_GEMM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one fp32 GEMM entry of vlp, row-major:
 *   C (M,N) = alpha · op(A) · op(B) + beta · C
 * op(A) is (M,K): A itself when !trans_a, else A is stored (K,M).
 * op(B) is (K,N): B itself when !trans_b, else B is stored (N,K).
 * lda/ldb/ldc are row strides in elements, so per-head slices of a fused
 * q|k|v tensor are passed without copying. Called inside an OpenMP region,
 * OpenBLAS (OpenMP build) runs it on the calling thread alone. */
void vlp_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The arithmetic of a model's matmuls. BF16: inputs rounded to bfloat16,
 * products accumulated in fp32, fp32 in memory (like torch.autocast). */
typedef enum matmul_precision { VLP_PRECISION_FP32 = 0, VLP_PRECISION_BF16 = 1 } matmul_precision;

/* How a model multiplies: the precision and, for BF16, the packing
 * workspace (gemm_bf16_workspace_bytes(threads), one slot per thread that
 * may call from inside a parallel region). NULL means fp32 BLAS. */
typedef struct matmul_cfg {
    matmul_precision precision;
    void *workspace;
    int threads;
} matmul_cfg;

/* vlp_sgemm, or the bf16 kernel when mm asks for it */
void vlp_gemm(const matmul_cfg *mm, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* C = op(A)·op(B) + bias (a row vector of N, added to every row; C is not
 * read): the bf16 kernel adds it in its epilogue, fp32 seeds C with it */
void vlp_gemm_bias(const matmul_cfg *mm, bool trans_a, bool trans_b, int M, int N, int K,
                   const float *A, int lda, const float *B, int ldb, const float *bias, float *C,
                   int ldc);

/* bf16 GEMM with fp32 accumulation and fp32 operands (rounded to bf16,
 * nearest-even, as they are packed): C = alpha·op(A)·op(B) + bias + beta·C,
 * bias (N) or NULL. AVX512-BF16 when the CPU has it
 * (gemm_bf16_hw), else a portable kernel computing the same products.
 * Outside a parallel region it uses up to ws_threads threads; inside one,
 * the calling thread's workspace slot. Returns false, having done nothing,
 * when the calling thread has no slot (thread id ≥ ws_threads). */
bool gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc,
               const float *bias, void *workspace, int ws_threads);
/* the same with the portable kernel whatever the CPU (tests compare both) */
bool gemm_bf16_portable(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc, const float *bias, void *workspace, int ws_threads);
/* What gemm_bf16_ex does on the way, where the data already passes. Zero
 * fields are off. */
typedef struct gemm_bf16_extra {
    /* op(A) = A16, bfloat16 bits (lda apart), instead of A (not with
     * trans_a): activations an op wrote in bf16 once (layernorm_forward_bf16,
     * act_forward_bf16) are copied into the packs, not converted */
    const uint16_t *A16;
    /* op(B) = B16, bf16 (K, N) rows ldb apart, instead of B (not with trans_b) */
    const uint16_t *B16;
    /* (M) += the rows of op(A) summed over K in fp32, added by the packer
     * that reads them anyway (not with A16): with op(A) = dYᵀ, the bias
     * gradient of a linear layer's weight-gradient GEMM */
    float *a_rowsum;
    bool portable; /* the portable kernel whatever the CPU (tests compare both) */
} gemm_bf16_extra;
/* gemm_bf16 with those. The results of a bf16 operand are those of its
 * values in fp32, bit for bit (both round to the same bf16). Also false
 * for a layout the extras do not take (see each field). */
bool gemm_bf16_ex(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc,
                  const float *bias, const gemm_bf16_extra *x, void *workspace, int ws_threads);
size_t gemm_bf16_workspace_bytes(int threads);
bool gemm_bf16_hw(void);
/* x rounded to the nearest bfloat16 (ties to even), as the kernel rounds */
float bf16_round(float x);

#endif
