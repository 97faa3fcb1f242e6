/* Parity with PyTorch: every op and a whole transformer block against the
 * float64 references written by tests/ref/make_ops_ref.py.
 * Tolerance, per op: |vlp − torch| <= ATOL + RTOL·|torch|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ops/fastmath.h"
#include "ops/ops.h"
#include "loss/loss.h"
#include "model/block.h"

/* fp32 ops: the loosest we allow is 1e-5 / 1e-4; the pointwise ops
 * are held tighter. */
#define ATOL 1e-5
#define RTOL 1e-4
#define ATOL_POINTWISE 1e-6
#define RTOL_POINTWISE 1e-5

static void ok(vlp_err e, const vlp_error *err) {
    if (e != VLP_OK) {
        char buf[600];
        fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
    }
}

static void test_linear(void **state) {
    int N = 13, C = 19, OC = 11;
    vlpt_file *f = ref_open("linear");
    const float *inp = ref_f32(f, "inp", N * C), *w = ref_f32(f, "weight", OC * C),
                *b = ref_f32(f, "bias", OC), *dout = ref_f32(f, "dout", N * OC);
    float *out = falloc(N * OC), *dinp = falloc(N * C), *dw = falloc(OC * C), *db = falloc(OC);
    linear_forward(NULL, out, inp, w, b, N, C, OC);
    linear_backward(NULL, dinp, dw, db, dout, inp, w, N, C, OC);
    assert_close("linear out", out, ref_f32(f, "out", N * OC), N * OC, ATOL, RTOL);
    assert_close("linear dinp", dinp, ref_f32(f, "dinp", N * C), N * C, ATOL, RTOL);
    assert_close("linear dweight", dw, ref_f32(f, "dweight", OC * C), OC * C, ATOL, RTOL);
    assert_close("linear dbias", db, ref_f32(f, "dbias", OC), OC, ATOL, RTOL);
    free(out), free(dinp), free(dw), free(db);
    vlpt_free(f);
}

static void test_layernorm(void **state) {
    int N = 9, C = 37;
    vlpt_file *f = ref_open("layernorm");
    const float *inp = ref_f32(f, "inp", N * C), *w = ref_f32(f, "weight", C),
                *b = ref_f32(f, "bias", C), *dout = ref_f32(f, "dout", N * C);
    float eps = ref_f32(f, "eps", 1)[0];
    float *out = falloc(N * C), *mean = falloc(N), *rstd = falloc(N), *dinp = falloc(N * C),
          *dw = falloc(C), *db = falloc(C);
    layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    assert_close("layernorm out", out, ref_f32(f, "out", N * C), N * C, ATOL, RTOL);
    assert_close("layernorm mean", mean, ref_f32(f, "mean", N), N, ATOL, RTOL);
    assert_close("layernorm rstd", rstd, ref_f32(f, "rstd", N), N, ATOL, RTOL);
    assert_close("layernorm dinp", dinp, ref_f32(f, "dinp", N * C), N * C, ATOL, RTOL);
    assert_close("layernorm dweight", dw, ref_f32(f, "dweight", C), C, ATOL, RTOL);
    assert_close("layernorm dbias", db, ref_f32(f, "dbias", C), C, ATOL, RTOL);
    free(out), free(mean), free(rstd), free(dinp), free(dw), free(db);
    vlpt_free(f);
}

static void check_act(const char *name, vlp_act act) {
    size_t N = 257;
    vlpt_file *f = ref_open(name);
    const float *inp = ref_f32(f, "inp", N), *dout = ref_f32(f, "dout", N);
    float *out = falloc(N), *dinp = falloc(N);
    act_forward(act, out, inp, N);
    act_backward(act, dinp, dout, inp, N);
    char what[64];
    snprintf(what, sizeof what, "%s out", name);
    assert_close(what, out, ref_f32(f, "out", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    snprintf(what, sizeof what, "%s dinp", name);
    assert_close(what, dinp, ref_f32(f, "dinp", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    free(out), free(dinp);
    vlpt_free(f);
}

static void test_gelu(void **state) { check_act("gelu", VLP_ACT_GELU); }
static void test_quickgelu(void **state) { check_act("quickgelu", VLP_ACT_QUICKGELU); }

static void test_softmax(void **state) {
    int N = 7, C = 29;
    vlpt_file *f = ref_open("softmax");
    const float *inp = ref_f32(f, "inp", N * C), *dout = ref_f32(f, "dout", N * C);
    float *out = falloc(N * C), *dinp = falloc(N * C);
    softmax_forward(out, inp, N, C);
    softmax_backward(dinp, dout, out, N, C);
    assert_close("softmax out", out, ref_f32(f, "out", N * C), N * C, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    assert_close("softmax dinp", dinp, ref_f32(f, "dinp", N * C), N * C, ATOL, RTOL);
    free(out), free(dinp);
    vlpt_free(f);
}

static void test_residual(void **state) {
    size_t N = 100;
    vlpt_file *f = ref_open("residual");
    float *out = falloc(N), *da = falloc(N), *db = falloc(N);
    residual_forward(out, ref_f32(f, "a", N), ref_f32(f, "b", N), N);
    residual_backward(da, db, ref_f32(f, "dout", N), N);
    assert_close("residual out", out, ref_f32(f, "out", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    assert_close("residual da", da, ref_f32(f, "da", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    assert_close("residual db", db, ref_f32(f, "db", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    free(out), free(da), free(db);
    vlpt_free(f);
}

static void check_mha(const char *name) {
    vlpt_file *f = ref_open(name);
    const int32_t *dims = ref_i32(f, "dims", 5);
    int B = dims[0], T = dims[1], C = dims[2], NH = dims[3];
    bool causal = dims[4];
    size_t N = (size_t)B * T;
    const float *inp = ref_f32(f, "inp", N * C), *dout = ref_f32(f, "dout", N * C);
    const float *w_in = ref_f32(f, "in_proj_weight", 3 * C * C),
                *b_in = ref_f32(f, "in_proj_bias", 3 * C),
                *w_out = ref_f32(f, "out_proj_weight", C * C),
                *b_out = ref_f32(f, "out_proj_bias", C);
    size_t natt = (size_t)B * NH * T * T;
    float *out = falloc(N * C), *qkv = falloc(N * 3 * C), *att = falloc(natt),
          *heads = falloc(N * C), *scratch = falloc(mha_scratch_floats(B, T, C, NH));
    float *dinp = falloc(N * C), *dw_in = falloc(3 * C * C), *db_in = falloc(3 * C),
          *dw_out = falloc(C * C), *db_out = falloc(C);
    vlp_error err = {0};
    ok(mha_forward(NULL, out, qkv, att, heads, inp, w_in, b_in, w_out, b_out, B, T, C, NH, causal,
                   &err), &err);
    mha_backward(NULL, dinp, dw_in, db_in, dw_out, db_out, dout, inp, qkv, att, heads, NULL, w_in, w_out,
                 scratch, B, T, C, NH, true);
    assert_close("mha out", out, ref_f32(f, "out", N * C), N * C, ATOL, RTOL);
    assert_close("mha attention probabilities", att, ref_f32(f, "att", natt), natt, ATOL, RTOL);
    assert_close("mha dinp", dinp, ref_f32(f, "dinp", N * C), N * C, ATOL, RTOL);
    assert_close("mha din_proj_weight", dw_in, ref_f32(f, "din_proj_weight", 3 * C * C),
                 3 * C * C, ATOL, RTOL);
    assert_close("mha din_proj_bias", db_in, ref_f32(f, "din_proj_bias", 3 * C), 3 * C, ATOL,
                 RTOL);
    assert_close("mha dout_proj_weight", dw_out, ref_f32(f, "dout_proj_weight", C * C), C * C,
                 ATOL, RTOL);
    assert_close("mha dout_proj_bias", db_out, ref_f32(f, "dout_proj_bias", C), C, ATOL, RTOL);
    free(out), free(qkv), free(att), free(heads), free(scratch);
    free(dinp), free(dw_in), free(db_in), free(dw_out), free(db_out);
    vlpt_free(f);
}

static void test_mha(void **state) { check_mha("mha"); }
static void test_mha_causal(void **state) { check_mha("mha_causal"); }

static void test_embedding(void **state) {
    int B = 3, T = 7, C = 10, V = 23;
    vlpt_file *f = ref_open("embedding");
    const int32_t *ids = ref_i32(f, "ids", B * T);
    const float *wte = ref_f32(f, "wte", V * C), *wpe = ref_f32(f, "wpe", T * C);
    float *out = falloc(B * T * C), *dwte = falloc(V * C), *dwpe = falloc(T * C);
    vlp_error err = {0};
    ok(embedding_forward(out, ids, wte, wpe, B, T, C, V, &err), &err);
    embedding_backward(dwte, dwpe, ref_f32(f, "dout", B * T * C), ids, B, T, C, V);
    assert_close("embedding out", out, ref_f32(f, "out", B * T * C), B * T * C, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    assert_close("embedding dwte", dwte, ref_f32(f, "dwte", V * C), V * C, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    assert_close("embedding dwpe", dwpe, ref_f32(f, "dwpe", T * C), T * C, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    free(out), free(dwte), free(dwpe);
    vlpt_free(f);
}

static void test_patch_embed(void **state) {
    vlpt_file *f = ref_open("patch_embed");
    const int32_t *d = ref_i32(f, "dims", 6);
    int B = d[0], Cin = d[1], H = d[2], Wd = d[3], P = d[4], W = d[5];
    int NP = (H / P) * (Wd / P), K = Cin * P * P;
    size_t nimg = (size_t)B * Cin * H * Wd;
    const float *img = ref_f32(f, "img", nimg), *w = ref_f32(f, "weight", (size_t)W * K);
    float *out = falloc((size_t)B * NP * W), *cols = falloc((size_t)B * NP * K),
          *dimg = falloc(nimg), *dw = falloc((size_t)W * K),
          *scratch = falloc(patch_embed_scratch_floats(B, Cin, H, Wd, P));
    vlp_error err = {0};
    ok(patch_embed_forward(out, cols, img, w, B, Cin, H, Wd, P, W, &err), &err);
    patch_embed_backward(dimg, dw, ref_f32(f, "dout", (size_t)B * NP * W), cols, w, scratch, B,
                         Cin, H, Wd, P, W);
    assert_close("patch_embed out", out, ref_f32(f, "out", (size_t)B * NP * W), (size_t)B * NP * W,
                 ATOL, RTOL);
    assert_close("patch_embed dimg", dimg, ref_f32(f, "dimg", nimg), nimg, ATOL, RTOL);
    assert_close("patch_embed dweight", dw, ref_f32(f, "dweight", (size_t)W * K), (size_t)W * K,
                 ATOL, RTOL);
    free(out), free(cols), free(dimg), free(dw), free(scratch);
    vlpt_free(f);
}

static void test_cls_pos(void **state) {
    int B = 2, NP = 6, W = 10, T = NP + 1;
    vlpt_file *f = ref_open("cls_pos");
    float *out = falloc(B * T * W), *dinp = falloc(B * NP * W), *dcls = falloc(W),
          *dpos = falloc(T * W);
    cls_pos_forward(out, ref_f32(f, "inp", B * NP * W), ref_f32(f, "cls", W),
                    ref_f32(f, "pos", T * W), NULL, B, NP, NP, W);
    cls_pos_backward(dinp, dcls, dpos, ref_f32(f, "dout", B * T * W), NULL, B, NP, NP, W);
    assert_close("cls_pos out", out, ref_f32(f, "out", B * T * W), B * T * W, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    assert_close("cls_pos dinp", dinp, ref_f32(f, "dinp", B * NP * W), B * NP * W,
                 ATOL_POINTWISE, RTOL_POINTWISE);
    assert_close("cls_pos dcls", dcls, ref_f32(f, "dcls", W), W, ATOL_POINTWISE, RTOL_POINTWISE);
    assert_close("cls_pos dpos", dpos, ref_f32(f, "dpos", T * W), T * W, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    free(out), free(dinp), free(dcls), free(dpos);
    vlpt_free(f);
}

static void check_pool(const char *name, bool argmax) {
    int B = 4, T = 7, C = 5;
    vlpt_file *f = ref_open(name);
    int32_t index[4];
    if (argmax) {
        pool_index_argmax(index, ref_i32(f, "ids", B * T), B, T, -1);
        const int32_t *want = ref_i32(f, "index", B);
        for (int b = 0; b < B; b++)
            if (index[b] != want[b])
                fail_msg("argmax index of sequence %d: got %d, torch %d", b, index[b], want[b]);
    } else {
        pool_index_first(index, B);
    }
    float *out = falloc(B * C), *dinp = falloc(B * T * C);
    token_pool_forward(out, ref_f32(f, "inp", B * T * C), index, B, T, C);
    token_pool_backward(dinp, ref_f32(f, "dout", B * C), index, B, T, C);
    char what[64];
    snprintf(what, sizeof what, "%s out", name);
    assert_close(what, out, ref_f32(f, "out", B * C), B * C, 0, 0); /* a copy: exact */
    snprintf(what, sizeof what, "%s dinp", name);
    assert_close(what, dinp, ref_f32(f, "dinp", B * T * C), B * T * C, 0, 0);
    free(out), free(dinp);
    vlpt_free(f);
}

static void test_pool_first(void **state) { check_pool("pool_first", false); }
static void test_pool_argmax(void **state) { check_pool("pool_argmax", true); }

static void test_l2norm(void **state) {
    int N = 6, C = 17;
    vlpt_file *f = ref_open("l2norm");
    float *out = falloc(N * C), *norm = falloc(N), *dinp = falloc(N * C);
    l2norm_forward(out, norm, ref_f32(f, "inp", N * C), N, C);
    l2norm_backward(dinp, ref_f32(f, "dout", N * C), out, norm, N, C);
    assert_close("l2norm out", out, ref_f32(f, "out", N * C), N * C, ATOL_POINTWISE,
                 RTOL_POINTWISE);
    assert_close("l2norm norm", norm, ref_f32(f, "norm", N), N, ATOL_POINTWISE, RTOL_POINTWISE);
    assert_close("l2norm dinp", dinp, ref_f32(f, "dinp", N * C), N * C, ATOL, RTOL);
    free(out), free(norm), free(dinp);
    vlpt_free(f);
}

static void check_clip_loss(const char *name, int B, int D) {
    vlpt_file *f = ref_open(name);
    const float *img = ref_f32(f, "img", B * D), *txt = ref_f32(f, "txt", B * D);
    float ls = ref_f32(f, "logit_scale", 1)[0], dloss = ref_f32(f, "dloss", 1)[0];
    float loss = 0, dls = 0;
    float *pi = falloc(B * B), *pt = falloc(B * B), *dimg = falloc(B * D), *dtxt = falloc(B * D),
          *scratch = falloc(clip_loss_scratch_floats(B, D));
    vlp_error err = {0};
    ok(clip_loss_forward(&loss, pi, pt, img, txt, ls, B, D, &err), &err);
    clip_loss_backward(dimg, dtxt, &dls, dloss, pi, pt, img, txt, ls, scratch, B, D);
    assert_close("clip loss", &loss, ref_f32(f, "loss", 1), 1, ATOL, RTOL);
    assert_close("clip dimg", dimg, ref_f32(f, "dimg", B * D), B * D, ATOL, RTOL);
    assert_close("clip dtxt", dtxt, ref_f32(f, "dtxt", B * D), B * D, ATOL, RTOL);
    assert_close("clip dlogit_scale", &dls, ref_f32(f, "dlogit_scale", 1), 1, ATOL, RTOL);
    free(pi), free(pt), free(dimg), free(dtxt), free(scratch);
    vlpt_free(f);
}

static void test_clip_loss(void **state) { check_clip_loss("clip_loss", 8, 16); }
static void test_clip_loss_b13(void **state) { check_clip_loss("clip_loss_b13", 13, 7); }

static void check_block(const char *name) {
    vlpt_file *f = ref_open(name);
    const int32_t *dd = ref_i32(f, "dims", 7);
    block_dims d = {.B = dd[0], .T = dd[1], .C = dd[2], .NH = dd[3], .hidden = dd[4],
                    .causal = dd[5], .act = dd[6] ? VLP_ACT_QUICKGELU : VLP_ACT_GELU,
                    .eps = 1e-5f};
    size_t NC = (size_t)d.B * d.T * d.C;
    block_params w, g;
    size_t np = block_params_bind(&w, NULL, &d);
    float *wbuf = falloc(np), *gbuf = falloc(np);
    block_params_bind(&w, wbuf, &d);
    block_params_bind(&g, gbuf, &d);
    block_param_spec specs[BLOCK_NPARAMS];
    block_param_specs(&d, specs);
    for (int i = 0; i < BLOCK_NPARAMS; i++) {
        size_t n = block_param_numel(&specs[i]);
        memcpy(*block_params_slot(&w, i), ref_f32(f, specs[i].name, n), n * sizeof(float));
    }
    block_acts a;
    float *abuf = falloc(block_acts_bind(&a, NULL, &d));
    block_acts_bind(&a, abuf, &d);
    float *out = falloc(NC), *dinp = falloc(NC), *scratch = falloc(block_scratch_floats(&d));
    const float *inp = ref_f32(f, "inp", NC);
    vlp_error err = {0};
    ok(block_forward(out, &a, inp, &w, &d, &err), &err);
    block_backward(dinp, &g, ref_f32(f, "dout", NC), inp, &a, &w, scratch, &d);
    assert_close("block out", out, ref_f32(f, "out", NC), NC, ATOL, RTOL);
    assert_close("block dinp", dinp, ref_f32(f, "dinp", NC), NC, ATOL, RTOL);
    for (int i = 0; i < BLOCK_NPARAMS; i++) {
        size_t n = block_param_numel(&specs[i]);
        char gname[96];
        snprintf(gname, sizeof gname, "grad.%s", specs[i].name);
        assert_close(gname, *block_params_slot(&g, i), ref_f32(f, gname, n), n, ATOL, RTOL);
    }
    free(wbuf), free(gbuf), free(abuf), free(out), free(dinp), free(scratch);
    vlpt_free(f);
}

static void test_block(void **state) { check_block("block"); }
static void test_block_causal_quickgelu(void **state) { check_block("block_causal_quickgelu"); }

/* The vectorised exp at its edges: NaN in, NaN out (a fuzzed model's
 * overflowing activations once reached its int conversion with NaN, which
 * is undefined); ±inf saturate; a finite value within 2 ulp of libm. */
static void test_fastmath_edges(void **state) {
    assert_true(isnan(vlp_expf(NAN)));
    assert_true(vlp_expf(-INFINITY) >= 0.0f && vlp_expf(-INFINITY) < 1e-37f);
    assert_true(isfinite(vlp_expf(INFINITY)) && vlp_expf(INFINITY) > 1e38f);
    for (float x = -20.0f; x <= 20.0f; x += 0.37f)
        assert_true(fabsf(vlp_expf(x) - expf(x)) <= 2.5e-7f * expf(x));
    assert_true(isnan(vlp_erff(NAN)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fastmath_edges),
        cmocka_unit_test(test_linear),       cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),         cmocka_unit_test(test_quickgelu),
        cmocka_unit_test(test_softmax),      cmocka_unit_test(test_residual),
        cmocka_unit_test(test_mha),          cmocka_unit_test(test_mha_causal),
        cmocka_unit_test(test_embedding),    cmocka_unit_test(test_patch_embed),
        cmocka_unit_test(test_cls_pos),      cmocka_unit_test(test_pool_first),
        cmocka_unit_test(test_pool_argmax),  cmocka_unit_test(test_l2norm),
        cmocka_unit_test(test_clip_loss),    cmocka_unit_test(test_clip_loss_b13),
        cmocka_unit_test(test_block),        cmocka_unit_test(test_block_causal_quickgelu),
    };
    return cmocka_run_group_tests_name("ops_ref", tests, NULL, NULL);
}
