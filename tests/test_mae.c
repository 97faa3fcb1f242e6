/* Masked image modeling (MAE) against tests/ref/make_mae_ref.py (PyTorch,
 * float64): the masked encoder (visible patches only, each with its
 * position), the light decoder with mask tokens, MAE's norm_pix_loss on the
 * masked patches, and every parameter's gradient (loss 1e-5 relative,
 * gradients atol 1e-5 + rtol 1e-4); the joint objective (masked contrastive
 * + weighted MAE) likewise; finite differences through the whole model;
 * the masking itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "loss/loss.h"
#include "model/clip.h"
#include "train/objectives/shared.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

typedef struct mae_ref {
    vlpt_file *f;
    clip_model m;
    int B, S, T, E, NP, NK;
    const float *images;
    const int32_t *ids, *keep;
} mae_ref;

static void open_ref(mae_ref *r) {
    r->f = ref_open("mae_step");
    const int32_t *x; /* the decoder's width, layers, heads, MLP width; the patches kept */
    clip_config cfg = ref_clip_config(r->f, &r->B, 5, &x);
    cfg.mae = (clip_mae_cfg){.width = x[0], .layers = x[1], .heads = x[2], .mlp_width = x[3]};
    r->NK = x[4];
    vlp_error err = {0};
    check(clip_init(&r->m, &cfg, &err), &err);
    ref_load_weights(&r->m, r->f);
    check(clip_reserve(&r->m, r->B, &err), &err);
    r->S = cfg.vision.image_size, r->T = cfg.text.context_length, r->E = cfg.embed_dim;
    r->NP = r->m.mae.dims.NP;
    r->images = ref_f32(r->f, "images", (size_t)r->B * 3 * r->S * r->S);
    r->ids = ref_i32(r->f, "ids", (size_t)r->B * r->T);
    r->keep = ref_i32(r->f, "keep", (size_t)r->B * r->NK);
}

static void close_ref(mae_ref *r) {
    clip_free(&r->m);
    vlpt_free(r->f);
}

static void assert_grads(const clip_model *m, const vlpt_file *f, const char *prefix) {
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        assert_close(name, m->grads + p->offset, ref_f32(f, name, p->numel), p->numel, 1e-5, 1e-4);
    }
}

static void test_mae_matches_pytorch(void **state) {
    mae_ref r;
    open_ref(&r);
    clip_model *m = &r.m;
    vlp_error err = {0};
    /* the model has exactly the reference's parameters plus nothing */
    int nref = 0;
    for (int i = 0; i < vlpt_count(r.f); i++) {
        const char *n = vlpt_at(r.f, i)->name;
        nref += !strncmp(n, "grad.", 5);
    }
    assert_int_equal(m->nparams, nref);
    double denom = (double)r.B * (r.NP - r.NK);
    memset(m->grads, 0, sizeof(float) * m->nfloats);
    check(clip_image_forward_masked(m, r.images, r.keep, r.NK, r.B, &err), &err);
    float loss;
    check(clip_mae_step(m, r.B, denom, 1.0f, &loss, &err), &err);
    assert_close("MAE loss", &loss, ref_f32(r.f, "loss", 1), 1, 0.0, 1e-5);
    clip_image_backward_with_tokens(m, NULL, m->mae.dimg, r.B);
    assert_grads(m, r.f, "grad."); /* the text tower's are zero in both */
    close_ref(&r);
}

/* FLIP-style contrastive on the masked images' class token + 0.5 · MAE */
static void test_joint_matches_pytorch(void **state) {
    mae_ref r;
    open_ref(&r);
    clip_model *m = &r.m;
    vlp_error err = {0};
    int B = r.B, E = r.E;
    const float *wts = ref_f32(r.f, "weights", 2);
    double denom = (double)B * (r.NP - r.NK);
    memset(m->grads, 0, sizeof(float) * m->nfloats);
    check(clip_image_forward_masked(m, r.images, r.keep, r.NK, B, &err), &err);
    check(clip_text_forward(m, r.ids, B, &err), &err);
    float *pi = falloc((size_t)B * B), *pt = falloc((size_t)B * B);
    float *scratch = falloc(clip_loss_scratch_floats(B, E));
    float *dimg = falloc((size_t)B * E), *dtxt = falloc((size_t)B * E);
    float lclip, lmae;
    check(clip_loss_forward(&lclip, pi, pt, m->image_acts.emb, m->text_acts.emb, *m->views.logit_scale, B, E, &err),
          &err);
    clip_loss_backward(dimg, dtxt, m->grad_views.logit_scale, wts[0], pi, pt, m->image_acts.emb, m->text_acts.emb,
                       *m->views.logit_scale, scratch, B, E);
    check(clip_mae_step(m, B, denom, wts[1], &lmae, &err), &err);
    float total = wts[0] * lclip + wts[1] * lmae;
    assert_close("joint loss", &total, ref_f32(r.f, "joint_loss", 1), 1, 0.0, 1e-5);
    clip_image_backward_with_tokens(m, dimg, m->mae.dimg, B);
    clip_text_backward(m, dtxt, B);
    assert_grads(m, r.f, "joint_grad.");
    free(pi), free(pt), free(scratch), free(dimg), free(dtxt);
    close_ref(&r);
}

/* keeping every patch is the plain forward, bit for bit */
static void test_unmasked_forward_is_plain(void **state) {
    mae_ref r;
    open_ref(&r);
    clip_model *m = &r.m;
    vlp_error err = {0};
    int B = r.B, E = r.E, NP = r.NP;
    int32_t *all = malloc(sizeof(int32_t) * B * NP);
    for (int i = 0; i < B * NP; i++) all[i] = i % NP;
    check(clip_image_forward(m, r.images, B, &err), &err);
    float *plain = falloc((size_t)B * E);
    memcpy(plain, m->image_acts.emb, sizeof(float) * B * E);
    check(clip_image_forward_masked(m, r.images, all, NP, B, &err), &err);
    assert_memory_equal(plain, m->image_acts.emb, sizeof(float) * B * E);
    /* and MAE refuses a forward that masked nothing */
    float loss;
    assert_int_equal(clip_mae_step(m, B, 1.0, 1.0f, &loss, &err), VLP_ERR_ARG);
    /* a keep list out of order or out of range is refused, naming the sample */
    int32_t keep4[4 * 4];
    for (int i = 0; i < 4 * 4; i++) keep4[i] = 1 + 2 * (i % 4);
    keep4[4 + 1] = 0;
    assert_int_equal(clip_image_forward_masked(m, r.images, keep4, 4, 4, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "sample 1"));
    keep4[4 + 1] = 3, keep4[3] = NP;
    assert_int_equal(clip_image_forward_masked(m, r.images, keep4, 4, 4, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "sample 0"));
    free(all), free(plain);
    close_ref(&r);
}

/* ---- finite differences through the whole model --------------------------------------- */

typedef struct mae_fd_ctx {
    clip_model m;
    const float *images;
    const int32_t *keep;
    int B, NK;
    double denom;
    float loss, dloss;
} mae_fd_ctx;

static void mae_fd_fw(void *p) {
    mae_fd_ctx *c = p;
    vlp_error err = {0};
    check(clip_image_forward_masked(&c->m, c->images, c->keep, c->NK, c->B, &err), &err);
    check(clip_mae_step(&c->m, c->B, c->denom, 0.0f, &c->loss, &err), &err);
}

static void mae_fd_bw(void *p) {
    mae_fd_ctx *c = p;
    vlp_error err = {0};
    float loss;
    check(clip_mae_step(&c->m, c->B, c->denom, c->dloss, &loss, &err), &err);
    clip_image_backward_with_tokens(&c->m, NULL, c->m.mae.dimg, c->B);
}

static void test_mae_finite_differences(void **state) {
    clip_config cfg = {.embed_dim = 8,
                       .vision = {.image_size = 8, .patch_size = 2, .width = 16, .layers = 2,
                                  .heads = 2, .mlp_width = 32},
                       .text = {.context_length = 6, .vocab_size = 20, .width = 16, .layers = 1,
                                .heads = 2, .mlp_width = 32},
                       .mae = {.width = 12, .layers = 1, .heads = 3, .mlp_width = 24}};
    mae_fd_ctx c = {.B = 3, .NK = 4, .dloss = 1.0f};
    vlp_error err = {0};
    check(clip_init(&c.m, &cfg, &err), &err);
    clip_init_weights(&c.m, 9);
    check(clip_reserve(&c.m, c.B, &err), &err);
    int NP = c.m.mae.dims.NP; /* 16 */
    c.denom = (double)c.B * (NP - c.NK);
    rng r = {4};
    float *img = falloc((size_t)c.B * 3 * 8 * 8);
    fill_normal(&r, img, (size_t)c.B * 3 * 8 * 8, 1.0f, 0.0f);
    int32_t keep[3 * 4];
    for (int b = 0; b < c.B; b++) mae_random_keep(keep + b * c.NK, NP, c.NK, 100 + b);
    c.images = img, c.keep = keep;
    const char *names[] = {"mae_decoder.pred.weight", "mae_decoder.mask_token",
                           "mae_decoder.positional_embedding", "mae_decoder.embed.weight",
                           "mae_decoder.resblocks.0.attn.in_proj_weight", "visual.proj",
                           "visual.ln_post.weight", "visual.transformer.resblocks.0.mlp.c_fc.weight",
                           "visual.positional_embedding", "visual.class_embedding",
                           "visual.conv1.weight"};
    gc_op op = {.name = "MAE through the model", .ctx = &c, .forward = mae_fd_fw,
                .backward = mae_fd_bw, .out = &c.loss, .dout = &c.dloss, .nout = 1,
                .h = 1e-2, .atol = 2e-4, .rtol = 2e-2};
    for (int i = 0; i < 11; i++) {
        const clip_param *p = clip_param_find(&c.m, names[i]);
        assert_non_null(p);
        op.in[op.nin++] = (gc_input){names[i], c.m.weights + p->offset, c.m.grads + p->offset, p->numel};
    }
    gradcheck(&op);
    /* positions of patches no sample kept get no encoder gradient */
    const clip_param *pos = clip_param_find(&c.m, "visual.positional_embedding");
    memset(c.m.grads, 0, sizeof(float) * c.m.nfloats);
    mae_fd_fw(&c), mae_fd_bw(&c);
    for (int p = 0; p < NP; p++) {
        bool kept = false;
        for (int i = 0; i < c.B * c.NK; i++) kept |= keep[i] == p;
        float g = c.m.grads[pos->offset + (size_t)(1 + p) * 16];
        if (!kept) assert_true(g == 0.0f);
        else assert_true(g != 0.0f);
    }
    free(img);
    clip_free(&c.m);
}

/* ---- the loss and the masks ------------------------------------------------------------- */

static void test_mae_loss_by_hand(void **state) {
    /* one sample, two patches of 3 pixels; patch 0 visible, patch 1 masked:
     * pixels (1, 2, 3) → mean 2, unbiased variance 1 → target (−1, 0, 1)/√(1 + 1e-6) */
    const float pixels[6] = {5, 5, 5, 1, 2, 3};
    const float pred[9] = {7, 7, 7, 9, 9, 9, 0, 0, 0}; /* class token, patch 0, patch 1 */
    const int32_t keep[1] = {0};
    vlp_error err = {0};
    float loss, dpred[9];
    check(mae_loss_forward(&loss, pred, pixels, keep, 1, 2, 1, 3, 1.0, &err), &err);
    double want = 2.0 / 3.0 / (1.0 + 1e-6);
    assert_float_equal(loss, want, 1e-6);
    /* the divisor is the caller's (the whole batch's masked patches) */
    check(mae_loss_forward(&loss, pred, pixels, keep, 1, 2, 1, 3, 4.0, &err), &err);
    assert_float_equal(loss, want / 4, 1e-6);
    mae_loss_backward(dpred, pred, pixels, keep, 1.0f, 1, 2, 1, 3, 1.0);
    for (int k = 0; k < 6; k++) assert_true(dpred[k] == 0.0f); /* class token, visible patch */
    double t = 1.0 / sqrt(1.0 + 1e-6);
    assert_float_equal(dpred[6], 2.0 / 3.0 * t, 1e-6);
    assert_float_equal(dpred[7], 0.0, 1e-7);
    assert_float_equal(dpred[8], -2.0 / 3.0 * t, 1e-6);
    /* nothing masked: refused */
    const int32_t both[2] = {0, 1};
    assert_int_equal(mae_loss_forward(&loss, pred, pixels, both, 1, 2, 2, 3, 1.0, &err), VLP_ERR_ARG);
}

static void test_random_keep(void **state) {
    assert_int_equal(mae_keep_count(64, 0.75f), 16);
    assert_int_equal(mae_keep_count(196, 0.75f), 49); /* MAE: int(196 · 0.25) */
    assert_int_equal(mae_keep_count(49, 0.5f), 24);
    assert_int_equal(mae_keep_count(4, 0.99f), 1);
    enum { NP = 64, NK = 16, DRAWS = 4000 };
    int count[NP] = {0};
    int32_t keep[NK], again[NK];
    for (int s = 0; s < DRAWS; s++) {
        mae_random_keep(keep, NP, NK, 1000 + s);
        for (int j = 0; j < NK; j++) {
            assert_true(keep[j] >= 0 && keep[j] < NP);
            if (j) assert_true(keep[j] > keep[j - 1]); /* ascending, so distinct */
            count[keep[j]]++;
        }
    }
    /* every patch kept with probability 1/4: 1000 of 4000, σ ≈ 27 */
    for (int p = 0; p < NP; p++) assert_true(count[p] > 850 && count[p] < 1150);
    mae_random_keep(keep, NP, NK, 7), mae_random_keep(again, NP, NK, 7);
    assert_memory_equal(keep, again, sizeof keep);
    mae_random_keep(again, NP, NK, 8);
    assert_true(memcmp(keep, again, sizeof keep) != 0);
}

static void test_mae_config(void **state) {
    vlp_error err = {0};
    clip_config c;
    const char *base = "{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 8, \"patch_size\": 4, "
                       "\"width\": 16, \"layers\": 1, \"heads\": 2}, \"text_cfg\": {\"width\": 16, "
                       "\"heads\": 2, \"layers\": 1}, \"mae_cfg\": %s}";
    char json[512];
    snprintf(json, sizeof json, base, "{\"width\": 12, \"heads\": 3, \"layers\": 2, \"mlp_ratio\": 2}");
    check(clip_config_parse(json, "cfg", &c, &err), &err);
    assert_int_equal(c.mae.width, 12);
    assert_int_equal(c.mae.layers, 2);
    assert_int_equal(c.mae.mlp_width, 24);
    char *out = clip_config_to_json(&c);
    clip_config back;
    check(clip_config_parse(out, "round trip", &back, &err), &err);
    assert_memory_equal(&back.mae, &c.mae, sizeof c.mae);
    free(out);
    snprintf(json, sizeof json, base, "{\"width\": 10, \"heads\": 3}");
    assert_int_equal(clip_config_parse(json, "cfg", &c, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "mae_cfg.width"));
    snprintf(json, sizeof json, base, "[1]");
    assert_int_equal(clip_config_parse(json, "cfg", &c, &err), VLP_ERR_FORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mae_matches_pytorch),
        cmocka_unit_test(test_joint_matches_pytorch),
        cmocka_unit_test(test_unmasked_forward_is_plain),
        cmocka_unit_test(test_mae_finite_differences),
        cmocka_unit_test(test_mae_loss_by_hand),
        cmocka_unit_test(test_random_keep),
        cmocka_unit_test(test_mae_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
