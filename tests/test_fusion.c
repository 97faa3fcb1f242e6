/* The fusion encoder (ALBEF/BLIP's; fusion_cfg) against
 * tests/ref/make_fusion_ref.py (PyTorch, float64): bidirectional self
 * blocks and cross-attention blocks over the image tower's projected tokens,
 * ln_final, the ITM head on the fused end-of-text token and the MLM head
 * tied to the token embedding, on fixed pairs (the positives, a negative
 * image per text, a negative text per image, gathered from one forward of
 * each tower) and fixed MLM positions: the ITM and MLM logits (atol 1e-5 +
 * rtol 1e-4), the loss (1e-5 relative) and every parameter's gradient, the
 * towers' through the rows' scattered gradients (atol 1e-5 + rtol 1e-4). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/clip.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* mean cross-entropy over n rows of k logits: its value, and in place the
 * logits' gradient times `weight` (softmax − one-hot) · weight / total */
static double softmax_ce(float *x, const int32_t *target, int n, int k, int total, float weight) {
    double loss = 0;
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * k;
        double mx = r[0], z = 0;
        for (int j = 1; j < k; j++) mx = fmax(mx, r[j]);
        for (int j = 0; j < k; j++) z += exp(r[j] - mx);
        loss += -(r[target[i]] - mx - log(z));
        for (int j = 0; j < k; j++)
            r[j] = (float)((exp(r[j] - mx) / z - (j == target[i])) * weight / total);
    }
    return loss / total;
}

static void test_fusion_step_matches_pytorch(void **state) {
    vlpt_file *f = ref_open("fusion_step");
    int B;
    const int32_t *fus; /* the fusion layers, heads, MLP width */
    clip_config cfg = ref_clip_config(f, &B, 3, &fus);
    cfg.fusion = (clip_fusion_cfg){.width = cfg.text.width, .layers = fus[0], .heads = fus[1], .mlp_width = fus[2]};
    clip_model mm, *m = &mm;
    vlp_error err = {0};
    check(clip_init(m, &cfg, &err), &err);
    ref_load_weights(m, f);
    check(clip_reserve(m, B, &err), &err);
    int T = cfg.text.context_length, V = cfg.text.vocab_size, S = cfg.vision.image_size;
    /* the model has exactly the reference's parameters: text_fusion.* included */
    int nref = 0, nfusion = 0;
    for (int i = 0; i < vlpt_count(f); i++) {
        const char *n = vlpt_at(f, i)->name;
        nref += !strncmp(n, "visual.", 7) || !strncmp(n, "text_fusion.", 12) || !strncmp(n, "transformer.", 12) ||
                !strcmp(n, "positional_embedding") || !strcmp(n, "text_projection") || !strcmp(n, "logit_scale") ||
                !strncmp(n, "token_embedding", 15) || !strncmp(n, "ln_final", 8);
        nfusion += !strncmp(n, "text_fusion.", 12);
    }
    assert_int_equal(m->nparams, nref);
    assert_true(nfusion > 20);
    const float *wts = ref_f32(f, "weights", 2);
    const int32_t *text_rows = ref_i32(f, "text_rows", 3 * (size_t)B), *image_rows = ref_i32(f, "image_rows", 3 * (size_t)B);
    const int32_t *itm_labels = ref_i32(f, "itm_labels", 3 * (size_t)B);
    const vlpt_tensor *pt = vlpt_find(f, "mlm_pos");
    assert_non_null(pt);
    int M = (int)pt->dims[0];
    const int32_t *pos = ref_i32(f, "mlm_pos", (size_t)M), *targets = ref_i32(f, "mlm_targets", (size_t)M);

    check(clip_image_forward(m, ref_f32(f, "images", (size_t)B * 3 * S * S), B, &err), &err);
    check(clip_text_forward(m, ref_i32(f, "ids", (size_t)B * T), B, &err), &err);
    float *itm = falloc(3 * (size_t)B * 2), *mlm = falloc((size_t)M * V);
    double loss = 0;
    clip_fusion_zero_grads(m);
    for (int chunk = 0; chunk < 3; chunk++) { /* positives, negative images, negative texts: B pairs each */
        check(clip_fusion_forward(m, text_rows + chunk * B, image_rows + chunk * B, B, &err), &err);
        float *lg = itm + (size_t)chunk * B * 2;
        clip_itm_forward(m, lg);
        assert_close("itm logits", lg, ref_f32(f, "itm_logits", 3 * (size_t)B * 2) + (size_t)chunk * B * 2,
                     (size_t)B * 2, 1e-5, 1e-4);
        if (chunk == 0) { /* MLM on the positive pairs */
            check(clip_mlm_forward(m, pos, M, mlm, &err), &err);
            assert_close("mlm logits", mlm, ref_f32(f, "mlm_logits", (size_t)M * V), (size_t)M * V, 1e-5, 1e-4);
            loss += wts[1] * softmax_ce(mlm, targets, M, V, M, wts[1]);
        }
        loss += wts[0] * softmax_ce(lg, itm_labels + chunk * B, B, 2, 3 * B, wts[0]);
        clip_fusion_backward(m, lg, chunk == 0 ? pos : NULL, chunk == 0 ? mlm : NULL, chunk == 0 ? M : 0);
    }
    float lf = (float)loss;
    assert_close("fusion loss", &lf, ref_f32(f, "loss", 1), 1, 0.0, 1e-5);
    clip_image_backward_with_tokens(m, NULL, m->fusion.dimg, B);
    clip_text_backward_with_tokens(m, NULL, m->fusion.dtxt, B);
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", p->name);
        assert_close(name, m->grads + p->offset, ref_f32(f, name, p->numel), p->numel, 1e-5, 1e-4);
    }
    free(itm), free(mlm);
    clip_free(m);
    vlpt_free(f);
}

/* what the pairs may be: rows of the reserved batch, at most a batch of them;
 * a model without fusion_cfg has no fusion encoder */
static void test_fusion_refuses(void **state) {
    vlpt_file *f = ref_open("fusion_step");
    int B;
    const int32_t *fus;
    clip_config cfg = ref_clip_config(f, &B, 3, &fus);
    clip_model m;
    vlp_error err = {0};
    check(clip_init(&m, &cfg, &err), &err); /* no fusion_cfg */
    check(clip_reserve(&m, B, &err), &err);
    int32_t rows[2] = {0, 1};
    assert_int_equal(clip_fusion_forward(&m, rows, rows, 2, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "no fusion encoder"));
    clip_free(&m);
    cfg.fusion = (clip_fusion_cfg){.width = cfg.text.width, .layers = fus[0], .heads = fus[1], .mlp_width = fus[2]};
    check(clip_init(&m, &cfg, &err), &err);
    check(clip_reserve(&m, B, &err), &err);
    int S = cfg.vision.image_size, T = cfg.text.context_length;
    check(clip_image_forward(&m, ref_f32(f, "images", (size_t)B * 3 * S * S), B, &err), &err);
    check(clip_text_forward(&m, ref_i32(f, "ids", (size_t)B * T), B, &err), &err);
    check(clip_fusion_forward(&m, rows, rows, 2, &err), &err);
    int32_t far[1] = {2 * T};
    float logits[64];
    assert_int_equal(clip_mlm_forward(&m, far, 1, logits, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "MLM position"));
    int32_t bad[2] = {0, B};
    assert_int_equal(clip_fusion_forward(&m, rows, bad, 2, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "image row"));
    assert_int_equal(clip_fusion_forward(&m, rows, rows, B + 1, &err), VLP_ERR_ARG);
    clip_free(&m);
    /* the config: fusion_cfg written and read back; the width must be the text's and embed_dim */
    char *json = clip_config_to_json(&cfg);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"fusion_cfg\""));
    clip_config back;
    check(clip_config_parse(json, "round trip", &back, &err), &err);
    free(json);
    assert_int_equal(back.fusion.layers, cfg.fusion.layers), assert_int_equal(back.fusion.heads, cfg.fusion.heads);
    assert_int_equal(back.fusion.width, cfg.fusion.width), assert_int_equal(back.fusion.mlp_width, cfg.fusion.mlp_width);
    cfg.fusion.width = cfg.text.width + 4;
    assert_int_equal(clip_config_validate(&cfg, "cfg", &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "fusion_cfg.width"));
    vlpt_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fusion_step_matches_pytorch),
        cmocka_unit_test(test_fusion_refuses),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
