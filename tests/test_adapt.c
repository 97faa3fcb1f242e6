/* Prompt learning (CoOp, CSC, CoCoOp, MaPLe) against
 * tests/ref/make_adapt_ref.py (PyTorch, float64, after the methods'
 * reference code): the scores (cosines, atol 1e-5 + rtol 1e-4), the loss
 * (1e-5 relative) and every prompt parameter's gradient (atol 1e-6 + rtol
 * 1e-4); the same with the classes' text forwards in chunks (recomputed);
 * the towers bit-equal after training and given no gradient; CoOp without
 * context = zero-shot with "{}."; the prompt file's round trip and refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "adapt/prompt.h"
#include "data/bpe.h"
#include "eval/eval.h"
#include "model/clip.h"
#include "model/clip_pretrained.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* A tokenizer for the reference's 50-id vocabulary: a token (id 1) a word,
 * between the start and the end token, cut as open_clip cuts (the end token
 * last); the test puts the reference's ids in place of what it gives. */
static void stub_encode(const void *impl, const char *text, int32_t *ids, int ctx) {
    int V = *(const int *)impl, words = 0;
    for (const char *p = text; *p; p++) words += *p != ' ' && (p == text || p[-1] == ' ');
    int n = words < ctx - 2 ? words : ctx - 2;
    memset(ids, 0, sizeof(int32_t) * ctx);
    ids[0] = V - 2;
    for (int i = 1; i <= n; i++) ids[i] = 1;
    ids[n + 1] = V - 1;
}

typedef struct adapt_ref {
    vlpt_file *f;
    clip_model m;
    text_tokenizer tok;
    int vocab, B, C, depth, E, T;
    const float *images;
    const int32_t *labels;
} adapt_ref;

static const char *const NAMES[] = {"apple", "bee", "cat", "dog"};

static void open_ref(adapt_ref *r) {
    r->f = ref_open("adapt_step");
    const int32_t *x;
    clip_config cfg = ref_clip_config(r->f, &r->B, 2, &x);
    r->C = x[0], r->depth = x[1];
    assert_int_equal(r->C, 4);
    vlp_error err = {0};
    check(clip_init(&r->m, &cfg, &err), &err);
    ref_load_weights(&r->m, r->f);
    r->vocab = cfg.text.vocab_size;
    r->tok = (text_tokenizer){.impl = &r->vocab, .vocab_size = r->vocab, .encode = stub_encode};
    r->E = cfg.embed_dim, r->T = cfg.text.context_length;
    int S = cfg.vision.image_size;
    r->images = ref_f32(r->f, "images", (size_t)r->B * 3 * S * S);
    r->labels = ref_i32(r->f, "labels", (size_t)r->B);
}

static void close_ref(adapt_ref *r) {
    clip_free(&r->m);
    vlpt_free(r->f);
}

/* the learner of a case, with the reference's class prompts and parameters */
static prompt_learner *learner(adapt_ref *r, const char *method, const char *name, int n, bool csc) {
    prompt_cfg cfg = {.n_ctx = n, .csc = csc, .depth = r->depth, .init = "", .batch = r->B, .seed = 1};
    prompt_learner *pl;
    vlp_error err = {0};
    check(prompt_create(&pl, prompt_method_find(method), &cfg, &r->m, &r->tok, NAMES, r->C, &err), &err);
    char key[160];
    snprintf(key, sizeof key, "%s.ids", name);
    memcpy(pl->ids, ref_i32(r->f, key, (size_t)r->C * r->T), sizeof(int32_t) * r->C * r->T);
    for (int i = 0; i < pl->nparams; i++) {
        const clip_param *p = &pl->params[i];
        snprintf(key, sizeof key, "%s.w.%s", name, p->name);
        memcpy(pl->weights + p->offset, ref_f32(r->f, key, p->numel), sizeof(float) * p->numel);
    }
    return pl;
}

static void assert_case(adapt_ref *r, prompt_learner *pl, const char *name) {
    vlp_error err = {0};
    char key[160];
    int B = r->B, C = r->C;
    float *img = falloc((size_t)B * r->E), *scores = falloc((size_t)B * C);
    check(pl->method->embed_images(pl, r->images, B, img, &err), &err);
    check(pl->method->scores(pl, img, B, scores, &err), &err);
    snprintf(key, sizeof key, "%s.scores", name);
    assert_close(key, scores, ref_f32(r->f, key, (size_t)B * C), (size_t)B * C, 1e-5, 1e-4);
    memset(pl->grads, 0, sizeof(float) * pl->nfloats);
    float loss;
    int correct;
    check(pl->method->step(pl, r->images, r->labels, B, &loss, &correct, &err), &err);
    snprintf(key, sizeof key, "%s.loss", name);
    assert_close(key, &loss, ref_f32(r->f, key, 1), 1, 0.0, 1e-5);
    int nref = 0;
    for (int i = 0; i < vlpt_count(r->f); i++) {
        snprintf(key, sizeof key, "%s.g.", name);
        nref += !strncmp(vlpt_at(r->f, i)->name, key, strlen(key));
    }
    assert_int_equal(pl->nparams, nref); /* exactly the reference's parameters */
    for (int i = 0; i < pl->nparams; i++) {
        const clip_param *p = &pl->params[i];
        snprintf(key, sizeof key, "%s.g.%s", name, p->name);
        assert_close(key, pl->grads + p->offset, ref_f32(r->f, key, p->numel), p->numel, 1e-6, 1e-4);
    }
    free(img), free(scores);
}

static void run_case(const char *method, const char *name, int n, bool csc, int chunk) {
    adapt_ref r;
    open_ref(&r);
    prompt_learner *pl = learner(&r, method, name, n, csc);
    if (chunk) pl->chunk = chunk; /* the classes' text forwards in pieces, recomputed in the backward */
    assert_case(&r, pl, name);
    prompt_free(pl);
    close_ref(&r);
}

static void test_coop_matches_pytorch(void **state) { run_case("coop", "coop", 3, false, 0); }
static void test_coop_in_chunks(void **state) { run_case("coop", "coop", 3, false, 3); }
static void test_csc_matches_pytorch(void **state) { run_case("coop", "csc", 3, true, 0); }
static void test_csc_in_chunks(void **state) { run_case("coop", "csc", 3, true, 1); }
static void test_cocoop_matches_pytorch(void **state) { run_case("cocoop", "cocoop", 3, false, 0); }
static void test_maple_matches_pytorch(void **state) { run_case("maple", "maple", 2, false, 0); }
static void test_maple_in_chunks(void **state) { run_case("maple", "maple", 2, false, 3); }

/* Training moves the prompts only: the towers' weights stay bit-equal and
 * no gradient reaches them. */
static void test_towers_do_not_move(void **state) {
    const char *methods[] = {"coop", "cocoop", "maple"};
    for (int k = 0; k < 3; k++) {
        adapt_ref r;
        open_ref(&r);
        clip_model *m = &r.m;
        float *before = falloc(m->nfloats);
        memcpy(before, m->weights, sizeof(float) * m->nfloats);
        prompt_learner *pl = learner(&r, methods[k], methods[k], k == 2 ? 2 : 3, false);
        float *start = falloc(pl->nfloats);
        memcpy(start, pl->weights, sizeof(float) * pl->nfloats);
        vlp_error err = {0};
        float loss[3];
        int correct;
        for (int s = 0; s < 3; s++)
            check(prompt_train_step(pl, r.images, r.labels, r.B, 0.01f, 5e-4f, &loss[s], &correct, &err), &err);
        assert_memory_equal(before, m->weights, sizeof(float) * m->nfloats);
        for (size_t i = 0; i < m->nfloats; i++)
            if (m->grads[i] != 0.0f) fail_msg("%s: the model's gradient %zu is %g", methods[k], i, m->grads[i]);
        size_t moved = 0;
        for (size_t i = 0; i < pl->nfloats; i++) moved += pl->weights[i] != start[i];
        if (moved < pl->nfloats / 2) fail_msg("%s: only %zu of %zu prompt values moved", methods[k], moved, pl->nfloats);
        if (!(loss[2] < loss[0])) fail_msg("%s: the loss went %g -> %g", methods[k], loss[0], loss[2]);
        /* detached, the model encodes as before */
        prompt_free(pl);
        assert_false(m->frozen);
        assert_int_equal(m->text_prompts.n + m->image_prompts.n, 0);
        free(before), free(start);
        close_ref(&r);
    }
}

/* A model loaded for inference shares its layers' activations: it scores,
 * but training on it is refused (its backward would read overwritten inputs). */
static void test_inference_model_scores_but_does_not_train(void **state) {
    adapt_ref r;
    open_ref(&r);
    clip_model inf;
    vlp_error err = {0};
    check(clip_init_inference(&inf, &r.m.cfg, &err), &err);
    memcpy(inf.weights, r.m.weights, sizeof(float) * r.m.nfloats);
    prompt_cfg cfg = {.n_ctx = 2, .depth = r.depth, .init = "", .batch = r.B, .seed = 1};
    prompt_learner *a, *b;
    check(prompt_create(&a, prompt_method_find("maple"), &cfg, &r.m, &r.tok, NAMES, r.C, &err), &err);
    check(prompt_create(&b, prompt_method_find("maple"), &cfg, &inf, &r.tok, NAMES, r.C, &err), &err);
    memcpy(b->weights, a->weights, sizeof(float) * a->nfloats);
    float *fa = falloc((size_t)r.B * r.E), *fb = falloc((size_t)r.B * r.E);
    float *sa = falloc((size_t)r.B * r.C), *sb = falloc((size_t)r.B * r.C);
    check(a->method->embed_images(a, r.images, r.B, fa, &err), &err);
    check(a->method->scores(a, fa, r.B, sa, &err), &err);
    check(b->method->embed_images(b, r.images, r.B, fb, &err), &err);
    check(b->method->scores(b, fb, r.B, sb, &err), &err);
    assert_close("inference-mode MaPLe scores", sb, sa, (size_t)r.B * r.C, 1e-6, 1e-5);
    float loss;
    int correct;
    assert_int_equal(prompt_train_step(b, r.images, r.labels, r.B, 0.01f, 0, &loss, &correct, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "inference"));
    prompt_free(a), prompt_free(b);
    free(fa), free(fb), free(sa), free(sb);
    clip_free(&inf);
    close_ref(&r);
}

/* With no context, CoOp's prompt is "<name>." : its scores are zero-shot's
 * with the template "{}." (a real model and tokenizer). */
static void test_coop_without_context_is_zeroshot(void **state) {
    clip_model m;
    clip_load_opts lo = {.quick_gelu = -1};
    vlp_error err = {0};
    check(clip_load_pretrained(&m, ref_path("api_model.safetensors"), &lo, &err), &err);
    text_tokenizer tok;
    check(bpe_load(ref_path("api_merges.txt"), 0, &tok, &err), &err);
    check(clip_reserve(&m, 8, &err), &err);
    const char *classes[] = {"cat", "dog", "red car", "a tree"};
    int C = 4, B = 3, S = m.cfg.vision.image_size, E = m.cfg.embed_dim;
    float *images = falloc((size_t)B * 3 * S * S);
    rng g = {5};
    fill_normal(&g, images, (size_t)B * 3 * S * S, 1.0f, 0.0f);
    float *W = falloc((size_t)C * E), *img = falloc((size_t)B * E), *want = falloc((size_t)B * C);
    const char *tpl[] = {"{}."};
    check(encode_classes(&m, &tok, classes, C, tpl, 1, W, &err), &err);
    check(clip_image_forward(&m, images, B, &err), &err);
    memcpy(img, m.image_acts.emb, sizeof(float) * B * E);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int e = 0; e < E; e++) s += (double)img[b * E + e] * W[c * E + e];
            want[b * C + c] = (float)s;
        }
    prompt_cfg cfg = {.n_ctx = 0, .init = "", .batch = B};
    prompt_learner *pl;
    check(prompt_create(&pl, prompt_method_find("coop"), &cfg, &m, &tok, classes, C, &err), &err);
    assert_int_equal(pl->nparams, 0);
    float *got = falloc((size_t)B * C), *pimg = falloc((size_t)B * E);
    check(pl->method->embed_images(pl, images, B, pimg, &err), &err);
    assert_memory_equal(pimg, img, sizeof(float) * B * E);
    check(pl->method->scores(pl, pimg, B, got, &err), &err);
    assert_close("CoOp M=0 vs zero-shot \"{}.\"", got, want, (size_t)B * C, 1e-6, 1e-5);
    /* nothing to learn is said, not trained */
    int labels[3] = {0, 1, 2}, correct;
    float loss;
    assert_int_equal(prompt_train_step(pl, images, labels, B, 0.1f, 0, &loss, &correct, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "nothing to learn"));
    prompt_free(pl);
    /* a phrase-initialised context starts from the phrase's token embeddings
     * (this small vocabulary spells most words letter by letter: "of a" is
     * 3 tokens, and the model has 12) */
    cfg = (prompt_cfg){.n_ctx = -1, .init = "of a", .batch = B};
    check(prompt_create(&pl, prompt_method_find("coop"), &cfg, &m, &tok, classes, C, &err), &err);
    assert_int_equal(pl->n, 3);
    int32_t ids[64];
    tok.encode(tok.impl, "of a cat.", ids, m.cfg.text.context_length);
    assert_memory_equal(pl->ids, ids, sizeof(int32_t) * m.cfg.text.context_length);
    for (int k = 0; k < pl->n; k++)
        assert_memory_equal(pl->ctx + (size_t)k * pl->W, m.weights + clip_param_find(&m, "token_embedding.weight")->offset +
                                                            (size_t)ids[1 + k] * pl->W, sizeof(float) * pl->W);
    prompt_free(pl);
    /* more context tokens than the phrase has are refused, naming both */
    cfg.n_ctx = 4;
    assert_int_equal(prompt_create(&pl, prompt_method_find("coop"), &cfg, &m, &tok, classes, C, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "\"of a\" has 3 tokens"));
    /* a prompt the model's 12 tokens cannot hold is refused, naming the class
     * (the tokenizer would have cut the name off) */
    cfg = (prompt_cfg){.n_ctx = -1, .init = "a photo of a", .batch = B};
    assert_int_equal(prompt_create(&pl, prompt_method_find("coop"), &cfg, &m, &tok, classes, C, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "class 0 (\"cat\"): its prompt (9 context tokens"));
    assert_non_null(strstr(err.message, "does not fit the model's 12 text tokens"));
    cfg = (prompt_cfg){.n_ctx = 2, .csc = true, .init = "", .batch = B};
    assert_int_equal(prompt_create(&pl, prompt_method_find("maple"), &cfg, &m, &tok, classes, C, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--csc"));
    free(images), free(W), free(img), free(want), free(got), free(pimg);
    tokenizer_free(&tok);
    clip_free(&m);
}

/* The prompt file: written and read back equal; another model's weights, a
 * truncated file and another method's file refused with a message. */
static void test_prompt_file(void **state) {
    adapt_ref r;
    open_ref(&r);
    vlp_error err = {0};
    char path[] = "/tmp/vlp-test-adapt-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const char *methods[] = {"coop", "cocoop", "maple"};
    for (int k = 0; k < 3; k++) {
        prompt_learner *pl = learner(&r, methods[k], methods[k], k == 2 ? 2 : 3, false);
        st_meta extra[] = {{"shots", "4"}};
        check(prompt_save(pl, path, extra, 1, &err), &err);
        prompt_free(pl);
        pl = learner(&r, methods[k], methods[k], k == 2 ? 2 : 3, false);
        prompt_learner *back;
        check(prompt_load(&back, path, &r.m, &r.tok, r.B, &err), &err);
        assert_string_equal(back->method->name, methods[k]);
        assert_int_equal(back->nparams, pl->nparams);
        assert_int_equal(back->C, r.C);
        for (int c = 0; c < r.C; c++) assert_string_equal(back->classes[c], NAMES[c]);
        assert_memory_equal(back->weights, pl->weights, sizeof(float) * pl->nfloats);
        prompt_free(back), prompt_free(pl);
    }
    /* another model: its hash differs */
    r.m.weights[3] += 1.0f;
    prompt_learner *back;
    assert_int_equal(prompt_load(&back, path, &r.m, &r.tok, r.B, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "hash"));
    r.m.weights[3] -= 1.0f;
    assert_int_equal(truncate(path, 200), 0);
    assert_int_not_equal(prompt_load(&back, path, &r.m, &r.tok, r.B, &err), VLP_OK);
    assert_null(back);
    unlink(path);
    close_ref(&r);
}

/* Other class names for a shared context; a class-specific one only
 * reorders its own classes. */
static void test_new_classes(void **state) {
    adapt_ref r;
    open_ref(&r);
    vlp_error err = {0};
    prompt_learner *pl = learner(&r, "coop", "csc", 3, true);
    size_t nW = (size_t)pl->n * pl->W;
    float *ctx = falloc(nW * r.C);
    memcpy(ctx, pl->ctx, sizeof(float) * nW * r.C);
    const char *swapped[] = {"dog", "cat", "bee", "apple"};
    check(prompt_set_classes(pl, swapped, 4, &err), &err);
    assert_memory_equal(pl->ctx, ctx + 3 * nW, sizeof(float) * nW);
    assert_memory_equal(pl->ctx + 3 * nW, ctx, sizeof(float) * nW);
    const char *other[] = {"dog", "cat", "bee", "emu"};
    assert_int_equal(prompt_set_classes(pl, other, 4, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "emu"));
    /* a name twice is refused before anything moves: the learner is as it was */
    const char *twice[] = {"dog", "cat", "dog", "apple"};
    assert_int_equal(prompt_set_classes(pl, twice, 4, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "given twice"));
    assert_int_equal(pl->C, 4);
    for (int c = 0; c < 4; c++) assert_string_equal(pl->classes[c], swapped[c]);
    assert_memory_equal(pl->ctx, ctx + 3 * nW, sizeof(float) * nW);
    prompt_free(pl);
    pl = learner(&r, "coop", "coop", 3, false);
    const char *more[] = {"a", "b", "c", "d", "e", "f"};
    check(prompt_set_classes(pl, more, 6, &err), &err);
    assert_int_equal(pl->C, 6);
    /* a prompt longer than the model's 9 tokens is named, not cut, and the
     * learner keeps its classes */
    const char *long_names[] = {"apple", "a b c d e f"};
    assert_int_equal(prompt_set_classes(pl, long_names, 2, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "\"a b c d e f\"): its prompt"));
    assert_non_null(strstr(err.message, "does not fit"));
    assert_int_equal(pl->C, 6);
    float *img = falloc((size_t)r.B * r.E), *scores = falloc((size_t)r.B * 6);
    check(pl->method->embed_images(pl, r.images, r.B, img, &err), &err);
    check(pl->method->scores(pl, img, r.B, scores, &err), &err);
    for (int i = 0; i < r.B * 6; i++) assert_true(isfinite(scores[i]) && fabsf(scores[i]) <= 1.0001f);
    prompt_free(pl);
    free(ctx), free(img), free(scores);
    close_ref(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coop_matches_pytorch),
        cmocka_unit_test(test_coop_in_chunks),
        cmocka_unit_test(test_csc_matches_pytorch),
        cmocka_unit_test(test_csc_in_chunks),
        cmocka_unit_test(test_cocoop_matches_pytorch),
        cmocka_unit_test(test_maple_matches_pytorch),
        cmocka_unit_test(test_maple_in_chunks),
        cmocka_unit_test(test_towers_do_not_move),
        cmocka_unit_test(test_inference_model_scores_but_does_not_train),
        cmocka_unit_test(test_coop_without_context_is_zeroshot),
        cmocka_unit_test(test_prompt_file),
        cmocka_unit_test(test_new_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
