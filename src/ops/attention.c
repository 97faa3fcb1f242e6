/* Multi-head self-attention. The per-head products are strided GEMMs over the
 * fused q|k|v tensor (no copies); heads run in parallel, each GEMM on one
 * thread. A fused kernel for short sequences belongs to the speed work. */
#include "ops/ops.h"
#include "ops/gemm.h"
#include "ops/softmax_row.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

vlp_err attention_forward(const vlp_matmul *mm, float *out, float *att, const float *qkv, int B,
                          int T, int C, int NH, bool causal, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && T > 0 && C > 0 && NH > 0, err,
                    "attention dims must be positive: B=%d T=%d C=%d heads=%d", B, T, C, NH);
    VLP_CHECK_SHAPE(C % NH == 0, err, "attention width %d is not divisible by %d heads", C, NH);
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * T * C3 + h * hs; // (T, hs) stride 3C
        const float *k = q + C;
        const float *v = q + 2 * C;
        float *a = att + (size_t)bh * T * T; // (T, T)
        vlp_gemm(mm, false, true, T, T, hs, scale, q, C3, k, C3, 0.0f, a, T);
        for (int t = 0; t < T; t++) {
            float *row = a + (size_t)t * T;
            softmax_row(row, row, causal ? t + 1 : T, T);
        }
        vlp_gemm(mm, false, false, T, hs, T, 1.0f, a, T, v, C3, 0.0f,
                 out + (size_t)b * T * C + h * hs, C);
    }
    return VLP_OK;
}

size_t attention_scratch_floats(int B, int T, int NH) { return (size_t)B * NH * T * T; }

void attention_backward(const vlp_matmul *mm, float *dqkv, const float *dout, const float *qkv,
                        const float *att, float *scratch, int B, int T, int C, int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t qoff = (size_t)b * T * C3 + h * hs;
        const float *q = qkv + qoff, *k = q + C, *v = q + 2 * C;
        float *dq = dqkv + qoff, *dk = dq + C, *dv = dq + 2 * C;
        const float *a = att + (size_t)bh * T * T;           // (T, T)
        const float *dy = dout + (size_t)b * T * C + h * hs; // (T, hs) stride C
        float *da = scratch + (size_t)bh * T * T;            // (T, T)

        vlp_gemm(mm, true, false, T, hs, T, 1.0f, a, T, dy, C, 1.0f, dv, C3);  // dV += Aᵀ·dY
        vlp_gemm(mm, false, true, T, T, hs, 1.0f, dy, C, v, C3, 0.0f, da, T);  // dA = dY·Vᵀ
        /* dS = A ⊙ (dA − rowsum(A ⊙ dA)), in place; masked entries have A = 0 */
        for (int t = 0; t < T; t++) {
            float *dr = da + (size_t)t * T;
            const float *ar = a + (size_t)t * T;
            float dot = 0.0f;
            for (int j = 0; j < T; j++) dot += ar[j] * dr[j];
            for (int j = 0; j < T; j++) dr[j] = ar[j] * (dr[j] - dot);
        }
        vlp_gemm(mm, false, false, T, hs, T, scale, da, T, k, C3, 1.0f, dq, C3); // dQ += s·dS·K
        vlp_gemm(mm, true, false, T, hs, T, scale, da, T, q, C3, 1.0f, dk, C3); // dK += s·dSᵀ·Q
    }
}

vlp_err mha_forward(const vlp_matmul *mm, float *out, float *qkv, float *att, float *heads,
                    const float *inp, const float *w_in, const float *b_in, const float *w_out,
                    const float *b_out, int B, int T, int C, int NH, bool causal, vlp_error *err) {
    int N = B * T;
    linear_forward(mm, qkv, inp, w_in, b_in, N, C, 3 * C);
    VLP_TRY(attention_forward(mm, heads, att, qkv, B, T, C, NH, causal, err));
    linear_forward(mm, out, heads, w_out, b_out, N, C, C);
    return VLP_OK;
}

size_t mha_scratch_floats(int B, int T, int C, int NH) {
    /* dqkv (B,T,3C) + dheads (B,T,C) + attention scratch */
    return (size_t)B * T * 4 * C + attention_scratch_floats(B, T, NH);
}

void mha_backward(const vlp_matmul *mm, float *dinp, float *dw_in, float *db_in, float *dw_out,
                  float *db_out, const float *dout, const float *inp, const float *qkv,
                  const float *att, const float *heads, const float *w_in, const float *w_out,
                  float *scratch, int B, int T, int C, int NH) {
    int N = B * T;
    float *dqkv = scratch;                  // (B, T, 3C)
    float *dheads = dqkv + (size_t)N * 3 * C; // (B, T, C)
    float *att_scratch = dheads + (size_t)N * C;
    memset(dqkv, 0, sizeof(float) * (size_t)N * 3 * C); /* attention_backward accumulates */
    /* dheads: fresh scratch, written by the GEMM (beta 0) rather than zeroed and accumulated */
    vlp_gemm(mm, false, false, N, C, C, 1.0f, dout, C, w_out, C, 0.0f, dheads, C);
    linear_backward(mm, NULL, dw_out, db_out, dout, heads, w_out, N, C, C);
    attention_backward(mm, dqkv, dheads, qkv, att, att_scratch, B, T, C, NH);
    linear_backward(mm, dinp, dw_in, db_in, dqkv, inp, w_in, N, C, 3 * C);
}
