/* Multi-head self-attention. Short sequences (up to ATTENTION_FUSED_MAX, all
 * of CLIP's towers up to ViT-B-32's 50 and the text's 77) run the fused
 * kernel of attention_fused.c; longer ones per-head strided GEMMs over the
 * fused q|k|v tensor (no copies), heads in parallel, each GEMM on one thread. */
#include "ops/ops.h"
#include "ops/gemm.h"
#include "ops/softmax_row.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

/* The core on separate q and k|v operands: query rows t of batch b at
 * q + (b·Tq + t)·ldq, key rows at k + (b·Tk + j)·ldkv, value rows at
 * v + (b·Tk + j)·ldkv; out rows (B, Tq, C) dense. Self-attention passes the
 * three thirds of the fused q|k|v tensor, cross-attention its own. */
vlp_err attention_check_dims(int B, int Tq, int Tk, int C, int NH, bool causal, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && Tq > 0 && Tk > 0 && C > 0 && NH > 0, err,
                    "attention dims must be positive: B=%d Tq=%d Tk=%d C=%d heads=%d", B, Tq, Tk,
                    C, NH);
    VLP_CHECK_SHAPE(C % NH == 0, err, "attention width %d is not divisible by %d heads", C, NH);
    VLP_CHECK_SHAPE(!causal || Tq == Tk, err, "causal attention needs as many keys (%d) as queries (%d)",
                    Tk, Tq);
    return VLP_OK;
}

vlp_err attention_gemm_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                               int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                               int Tk, int C, int NH, bool causal, vlp_error *err) {
    VLP_TRY(attention_check_dims(B, Tq, Tk, C, NH, causal, err));
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *qb = q + (size_t)b * Tq * ldq + h * hs;  // (Tq, hs) stride ldq
        const float *kb = k + (size_t)b * Tk * ldkv + h * hs; // (Tk, hs) stride ldkv
        const float *vb = v + (size_t)b * Tk * ldkv + h * hs;
        float *a = att + (size_t)bh * Tq * Tk; // (Tq, Tk)
        vlp_gemm(mm, false, true, Tq, Tk, hs, scale, qb, ldq, kb, ldkv, 0.0f, a, Tk);
        for (int t = 0; t < Tq; t++) {
            float *row = a + (size_t)t * Tk;
            softmax_row(row, row, causal ? t + 1 : Tk, Tk);
        }
        vlp_gemm(mm, false, false, Tq, hs, Tk, 1.0f, a, Tk, vb, ldkv, 0.0f,
                 out + (size_t)b * Tq * C + h * hs, C);
    }
    return VLP_OK;
}

static bool use_fused(int Tq, int Tk, int C, int NH) {
    return NH > 0 && C % NH == 0 && attention_fused_fits(Tq, Tk, C / NH) && attention_fused_hw();
}

vlp_err attention_core_forward(const matmul_cfg *mm, float *out, float *att, const float *q,
                               int ldq, const float *k, const float *v, int ldkv, int B, int Tq,
                               int Tk, int C, int NH, bool causal, vlp_error *err) {
    if (use_fused(Tq, Tk, C, NH))
        return attention_fused_forward(mm, out, att, q, ldq, k, v, ldkv, B, Tq, Tk, C, NH, causal, err);
    return attention_gemm_forward(mm, out, att, q, ldq, k, v, ldkv, B, Tq, Tk, C, NH, causal, err);
}

void attention_core_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                             const float *dout, const float *q, int ldq, const float *k,
                             const float *v, int ldkv, const float *att, float *scratch, int B,
                             int Tq, int Tk, int C, int NH, bool accumulate) {
    if (use_fused(Tq, Tk, C, NH))
        attention_fused_backward(mm, dq, dk, dv, dout, q, ldq, k, v, ldkv, att, scratch, B, Tq, Tk, C,
                                 NH, accumulate);
    else
        attention_gemm_backward(mm, dq, dk, dv, dout, q, ldq, k, v, ldkv, att, scratch, B, Tq, Tk, C,
                                NH, accumulate);
}

vlp_err attention_forward(const matmul_cfg *mm, float *out, float *att, const float *qkv, int B,
                          int T, int C, int NH, bool causal, vlp_error *err) {
    return attention_core_forward(mm, out, att, qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C, B, T, T,
                                  C, NH, causal, err);
}

size_t attention_core_scratch_floats(int B, int Tq, int Tk, int NH) {
    return (size_t)B * NH * Tq * Tk;
}
size_t attention_scratch_floats(int B, int T, int NH) {
    return attention_core_scratch_floats(B, T, T, NH);
}

void attention_gemm_backward(const matmul_cfg *mm, float *dq, float *dk, float *dv,
                             const float *dout, const float *q, int ldq, const float *k,
                             const float *v, int ldkv, const float *att, float *scratch, int B,
                             int Tq, int Tk, int C, int NH, bool accumulate) {
    int hs = C / NH;
    float beta = accumulate ? 1.0f : 0.0f; /* each (b, h) slice of dq, dk, dv is written once */
    float scale = 1.0f / sqrtf((float)hs);
    VLP_OMP_FOR
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t qoff = (size_t)b * Tq * ldq + h * hs, koff = (size_t)b * Tk * ldkv + h * hs;
        const float *qb = q + qoff, *kb = k + koff, *vb = v + koff;
        float *dqb = dq + qoff, *dkb = dk + koff, *dvb = dv + koff;
        const float *a = att + (size_t)bh * Tq * Tk;          // (Tq, Tk)
        const float *dy = dout + (size_t)b * Tq * C + h * hs; // (Tq, hs) stride C
        float *da = scratch + (size_t)bh * Tq * Tk;           // (Tq, Tk)

        vlp_gemm(mm, true, false, Tk, hs, Tq, 1.0f, a, Tk, dy, C, beta, dvb, ldkv); // dV += Aᵀ·dY
        vlp_gemm(mm, false, true, Tq, Tk, hs, 1.0f, dy, C, vb, ldkv, 0.0f, da, Tk);  // dA = dY·Vᵀ
        /* dS = A ⊙ (dA − rowsum(A ⊙ dA)), in place; masked entries have A = 0 */
        for (int t = 0; t < Tq; t++) {
            float *dr = da + (size_t)t * Tk;
            const float *ar = a + (size_t)t * Tk;
            float dot = 0.0f;
            for (int j = 0; j < Tk; j++) dot += ar[j] * dr[j];
            for (int j = 0; j < Tk; j++) dr[j] = ar[j] * (dr[j] - dot);
        }
        vlp_gemm(mm, false, false, Tq, hs, Tk, scale, da, Tk, kb, ldkv, beta, dqb, ldq); // dQ += s·dS·K
        vlp_gemm(mm, true, false, Tk, hs, Tq, scale, da, Tk, qb, ldq, beta, dkb, ldkv);  // dK += s·dSᵀ·Q
    }
}

void attention_backward(const matmul_cfg *mm, float *dqkv, const float *dout, const float *qkv,
                        const float *att, float *scratch, int B, int T, int C, int NH,
                        bool accumulate) {
    attention_core_backward(mm, dqkv, dqkv + C, dqkv + 2 * C, dout, qkv, 3 * C, qkv + C,
                            qkv + 2 * C, 3 * C, att, scratch, B, T, T, C, NH, accumulate);
}

vlp_err mha_forward(const matmul_cfg *mm, float *out, float *qkv, float *att, float *heads,
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

void mha_backward(const matmul_cfg *mm, float *dinp, float *dw_in, float *db_in, float *dw_out,
                  float *db_out, const float *dout, const float *inp, const float *qkv,
                  const float *att, const float *heads, const uint16_t *inp16, const float *w_in,
                  const float *w_out, float *scratch, int B, int T, int C, int NH,
                  bool accumulate) {
    int N = B * T;
    float *dqkv = scratch;                  // (B, T, 3C)
    float *dheads = dqkv + (size_t)N * 3 * C; // (B, T, C)
    float *att_scratch = dheads + (size_t)N * C;
    /* dheads: fresh scratch, written by the GEMM (beta 0) rather than zeroed and accumulated */
    vlp_gemm(mm, false, false, N, C, C, 1.0f, dout, C, w_out, C, 0.0f, dheads, C);
    linear_backward(mm, NULL, dw_out, db_out, dout, heads, w_out, N, C, C);
    attention_backward(mm, dqkv, dheads, qkv, att, att_scratch, B, T, C, NH, false); /* writes dqkv */
    if (dinp) /* linear_backward's input gradient, with beta 0 when dinp is to be written */
        vlp_gemm(mm, false, false, N, C, 3 * C, 1.0f, dqkv, 3 * C, w_in, C, accumulate ? 1.0f : 0.0f,
                 dinp, C);
    if (!inp16 || !linear_backward_bf16_input(mm, dw_in, db_in, dqkv, inp16, N, C, 3 * C))
        linear_backward(mm, NULL, dw_in, db_in, dqkv, inp, w_in, N, C, 3 * C);
}
