#include "model/block.h"
#include "core/error.h"

#include <string.h>

void block_param_specs(const block_dims *d, block_param_spec s[BLOCK_NPARAMS]) {
    int C = d->C, H = d->hidden;
    const block_param_spec specs[BLOCK_NPARAMS] = {
        {"ln_1.weight", 1, {C, 0}},          {"ln_1.bias", 1, {C, 0}},
        {"attn.in_proj_weight", 2, {3 * C, C}}, {"attn.in_proj_bias", 1, {3 * C, 0}},
        {"attn.out_proj.weight", 2, {C, C}}, {"attn.out_proj.bias", 1, {C, 0}},
        {"ln_2.weight", 1, {C, 0}},          {"ln_2.bias", 1, {C, 0}},
        {"mlp.c_fc.weight", 2, {H, C}},      {"mlp.c_fc.bias", 1, {H, 0}},
        {"mlp.c_proj.weight", 2, {C, H}},    {"mlp.c_proj.bias", 1, {C, 0}},
    };
    memcpy(s, specs, sizeof specs);
}

float **block_params_slot(block_params *p, int i) {
    float **slots[BLOCK_NPARAMS] = {
        &p->ln_1_w, &p->ln_1_b, &p->in_proj_w, &p->in_proj_b, &p->out_proj_w, &p->out_proj_b,
        &p->ln_2_w, &p->ln_2_b, &p->c_fc_w,    &p->c_fc_b,    &p->c_proj_w,   &p->c_proj_b,
    };
    return slots[i];
}

size_t block_params_bind(block_params *p, float *base, const block_dims *d) {
    block_param_spec s[BLOCK_NPARAMS];
    block_param_specs(d, s);
    size_t off = 0;
    p->q8 = NULL; /* fp32 views; clip_q8.c attaches int8 twins */
    for (int i = 0; i < BLOCK_NPARAMS; i++) {
        *block_params_slot(p, i) = base ? base + off : NULL;
        off += block_param_numel(&s[i]);
    }
    return off;
}

size_t block_acts_bind(block_acts *a, float *base, const block_dims *d) {
    size_t N = (size_t)d->B * d->T, C = d->C, H = d->hidden;
    struct { float **slot; size_t n; } parts[] = {
        {&a->ln1_mean, N}, {&a->ln1_rstd, N},
        {&a->qkv, N * 3 * C}, {&a->att, (size_t)d->B * d->NH * d->T * d->T},
        {&a->heads, N * C}, {&a->x1, N * C},
        {&a->ln2_mean, N}, {&a->ln2_rstd, N},
        {&a->fc, N * H},
        /* last, so block_acts_bind_shared can leave them out */
        {&a->ln1, N * C}, {&a->ln2, N * C}, {&a->fc_act, N * H},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        *parts[i].slot = base ? base + off : NULL;
        off += parts[i].n;
    }
    a->kept16 = false; /* recomputed unless the binder says otherwise */
    return off;
}

size_t block_acts_bind_shared(block_acts *a, float *base, float *ln, float *fc_act, const block_dims *d) {
    size_t all = block_acts_bind(a, base, d), N = (size_t)d->B * d->T;
    a->ln1 = a->ln2 = ln;
    a->fc_act = fc_act;
    return all - 2 * N * d->C - N * d->hidden;
}

size_t block_scratch_floats(const block_dims *d) {
    size_t N = (size_t)d->B * d->T;
    /* dx1 + dln + a recomputed LayerNorm output (N,C each), the activation + dfc (N,H each),
     * then the MHA's own */
    return 3 * N * d->C + 2 * N * d->hidden + mha_scratch_floats(d->B, d->T, d->C, d->NH);
}

/* A linear layer of the block: int8 when the block has int8 weights for
 * it (an inference model), else linear_forward in the dims' precision. */
static void block_linear(const block_dims *d, float *out, const float *inp, const float *w,
                         const q8_matrix *q, const float *b, int N, int C, int OC) {
    if (q && q->packed) q8_linear_forward(out, inp, q, b, N, d->q8_ws);
    else linear_forward(d->mm, out, inp, w, b, N, C, OC);
}

/* bf16 mode (without int8 weights for the layer): the LayerNorm and
 * activation outputs that feed a GEMM are written once in bf16, into the
 * first half of their fp32 buffers (or the block's own half-size ones when
 * it keeps them, a->kept16), and the GEMM's packing copies them instead of
 * converting fp32 (the same bits: both round to nearest even). The
 * backward reads the kept ones, or recomputes ln_2's and the activation's
 * in bf16 and ln_1's in fp32 (the same bits once its GEMM rounds them). */
static bool bf16_input(const block_dims *d, const q8_matrix *q) {
    return d->mm && d->mm->precision == VLP_PRECISION_BF16 && !(q && q->packed);
}

static void bf16_linear(const block_dims *d, float *out, const uint16_t *inp, const float *w,
                        const float *b, int N, int C, int OC) {
    /* outside any parallel region the workspace always has a slot: never refused */
    gemm_bf16_extra x = {.A16 = inp};
    (void)gemm_bf16_ex(false, true, N, OC, C, 1.0f, NULL, C, w, C, 0.0f, out, OC, b, &x,
                       d->mm->workspace, d->mm->threads);
}

/* dw (OC, C) += dyᵀ·x and db (OC) += Σ dy. x (N, C) is fp32, or in bf16
 * mode bf16 bits in the buffer's first half (the activations as the
 * forward's GEMMs read them, kept or recomputed) */
static void weight_grads(const block_dims *d, float *dw, float *db, const float *dy,
                         const float *x, int N, int C, int OC) {
    /* outside any parallel region the bf16 workspace always has a slot: never refused */
    if (bf16_input(d, NULL)) (void)linear_backward_bf16_input(d->mm, dw, db, dy, (const uint16_t *)x, N, C, OC);
    else linear_backward(d->mm, NULL, dw, db, dy, x, NULL, N, C, OC);
}

/* A LayerNorm output (N, C) and an activation output (n values) for a
 * GEMM: in bf16 (the buffer's first half) when the GEMM takes bf16 */
static void ln_for_gemm(const block_dims *d, bool bf16, float *ln, float *mean, float *rstd,
                        const float *x, const float *ln_w, const float *ln_b, int N, int C) {
    if (bf16) layernorm_forward_bf16((uint16_t *)ln, mean, rstd, x, ln_w, ln_b, N, C, d->eps);
    else layernorm_forward(ln, mean, rstd, x, ln_w, ln_b, N, C, d->eps);
}

static void act_for_gemm(const block_dims *d, bool bf16, float *out, const float *x, size_t n) {
    if (bf16) act_forward_bf16(d->act, (uint16_t *)out, x, n);
    else act_forward(d->act, out, x, n);
}

/* out (N, OC) = linear(inp), inp written by ln_for_gemm or act_for_gemm */
static void gemm_input_linear(const block_dims *d, bool bf16, float *out, const float *inp,
                              const float *w, const q8_matrix *q, const float *b, int N, int C,
                              int OC) {
    if (bf16) bf16_linear(d, out, (const uint16_t *)inp, w, b, N, C, OC);
    else block_linear(d, out, inp, w, q, b, N, C, OC);
}

/* out (N, OC) = linear(LayerNorm(x)); ln (N, C) holds the LayerNorm output */
static void ln_linear(const block_dims *d, float *out, float *ln, float *mean, float *rstd,
                      const float *x, const float *ln_w, const float *ln_b, const float *w,
                      const q8_matrix *q, const float *b, int N, int C, int OC) {
    bool bf16 = bf16_input(d, q);
    ln_for_gemm(d, bf16, ln, mean, rstd, x, ln_w, ln_b, N, C);
    gemm_input_linear(d, bf16, out, ln, w, q, b, N, C, OC);
}

/* out (N, OC) = linear(act(x)); act_out (N, H) holds the activation */
static void act_linear(const block_dims *d, float *out, float *act_out, const float *x,
                       const float *w, const q8_matrix *q, const float *b, int N, int H, int OC) {
    bool bf16 = bf16_input(d, q);
    act_for_gemm(d, bf16, act_out, x, (size_t)N * H);
    gemm_input_linear(d, bf16, out, act_out, w, q, b, N, H, OC);
}

/* The second half of both blocks: out = x1 + c_proj(act(c_fc(ln_2(x1)))). */
static void mlp_half_forward(float *out, block_acts *a, const block_params *w, const block_dims *d) {
    int N = d->B * d->T, C = d->C, H = d->hidden;
    ln_linear(d, a->fc, a->ln2, a->ln2_mean, a->ln2_rstd, a->x1, w->ln_2_w, w->ln_2_b, w->c_fc_w,
              w->q8 ? &w->q8->c_fc : NULL, w->c_fc_b, N, C, H);
    act_linear(d, out, a->fc_act, a->fc, w->c_proj_w, w->q8 ? &w->q8->c_proj : NULL, w->c_proj_b,
               N, H, C);
    residual_forward(out, a->x1, out, (size_t)N * C);
}

/* Its backward: dx1 (N, C) = dout + the MLP branch's gradient. Scratch:
 * dln, ln (N, C) and fc_act, dfc (N, H), of which ln and fc_act go unused
 * when the block kept its activations (a->kept16). */
static void mlp_half_backward(float *dx1, block_params *dw, const float *dout, const block_acts *a,
                              const block_params *w, float *dln, float *ln, float *fc_act,
                              float *dfc, const block_dims *d) {
    int N = d->B * d->T, C = d->C, H = d->hidden;
    size_t NC = (size_t)N * C, NH = (size_t)N * H;
    /* the residual passes dout straight to x1. The activation's output and
     * the LayerNorm's are recomputed (elementwise, the same values) rather
     * than kept per block: the forward may share one buffer for them across
     * a tower's blocks. In bf16 mode they are recomputed in bf16, as the
     * forward writes them: only the weight gradients' GEMMs read them, and
     * those round to bf16 (the same bits, half the bytes). */
    bool bf16 = bf16_input(d, NULL);
    memcpy(dx1, dout, sizeof(float) * NC);
    if (a->kept16) {
        fc_act = a->fc_act, ln = a->ln2;
    } else { /* recomputed, in the form the forward wrote them */
        act_for_gemm(d, bf16, fc_act, a->fc, NH);
        ln_for_gemm(d, bf16, ln, a->ln2_mean, a->ln2_rstd, a->x1, w->ln_2_w, w->ln_2_b, N, C);
    }
    /* the linear layers' input gradients land in scratch nobody else wrote:
     * a GEMM with beta 0 instead of zeroing it and accumulating */
    vlp_gemm(d->mm, false, false, N, H, C, 1.0f, dout, C, w->c_proj_w, H, 0.0f, dfc, H);
    weight_grads(d, dw->c_proj_w, dw->c_proj_b, dout, fc_act, N, H, C);
    act_backward_write(d->act, dfc, dfc, a->fc, NH); /* in place: dfc_act becomes dfc */
    vlp_gemm(d->mm, false, false, N, C, H, 1.0f, dfc, H, w->c_fc_w, C, 0.0f, dln, C);
    weight_grads(d, dw->c_fc_w, dw->c_fc_b, dfc, ln, N, C, H);
    layernorm_backward(dx1, dw->ln_2_w, dw->ln_2_b, dln, a->x1, w->ln_2_w, a->ln2_mean,
                       a->ln2_rstd, N, C);
}

vlp_err block_forward(float *out, block_acts *a, const float *inp, const block_params *w,
                      const block_dims *d, vlp_error *err) {
    VLP_CHECK_SHAPE(d->hidden > 0, err, "block MLP width must be positive, got %d", d->hidden);
    /* kept activations are bound half-size, for bf16 values (clip.c keeps
     * the binding and the precision together) */
    VLP_CHECK(!a->kept16 || bf16_input(d, NULL), err, VLP_ERR_ARG,
              "block bound for bf16 activations run in fp32");
    int N = d->B * d->T, C = d->C;
    size_t NC = (size_t)N * C;
    const block_q8 *q = w->q8;
    /* mha_forward's steps, each linear layer maybe int8, its input maybe bf16 */
    ln_linear(d, a->qkv, a->ln1, a->ln1_mean, a->ln1_rstd, inp, w->ln_1_w, w->ln_1_b, w->in_proj_w,
              q ? &q->in_proj : NULL, w->in_proj_b, N, C, 3 * C);
    VLP_TRY(attention_forward(d->mm, a->heads, a->att, a->qkv, d->B, d->T, C, d->NH, d->causal, err));
    block_linear(d, a->x1, a->heads, w->out_proj_w, q ? &q->out_proj : NULL, w->out_proj_b, N, C,
                 C);
    residual_forward(a->x1, inp, a->x1, NC);
    mlp_half_forward(out, a, w, d);
    return VLP_OK;
}

void block_backward(float *dinp, block_params *dw, const float *dout, const float *inp,
                    const block_acts *a, const block_params *w, float *scratch,
                    const block_dims *d) {
    int N = d->B * d->T, C = d->C;
    size_t NC = (size_t)N * C, NH = (size_t)N * d->hidden;
    float *dx1 = scratch;        // (N, C)
    float *dln = dx1 + NC;       // (N, C), for ln_2 then ln_1
    float *ln = dln + NC;        // (N, C) ln_2's then ln_1's output, recomputed
    float *fc_act = ln + NC;     // (N, H) the activation, recomputed
    float *dfc = fc_act + NH;    // (N, H)
    float *mha_scratch = dfc + NH;

    mlp_half_backward(dx1, dw, dout, a, w, dln, ln, fc_act, dfc, d);

    /* attention branch; the residual passes dx1 straight to the input */
    if (dinp) residual_backward(dinp, NULL, dx1, NC);
    /* ln_1's output: kept in bf16, or recomputed in fp32 */
    const uint16_t *ln16 = a->kept16 ? (const uint16_t *)a->ln1 : NULL;
    if (!ln16) layernorm_forward(ln, a->ln1_mean, a->ln1_rstd, inp, w->ln_1_w, w->ln_1_b, N, C, d->eps);
    /* dln is fresh scratch: written (beta 0), not zeroed and added to */
    mha_backward(d->mm, dln, dw->in_proj_w, dw->in_proj_b, dw->out_proj_w, dw->out_proj_b, dx1, ln,
                 a->qkv, a->att, a->heads, ln16, w->in_proj_w, w->out_proj_w, mha_scratch, d->B,
                 d->T, C, d->NH, false);
    layernorm_backward(dinp, dw->ln_1_w, dw->ln_1_b, dln, inp, w->ln_1_w, a->ln1_mean,
                       a->ln1_rstd, N, C);
}

/* ---- the cross-attention block (open_clip's ResidualAttentionBlock with
 * is_cross_attention) -------------------------------------------------------------------- */

size_t cross_acts_bind(cross_acts *a, float *base, const block_dims *d, int Tk) {
    size_t all = block_acts_bind(&a->base, base, d), Nk = (size_t)d->B * Tk, C = d->C;
    float *p = base ? base + all : NULL;
    struct { float **slot; size_t n; } parts[] = {
        {&a->lnkv, Nk * C}, {&a->lnkv_mean, Nk}, {&a->lnkv_rstd, Nk}, {&a->kv, Nk * 2 * C},
        /* the attention probabilities are (B, NH, Tq, Tk), not the (B, NH, T, T)
         * block_acts_bind counted */
        {&a->base.att, (size_t)d->B * d->NH * d->T * Tk},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        *parts[i].slot = p ? p + off : NULL;
        off += parts[i].n;
    }
    return all + off;
}

size_t cross_scratch_floats(const block_dims *d, int Tk) {
    size_t N = (size_t)d->B * d->T, Nk = (size_t)d->B * Tk;
    /* dx1, dln, ln (N,C); fc_act, dfc (N,H); dheads, dq (N,C); dkv (Nk,2C), dlnkv (Nk,C); dA */
    return 5 * N * d->C + 2 * N * d->hidden + 3 * Nk * d->C +
           attention_core_scratch_floats(d->B, d->T, Tk, d->NH);
}

vlp_err cross_block_forward(float *out, cross_acts *a, const float *inp, const float *kv_inp,
                            int Tk, const cross_params *w, const block_dims *d, vlp_error *err) {
    VLP_CHECK_SHAPE(d->hidden > 0 && Tk > 0, err, "cross block: MLP width %d and %d keys must be positive",
                    d->hidden, Tk);
    const block_params *p = &w->base;
    block_acts *b = &a->base;
    int N = d->B * d->T, Nk = d->B * Tk, C = d->C;
    layernorm_forward(b->ln1, b->ln1_mean, b->ln1_rstd, inp, p->ln_1_w, p->ln_1_b, N, C, d->eps);
    linear_forward(d->mm, b->qkv, b->ln1, p->in_proj_w, p->in_proj_b, N, C, C); // q (N, C)
    layernorm_forward(a->lnkv, a->lnkv_mean, a->lnkv_rstd, kv_inp, w->ln_1_kv_w, w->ln_1_kv_b, Nk,
                      C, d->eps);
    /* k|v (Nk, 2C) from the last two thirds of in_proj */
    linear_forward(d->mm, a->kv, a->lnkv, p->in_proj_w + (size_t)C * C, p->in_proj_b + C, Nk, C,
                   2 * C);
    VLP_TRY(attention_core_forward(d->mm, b->heads, b->att, b->qkv, C, a->kv, a->kv + C, 2 * C,
                                   d->B, d->T, Tk, C, d->NH, false, err));
    linear_forward(d->mm, b->x1, b->heads, p->out_proj_w, p->out_proj_b, N, C, C);
    residual_forward(b->x1, inp, b->x1, (size_t)N * C);
    mlp_half_forward(out, b, p, d);
    return VLP_OK;
}

void cross_block_backward(float *dinp, float *dkv_inp, cross_params *dw, const float *dout,
                          const float *inp, const float *kv_inp, int Tk, const cross_acts *a,
                          const cross_params *w, float *scratch, const block_dims *d) {
    const block_params *p = &w->base;
    block_params *dp = &dw->base;
    const block_acts *b = &a->base;
    int N = d->B * d->T, Nk = d->B * Tk, C = d->C;
    size_t NC = (size_t)N * C, NH = (size_t)N * d->hidden, NkC = (size_t)Nk * C;
    float *dx1 = scratch, *dln = dx1 + NC, *ln = dln + NC;   // (N, C) each
    float *fc_act = ln + NC, *dfc = fc_act + NH;             // (N, H) each
    float *dheads = dfc + NH, *dq = dheads + NC;             // (N, C) each
    float *dkv = dq + NC, *dlnkv = dkv + 2 * NkC;            // (Nk, 2C) (Nk, C)
    float *att_scratch = dlnkv + NkC;

    mlp_half_backward(dx1, dp, dout, b, p, dln, ln, fc_act, dfc, d);
    if (dinp) residual_backward(dinp, NULL, dx1, NC);
    vlp_gemm(d->mm, false, false, N, C, C, 1.0f, dx1, C, p->out_proj_w, C, 0.0f, dheads, C);
    linear_backward(d->mm, NULL, dp->out_proj_w, dp->out_proj_b, dx1, b->heads, p->out_proj_w, N,
                    C, C);
    attention_core_backward(d->mm, dq, dkv, dkv + C, dheads, b->qkv, C, a->kv, a->kv + C, 2 * C,
                            b->att, att_scratch, d->B, d->T, Tk, C, d->NH, false); /* writes dq, dkv */
    /* queries: in_proj's first third, then ln_1 */
    vlp_gemm(d->mm, false, false, N, C, C, 1.0f, dq, C, p->in_proj_w, C, 0.0f, dln, C);
    linear_backward(d->mm, NULL, dp->in_proj_w, dp->in_proj_b, dq, b->ln1, p->in_proj_w, N, C, C);
    layernorm_backward(dinp, dp->ln_1_w, dp->ln_1_b, dln, inp, p->ln_1_w, b->ln1_mean,
                       b->ln1_rstd, N, C);
    /* keys and values: its last two thirds, then ln_1_kv */
    vlp_gemm(d->mm, false, false, Nk, C, 2 * C, 1.0f, dkv, 2 * C, p->in_proj_w + (size_t)C * C, C,
             0.0f, dlnkv, C);
    linear_backward(d->mm, NULL, dp->in_proj_w + (size_t)C * C, dp->in_proj_b + C, dkv, a->lnkv,
                    p->in_proj_w + (size_t)C * C, Nk, C, 2 * C);
    layernorm_backward(dkv_inp, dw->ln_1_kv_w, dw->ln_1_kv_b, dlnkv, kv_inp, w->ln_1_kv_w,
                       a->lnkv_mean, a->lnkv_rstd, Nk, C);
}
