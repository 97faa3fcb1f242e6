/* CoCa-style captioning against tests/ref/make_coca_ref.py (PyTorch, float64):
 * the multimodal decoder (causal self blocks, cross-attention to the image's
 * projected tokens, ln_final, projection to the vocabulary), the weighted
 * caption loss with PRIOR's token weights, the combined CoCa loss and every
 * parameter's gradient (loss 1e-5 relative, gradients atol 1e-5 + rtol
 * 1e-4); the text-only language model (PRIOR's reference) likewise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/clip.h"
#include "loss/loss.h"
#include "model/generate.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

typedef struct coca_ref {
    vlpt_file *f;
    clip_model m;
    int B, S, T, V, E, Tv;
    int32_t *labels;
    float *probs, *rows, *dimg, *dtxt, *scratch;
    long n;
} coca_ref;

static void open_ref(coca_ref *r) {
    r->f = ref_open("coca_step");
    const int32_t *dec; /* the decoder's layers, heads, MLP width */
    clip_config cfg = ref_clip_config(r->f, &r->B, 3, &dec);
    cfg.multimodal = (clip_multimodal_cfg){.width = cfg.text.width, .layers = dec[0],
                                           .heads = dec[1], .mlp_width = dec[2]};
    vlp_error err = {0};
    check(clip_init(&r->m, &cfg, &err), &err);
    ref_load_weights(&r->m, r->f);
    check(clip_reserve(&r->m, r->B, &err), &err);
    r->S = cfg.vision.image_size, r->T = cfg.text.context_length, r->V = cfg.text.vocab_size;
    r->E = cfg.embed_dim, r->Tv = r->m.image_dims.T;
    size_t N = (size_t)r->B * r->T;
    r->labels = calloc(N, sizeof(int32_t));
    r->rows = falloc(N);
    r->dimg = falloc((size_t)r->B * r->E), r->dtxt = falloc((size_t)r->B * r->E);
    r->scratch = falloc(clip_loss_scratch_floats(r->B, r->E) + 2 * (size_t)r->B * r->B);
    r->n = caption_targets(r->labels, ref_i32(r->f, "ids", N), r->B, r->T);
}

static void close_ref(coca_ref *r) {
    clip_free(&r->m);
    vlpt_free(r->f);
    free(r->labels), free(r->rows), free(r->dimg), free(r->dtxt), free(r->scratch);
}

static void test_caption_targets(void **state) {
    /* start 9, words, end 10 (the largest id), padding 0 */
    const int32_t ids[2 * 5] = {9, 4, 5, 10, 0, 9, 10, 0, 0, 0};
    int32_t lab[10];
    assert_int_equal(caption_targets(lab, ids, 2, 5), 4);
    const int32_t want[10] = {4, 5, 10, -1, -1, 10, -1, -1, -1, -1};
    assert_memory_equal(lab, want, sizeof want);
}

static void test_prior_weights(void **state) {
    coca_ref r;
    open_ref(&r);
    size_t N = (size_t)r.B * r.T;
    float *w = falloc(N);
    prior_weights(w, ref_f32(r.f, "ref_logp", N), r.labels, r.B, r.T, 1.0f);
    assert_close("prior weights", w, ref_f32(r.f, "prior_w", N), N, 1e-6, 1e-5);
    /* α = 0: every target weighs 1 (plain next-token prediction), no target 0 */
    prior_weights(w, ref_f32(r.f, "ref_logp", N), r.labels, r.B, r.T, 0.0f);
    for (size_t i = 0; i < N; i++) assert_true(w[i] == (r.labels[i] >= 0 ? 1.0f : 0.0f));
    /* a token the reference is sure of (p = 1) weighs 0; the others share the caption's mass */
    float lp[4] = {0.0f, logf(0.5f), logf(0.5f), 0.0f};
    int32_t lab[4] = {3, 4, 5, -1};
    prior_weights(w, lp, lab, 1, 4, 1.0f);
    assert_true(w[0] == 0.0f && fabsf(w[1] - 1.5f) < 1e-6f && fabsf(w[2] - 1.5f) < 1e-6f &&
                w[3] == 0.0f);
    free(w);
    close_ref(&r);
}

static void test_coca_step_matches_pytorch(void **state) {
    coca_ref r;
    open_ref(&r);
    clip_model *m = &r.m;
    vlp_error err = {0};
    int B = r.B, T = r.T, V = r.V, E = r.E;
    size_t N = (size_t)B * T;
    const float *weights = ref_f32(r.f, "weights", 3);
    /* the model has exactly the reference's parameters (ref_load_weights found each by name) */
    int nref = 0;
    for (int i = 0; i < vlpt_count(r.f); i++) {
        const char *n = vlpt_at(r.f, i)->name;
        nref += !strncmp(n, "visual.", 7) || !strncmp(n, "text_decoder.", 13) ||
                !strncmp(n, "transformer.", 12) || !strcmp(n, "positional_embedding") ||
                !strcmp(n, "text_projection") || !strcmp(n, "logit_scale") ||
                !strncmp(n, "token_embedding", 15) || !strncmp(n, "ln_final", 8);
    }
    assert_int_equal(m->nparams, nref);

    float *w = falloc(N);
    prior_weights(w, ref_f32(r.f, "ref_logp", N), r.labels, B, T, weights[2]);
    check(clip_image_forward(m, ref_f32(r.f, "images", (size_t)B * 3 * r.S * r.S), B, &err), &err);
    check(clip_text_forward(m, ref_i32(r.f, "ids", N), B, &err), &err);
    float lclip, lcap, lntp;
    float *pi = r.scratch + clip_loss_scratch_floats(B, E), *pt = pi + (size_t)B * B;
    check(clip_loss_forward(&lclip, pi, pt, m->image_acts.emb, m->text_acts.emb, *m->views.logit_scale, B, E, &err),
          &err);
    check(clip_caption_forward(m, true, B, &err), &err);
    float *probs = falloc(N * V);
    check(caption_loss_forward(&lntp, probs, r.rows, m->coca.acts.logits, r.labels, NULL, (int)N, V,
                               (double)r.n, &err), &err);
    assert_close("ntp loss", &lntp, ref_f32(r.f, "ntp_loss", 1), 1, 0.0, 1e-5);
    /* in place, as the trainer does: the logits become probabilities, then gradients */
    check(caption_loss_forward(&lcap, m->coca.acts.logits, r.rows, m->coca.acts.logits, r.labels, w, (int)N, V,
                               (double)r.n, &err), &err);
    assert_close("caption loss", &lcap, ref_f32(r.f, "caption_loss", 1), 1, 0.0, 1e-5);
    float total = weights[0] * lclip + weights[1] * lcap;
    assert_close("coca loss", &total, ref_f32(r.f, "loss", 1), 1, 0.0, 1e-5);

    memset(r.dimg, 0, sizeof(float) * B * E), memset(r.dtxt, 0, sizeof(float) * B * E);
    clip_loss_backward(r.dimg, r.dtxt, m->grad_views.logit_scale, weights[0], pi, pt, m->image_acts.emb, m->text_acts.emb,
                       *m->views.logit_scale, r.scratch, B, E);
    caption_loss_backward(m->coca.acts.logits, m->coca.acts.logits, r.labels, w, weights[1], (int)N, V,
                          (double)r.n);
    clip_caption_backward(m, m->coca.acts.logits, B);
    clip_image_backward_with_tokens(m, r.dimg, m->coca.dimg, B);
    clip_text_backward_with_tokens(m, r.dtxt, m->coca.dtxt, B);
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", p->name);
        assert_close(name, m->grads + p->offset, ref_f32(r.f, name, p->numel), p->numel, 1e-5, 1e-4);
    }
    free(w), free(probs);
    close_ref(&r);
}

static void test_text_lm_matches_pytorch(void **state) {
    coca_ref r;
    open_ref(&r);
    clip_model *m = &r.m;
    vlp_error err = {0};
    int B = r.B, T = r.T, V = r.V;
    size_t N = (size_t)B * T;
    check(clip_text_forward(m, ref_i32(r.f, "ids", N), B, &err), &err);
    check(clip_caption_forward(m, false, B, &err), &err);
    float loss;
    check(caption_loss_forward(&loss, m->coca.acts.logits, r.rows, m->coca.acts.logits, r.labels, NULL, (int)N, V,
                               (double)r.n, &err), &err);
    assert_close("lm loss", &loss, ref_f32(r.f, "lm_loss", 1), 1, 0.0, 1e-5);
    caption_loss_backward(m->coca.acts.logits, m->coca.acts.logits, r.labels, NULL, 1.0f, (int)N, V, (double)r.n);
    clip_caption_backward(m, m->coca.acts.logits, B);
    clip_text_backward_with_tokens(m, NULL, m->coca.dtxt, B);
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        char name[128];
        snprintf(name, sizeof name, "lm_grad.%s", p->name);
        assert_close(name, m->grads + p->offset, ref_f32(r.f, name, p->numel), p->numel, 1e-5, 1e-4);
    }
    close_ref(&r);
}

/* The generated caption's tokens and score, checked by one forward over the
 * whole sequence (causal: position t−1's logits see ids[0..t−1] only).
 * Returns the score recomputed. */
static double check_caption(coca_ref *r, const float *image, const int32_t *ids, float score,
                            bool greedy) {
    clip_model *m = &r->m;
    vlp_error err = {0};
    int T = r->T, V = r->V, len = T;
    for (int t = 1; t < T; t++)
        if (ids[t] == V - 1) {
            len = t + 1;
            break;
        }
    assert_int_equal(ids[0], V - 2);
    for (int t = len; t < T; t++) assert_int_equal(ids[t], 0); /* padding after the end */
    check(clip_image_forward(m, image, 1, &err), &err);
    check(clip_text_forward(m, ids, 1, &err), &err);
    check(clip_caption_forward(m, true, 1, &err), &err);
    int32_t labels[64];
    float logp[64];
    for (int t = 0; t < T; t++) labels[t] = t + 1 < len ? ids[t + 1] : -1;
    caption_target_logprobs(logp, m->coca.acts.logits, labels, T, V);
    double sum = 0;
    for (int t = 1; t < len; t++) {
        sum += logp[t - 1];
        if (!greedy) continue;
        const float *x = m->coca.acts.logits + (size_t)(t - 1) * V;
        int arg = -1;
        for (int j = 0; j < V; j++)
            if (j != V - 2 && (arg < 0 || x[j] > x[arg])) arg = j;
        assert_int_equal(ids[t], arg); /* greedy: the most likely token, never the start token */
    }
    double mean = sum / (len - 1);
    assert_true(fabs(mean - score) <= 1e-4 * fabs(mean) + 1e-5);
    return mean;
}

static void test_generate(void **state) {
    coca_ref r;
    open_ref(&r);
    vlp_error err = {0};
    int V = r.V;
    size_t img = (size_t)3 * r.S * r.S;
    const float *images = ref_f32(r.f, "images", (size_t)r.B * img);
    int32_t ids[64];
    for (int b = 0; b < r.B; b++) {
        float sg, sb;
        check(caption_generate(&r.m, images + b * img, 1, V - 2, V - 1, ids, &sg, &err), &err);
        check_caption(&r, images + b * img, ids, sg, true);
        check(caption_generate(&r.m, images + b * img, 4, V - 2, V - 1, ids, &sb, &err), &err);
        check_caption(&r, images + b * img, ids, sb, false);
        /* on these images beam search finds a caption at least as likely per
         * token as greedy decoding's (not a theorem: it is here) */
        assert_true(sb >= sg - 1e-6f);
    }
    /* a beam wider than the reserved batch is refused */
    assert_int_equal(caption_generate(&r.m, images, r.B + 1, V - 2, V - 1, ids, NULL, &err),
                     VLP_ERR_ARG);
    close_ref(&r);
}

/* multimodal_cfg: read, checked against the towers, written back */
static void test_config(void **state) {
    const char *base = "{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 16, \"patch_size\": 4, "
                       "\"width\": 32, \"layers\": 1, \"heads\": 2}, \"text_cfg\": {\"context_length\": 8, "
                       "\"vocab_size\": 60, \"width\": 32, \"heads\": 2, \"layers\": 1}, "
                       "\"multimodal_cfg\": {%s}}";
    char json[1024];
    clip_config c;
    vlp_error err = {0};
    snprintf(json, sizeof json, base, "\"width\": 32, \"heads\": 4, \"layers\": 3, \"mlp_ratio\": 2.0");
    check(clip_config_parse(json, "t.json", &c, &err), &err);
    assert_int_equal(c.multimodal.layers, 3);
    assert_int_equal(c.multimodal.heads, 4);
    assert_int_equal(c.multimodal.mlp_width, 64);
    char *back = clip_config_to_json(&c);
    clip_config c2;
    check(clip_config_parse(back, "back", &c2, &err), &err);
    free(back);
    assert_memory_equal(&c.multimodal, &c2.multimodal, sizeof c.multimodal);
    snprintf(json, sizeof json, base, "\"width\": 64, \"heads\": 4, \"layers\": 1");
    assert_int_equal(clip_config_parse(json, "t.json", &c, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "multimodal_cfg.width 64"));
    snprintf(json, sizeof json, base, "\"layers\": 1, \"heads\": 2, \"vocab_size\": 61");
    assert_int_equal(clip_config_parse(json, "t.json", &c, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "vocab_size 61"));
    snprintf(json, sizeof json, base, "\"layers\": 1, \"heads\": 5");
    assert_int_equal(clip_config_parse(json, "t.json", &c, &err), VLP_ERR_SHAPE);
    /* a CLIP config has no decoder; its model refuses the decoder's calls */
    check(clip_config_load("configs/tiny.json", &c, &err), &err);
    assert_int_equal(c.multimodal.layers, 0);
    clip_model m;
    c.vision.layers = c.text.layers = 1;
    check(clip_init(&m, &c, &err), &err);
    check(clip_reserve(&m, 1, &err), &err);
    assert_int_equal(clip_caption_forward(&m, true, 1, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "multimodal_cfg"));
    clip_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_caption_targets),
        cmocka_unit_test(test_prior_weights),
        cmocka_unit_test(test_coca_step_matches_pytorch),
        cmocka_unit_test(test_text_lm_matches_pytorch),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
