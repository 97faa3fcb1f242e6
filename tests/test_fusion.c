/* The fusion encoder (ALBEF/BLIP's; fusion_cfg) against
 * tests/ref/make_fusion_ref.py (PyTorch, float64): bidirectional self
 * blocks and cross-attention blocks over the image tower's projected tokens,
 * ln_final, the ITM head on the fused end-of-text token and the MLM head
 * tied to the token embedding, on fixed pairs (the positives, a negative
 * image per text, a negative text per image, gathered from one forward of
 * each tower) and an MLM pass over the texts masked at fixed positions (the
 * [MASK] embedding, a random token, a kept one): the ITM and MLM logits (atol
 * 1e-5 + rtol 1e-4), the loss (1e-5 relative) and every parameter's
 * gradient, the towers' through the rows' scattered gradients and the
 * [MASK] embedding's (atol 1e-5 + rtol 1e-4), in the order the objective
 * runs them: ITM, the text backward, the masked text forward, MLM, the
 * text backward again, one image backward. The ITM probabilities of every
 * pair from the towers' rows kept, as re-ranking scores them (eval/itm.h),
 * to the same tolerance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/clip.h"
#include "loss/loss.h"
#include "eval/itm.h"
#include "train/objectives/itc_itm_mlm.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* the cross-entropy the objective uses (src/loss: caption_loss_*): its mean
 * over `total` rows added, and in place the logits' gradient times `weight` */
static double softmax_ce(float *x, const int32_t *target, int n, int k, int total, float weight) {
    float part, *rows = falloc((size_t)n);
    vlp_error err = {0};
    check(caption_loss_forward(&part, x, rows, x, target, NULL, n, k, (double)total, &err), &err);
    caption_loss_backward(x, x, target, NULL, weight, n, k, (double)total);
    free(rows);
    return part;
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
    assert_non_null(m->views.fus.mask_token);
    const float *wts = ref_f32(f, "weights", 2);
    const int32_t *text_rows = ref_i32(f, "text_rows", 3 * (size_t)B), *image_rows = ref_i32(f, "image_rows", 3 * (size_t)B);
    const int32_t *itm_labels = ref_i32(f, "itm_labels", 3 * (size_t)B);
    const vlpt_tensor *pt = vlpt_find(f, "mlm_pos");
    assert_non_null(pt);
    int M = (int)pt->dims[0];
    const int32_t *pos = ref_i32(f, "mlm_pos", (size_t)M), *targets = ref_i32(f, "mlm_targets", (size_t)M);

    check(clip_image_forward(m, ref_f32(f, "images", (size_t)B * 3 * S * S), B, &err), &err);
    check(clip_text_forward(m, ref_i32(f, "ids", (size_t)B * T), B, &err), &err);
    { /* the towers' rows kept and scored as re-ranking does (eval/itm.h): every pair's ITM probability */
        itm_store keep = {0};
        check(itm_store_images(&keep, m, B, &err), &err);
        check(itm_store_texts(&keep, m, B, &err), &err);
        float *prob = falloc(3 * (size_t)B), *want = falloc(3 * (size_t)B);
        check(itm_pair_scores(m, &keep, image_rows, text_rows, 3 * B, prob, NULL, NULL, &err), &err);
        itm_probabilities(prob, 3 * B);
        const float *lg = ref_f32(f, "itm_logits", 3 * (size_t)B * 2);
        for (int p = 0; p < 3 * B; p++) want[p] = (float)(1 / (1 + exp((double)lg[2 * p] - lg[2 * p + 1])));
        assert_close("itm probabilities from kept rows", prob, want, 3 * (size_t)B, 1e-5, 1e-4);
        itm_store_free(&keep);
        free(prob), free(want);
    }
    float *itm = falloc(3 * (size_t)B * 2), *mlm = falloc((size_t)M * V);
    double loss = 0;
    /* ITM on the texts as they are: positives, negative images, negative texts, B pairs each */
    clip_fusion_zero_grads(m, true, true);
    for (int chunk = 0; chunk < 3; chunk++) {
        check(clip_fusion_forward(m, text_rows + chunk * B, image_rows + chunk * B, B, &err), &err);
        float *lg = itm + (size_t)chunk * B * 2;
        clip_itm_forward(m, lg);
        assert_close("itm logits", lg, ref_f32(f, "itm_logits", 3 * (size_t)B * 2) + (size_t)chunk * B * 2,
                     (size_t)B * 2, 1e-5, 1e-4);
        loss += wts[0] * softmax_ce(lg, itm_labels + chunk * B, B, 2, 3 * B, wts[0]);
        clip_itm_backward(m, lg);
        clip_fusion_backward(m);
    }
    clip_text_backward_with_tokens(m, NULL, m->fusion.dtxt, B); /* before the masked pass replaces the text's */
    /* MLM on the masked texts ([MASK] is id V) with their own images */
    check(clip_text_forward(m, ref_i32(f, "ids_masked", (size_t)B * T), B, &err), &err);
    clip_fusion_zero_grads(m, true, false); /* the image rows' ITM gradients stay */
    int32_t self[64];
    for (int b = 0; b < B; b++) self[b] = b;
    check(clip_fusion_forward(m, self, self, B, &err), &err);
    for (int i0 = 0; i0 < M; i0 += 4) { /* in chunks of positions, as the objective bounds its logits */
        int n = M - i0 < 4 ? M - i0 : 4;
        float *lg = mlm + (size_t)i0 * V;
        check(clip_mlm_forward(m, pos + i0, n, lg, &err), &err);
        assert_close("mlm logits", lg, ref_f32(f, "mlm_logits", (size_t)M * V) + (size_t)i0 * V, (size_t)n * V, 1e-5,
                     1e-4);
        loss += wts[1] * softmax_ce(lg, targets + i0, n, V, M, wts[1]);
        clip_mlm_backward(m, pos + i0, lg, n);
    }
    clip_fusion_backward(m);
    clip_text_backward_with_tokens(m, NULL, m->fusion.dtxt, B);
    clip_image_backward_with_tokens(m, NULL, m->fusion.dimg, B);
    float lf = (float)loss;
    assert_close("fusion loss", &lf, ref_f32(f, "loss", 1), 1, 0.0, 1e-5);
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

/* ALBEF's hard negatives: drawn from the similarity softmax (+ 1e-4), never
 * the positive; a row that prefers one other sample draws it most */
static void test_hard_negatives(void **state) {
    enum { N = 4, E = 4, DRAWS = 4000 };
    /* text i is like image i (the positive) and like image (i + 1) % N, not the others */
    float img[N * E] = {0}, txt[N * E] = {0};
    for (int i = 0; i < N; i++) {
        img[i * E + i] = 1.0f;
        txt[i * E + i] = 0.7f, txt[i * E + (i + 1) % N] = 0.7f;
    }
    int count[2][N][N] = {{{0}}};
    int32_t ni[N], nt[N];
    double w[N];
    for (int d = 0; d < DRAWS; d++) {
        fusion_hard_negatives(img, txt, N, E, 10.0f, 1000 + (uint64_t)d, ni, nt, w);
        for (int i = 0; i < N; i++) count[0][i][ni[i]]++, count[1][i][nt[i]]++;
    }
    for (int dir = 0; dir < 2; dir++)
        for (int i = 0; i < N; i++) {
            assert_int_equal(count[dir][i][i], 0); /* never the positive */
            int total = 0;
            for (int j = 0; j < N; j++) total += count[dir][i][j];
            assert_int_equal(total, DRAWS);
        }
    /* text 0 (dims 0 and 1) is most like image 1 among the negatives, image 1 most like text 0:
     * drawn most; the others still get their softmax share */
    for (int j = 2; j < N; j++)
        assert_true(count[0][0][1] > 5 * count[0][0][j] && count[1][1][0] > 5 * count[1][1][j]);
    assert_true(count[0][0][2] > 0);
}

/* BERT's rule on BPE tokens: about `prob` of the tokens between the start
 * and the end token, of them 80% [MASK] (id V), 10% another token, 10% kept;
 * never the start, the end or padding; targets the tokens there */
static void test_mask_tokens(void **state) {
    enum { N = 400, T = 20, V = 50 };
    int32_t ids[N * T] = {0}, masked[N * T], pos[N * T], target[N * T];
    int eligible = 0;
    for (int b = 0; b < N; b++) {
        int len = 3 + b % 15; /* start, len - 2 words, end, padding */
        ids[b * T] = V - 2;
        for (int t = 1; t < len - 1; t++) ids[b * T + t] = 1 + (b * 7 + t * 3) % (V - 3);
        ids[b * T + len - 1] = V - 1;
        eligible += len - 2;
    }
    int m = fusion_mask_tokens(masked, pos, target, ids, N, T, V, 0.15f, 42);
    assert_true(fabs((double)m / eligible - 0.15) < 0.02);
    int mask = 0, kept = 0, other = 0;
    for (int i = 0; i < m; i++) {
        int b = pos[i] / T, t = pos[i] % T;
        assert_true(t > 0 && ids[pos[i]] != V - 1 && ids[pos[i]] != 0); /* a word */
        assert_int_equal(target[i], ids[pos[i]]);
        mask += masked[pos[i]] == V, kept += masked[pos[i]] == ids[pos[i]];
        other += masked[pos[i]] != V && masked[pos[i]] != ids[pos[i]];
        assert_true(masked[pos[i]] >= 0 && masked[pos[i]] <= V && masked[pos[i]] != V - 2 && masked[pos[i]] != V - 1);
        (void)b;
    }
    assert_true(fabs((double)mask / m - 0.8) < 0.06 && fabs((double)kept / m - 0.1) < 0.05);
    int changed = 0; /* nothing else changed */
    for (int i = 0; i < N * T; i++) changed += masked[i] != ids[i];
    assert_int_equal(changed, mask + other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fusion_step_matches_pytorch),
        cmocka_unit_test(test_fusion_refuses),
        cmocka_unit_test(test_hard_negatives),
        cmocka_unit_test(test_mask_tokens),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
