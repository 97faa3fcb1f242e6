/* Finite-difference gradient checks of every op on small random shapes with
 * odd sizes (not multiples of 8 or 16). The ops run in fp32; the test loss is
 * summed in double; tolerances are stated per op (h: step, atol, rtol; see
 * gradcheck() in tests/support). fp32 central differences carry an error of
 * about eps·|L|/h ≈ 1e-4 relative, so these are looser than the PyTorch
 * parity tests, which are the tight ones. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ops/ops.h"
#include "loss/loss.h"
#include "model/block.h"

#define H_STEP 1e-2
#define ATOL 1e-3
#define RTOL 2e-3

static rng R = {20261122};

static float *rand_buf(size_t n, float scale) {
    float *p = falloc(n);
    fill_normal(&R, p, n, scale, 0.0f);
    return p;
}

static void must(vlp_err e) {
    if (e != VLP_OK) fail_msg("op failed with %s", vlp_strerror(e));
}

/* ---- linear ---------------------------------------------------------------- */
typedef struct { int N, C, OC; float *inp, *w, *b, *out, *dout, *dinp, *dw, *db; } linear_ctx;
static void linear_fw(void *p) {
    linear_ctx *c = p;
    linear_forward(NULL, c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
}
static void linear_bw(void *p) {
    linear_ctx *c = p;
    linear_backward(NULL, c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC);
}
static void test_linear(void **state) {
    linear_ctx c = {.N = 5, .C = 13, .OC = 9};
    c.inp = rand_buf(c.N * c.C, 1), c.w = rand_buf(c.OC * c.C, 0.3f), c.b = rand_buf(c.OC, 1);
    c.out = falloc(c.N * c.OC), c.dout = rand_buf(c.N * c.OC, 1);
    c.dinp = falloc(c.N * c.C), c.dw = falloc(c.OC * c.C), c.db = falloc(c.OC);
    gc_op op = {"linear", &c, linear_fw, linear_bw, c.out, c.dout, c.N * c.OC,
                {{"inp", c.inp, c.dinp, c.N * c.C}, {"weight", c.w, c.dw, c.OC * c.C},
                 {"bias", c.b, c.db, c.OC}}, 3, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.dout), free(c.dinp), free(c.dw), free(c.db);
}

/* ---- layernorm ------------------------------------------------------------- */
typedef struct { int N, C; float *inp, *w, *b, *out, *mean, *rstd, *dout, *dinp, *dw, *db; } ln_ctx;
static void ln_fw(void *p) {
    ln_ctx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
}
static void ln_bw(void *p) {
    ln_ctx *c = p;
    layernorm_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->mean, c->rstd, c->N, c->C);
}
static void test_layernorm(void **state) {
    ln_ctx c = {.N = 7, .C = 11};
    c.inp = rand_buf(c.N * c.C, 1), c.w = rand_buf(c.C, 1), c.b = rand_buf(c.C, 1);
    c.out = falloc(c.N * c.C), c.mean = falloc(c.N), c.rstd = falloc(c.N);
    c.dout = rand_buf(c.N * c.C, 1), c.dinp = falloc(c.N * c.C), c.dw = falloc(c.C), c.db = falloc(c.C);
    gc_op op = {"layernorm", &c, ln_fw, ln_bw, c.out, c.dout, c.N * c.C,
                {{"inp", c.inp, c.dinp, c.N * c.C}, {"weight", c.w, c.dw, c.C},
                 {"bias", c.b, c.db, c.C}}, 3, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd);
    free(c.dout), free(c.dinp), free(c.dw), free(c.db);
}

/* ---- activations and softmax ----------------------------------------------------- */
typedef struct { vlp_act act; size_t N; int rows, cols; float *inp, *out, *dout, *dinp; } ew_ctx;
static void act_fw(void *p) { ew_ctx *c = p; act_forward(c->act, c->out, c->inp, c->N); }
static void act_bw(void *p) { ew_ctx *c = p; act_backward(c->act, c->dinp, c->dout, c->inp, c->N); }
static void sm_fw(void *p) { ew_ctx *c = p; softmax_forward(c->out, c->inp, c->rows, c->cols); }
static void sm_bw(void *p) { ew_ctx *c = p; softmax_backward(c->dinp, c->dout, c->out, c->rows, c->cols); }
static void res_fw(void *p) { ew_ctx *c = p; residual_forward(c->out, c->inp, c->inp + c->N, c->N); }
static void res_bw(void *p) { ew_ctx *c = p; residual_backward(c->dinp, c->dinp + c->N, c->dout, c->N); }

static void check_elementwise(const char *name, ew_ctx *c, void (*fw)(void *), void (*bw)(void *),
                              size_t nin) {
    c->inp = rand_buf(nin, 2), c->out = falloc(c->N), c->dout = rand_buf(c->N, 1);
    c->dinp = falloc(nin);
    gc_op op = {name, c, fw, bw, c->out, c->dout, c->N, {{"inp", c->inp, c->dinp, nin}}, 1,
                H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c->inp), free(c->out), free(c->dout), free(c->dinp);
}
static void test_gelu(void **state) {
    ew_ctx c = {.act = VLP_ACT_GELU, .N = 37};
    check_elementwise("gelu", &c, act_fw, act_bw, c.N);
}
static void test_quickgelu(void **state) {
    ew_ctx c = {.act = VLP_ACT_QUICKGELU, .N = 37};
    check_elementwise("quickgelu", &c, act_fw, act_bw, c.N);
}
static void test_softmax(void **state) {
    ew_ctx c = {.rows = 3, .cols = 13, .N = 39};
    check_elementwise("softmax", &c, sm_fw, sm_bw, c.N);
}
static void test_residual(void **state) {
    ew_ctx c = {.N = 19};
    check_elementwise("residual", &c, res_fw, res_bw, 2 * c.N);
}

/* ---- attention --------------------------------------------------------------- */
typedef struct {
    int B, T, C, NH; bool causal;
    float *inp, *w_in, *b_in, *w_out, *b_out, *out, *qkv, *att, *heads, *scratch, *dout;
    float *dinp, *dw_in, *db_in, *dw_out, *db_out;
} mha_ctx;
static void mha_fw(void *p) {
    mha_ctx *c = p;
    must(mha_forward(NULL, c->out, c->qkv, c->att, c->heads, c->inp, c->w_in, c->b_in, c->w_out,
                     c->b_out, c->B, c->T, c->C, c->NH, c->causal, NULL));
}
static void mha_bw(void *p) {
    mha_ctx *c = p;
    mha_backward(NULL, c->dinp, c->dw_in, c->db_in, c->dw_out, c->db_out, c->dout, c->inp, c->qkv,
                 c->att, c->heads, NULL, c->w_in, c->w_out, c->scratch, c->B, c->T, c->C, c->NH, true);
}
static void check_mha(const char *name, int B, int T, int C, int NH, bool causal) {
    mha_ctx c = {.B = B, .T = T, .C = C, .NH = NH, .causal = causal};
    size_t N = (size_t)B * T;
    c.inp = rand_buf(N * C, 1), c.w_in = rand_buf(3 * C * C, 0.5f), c.b_in = rand_buf(3 * C, 0.1f);
    c.w_out = rand_buf(C * C, 0.3f), c.b_out = rand_buf(C, 0.1f);
    c.out = falloc(N * C), c.qkv = falloc(N * 3 * C), c.att = falloc((size_t)B * NH * T * T);
    c.heads = falloc(N * C), c.scratch = falloc(mha_scratch_floats(B, T, C, NH));
    c.dout = rand_buf(N * C, 1), c.dinp = falloc(N * C), c.dw_in = falloc(3 * C * C);
    c.db_in = falloc(3 * C), c.dw_out = falloc(C * C), c.db_out = falloc(C);
    gc_op op = {name, &c, mha_fw, mha_bw, c.out, c.dout, N * C,
                {{"inp", c.inp, c.dinp, N * C}, {"in_proj_weight", c.w_in, c.dw_in, 3 * C * C},
                 {"in_proj_bias", c.b_in, c.db_in, 3 * C},
                 {"out_proj_weight", c.w_out, c.dw_out, C * C},
                 {"out_proj_bias", c.b_out, c.db_out, C}}, 5, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.inp), free(c.w_in), free(c.b_in), free(c.w_out), free(c.b_out), free(c.out);
    free(c.qkv), free(c.att), free(c.heads), free(c.scratch), free(c.dout), free(c.dinp);
    free(c.dw_in), free(c.db_in), free(c.dw_out), free(c.db_out);
}
static void test_mha(void **state) { check_mha("mha", 2, 5, 15, 3, false); }
static void test_mha_causal(void **state) { check_mha("mha causal", 3, 7, 10, 2, true); }

/* ---- embeddings, patches, class token ------------------------------------------- */
typedef struct { int B, T, C, V; int32_t *ids; float *wte, *wpe, *out, *dout, *dwte, *dwpe; } emb_ctx;
static void emb_fw(void *p) {
    emb_ctx *c = p;
    must(embedding_forward(c->out, c->ids, c->wte, c->wpe, c->B, c->T, c->C, c->V, NULL));
}
static void emb_bw(void *p) {
    emb_ctx *c = p;
    embedding_backward(c->dwte, c->dwpe, c->dout, c->ids, c->B, c->T, c->C, c->V);
}
static void test_embedding(void **state) {
    emb_ctx c = {.B = 2, .T = 5, .C = 7, .V = 11};
    int32_t ids[10] = {3, 0, 10, 3, 3, 7, 1, 10, 0, 5}; // repeats on purpose
    c.ids = ids;
    c.wte = rand_buf(c.V * c.C, 1), c.wpe = rand_buf(c.T * c.C, 1);
    c.out = falloc(c.B * c.T * c.C), c.dout = rand_buf(c.B * c.T * c.C, 1);
    c.dwte = falloc(c.V * c.C), c.dwpe = falloc(c.T * c.C);
    gc_op op = {"embedding", &c, emb_fw, emb_bw, c.out, c.dout, c.B * c.T * c.C,
                {{"wte", c.wte, c.dwte, c.V * c.C}, {"wpe", c.wpe, c.dwpe, c.T * c.C}}, 2,
                H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.wte), free(c.wpe), free(c.out), free(c.dout), free(c.dwte), free(c.dwpe);
}

typedef struct { int B, Cin, H, Wd, P, W; float *img, *w, *out, *cols, *scratch, *dout, *dimg, *dw; } patch_ctx;
static void patch_fw(void *p) {
    patch_ctx *c = p;
    must(patch_embed_forward(c->out, c->cols, c->img, c->w, c->B, c->Cin, c->H, c->Wd, c->P, c->W, NULL));
}
static void patch_bw(void *p) {
    patch_ctx *c = p;
    patch_embed_backward(c->dimg, c->dw, c->dout, c->cols, c->w, c->scratch, c->B, c->Cin, c->H,
                         c->Wd, c->P, c->W);
}
static void test_patch_embed(void **state) {
    patch_ctx c = {.B = 2, .Cin = 3, .H = 9, .Wd = 6, .P = 3, .W = 5};
    size_t nimg = (size_t)c.B * c.Cin * c.H * c.Wd, K = (size_t)c.Cin * c.P * c.P;
    size_t NP = (size_t)(c.H / c.P) * (c.Wd / c.P);
    c.img = rand_buf(nimg, 1), c.w = rand_buf(c.W * K, 0.3f), c.out = falloc(c.B * NP * c.W);
    c.cols = falloc(c.B * NP * K), c.scratch = falloc(patch_embed_scratch_floats(c.B, c.Cin, c.H, c.Wd, c.P));
    c.dout = rand_buf(c.B * NP * c.W, 1), c.dimg = falloc(nimg), c.dw = falloc(c.W * K);
    gc_op op = {"patch_embed", &c, patch_fw, patch_bw, c.out, c.dout, c.B * NP * c.W,
                {{"img", c.img, c.dimg, nimg}, {"weight", c.w, c.dw, c.W * K}}, 2, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.img), free(c.w), free(c.out), free(c.cols), free(c.scratch), free(c.dout);
    free(c.dimg), free(c.dw);
}

typedef struct { int B, NP, NK, W; const int32_t *keep; float *inp, *cls, *pos, *out, *dout, *dinp, *dcls, *dpos; } clspos_ctx;
static void clspos_fw(void *p) {
    clspos_ctx *c = p;
    cls_pos_forward(c->out, c->inp, c->cls, c->pos, c->keep, c->B, c->NP, c->NK, c->W);
}
static void clspos_bw(void *p) {
    clspos_ctx *c = p;
    cls_pos_backward(c->dinp, c->dcls, c->dpos, c->dout, c->keep, c->B, c->NP, c->NK, c->W);
}
/* keep NULL: every patch; else MAE's visible patches only (masked patches
 * and their positions get no gradient, checked by the finite differences) */
static void check_cls_pos(const int32_t *keep, int NK) {
    clspos_ctx c = {.B = 3, .NP = 5, .NK = keep ? NK : 5, .W = 7, .keep = keep};
    size_t T = c.NP + 1, To = c.NK + 1;
    c.inp = rand_buf(c.B * c.NP * c.W, 1), c.cls = rand_buf(c.W, 1), c.pos = rand_buf(T * c.W, 1);
    c.out = falloc(c.B * To * c.W), c.dout = rand_buf(c.B * To * c.W, 1);
    c.dinp = falloc(c.B * c.NP * c.W), c.dcls = falloc(c.W), c.dpos = falloc(T * c.W);
    gc_op op = {"cls_pos", &c, clspos_fw, clspos_bw, c.out, c.dout, c.B * To * c.W,
                {{"inp", c.inp, c.dinp, c.B * c.NP * c.W}, {"cls", c.cls, c.dcls, c.W},
                 {"pos", c.pos, c.dpos, T * c.W}}, 3, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    /* the finite differences checked that masked rows get no gradient; the
     * first kept patch of sample 1 is patch 2: token 1 = its embedding + position 3 */
    if (keep)
        assert_float_equal(c.out[(1 * To + 1) * c.W], c.inp[(1 * c.NP + 2) * c.W] + c.pos[3 * c.W], 1e-6);
    free(c.inp), free(c.cls), free(c.pos), free(c.out), free(c.dout), free(c.dinp), free(c.dcls), free(c.dpos);
}
static void test_cls_pos(void **state) {
    (void)state;
    check_cls_pos(NULL, 0);
    const int32_t keep[3 * 2] = {0, 3, 2, 4, 1, 2}; /* two of five patches per sample */
    check_cls_pos(keep, 2);
}

/* ---- pooling and normalisation ----------------------------------------------------- */
typedef struct { int B, T, C; int32_t *index; float *inp, *out, *norm, *dout, *dinp; } pool_ctx;
static void pool_fw(void *p) { pool_ctx *c = p; token_pool_forward(c->out, c->inp, c->index, c->B, c->T, c->C); }
static void pool_bw(void *p) { pool_ctx *c = p; token_pool_backward(c->dinp, c->dout, c->index, c->B, c->T, c->C); }
static void test_token_pool(void **state) {
    pool_ctx c = {.B = 3, .T = 5, .C = 7};
    int32_t ids[15] = {1, 9, 4, 0, 0, 2, 3, 3, 8, 0, 9, 1, 9, 9, 2}, index[3];
    pool_index_argmax(index, ids, c.B, c.T, -1);
    assert_int_equal(index[0], 1);
    assert_int_equal(index[1], 3);
    assert_int_equal(index[2], 0); // ties: the first maximum
    int32_t skipped[3], all_skip[2] = {9, 9}; /* id 9 skipped (a fusion model's [MASK]: the largest, not the end) */
    pool_index_argmax(skipped, ids, c.B, c.T, 9);
    assert_int_equal(skipped[0], 2);
    assert_int_equal(skipped[1], 3);
    assert_int_equal(skipped[2], 4);
    pool_index_argmax(skipped, all_skip, 1, 2, 9);
    assert_int_equal(skipped[0], 0); // nothing but skipped ids: the first position
    c.index = index;
    c.inp = rand_buf(c.B * c.T * c.C, 1), c.out = falloc(c.B * c.C), c.dout = rand_buf(c.B * c.C, 1);
    c.dinp = falloc(c.B * c.T * c.C);
    gc_op op = {"token_pool", &c, pool_fw, pool_bw, c.out, c.dout, c.B * c.C,
                {{"inp", c.inp, c.dinp, c.B * c.T * c.C}}, 1, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.inp), free(c.out), free(c.dout), free(c.dinp);
}

static void l2_fw(void *p) { pool_ctx *c = p; l2norm_forward(c->out, c->norm, c->inp, c->B, c->C); }
static void l2_bw(void *p) { pool_ctx *c = p; l2norm_backward(c->dinp, c->dout, c->out, c->norm, c->B, c->C); }
static void test_l2norm(void **state) {
    pool_ctx c = {.B = 4, .C = 9};
    c.inp = rand_buf(c.B * c.C, 1), c.out = falloc(c.B * c.C), c.norm = falloc(c.B);
    c.dout = rand_buf(c.B * c.C, 1), c.dinp = falloc(c.B * c.C);
    gc_op op = {"l2norm", &c, l2_fw, l2_bw, c.out, c.dout, c.B * c.C,
                {{"inp", c.inp, c.dinp, c.B * c.C}}, 1, H_STEP, ATOL, RTOL};
    gradcheck(&op);
    free(c.inp), free(c.out), free(c.norm), free(c.dout), free(c.dinp);
}

/* ---- the CLIP loss, through the normalisation as in training ------------------------- */
typedef struct {
    int B, D;
    float *img_raw, *txt_raw, *img, *txt, *img_norm, *txt_norm, *pi, *pt, *scratch;
    float ls, loss, dloss, dls, *dimg, *dtxt, *dimg_raw, *dtxt_raw;
} clip_ctx;
static void clip_fw(void *p) {
    clip_ctx *c = p;
    l2norm_forward(c->img, c->img_norm, c->img_raw, c->B, c->D);
    l2norm_forward(c->txt, c->txt_norm, c->txt_raw, c->B, c->D);
    must(clip_loss_forward(&c->loss, c->pi, c->pt, c->img, c->txt, c->ls, c->B, c->D, NULL));
}
static void clip_bw(void *p) {
    clip_ctx *c = p;
    memset(c->dimg, 0, sizeof(float) * c->B * c->D);
    memset(c->dtxt, 0, sizeof(float) * c->B * c->D);
    clip_loss_backward(c->dimg, c->dtxt, &c->dls, c->dloss, c->pi, c->pt, c->img, c->txt, c->ls,
                       c->scratch, c->B, c->D);
    l2norm_backward(c->dimg_raw, c->dimg, c->img, c->img_norm, c->B, c->D);
    l2norm_backward(c->dtxt_raw, c->dtxt, c->txt, c->txt_norm, c->B, c->D);
}
static void test_clip_loss(void **state) {
    clip_ctx c = {.B = 7, .D = 5, .ls = 1.2f, .dloss = 1.0f};
    size_t n = (size_t)c.B * c.D;
    c.img_raw = rand_buf(n, 1), c.txt_raw = rand_buf(n, 1), c.img = falloc(n), c.txt = falloc(n);
    c.img_norm = falloc(c.B), c.txt_norm = falloc(c.B), c.pi = falloc(c.B * c.B);
    c.pt = falloc(c.B * c.B), c.scratch = falloc(clip_loss_scratch_floats(c.B, c.D));
    c.dimg = falloc(n), c.dtxt = falloc(n), c.dimg_raw = falloc(n), c.dtxt_raw = falloc(n);
    gc_op op = {"clip_loss", &c, clip_fw, clip_bw, &c.loss, &c.dloss, 1,
                {{"img", c.img_raw, c.dimg_raw, n}, {"txt", c.txt_raw, c.dtxt_raw, n},
                 {"logit_scale", &c.ls, &c.dls, 1}}, 3, 1e-3, ATOL, RTOL};
    gradcheck(&op);
    free(c.img_raw), free(c.txt_raw), free(c.img), free(c.txt), free(c.img_norm), free(c.txt_norm);
    free(c.pi), free(c.pt), free(c.scratch), free(c.dimg), free(c.dtxt), free(c.dimg_raw), free(c.dtxt_raw);
}

/* ---- SigLIP's sigmoid loss (features not normalised: the loss does not need it) ------ */
typedef struct {
    int B, D;
    float *img, *txt, *z, *scratch, *dtxt_w;
    float ls, lb, loss, dloss, dls, dlb, *dimg, *dtxt;
} siglip_ctx;
static void siglip_fw(void *p) {
    siglip_ctx *c = p;
    must(siglip_loss_forward(&c->loss, c->z, c->img, c->txt, c->ls, c->lb, c->B, c->B, 0, c->D, NULL));
}
static void siglip_bw(void *p) {
    siglip_ctx *c = p;
    siglip_loss_backward(c->dimg, c->dtxt_w, &c->dls, &c->dlb, c->dloss, c->z, c->img, c->txt,
                         c->ls, c->lb, c->scratch, c->B, c->B, 0, c->D);
    for (int k = 0; k < c->B * c->D; k++) c->dtxt[k] += c->dtxt_w[k]; /* written, not accumulated */
}
static void test_siglip_loss(void **state) {
    siglip_ctx c = {.B = 6, .D = 5, .ls = 0.8f, .lb = -1.5f, .dloss = 1.0f};
    size_t n = (size_t)c.B * c.D;
    c.img = rand_buf(n, 1), c.txt = rand_buf(n, 1), c.z = falloc(c.B * c.B);
    c.scratch = falloc(n), c.dtxt_w = falloc(n), c.dimg = falloc(n), c.dtxt = falloc(n);
    gc_op op = {"siglip_loss", &c, siglip_fw, siglip_bw, &c.loss, &c.dloss, 1,
                {{"img", c.img, c.dimg, n}, {"txt", c.txt, c.dtxt, n},
                 {"logit_scale", &c.ls, &c.dls, 1}, {"logit_bias", &c.lb, &c.dlb, 1}}, 4, 1e-3, ATOL, RTOL};
    gradcheck(&op);
    free(c.img), free(c.txt), free(c.z), free(c.scratch), free(c.dtxt_w), free(c.dimg), free(c.dtxt);
}

/* ---- FILIP's token-wise loss (max over tokens: piecewise linear, h small) ------------- */
typedef struct {
    int B, Ti, Tt, D;
    int32_t lens[4], *arg;
    float *img, *txt, *pi, *pt, *sims, *scratch;
    float ls, loss, dloss, dls, *dimg, *dtxt;
} filip_ctx;
static void filip_fw(void *p) {
    filip_ctx *c = p;
    must(filip_loss_forward(&c->loss, c->pi, c->pt, c->sims, c->arg, c->img, c->txt, c->lens,
                            c->ls, c->scratch, c->B, c->Ti, c->Tt, c->D, NULL));
}
static void filip_bw(void *p) {
    filip_ctx *c = p;
    filip_loss_backward(c->dimg, c->dtxt, &c->dls, c->dloss, c->pi, c->pt, c->sims, c->arg,
                        c->img, c->txt, c->lens, c->ls, c->B, c->Ti, c->Tt, c->D);
}
static void test_filip_loss(void **state) {
    filip_ctx c = {.B = 4, .Ti = 3, .Tt = 5, .D = 4, .lens = {5, 2, 1, 4}, .ls = 0.9f, .dloss = 1.0f};
    size_t ni = (size_t)c.B * c.Ti * c.D, nt = (size_t)c.B * c.Tt * c.D;
    c.img = rand_buf(ni, 1), c.txt = rand_buf(nt, 1), c.pi = falloc(16), c.pt = falloc(16);
    c.sims = falloc(32), c.scratch = falloc(filip_scratch_floats(c.B, c.Ti, c.Tt));
    c.arg = malloc(sizeof(int32_t) * filip_saved_ints(c.B, c.Ti, c.Tt));
    c.dimg = falloc(ni), c.dtxt = falloc(nt);
    gc_op op = {"filip_loss", &c, filip_fw, filip_bw, &c.loss, &c.dloss, 1,
                {{"img", c.img, c.dimg, ni}, {"txt", c.txt, c.dtxt, nt},
                 {"logit_scale", &c.ls, &c.dls, 1}}, 3, 1e-3, ATOL, RTOL};
    gradcheck(&op);
    free(c.img), free(c.txt), free(c.pi), free(c.pt), free(c.sims), free(c.scratch), free(c.arg);
    free(c.dimg), free(c.dtxt);
}

/* ---- a whole block ------------------------------------------------------------------ */
typedef struct {
    block_dims d; block_params w, g; block_acts a;
    float *wbuf, *gbuf, *abuf, *inp, *out, *dout, *dinp, *scratch;
} block_ctx;
static void block_fw(void *p) { block_ctx *c = p; must(block_forward(c->out, &c->a, c->inp, &c->w, &c->d, NULL)); }
static void block_bw(void *p) {
    block_ctx *c = p;
    block_backward(c->dinp, &c->g, c->dout, c->inp, &c->a, &c->w, c->scratch, &c->d);
}
static void check_block(const char *name, block_dims d) {
    block_ctx c = {.d = d};
    size_t np = block_params_bind(&c.w, NULL, &d), NC = (size_t)d.B * d.T * d.C;
    c.wbuf = rand_buf(np, 0.3f), c.gbuf = falloc(np);
    block_params_bind(&c.w, c.wbuf, &d);
    block_params_bind(&c.g, c.gbuf, &d);
    c.abuf = falloc(block_acts_bind(&c.a, NULL, &d));
    block_acts_bind(&c.a, c.abuf, &d);
    c.inp = rand_buf(NC, 1), c.out = falloc(NC), c.dout = rand_buf(NC, 1), c.dinp = falloc(NC);
    c.scratch = falloc(block_scratch_floats(&d));
    gc_op op = {name, &c, block_fw, block_bw, c.out, c.dout, NC,
                {{"inp", c.inp, c.dinp, NC}}, 1, H_STEP, ATOL, RTOL};
    block_param_spec specs[BLOCK_NPARAMS];
    block_param_specs(&d, specs);
    assert_true(1 + BLOCK_NPARAMS <= (int)(sizeof op.in / sizeof op.in[0]));
    for (int i = 0; i < BLOCK_NPARAMS; i++) {
        size_t n = block_param_numel(&specs[i]);
        op.in[op.nin++] = (gc_input){specs[i].name, *block_params_slot(&c.w, i),
                                     *block_params_slot(&c.g, i), n};
    }
    gradcheck(&op);
    free(c.wbuf), free(c.gbuf), free(c.abuf), free(c.inp), free(c.out), free(c.dout);
    free(c.dinp), free(c.scratch);
}
static void test_block(void **state) {
    check_block("block", (block_dims){.B = 2, .T = 5, .C = 9, .NH = 3, .hidden = 17,
                                      .act = VLP_ACT_GELU, .eps = 1e-5f});
}
static void test_block_causal(void **state) {
    check_block("block causal quickgelu",
                (block_dims){.B = 2, .T = 6, .C = 10, .NH = 2, .hidden = 23, .causal = true,
                             .act = VLP_ACT_QUICKGELU, .eps = 1e-5f});
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),      cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),        cmocka_unit_test(test_quickgelu),
        cmocka_unit_test(test_softmax),     cmocka_unit_test(test_residual),
        cmocka_unit_test(test_mha),         cmocka_unit_test(test_mha_causal),
        cmocka_unit_test(test_embedding),   cmocka_unit_test(test_patch_embed),
        cmocka_unit_test(test_cls_pos),     cmocka_unit_test(test_token_pool),
        cmocka_unit_test(test_l2norm),      cmocka_unit_test(test_clip_loss),
        cmocka_unit_test(test_siglip_loss),  cmocka_unit_test(test_filip_loss),
        cmocka_unit_test(test_block),       cmocka_unit_test(test_block_causal),
    };
    return cmocka_run_group_tests_name("ops_grad", tests, NULL, NULL);
}
