/* A whole CLIP training step (both towers, loss, backward) against the
 * PyTorch reference of tests/ref/make_clip_ref.py on the same weights and
 * batch: loss to 1e-5 relative, every gradient to atol 1e-5 + rtol 1e-4.
 * Also: the parameter table has open_clip's names and shapes, and the
 * initialisation has the statistics open_clip's has. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/clip.h"
#include "model/config_registry.h"
#include "loss/loss.h"
#include "train/optim.h"

static clip_config ref_config(const vlpt_file *f, int *batch) {
    return ref_clip_config(f, batch, 0, NULL);
}

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}


/* The reference's model with its weights, reserved for its batch. */
static vlpt_file *ref_model(clip_model *m, clip_config *cfg, int *B) {
    vlpt_file *f = ref_open("clip_step");
    *cfg = ref_config(f, B);
    vlp_error err = {0};
    check(clip_init(m, cfg, &err), &err);
    ref_load_weights(m, f);
    check(clip_reserve(m, *B, &err), &err);
    return f;
}

static void test_step_matches_pytorch(void **state) {
    int B;
    clip_config cfg;
    clip_model m;
    vlp_error err = {0};
    clip_step st = {0};
    vlpt_file *f = ref_model(&m, &cfg, &B);
    /* every parameter of the model is in the reference with the same shape, and
     * nothing else is: names and shapes are open_clip's */
    int nref_params = 0;
    for (int i = 0; i < vlpt_count(f); i++) {
        const char *n = vlpt_at(f, i)->name;
        if (strncmp(n, "grad.", 5) && strcmp(n, "config") && strcmp(n, "images") &&
            strcmp(n, "ids") && strcmp(n, "loss") && strncmp(n, "adamw_", 6))
            nref_params++;
    }
    assert_int_equal(m.nparams, nref_params); /* and ref_model found each one by name and shape */
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    check(clip_step_forward(&st, &m, ref_f32(f, "images", (size_t)B * 3 * S * S), ref_i32(f, "ids", (size_t)B * T),
                       B, &err), &err);
    assert_close("loss", &st.loss, ref_f32(f, "loss", 1), 1, 0.0, 1e-5);
    clip_step_backward(&st, &m, B);
    for (int i = 0; i < m.nparams; i++) {
        const clip_param *p = &m.params[i];
        char name[96];
        snprintf(name, sizeof name, "grad.%s", p->name);
        assert_close(name, m.grads + p->offset, ref_f32(f, name, p->numel), p->numel, 1e-5, 1e-4);
    }
    clip_step_free(&st);
    clip_free(&m);
    vlpt_free(f);
}

/* Gradient checkpointing: the same loss and every gradient bit for bit, in
 * less activation memory (one block's activations a tower). In bf16 the
 * plain model keeps its blocks' GEMM inputs in bf16 (kept16) where the
 * checkpointing one recomputes them: the same bits again. */
static void check_checkpointing(matmul_precision precision) {
    int B;
    clip_config cfg;
    clip_model plain, ck;
    vlp_error err = {0};
    vlpt_file *f = ref_model(&plain, &cfg, &B);
    check(clip_init(&ck, &cfg, &err), &err);
    memcpy(ck.weights, plain.weights, sizeof(float) * plain.nfloats);
    clip_set_checkpointing(&ck, true);
    check(clip_reserve(&ck, B, &err), &err);
    check(clip_set_precision(&plain, precision, 2, &err), &err); /* plain is reserved: binds anew */
    check(clip_set_precision(&ck, precision, 2, &err), &err);
    bool bf16 = precision == VLP_PRECISION_BF16; /* (without AVX512-BF16: the portable kernel) */
    assert_int_equal(plain.image_acts.blocks[0].kept16, bf16);
    assert_int_equal(plain.text_acts.blocks[0].kept16, bf16);
    assert_false(ck.image_acts.blocks[0].kept16);
    if (!(ck.arena_floats < plain.arena_floats))
        fail_msg("checkpointing takes %zu floats of activations, plain %zu", ck.arena_floats, plain.arena_floats);
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    const float *img = ref_f32(f, "images", (size_t)B * 3 * S * S);
    const int32_t *ids = ref_i32(f, "ids", (size_t)B * T);
    clip_step a = {0}, b = {0};
    for (int rep = 0; rep < 2; rep++) { /* twice: the second step starts from accumulated gradients */
        check(clip_step_forward(&a, &plain, img, ids, B, &err), &err);
        clip_step_backward(&a, &plain, B);
        check(clip_step_forward(&b, &ck, img, ids, B, &err), &err);
        clip_step_backward(&b, &ck, B);
        assert_memory_equal(&a.loss, &b.loss, sizeof(float));
        assert_memory_equal(plain.grads, ck.grads, sizeof(float) * plain.nfloats);
    }
    if (bf16) { /* back to fp32: bound anew without the kept activations, and it runs */
        check(clip_set_precision(&plain, VLP_PRECISION_FP32, 2, &err), &err);
        check(clip_set_precision(&ck, VLP_PRECISION_FP32, 2, &err), &err);
        assert_false(plain.image_acts.blocks[0].kept16);
        check(clip_step_forward(&a, &plain, img, ids, B, &err), &err);
        check(clip_step_forward(&b, &ck, img, ids, B, &err), &err);
        assert_memory_equal(&a.loss, &b.loss, sizeof(float));
    }
    clip_step_free(&a), clip_step_free(&b);
    clip_free(&plain), clip_free(&ck);
    vlpt_free(f);
}

static void test_checkpointing_same_gradients(void **state) {
    check_checkpointing(VLP_PRECISION_FP32);
    check_checkpointing(VLP_PRECISION_BF16);
}

/* The same step with the blocks' matmuls in bf16 (clip_set_precision):
 * close to the fp32 reference within bf16's precision — loss to 1e-2
 * relative, each gradient tensor to 5e-2 relative L2 error — and really not
 * fp32 (some gradient moves by more than 1e-4 relative). */
static void test_bf16_step_close_to_fp32_reference(void **state) {
    int B;
    clip_config cfg;
    clip_model m;
    vlp_error err = {0};
    clip_step st = {0};
    vlpt_file *f = ref_model(&m, &cfg, &B);
    check(clip_set_precision(&m, VLP_PRECISION_BF16, 8, &err), &err);
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    check(clip_step_forward(&st, &m, ref_f32(f, "images", (size_t)B * 3 * S * S),
                       ref_i32(f, "ids", (size_t)B * T), B, &err), &err);
    assert_close("bf16 loss", &st.loss, ref_f32(f, "loss", 1), 1, 0.0, 1e-2);
    clip_step_backward(&st, &m, B);
    double worst = 0.0;
    for (int i = 0; i < m.nparams; i++) {
        const clip_param *p = &m.params[i];
        char name[96];
        snprintf(name, sizeof name, "grad.%s", p->name);
        const float *want = ref_f32(f, name, p->numel), *got = m.grads + p->offset;
        double num = 0.0, den = 0.0;
        for (size_t k = 0; k < p->numel; k++) {
            num += ((double)got[k] - want[k]) * ((double)got[k] - want[k]);
            den += (double)want[k] * want[k];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!(rel < 5e-2)) fail_msg("bf16 %s: relative L2 error %.3g", name, rel);
        if (rel > worst) worst = rel;
    }
    printf("# bf16 step: loss %.6f (fp32 reference %.6f), worst gradient relative L2 error %.2e\n",
           st.loss, *ref_f32(f, "loss", 1), worst);
    assert_true(worst > 1e-4);
    /* back to fp32: the reference again, to its tolerances */
    check(clip_set_precision(&m, VLP_PRECISION_FP32, 1, &err), &err);
    memset(m.grads, 0, sizeof(float) * m.nfloats);
    check(clip_step_forward(&st, &m, ref_f32(f, "images", (size_t)B * 3 * S * S),
                       ref_i32(f, "ids", (size_t)B * T), B, &err), &err);
    assert_close("fp32 loss", &st.loss, ref_f32(f, "loss", 1), 1, 0.0, 1e-5);
    assert_int_equal(clip_set_precision(&m, (matmul_precision)7, 1, &err), VLP_ERR_ARG);
    clip_step_free(&st);
    clip_free(&m);
    vlpt_free(f);
}

/* FILIP through the whole model: the token head (every token through
 * ln_post/ln_final, the projection and the L2 norm) and the towers'
 * backward from token gradients, checked by finite differences on
 * parameters of both towers; and the token head's pooled token equals the
 * pooled embedding. */
typedef struct filip_model_ctx {
    clip_model m;
    const float *images;
    const int32_t *ids;
    int B, Tv, Tt, E;
    float *pi, *pt, *sims, *scratch, *dtok_img, *dtok_txt, *tok_img, *tok_txt;
    int32_t *arg, lens[8];
    float loss, dloss;
} filip_model_ctx;

static void filip_model_fw(void *p) {
    filip_model_ctx *c = p;
    vlp_error err = {0};
    check(clip_image_forward(&c->m, c->images, c->B, &err), &err);
    memcpy(c->tok_img, c->m.image_acts.tok_emb, sizeof(float) * c->B * c->Tv * c->E);
    check(clip_text_forward(&c->m, c->ids, c->B, &err), &err);
    memcpy(c->tok_txt, c->m.text_acts.tok_emb, sizeof(float) * c->B * c->Tt * c->E);
    for (int j = 0; j < c->B; j++) c->lens[j] = c->m.text_acts.pool_index[j] + 1;
    check(filip_loss_forward(&c->loss, c->pi, c->pt, c->sims, c->arg, c->tok_img, c->tok_txt,
                             c->lens, *c->m.views.logit_scale, c->scratch, c->B, c->Tv, c->Tt, c->E,
                             &err),
          &err);
}

static void filip_model_bw(void *p) {
    filip_model_ctx *c = p;
    vlp_error err = {0};
    memset(c->dtok_img, 0, sizeof(float) * c->B * c->Tv * c->E);
    memset(c->dtok_txt, 0, sizeof(float) * c->B * c->Tt * c->E);
    filip_loss_backward(c->dtok_img, c->dtok_txt, c->m.grad_views.logit_scale, c->dloss, c->pi, c->pt,
                        c->sims, c->arg, c->tok_img, c->tok_txt, c->lens, *c->m.views.logit_scale,
                        c->B, c->Tv, c->Tt, c->E);
    /* the text forward ran last: the image activations are intact, the text ones too */
    clip_image_backward_tokens(&c->m, c->dtok_img, c->B);
    clip_text_backward_tokens(&c->m, c->dtok_txt, c->B);
    (void)err;
}

static void test_filip_through_the_model(void **state) {
    clip_config cfg = {.embed_dim = 8,
                       .vision = {.image_size = 8, .patch_size = 4, .width = 16, .layers = 1,
                                  .heads = 2, .mlp_width = 32},
                       .text = {.context_length = 6, .vocab_size = 20, .width = 16, .layers = 1,
                                .heads = 2, .mlp_width = 32}};
    filip_model_ctx c = {.B = 4, .Tv = 5, .Tt = 6, .E = 8, .dloss = 1.0f};
    vlp_error err = {0};
    check(clip_init(&c.m, &cfg, &err), &err);
    clip_init_weights(&c.m, 5);
    clip_enable_token_head(&c.m);
    check(clip_reserve(&c.m, c.B, &err), &err);
    rng r = {8};
    float *img = falloc((size_t)c.B * 3 * 8 * 8);
    fill_normal(&r, img, (size_t)c.B * 3 * 8 * 8, 1.0f, 0.0f);
    int32_t ids[4 * 6] = {18, 3, 5, 19, 0, 0, 18, 7, 19, 0, 0, 0, 18, 2, 2, 4, 6, 19, 18, 19, 0, 0, 0, 0};
    c.images = img, c.ids = ids;
    c.pi = falloc(16), c.pt = falloc(16), c.sims = falloc(32);
    c.scratch = falloc(filip_scratch_floats(c.B, c.Tv, c.Tt));
    c.arg = malloc(sizeof(int32_t) * filip_saved_ints(c.B, c.Tv, c.Tt));
    c.tok_img = falloc((size_t)c.B * c.Tv * c.E), c.tok_txt = falloc((size_t)c.B * c.Tt * c.E);
    c.dtok_img = falloc((size_t)c.B * c.Tv * c.E), c.dtok_txt = falloc((size_t)c.B * c.Tt * c.E);
    filip_model_fw(&c);
    /* the class token's features are the pooled image embedding; the end token's the text's */
    for (int b = 0; b < c.B; b++) {
        assert_close("image cls token", c.tok_img + (size_t)b * c.Tv * c.E, c.m.image_acts.emb + b * c.E,
                     c.E, 1e-6, 1e-5);
        assert_close("text end token", c.tok_txt + ((size_t)b * c.Tt + c.lens[b] - 1) * c.E,
                     c.m.text_acts.emb + b * c.E, c.E, 1e-6, 1e-5);
    }
    const char *names[] = {"visual.proj", "visual.transformer.resblocks.0.mlp.c_fc.weight",
                           "visual.conv1.weight", "text_projection",
                           "transformer.resblocks.0.attn.in_proj_weight", "token_embedding.weight",
                           "logit_scale"};
    gc_op op = {.name = "filip through the model", .ctx = &c, .forward = filip_model_fw,
                .backward = filip_model_bw, .out = &c.loss, .dout = &c.dloss, .nout = 1};
    for (int i = 0; i < 7; i++) {
        const clip_param *p = clip_param_find(&c.m, names[i]);
        assert_non_null(p);
        op.in[op.nin++] = (gc_input){names[i], c.m.weights + p->offset, c.m.grads + p->offset, p->numel};
    }
    /* the maxima make the loss piecewise smooth: steps small enough to rarely
     * cross a switch of arg-max, tolerances above fp32's noise at that step
     * (~1e-3) and below a wiring error's (the test below is exact) */
    op.h = 1e-4, op.atol = 5e-3, op.rtol = 1e-2;
    gradcheck(&op);

    /* exact: the token head's backward with a gradient on the pooled token
     * only is the pooled head's backward */
    float *g_pooled = malloc(sizeof(float) * c.m.nfloats);
    float *demb = falloc((size_t)c.B * c.E);
    fill_normal(&r, demb, (size_t)c.B * c.E, 1.0f, 0.0f);
    filip_model_fw(&c);
    memset(c.m.grads, 0, sizeof(float) * c.m.nfloats);
    clip_text_backward(&c.m, demb, c.B);
    clip_image_backward(&c.m, demb, c.B);
    memcpy(g_pooled, c.m.grads, sizeof(float) * c.m.nfloats);
    memset(c.m.grads, 0, sizeof(float) * c.m.nfloats);
    memset(c.dtok_img, 0, sizeof(float) * c.B * c.Tv * c.E);
    memset(c.dtok_txt, 0, sizeof(float) * c.B * c.Tt * c.E);
    for (int b = 0; b < c.B; b++) {
        memcpy(c.dtok_img + (size_t)b * c.Tv * c.E, demb + b * c.E, sizeof(float) * c.E);
        memcpy(c.dtok_txt + ((size_t)b * c.Tt + c.lens[b] - 1) * c.E, demb + b * c.E,
               sizeof(float) * c.E);
    }
    clip_text_backward_tokens(&c.m, c.dtok_txt, c.B);
    clip_image_backward_tokens(&c.m, c.dtok_img, c.B);
    for (int i = 0; i < c.m.nparams; i++) {
        const clip_param *p = &c.m.params[i];
        assert_close(p->name, c.m.grads + p->offset, g_pooled + p->offset, p->numel, 1e-6, 1e-4);
    }
    free(g_pooled), free(demb);
    free(img), free(c.pi), free(c.pt), free(c.sims), free(c.scratch), free(c.arg);
    free(c.tok_img), free(c.tok_txt), free(c.dtok_img), free(c.dtok_txt);
    clip_free(&c.m);
}

/* 5 steps of forward, backward, clipping, AdamW with warmup + cosine and the
 * logit_scale clamp, against torch.optim.AdamW on the same batch */
static void test_adamw_steps_match_pytorch(void **state) {
    int B;
    clip_config cfg;
    clip_model m;
    vlp_error err = {0};
    clip_step st = {0};
    vlpt_file *f = ref_model(&m, &cfg, &B);
    float *mom = falloc(m.nfloats), *var = falloc(m.nfloats);
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    const float *img = ref_f32(f, "images", (size_t)B * 3 * S * S);
    const int32_t *ids = ref_i32(f, "ids", (size_t)B * T);
    adamw_cfg oc = adamw_defaults();
    float losses[5];
    for (int step = 0; step < 5; step++) {
        memset(m.grads, 0, m.nfloats * sizeof(float));
        check(clip_step_forward(&st, &m, img, ids, B, &err), &err);
        clip_step_backward(&st, &m, B);
        losses[step] = st.loss;
        clip_grad_norm(m.grads, m.nfloats, 1.0);
        adamw_step(&oc, lr_at(1e-3f, step, 2, 5), step + 1, m.params, m.nparams, m.weights,
                   m.grads, mom, var);
        clamp_logit_scale(m.views.logit_scale);
    }
    assert_close("AdamW losses", losses, ref_f32(f, "adamw_losses", 5), 5, 0.0, 1e-4);
    const clip_param *proj = clip_param_find(&m, "visual.proj");
    assert_close("visual.proj after 5 steps", m.weights + proj->offset,
                 ref_f32(f, "adamw_final.visual.proj", proj->numel), proj->numel, 1e-5, 1e-4);
    assert_close("logit_scale after 5 steps", m.views.logit_scale,
                 ref_f32(f, "adamw_final.logit_scale", 1), 1, 1e-6, 1e-5);
    free(mom), free(var);
    clip_step_free(&st);
    clip_free(&m);
    vlpt_free(f);
}

static void test_schedule(void **state) {
    assert_true(fabsf(lr_at(1.0f, 0, 4, 10) - 0.25f) < 1e-7f);
    assert_true(fabsf(lr_at(1.0f, 3, 4, 10) - 1.0f) < 1e-7f);
    assert_true(fabsf(lr_at(1.0f, 4, 4, 10) - 1.0f) < 1e-7f);
    assert_true(fabsf(lr_at(1.0f, 7, 4, 10) - 0.5f) < 1e-6f);
    assert_true(lr_at(1.0f, 10, 4, 10) < 1e-7f);
    float g[3] = {3, 4, 0};
    assert_true(fabs(clip_grad_norm(g, 3, 1.0) - 5.0) < 1e-12);
    assert_true(fabsf(g[0] - 0.6f) < 1e-6f && fabsf(g[1] - 0.8f) < 1e-6f);
    float ls = 5.0f;
    clamp_logit_scale(&ls);
    assert_true(fabsf(ls - logf(100.0f)) < 1e-6f);
}

static void test_smaller_batch_after_reserve(void **state) {
    /* a model reserved for 5 runs batch 3 exactly as one reserved for 3 */
    vlpt_file *f = ref_open("clip_step");
    int B;
    clip_config cfg = ref_config(f, &B);
    clip_model a, b;
    vlp_error err = {0};
    clip_step sa = {0}, sb = {0};
    check(clip_init(&a, &cfg, &err), &err);
    check(clip_init(&b, &cfg, &err), &err);
    clip_init_weights(&a, 1);
    clip_init_weights(&b, 1);
    check(clip_reserve(&a, 5, &err), &err);
    check(clip_reserve(&b, 3, &err), &err);
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    const float *img = ref_f32(f, "images", (size_t)B * 3 * S * S);
    const int32_t *ids = ref_i32(f, "ids", (size_t)B * T);
    check(clip_step_forward(&sa, &a, img, ids, 3, &err), &err);
    check(clip_step_forward(&sb, &b, img, ids, 3, &err), &err);
    clip_step_backward(&sa, &a, 3);
    clip_step_backward(&sb, &b, 3);
    assert_memory_equal(&sa.loss, &sb.loss, sizeof(float));
    assert_memory_equal(a.grads, b.grads, a.nfloats * sizeof(float));
    assert_int_equal(clip_step_forward(&sb, &b, img, ids, 4, &err), VLP_ERR_ARG);
    clip_step_free(&sa), clip_step_free(&sb);
    clip_free(&a), clip_free(&b);
    vlpt_free(f);
}

static double std_of(const float *x, size_t n) {
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++) s += x[i], ss += (double)x[i] * x[i];
    return sqrt(ss / n - (s / n) * (s / n));
}

static void test_init_statistics(void **state) {
    clip_config cfg;
    vlp_error err = {0};
    check(clip_config_load("configs/tiny.json", &cfg, &err), &err);
    clip_model m;
    check(clip_init(&m, &cfg, &err), &err);
    clip_init_weights(&m, 42);
    struct { const char *name; double std; } expect[] = {
        {"token_embedding.weight", 0.02},
        {"positional_embedding", 0.01},
        {"visual.class_embedding", 1 / 16.0},         /* width^-0.5 */
        {"visual.proj", 1 / 16.0},
        {"text_projection", 1 / 16.0},
        {"transformer.resblocks.0.attn.in_proj_weight", 1 / 16.0},
        {"transformer.resblocks.0.attn.out_proj.weight", 1 / 16.0 / sqrt(8.0)}, /* (2L)^-0.5 */
        {"transformer.resblocks.0.mlp.c_fc.weight", 1 / sqrt(512.0)},
        {"visual.conv1.weight", 1 / sqrt(192.0) / sqrt(3.0)},  /* U(±1/√fan_in) */
        {"visual.transformer.resblocks.0.mlp.c_fc.weight", 1 / 16.0 / sqrt(3.0)},
        {"visual.transformer.resblocks.0.attn.in_proj_weight", sqrt(6.0 / 1024) / sqrt(3.0)},
    };
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
        const clip_param *p = clip_param_find(&m, expect[i].name);
        assert_non_null(p);
        double s = std_of(m.weights + p->offset, p->numel);
        /* the sample std of n normal draws is off by about 1/√(2n) relative: allow 4× that */
        double tol = fmax(0.02, 4.0 / sqrt(2.0 * p->numel));
        if (fabs(s - expect[i].std) > tol * expect[i].std)
            fail_msg("%s: std %.5f, open_clip's init gives %.5f", expect[i].name, s, expect[i].std);
    }
    assert_true(fabsf(*m.views.logit_scale - logf(1 / 0.07f)) < 1e-6f);
    const clip_param *lnw = clip_param_find(&m, "visual.ln_pre.weight");
    assert_true(m.weights[lnw->offset] == 1.0f);
    assert_false(clip_param_find(&m, "visual.ln_pre.weight")->decay);
    assert_false(clip_param_find(&m, "logit_scale")->decay);
    assert_false(clip_param_find(&m, "transformer.resblocks.3.attn.in_proj_bias")->decay);
    assert_true(clip_param_find(&m, "transformer.resblocks.3.attn.in_proj_weight")->decay);
    assert_null(clip_param_find(&m, "transformer.resblocks.4.attn.in_proj_weight"));
    /* open_clip's groups: the ≥2-D embedding tables decay, the 1-D class
     * embedding does not; all four are declared embeddings */
    const char *tables[] = {"token_embedding.weight", "positional_embedding",
                            "visual.positional_embedding", "visual.class_embedding"};
    for (int i = 0; i < 4; i++) {
        const clip_param *p = clip_param_find(&m, tables[i]);
        assert_true(p->embedding);
        if (p->decay != (i < 3)) fail_msg("%s: decay %d", tables[i], p->decay);
    }
    int decayed = 0, embeddings = 0;
    for (int i = 0; i < m.nparams; i++) decayed += m.params[i].decay, embeddings += m.params[i].embedding;
    assert_int_equal(embeddings, 4);
    /* the 2-D weights of every block (in_proj, out_proj, c_fc, c_proj), conv1,
     * proj, text_projection and the three ≥2-D embeddings */
    assert_int_equal(decayed, (cfg.vision.layers + cfg.text.layers) * 4 + 3 + 3);
    /* AdamW: with decay_embeddings off an embedding table moves by its
     * gradient alone, with it on also shrinks by lr·wd */
    const clip_param *tok = clip_param_find(&m, "token_embedding.weight");
    float *g = falloc(m.nfloats), *mo = falloc(m.nfloats), *ve = falloc(m.nfloats);
    float *w0 = falloc(m.nfloats);
    memcpy(w0, m.weights, sizeof(float) * m.nfloats);
    float moved[2];
    for (int k = 0; k < 2; k++) {
        adamw_cfg c = adamw_defaults();
        c.decay_embeddings = k == 1;
        memcpy(m.weights, w0, sizeof(float) * m.nfloats);
        memset(mo, 0, sizeof(float) * m.nfloats), memset(ve, 0, sizeof(float) * m.nfloats);
        adamw_step(&c, 0.5f, 1, m.params, m.nparams, m.weights, g, mo, ve); /* zero gradient */
        moved[k] = m.weights[tok->offset + 1] - w0[tok->offset + 1];
    }
    assert_true(moved[0] == 0.0f);
    assert_true(fabsf(moved[1] - (-0.5f * 0.2f * w0[tok->offset + 1])) <= 1e-6f * fabsf(w0[tok->offset + 1]));
    free(g), free(mo), free(ve), free(w0);
    clip_free(&m);
}

static void test_config_errors(void **state) {
    clip_config c;
    vlp_error err = {0};
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8,", "a.json", &c, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "a.json:1:"));
    assert_int_equal(clip_config_parse("{\"vision_cfg\": {}, \"text_cfg\": {}}", "b.json", &c, &err),
                     VLP_ERR_FORMAT);
    assert_string_equal(err.message, "b.json: embed_dim is missing");
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 30, "
                                       "\"patch_size\": 8, \"width\": 64, \"layers\": 1}, \"text_cfg\": {}}",
                                       "c.json", &c, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "image_size 30 is not a multiple of patch_size 8"));
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 32, "
                                       "\"patch_size\": 8, \"width\": -64, \"layers\": 1}, \"text_cfg\": {}}",
                                       "d.json", &c, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "vision_cfg.width must be a whole number"));
    assert_int_equal(clip_config_load("/nonexistent.json", &c, &err), VLP_ERR_IO);
    check(clip_config_load("configs/ViT-B-32.json", &c, &err), &err);
    assert_int_equal(c.vision.heads, 12); /* 768 / head_width 64 */
    assert_int_equal(c.vision.mlp_width, 3072);
    assert_int_equal(c.text.mlp_width, 2048);
}

/* open_clip's architectures by name: the heads from head_width, the MLP from
 * mlp_ratio (int(width * ratio)), and parameter counts equal to open_clip's
 * (its model table, in millions to two decimals; ViT-B-32 and ViT-L-14 to the
 * parameter) */
/* A config written into a checkpoint reads back to the same shapes: every
 * shipped config, and a sweep of widths and MLP widths that no ratio with
 * few digits gives (issue 31: 123 on 120 was written 1.025, read as 122). */
static void same_shapes(const clip_config *a, const clip_config *b) {
    assert_int_equal(a->embed_dim, b->embed_dim);
    assert_memory_equal(&a->text, &b->text, sizeof a->text);
    assert_int_equal(a->vision.width, b->vision.width);
    assert_int_equal(a->vision.mlp_width, b->vision.mlp_width);
    assert_int_equal(a->vision.heads, b->vision.heads);
    assert_int_equal(a->vision.layers, b->vision.layers);
    assert_memory_equal(&a->multimodal, &b->multimodal, sizeof a->multimodal);
    assert_memory_equal(&a->mae, &b->mae, sizeof a->mae);
}

static void round_trip(const clip_config *c) {
    vlp_error err = {0};
    char *json = clip_config_to_json(c);
    assert_non_null(json);
    clip_config back;
    check(clip_config_parse(json, "round-trip.json", &back, &err), &err);
    free(json);
    same_shapes(c, &back);
}

static void test_config_round_trip(void **state) {
    vlp_error err = {0};
    int n;
    char **names = clip_config_names(&n);
    assert_true(n >= 10);
    for (int i = 0; i < n; i++) {
        clip_config c;
        check(clip_config_resolve(names[i], &c, NULL, 0, &err), &err);
        round_trip(&c);
    }
    clip_config_names_free(names, n);
    clip_config c;
    check(clip_config_resolve("tiny", &c, NULL, 0, &err), &err);
    int checked = 0;
    for (int w = 8; w <= 2048; w += 8) {
        int mlps[] = {(int)(w * 1.03125), w + 1, 2 * w - 1, (int)(w * 4.3687), w * 4, (int)(w * 8 / 3.0)};
        for (size_t k = 0; k < sizeof mlps / sizeof *mlps; k++) {
            c.vision.width = c.text.width = w;
            c.vision.heads = c.text.heads = 1;
            c.vision.mlp_width = c.text.mlp_width = mlps[k];
            round_trip(&c);
            checked++;
        }
    }
    /* ViT-g's width 1408 with MLP 6144 (ratio 48/11) */
    c.vision.width = 1408, c.vision.heads = 16, c.vision.mlp_width = 6144;
    round_trip(&c);
    assert_int_equal(checked, 256 * 6);
}

static void test_configs_by_name(void **state) {
    static const struct {
        const char *name;
        int vheads, vmlp, theads, tlayers;
        double mparams;
        bool quick_gelu;
    } want[] = {
        {"ViT-B-32", 12, 3072, 8, 12, 151.28, false},   {"ViT-B-16", 12, 3072, 8, 12, 149.62, false},
        {"ViT-L-14", 16, 4096, 12, 12, 427.62, false},  {"ViT-L-14-336", 16, 4096, 12, 12, 427.94, false},
        {"ViT-H-14", 16, 5120, 16, 24, 986.11, false},  {"ViT-g-14", 16, 6144, 16, 24, 1366.68, false},
        {"ViT-bigG-14", 16, 8192, 20, 32, 2539.57, false}, {"ViT-H-14-quickgelu", 16, 5120, 16, 24, 986.11, true},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        clip_config c;
        vlp_error err = {0};
        char src[4200];
        check(clip_config_resolve(want[i].name, &c, src, sizeof src, &err), &err);
        if (c.vision.heads != want[i].vheads || c.vision.mlp_width != want[i].vmlp ||
            c.text.heads != want[i].theads || c.text.layers != want[i].tlayers ||
            c.quick_gelu != want[i].quick_gelu)
            fail_msg("%s (%s): vision %d heads, MLP %d; text %d heads, %d layers", want[i].name, src,
                     c.vision.heads, c.vision.mlp_width, c.text.heads, c.text.layers);
        double mp = clip_config_param_count(&c) / 1e6;
        if (fabs(mp - want[i].mparams) > 0.005)
            fail_msg("%s: %.4fM parameters, open_clip's %.2fM", want[i].name, mp, want[i].mparams);
    }
    clip_config c;
    vlp_error err = {0};
    check(clip_config_resolve("ViT-B-32", &c, NULL, 0, &err), &err);
    assert_int_equal(clip_config_param_count(&c), 151277313);
    check(clip_config_resolve("ViT-L-14", &c, NULL, 0, &err), &err);
    assert_int_equal(clip_config_param_count(&c), 427616513);
    /* a model hub's open_clip_config.json: the model under "model_cfg" */
    check(clip_config_parse("{\"model_cfg\": {\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 32, "
                            "\"patch_size\": 8, \"width\": 64, \"layers\": 1, \"head_width\": 16}, "
                            "\"text_cfg\": {\"width\": 64, \"heads\": 2, \"layers\": 1}}, "
                            "\"preprocess_cfg\": {\"mean\": [0.5, 0.5, 0.5]}}", "hub.json", &c, &err), &err);
    assert_int_equal(c.vision.heads, 4);
    assert_int_equal(c.text.heads, 2);
    /* its preprocess_cfg is the model's: the mean given, OpenAI's std kept */
    assert_true(c.vision.pre.own_norm);
    assert_true(c.vision.pre.mean[1] == 0.5f && c.vision.pre.std[0] == 0.26862954f);
    assert_false(c.vision.pre.white_background);
    /* written into a checkpoint's config and read back: the same preprocessing */
    c.vision.pre.white_background = true;
    char *json = clip_config_to_json(&c);
    assert_non_null(strstr(json, "\"image_background\": \"white\""));
    clip_config back;
    check(clip_config_parse(json, "back.json", &back, &err), &err);
    free(json);
    assert_memory_equal(&back.vision.pre, &c.vision.pre, sizeof back.vision.pre);
    /* what vlp does not compute is refused, by its field */
    const char *squash = "{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, "
                         "\"width\": 64, \"layers\": 1, \"image_resize_mode\": \"squash\"}, "
                         "\"text_cfg\": {\"width\": 64, \"heads\": 2, \"layers\": 1}}";
    assert_int_equal(clip_config_parse(squash, "squash.json", &back, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "vision_cfg.image_resize_mode must be \"shortest\""));
    /* a name that is not shipped lists those that are; a path is a path */
    assert_int_equal(clip_config_resolve("ViT-Q-99", &c, NULL, 0, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "known are ViT-B-16, ViT-B-16-fusion, ViT-B-16-quickgelu, ViT-B-32"));
    assert_int_equal(clip_config_resolve("./ViT-B-32", &c, NULL, 0, &err), VLP_ERR_IO);
    assert_non_null(strstr(err.message, "./ViT-B-32"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_matches_pytorch),
        cmocka_unit_test(test_checkpointing_same_gradients),
        cmocka_unit_test(test_bf16_step_close_to_fp32_reference),
        cmocka_unit_test(test_filip_through_the_model),
        cmocka_unit_test(test_adamw_steps_match_pytorch),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_smaller_batch_after_reserve),
        cmocka_unit_test(test_init_statistics),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_configs_by_name), cmocka_unit_test(test_config_round_trip),
    };
    return cmocka_run_group_tests_name("clip", tests, NULL, NULL);
}
