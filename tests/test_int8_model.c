/* int8 models (model/clip_q8.c): a small CLIP quantized in memory embeds
 * within quantization error of its fp32 self (cosine ≥ 0.99, and not equal:
 * the int8 layers really ran); written and loaded back it embeds the same
 * bit for bit, with the fp32 copies of its int8 matrices released; a
 * training model refuses it; a file with a missing, stray or infinite scale,
 * a wrong int8 shape or an unknown quantization is an error naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "io/safetensors.h"
#include "model/clip_io.h"
#include "model/clip_pretrained.h"
#include "model/clip_q8.h"
#include "testutil.h"

#define B 5 /* odd: ragged against the kernels' 12-row tiles */

static clip_config small_config(void) {
    return (clip_config){.embed_dim = 48,
                         .vision = {.image_size = 32, .patch_size = 8, .width = 64, .layers = 2, .heads = 2, .mlp_width = 256},
                         .text = {.context_length = 12, .vocab_size = 100, .width = 64, .layers = 2, .heads = 2, .mlp_width = 256}};
}

typedef struct inputs {
    float img[B * 3 * 32 * 32];
    int32_t ids[B * 12];
} inputs;

static void make_inputs(inputs *in) {
    rng64 r = {42};
    for (size_t i = 0; i < sizeof in->img / sizeof *in->img; i++) in->img[i] = rng64_normal(&r);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 12; t++) /* an end token (the largest id) at a varying place */
            in->ids[b * 12 + t] = t == 3 + b ? 99 : t < 3 + b ? 1 + (int)(rng64_u64(&r) % 90) : 0;
}

/* embeddings (2B, E): images then texts */
static void embed(clip_model *m, const inputs *in, float *out) {
    vlp_error err = {0};
    int E = m->cfg.embed_dim;
    assert_int_equal(clip_image_forward(m, in->img, B, &err), VLP_OK);
    memcpy(out, m->image_acts.emb, sizeof(float) * B * E);
    assert_int_equal(clip_text_forward(m, in->ids, B, &err), VLP_OK);
    memcpy(out + B * E, m->text_acts.emb, sizeof(float) * B * E);
}

static double min_cosine(const float *a, const float *b, int n, int E) {
    double lo = 1.0;
    for (int i = 0; i < n; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int e = 0; e < E; e++) {
            ab += (double)a[i * E + e] * b[i * E + e];
            aa += (double)a[i * E + e] * a[i * E + e];
            bb += (double)b[i * E + e] * b[i * E + e];
        }
        lo = fmin(lo, ab / sqrt(aa * bb));
    }
    return lo;
}

static void new_model(clip_model *m) {
    clip_config c = small_config();
    vlp_error err = {0};
    assert_int_equal(clip_init_inference(m, &c, &err), VLP_OK);
    clip_init_weights(m, 3);
    assert_int_equal(clip_reserve(m, B, &err), VLP_OK);
}

static const char *tmp_path(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/vlp_int8_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), name);
    return path;
}

static void test_quantized_embeddings(void **state) {
    static inputs in;
    make_inputs(&in);
    clip_model m;
    new_model(&m);
    int E = m.cfg.embed_dim;
    float fp32[2 * B * 48], q8[2 * B * 48], back[2 * B * 48];
    embed(&m, &in, fp32);
    vlp_error err = {0};
    assert_int_equal(clip_quantize(&m, &err), VLP_OK);
    assert_int_equal(m.q8->matrices, 4 * 4); /* 2 + 2 blocks, 4 matrices each */
    embed(&m, &in, q8);
    double c = min_cosine(fp32, q8, 2 * B, E);
    printf("# int8 vs fp32 embedding cosine: min %.6f\n", c);
    assert_true(c >= 0.99);
    assert_true(memcmp(fp32, q8, sizeof fp32) != 0);

    /* written and read back: the same int8 model */
    const char *path = tmp_path("model.safetensors");
    assert_int_equal(clip_save_int8(&m, path, &err), VLP_OK);
    clip_model r;
    clip_load_opts o = {.quick_gelu = -1, .inference = true};
    assert_int_equal(clip_load_pretrained(&r, path, &o, &err), VLP_OK);
    assert_non_null(r.q8);
    assert_int_equal(r.q8->matrices, 16);
    assert_int_equal(clip_reserve(&r, B, &err), VLP_OK);
    embed(&r, &in, back);
    assert_memory_equal(back, q8, sizeof q8);
    /* the fp32 copies of the int8 matrices are released (zeros), the rest is the model's */
    const clip_param *fc = clip_param_find(&r, "visual.transformer.resblocks.1.mlp.c_fc.weight");
    const clip_param *ln = clip_param_find(&r, "visual.transformer.resblocks.1.ln_2.weight");
    for (size_t i = 0; i < fc->numel; i++) assert_true(r.weights[fc->offset + i] == 0.0f);
    for (size_t i = 0; i < fc->numel; i++) assert_true(m.weights[fc->offset + i] == 0.0f);
    assert_memory_equal(r.weights + ln->offset, m.weights + ln->offset, sizeof(float) * ln->numel);
    clip_free(&r);

    /* the file's int8 tensors: I8 with F32 scales */
    st_file *f;
    assert_int_equal(st_open(path, &f, &err), VLP_OK);
    const st_tensor *t = st_find(f, "visual.transformer.resblocks.1.mlp.c_fc.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_I8);
    t = st_find(f, "visual.transformer.resblocks.1.mlp.c_fc.weight.scale");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->shape[0], 256);
    assert_string_equal(st_meta_get(f, CLIP_META_QUANT), CLIP_QUANT_INT8);
    st_close(f);

    /* a training model refuses it, through either loader */
    clip_load_opts train = {.quick_gelu = -1, .inference = false};
    assert_int_equal(clip_load_pretrained(&r, path, &train, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "int8"));
    assert_int_equal(clip_load(&r, path, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "int8"));
    /* and so does quantizing one */
    clip_model tm;
    clip_config c2 = small_config();
    assert_int_equal(clip_init(&tm, &c2, &err), VLP_OK);
    assert_int_equal(clip_quantize(&tm, &err), VLP_ERR_ARG);
    clip_free(&tm);
    unlink(path);
    clip_free(&m);
}

/* an int8 file with one thing changed: scales dropped, a wrong shape, an
 * unknown quantization, stray scales */
static void test_bad_files(void **state) {
    clip_model m;
    new_model(&m);
    vlp_error err = {0};
    assert_int_equal(clip_quantize(&m, &err), VLP_OK);
    const char *path = tmp_path("good.safetensors"), *bad = tmp_path("bad.safetensors");
    assert_int_equal(clip_save_int8(&m, path, &err), VLP_OK);
    st_file *f;
    assert_int_equal(st_open(path, &f, &err), VLP_OK);
    int n = st_count(f);
    st_tensor *ts = calloc((size_t)n, sizeof *ts);
    st_meta meta[2] = {{CLIP_META_CONFIG, st_meta_get(f, CLIP_META_CONFIG)}, {CLIP_META_QUANT, CLIP_QUANT_INT8}};
    const char *scale = "transformer.resblocks.0.attn.out_proj.weight.scale";
    const char *mat = "transformer.resblocks.1.mlp.c_proj.weight";
    /* 0: scales dropped; 1: an int8 matrix of another shape; 2: a
     * quantization vlp does not read; 3: scales beside an fp32 tensor; 4: an
     * infinite scale */
    const char *names[5] = {"transformer.resblocks.0.attn.out_proj.weight", mat, "int4", "visual.ln_pre.weight.scale",
                            "transformer.resblocks.0.mlp.c_fc.weight.scale"};
    float inf_scales[256];
    for (int i = 0; i < 256; i++) inf_scales[i] = i == 7 ? INFINITY : 0.01f;
    float ln_scales[64] = {0};
    st_tensor extra = {.name = "visual.ln_pre.weight.scale", .dtype = ST_F32, .ndim = 1, .shape = {64}, .numel = 64,
                       .data = ln_scales};
    ts = realloc(ts, sizeof *ts * ((size_t)n + 1));
    for (int mode = 0; mode < 5; mode++) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            const st_tensor *t = st_at(f, i);
            if (mode == 0 && !strcmp(t->name, scale)) continue;
            ts[k] = *t;
            if (mode == 1 && !strcmp(t->name, mat)) ts[k].shape[1] = 128, ts[k].numel /= 2; /* (64, 128) */
            if (mode == 4 && !strcmp(t->name, names[4])) ts[k].data = inf_scales;
            k++;
        }
        if (mode == 3) ts[k++] = extra;
        meta[1].value = mode == 2 ? "int4" : CLIP_QUANT_INT8;
        assert_int_equal(st_write(bad, ts, k, meta, 2, &err), VLP_OK);
        clip_model r;
        clip_load_opts o = {.quick_gelu = -1, .inference = true};
        vlp_err rc = clip_load_pretrained(&r, bad, &o, &err);
        assert_int_equal(rc, mode == 1 ? VLP_ERR_SHAPE : mode == 4 ? VLP_ERR_NUMERIC : VLP_ERR_FORMAT);
        if (!strstr(err.message, names[mode])) fail_msg("mode %d: '%s' does not name '%s'", mode, err.message, names[mode]);
    }
    st_close(f);
    free(ts);
    unlink(path), unlink(bad);
    clip_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantized_embeddings),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
