/* Pretrained weights: a ViT-B-32-shaped CLIP with formula weights (see
 * tests/ref/make_pretrained_ref.py) written in open_clip naming without a
 * config (the architecture is inferred from the shapes) and in HF CLIPModel
 * naming; both load and give PyTorch's embeddings (cosine >= 0.99999, max
 * abs error <= 1e-4). The CLIP BPE gives the reference's ids. Files that do
 * not fit — a wrong shape, a missing q_proj, a NaN, a non-float dtype — are
 * errors naming the tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlp.h"
#include "testutil.h"
#include "core/datadir.h"
#include "data/bpe.h"
#include "model/clip_pretrained.h"

static const char *TEXTS[] = {"a photo of a cat", "a diagram of a vision-language model, drawn by hand",
                              "東京の夜景 🌃"};

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* the formula of make_pretrained_ref.py */
static void formula(const clip_param *p, float *w) {
    const char *n = p->name;
    if (!strcmp(n, "logit_scale")) {
        w[0] = (float)log(100.0);
        return;
    }
    bool ln = strstr(n, "ln_") != NULL;
    size_t l = strlen(n);
    bool bias = l >= 4 && !strcmp(n + l - 4, "bias");
    double sc;
    if (ln) sc = 0.1;
    else if (bias || strstr(n, "embedding")) sc = 0.02;
    else {
        double fan_in = p->ndim == 2 ? (double)p->shape[1] : p->ndim == 4 ? (double)(p->shape[1] * p->shape[2] * p->shape[3]) : (double)p->shape[0];
        if (!strcmp(n, "visual.proj") || !strcmp(n, "text_projection")) fan_in = (double)p->shape[0];
        sc = pow(fan_in, -0.5) * 1.7;
    }
    rng64 r = {fnv1a64(n)};
    for (size_t i = 0; i < p->numel; i++) {
        double u = (double)(rng64_u64(&r) >> 11) * 0x1p-53 * 2.0 - 1.0;
        float v = (float)(sc * u);
        if (ln && l >= 6 && !strcmp(n + l - 6, "weight")) v = (float)(1.0 + (double)v);
        w[i] = v;
    }
}

static clip_config vit_b32(void) {
    return (clip_config){.embed_dim = 512, .quick_gelu = true,
                         .vision = {.image_size = 224, .patch_size = 32, .width = 768, .layers = 12, .heads = 12, .mlp_width = 3072},
                         .text = {.context_length = 77, .vocab_size = 49408, .width = 512, .layers = 12, .heads = 8, .mlp_width = 2048}};
}

static char g_oc[64], g_hf[64];

/* open_clip naming, no metadata: the loader must infer the architecture */
static void write_openclip(const clip_model *m, const char *path) {
    st_tensor *ts = calloc((size_t)m->nparams, sizeof *ts);
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        ts[i] = (st_tensor){.name = p->name, .dtype = ST_F32, .ndim = p->ndim, .data = m->weights + p->offset};
        memcpy(ts[i].shape, p->shape, sizeof p->shape);
    }
    vlp_error err = {0};
    check(st_write(path, ts, m->nparams, NULL, 0, &err), &err);
    free(ts);
}

/* HF CLIPModel naming: the inverse of the loader's mapping, written independently here */
typedef struct hf_file {
    st_tensor t[512];
    char names[512][128];
    float *owned[64];
    int n, nowned;
} hf_file;

static void hf_add(hf_file *h, const char *name, int ndim, int64_t d0, int64_t d1, const float *data) {
    st_tensor *t = &h->t[h->n];
    snprintf(h->names[h->n], 128, "%s", name);
    *t = (st_tensor){.name = h->names[h->n], .dtype = ST_F32, .ndim = ndim, .shape = {d0, d1}, .data = data};
    h->n++;
}

static const float *W(const clip_model *m, const char *name) {
    const clip_param *p = clip_param_find(m, name);
    assert_non_null(p);
    return m->weights + p->offset;
}

static const float *transposed(hf_file *h, const float *x, int64_t rows, int64_t cols) {
    float *t = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c];
    h->owned[h->nowned++] = t;
    return t;
}

static void hf_tower(hf_file *h, const clip_model *m, const char *hp, const char *op, int layers, int Wd, int H) {
    char hn[128], on[128];
    for (int l = 0; l < layers; l++) {
#define ON(s) (snprintf(on, sizeof on, "%sresblocks.%d.%s", op, l, s), on)
#define HN(s) (snprintf(hn, sizeof hn, "%s%d.%s", hp, l, s), hn)
        const float *in_w = W(m, ON("attn.in_proj_weight")), *in_b = W(m, ON("attn.in_proj_bias"));
        const char *qkv[] = {"q", "k", "v"};
        for (int j = 0; j < 3; j++) {
            char s[64];
            snprintf(s, sizeof s, "self_attn.%s_proj.weight", qkv[j]);
            hf_add(h, HN(s), 2, Wd, Wd, in_w + (size_t)j * Wd * Wd);
            snprintf(s, sizeof s, "self_attn.%s_proj.bias", qkv[j]);
            hf_add(h, HN(s), 1, Wd, 0, in_b + (size_t)j * Wd);
        }
        hf_add(h, HN("self_attn.out_proj.weight"), 2, Wd, Wd, W(m, ON("attn.out_proj.weight")));
        hf_add(h, HN("self_attn.out_proj.bias"), 1, Wd, 0, W(m, ON("attn.out_proj.bias")));
        hf_add(h, HN("layer_norm1.weight"), 1, Wd, 0, W(m, ON("ln_1.weight")));
        hf_add(h, HN("layer_norm1.bias"), 1, Wd, 0, W(m, ON("ln_1.bias")));
        hf_add(h, HN("layer_norm2.weight"), 1, Wd, 0, W(m, ON("ln_2.weight")));
        hf_add(h, HN("layer_norm2.bias"), 1, Wd, 0, W(m, ON("ln_2.bias")));
        hf_add(h, HN("mlp.fc1.weight"), 2, H, Wd, W(m, ON("mlp.c_fc.weight")));
        hf_add(h, HN("mlp.fc1.bias"), 1, H, 0, W(m, ON("mlp.c_fc.bias")));
        hf_add(h, HN("mlp.fc2.weight"), 2, Wd, H, W(m, ON("mlp.c_proj.weight")));
        hf_add(h, HN("mlp.fc2.bias"), 1, Wd, 0, W(m, ON("mlp.c_proj.bias")));
#undef ON
#undef HN
    }
}

static void write_hf(const clip_model *m, const char *path) {
    hf_file *h = calloc(1, sizeof *h);
    const clip_config *c = &m->cfg;
    int Wv = c->vision.width, Wt = c->text.width, E = c->embed_dim, P = c->vision.patch_size;
    int T = (c->vision.image_size / P) * (c->vision.image_size / P) + 1;
    hf_add(h, "vision_model.embeddings.class_embedding", 1, Wv, 0, W(m, "visual.class_embedding"));
    st_tensor *conv = &h->t[h->n];
    hf_add(h, "vision_model.embeddings.patch_embedding.weight", 2, 0, 0, W(m, "visual.conv1.weight"));
    conv->ndim = 4, conv->shape[0] = Wv, conv->shape[1] = 3, conv->shape[2] = P, conv->shape[3] = P;
    hf_add(h, "vision_model.embeddings.position_embedding.weight", 2, T, Wv, W(m, "visual.positional_embedding"));
    static int64_t pos_ids[77];
    for (int i = 0; i < 77; i++) pos_ids[i] = i;
    st_tensor *pid = &h->t[h->n];
    hf_add(h, "text_model.embeddings.position_ids", 2, 1, 77, (const float *)pos_ids);
    pid->dtype = ST_I64;
    hf_add(h, "vision_model.pre_layrnorm.weight", 1, Wv, 0, W(m, "visual.ln_pre.weight"));
    hf_add(h, "vision_model.pre_layrnorm.bias", 1, Wv, 0, W(m, "visual.ln_pre.bias"));
    hf_tower(h, m, "vision_model.encoder.layers.", "visual.transformer.", c->vision.layers, Wv, c->vision.mlp_width);
    hf_add(h, "vision_model.post_layernorm.weight", 1, Wv, 0, W(m, "visual.ln_post.weight"));
    hf_add(h, "vision_model.post_layernorm.bias", 1, Wv, 0, W(m, "visual.ln_post.bias"));
    hf_add(h, "visual_projection.weight", 2, E, Wv, transposed(h, W(m, "visual.proj"), Wv, E));
    hf_add(h, "text_model.embeddings.token_embedding.weight", 2, c->text.vocab_size, Wt, W(m, "token_embedding.weight"));
    hf_add(h, "text_model.embeddings.position_embedding.weight", 2, c->text.context_length, Wt, W(m, "positional_embedding"));
    hf_tower(h, m, "text_model.encoder.layers.", "transformer.", c->text.layers, Wt, c->text.mlp_width);
    hf_add(h, "text_model.final_layer_norm.weight", 1, Wt, 0, W(m, "ln_final.weight"));
    hf_add(h, "text_model.final_layer_norm.bias", 1, Wt, 0, W(m, "ln_final.bias"));
    hf_add(h, "text_projection.weight", 2, E, Wt, transposed(h, W(m, "text_projection"), Wt, E));
    st_tensor *ls = &h->t[h->n];
    hf_add(h, "logit_scale", 0, 0, 0, W(m, "logit_scale"));
    (void)ls;
    vlp_error err = {0};
    check(st_write(path, h->t, h->n, NULL, 0, &err), &err);
    for (int i = 0; i < h->nowned; i++) free(h->owned[i]);
    free(h);
}

static int setup(void **state) {
    snprintf(g_oc, sizeof g_oc, "/tmp/vlp-pre-oc-%ld.safetensors", (long)getpid());
    snprintf(g_hf, sizeof g_hf, "/tmp/vlp-pre-hf-%ld.safetensors", (long)getpid());
    clip_config cfg = vit_b32();
    clip_model m;
    vlp_error err = {0};
    if (clip_init(&m, &cfg, &err) != VLP_OK) return -1;
    for (int i = 0; i < m.nparams; i++) formula(&m.params[i], m.weights + m.params[i].offset);
    write_openclip(&m, g_oc);
    write_hf(&m, g_hf);
    clip_free(&m);
    return 0;
}

static int teardown(void **state) {
    unlink(g_oc), unlink(g_hf);
    return 0;
}

static void compare(const char *what, const float *got, const float *want, int n, int E) {
    for (int i = 0; i < n; i++) {
        double dot = 0, na = 0, nb = 0, worst = 0;
        for (int k = 0; k < E; k++) {
            double a = got[i * E + k], b = want[i * E + k];
            dot += a * b, na += a * a, nb += b * b;
            worst = fmax(worst, fabs(a - b));
        }
        double cosine = dot / sqrt(na * nb);
        if (cosine < 0.99999 || worst > 1e-4)
            fail_msg("%s %d: cosine %.7f (>= 0.99999), max abs error %.2e (<= 1e-4)", what, i, cosine, worst);
    }
}

static void embeddings_match(const char *path, bool inference) {
    vlpt_file *f = ref_open("pretrained");
    clip_model m;
    vlp_error err = {0};
    clip_load_opts o = {.quick_gelu = -1, .inference = inference}; /* shared activations must give the same embeddings */
    check(clip_load_pretrained(&m, path, &o, &err), &err);
    clip_config want = vit_b32();
    /* inferred, QuickGELU by default (fields compared: the struct has padding) */
    assert_int_equal(m.cfg.embed_dim, want.embed_dim);
    assert_true(m.cfg.quick_gelu);
    assert_memory_equal(&m.cfg.vision, &want.vision, sizeof want.vision);
    assert_memory_equal(&m.cfg.text, &want.text, sizeof want.text);
    check(clip_reserve(&m, 3, &err), &err);
    check(clip_image_forward(&m, ref_f32(f, "images", 2 * 3 * 224 * 224), 2, &err), &err);
    compare("image", m.image_acts.emb, ref_f32(f, "image_embeddings", 2 * 512), 2, 512);
    check(clip_text_forward(&m, ref_i32(f, "ids", 3 * 77), 3, &err), &err);
    compare("text", m.text_acts.emb, ref_f32(f, "text_embeddings", 3 * 512), 3, 512);
    clip_free(&m);
    vlpt_free(f);
}

static void test_openclip_naming(void **state) { embeddings_match(g_oc, false); }
static void test_hf_naming(void **state) { embeddings_match(g_hf, true); }

static void test_tokenizer_ids(void **state) {
    vlpt_file *f = ref_open("pretrained");
    text_tokenizer t;
    vlp_error err = {0};
    char merges[4200];
    check(vlp_data_file(VLP_DEFAULT_VOCAB, merges, sizeof merges, &err), &err);
    check(bpe_load(merges, 0, &t, &err), &err);
    int32_t ids[77];
    for (int i = 0; i < 3; i++) {
        t.encode(t.impl, TEXTS[i], ids, 77);
        assert_memory_equal(ids, ref_i32(f, "ids", 3 * 77) + i * 77, sizeof ids);
    }
    tokenizer_free(&t);
    vlpt_free(f);
}

/* files that do not fit: small ones, made here */
static void test_rejections(void **state) {
    clip_config cfg = vit_b32();
    cfg.vision = (clip_vision_cfg){.image_size = 32, .patch_size = 16, .width = 64, .layers = 1, .heads = 1, .mlp_width = 128};
    cfg.text = (clip_text_cfg){.context_length = 8, .vocab_size = 40, .width = 64, .layers = 1, .heads = 1, .mlp_width = 128};
    cfg.embed_dim = 16;
    clip_model m, back;
    vlp_error err = {0};
    check(clip_init(&m, &cfg, &err), &err);
    for (int i = 0; i < m.nparams; i++) formula(&m.params[i], m.weights + m.params[i].offset);
    char path[64];
    snprintf(path, sizeof path, "/tmp/vlp-pre-bad-%ld.safetensors", (long)getpid());
    clip_load_opts o = {.quick_gelu = -1};
    /* a NaN in one tensor */
    float keep = m.views.txt.ln_final_w[3];
    m.views.txt.ln_final_w[3] = NAN;
    write_openclip(&m, path);
    assert_int_equal(clip_load_pretrained(&back, path, &o, &err), VLP_ERR_NUMERIC);
    assert_non_null(strstr(err.message, "'ln_final.weight'"));
    m.views.txt.ln_final_w[3] = keep;
    /* HF without one q projection */
    write_hf(&m, path);
    st_file *sf;
    check(st_open(path, &sf, &err), &err);
    st_tensor ts[512];
    int n = 0;
    for (int i = 0; i < st_count(sf); i++)
        if (strcmp(st_at(sf, i)->name, "text_model.encoder.layers.0.self_attn.q_proj.weight")) ts[n++] = *st_at(sf, i);
    char path2[80];
    snprintf(path2, sizeof path2, "%s.2", path);
    check(st_write(path2, ts, n, NULL, 0, &err), &err);
    st_close(sf);
    assert_int_equal(clip_load_pretrained(&back, path2, &o, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'text_model.encoder.layers.0.self_attn.q_proj.weight' is missing"));
    /* HF with a tensor of a layer that no config has: -1 passed `layer < layers` (atoi) */
    static const char *const stray[] = {"text_model.encoder.layers.-1.mlp.fc1.bias",
                                        "vision_model.encoder.layers.99999999999999999999.mlp.fc1.bias"};
    for (int k = 0; k < 2; k++) {
        check(st_open(path, &sf, &err), &err);
        n = 0;
        for (int i = 0; i < st_count(sf); i++) ts[n++] = *st_at(sf, i);
        ts[n] = *st_find(sf, "text_model.encoder.layers.0.mlp.fc1.bias");
        ts[n++].name = stray[k];
        check(st_write(path2, ts, n, NULL, 0, &err), &err);
        st_close(sf);
        assert_int_equal(clip_load_pretrained(&back, path2, &o, &err), VLP_ERR_FORMAT);
        if (!strstr(err.message, "belongs to a layer the config does not have")) fail_msg("%s: %s", stray[k], err.message);
    }
    /* fp16 weights load (widened); an I64 weight does not */
    write_openclip(&m, path);
    check(st_open(path, &sf, &err), &err);
    n = st_count(sf);
    uint16_t *half = calloc(64 * 64, 2);
    for (int i = 0; i < n; i++) {
        ts[i] = *st_at(sf, i);
        if (!strcmp(ts[i].name, "visual.transformer.resblocks.0.attn.out_proj.weight")) {
            for (int k = 0; k < 64 * 64; k++) half[k] = 0x3c00; /* 1.0 */
            ts[i].dtype = ST_F16, ts[i].data = half;
        }
    }
    check(st_write(path2, ts, n, NULL, 0, &err), &err);
    check(clip_load_pretrained(&back, path2, &o, &err), &err);
    assert_true(clip_param_find(&back, "visual.transformer.resblocks.0.attn.out_proj.weight") != NULL);
    assert_true(back.views.vis.blocks[0].out_proj_w[5] == 1.0f);
    clip_free(&back);
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, "visual.ln_pre.bias")) ts[i].dtype = ST_I32; /* 64 int32 = the same bytes */
    check(st_write(path2, ts, n, NULL, 0, &err), &err);
    assert_int_equal(clip_load_pretrained(&back, path2, &o, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'visual.ln_pre.bias'"));
    st_close(sf);
    free(half);
    unlink(path), unlink(path2);
    clip_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openclip_naming),
        cmocka_unit_test(test_hf_naming),
        cmocka_unit_test(test_tokenizer_ids),
        cmocka_unit_test(test_rejections),
    };
    return cmocka_run_group_tests_name("pretrained", tests, setup, teardown);
}
