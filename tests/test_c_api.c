/* The public API, compiled against include/vlp.h alone: load a small CLIP
 * from safetensors (config in the metadata) with its BPE, tokenize, embed
 * texts and image files (CLIP's eval preprocessing), and compare with the
 * PyTorch + PIL reference of tests/ref/make_api_ref.py (cosine >= 0.99999,
 * max abs error <= 1e-4). Errors come back as codes with messages. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vlp.h"
#include "testutil.h" /* the reference pixels' reader */

#define E 16

typedef struct expected {
    int ids[3][12];
    float image[2][E], text[3][E];
} expected;

static void read_expected_from(expected *x, const char *name) {
    FILE *fp = fopen(ref_path(name), "r");
    assert_non_null(fp);
    char kind[16];
    int ni = 0, nm = 0, nt = 0;
    while (fscanf(fp, "%15s", kind) == 1) {
        if (!strcmp(kind, "ids")) for (int k = 0; k < 12; k++) assert_int_equal(fscanf(fp, "%d", &x->ids[ni][k]), 1);
        else if (!strcmp(kind, "image")) for (int k = 0; k < E; k++) assert_int_equal(fscanf(fp, "%f", &x->image[nm][k]), 1);
        else for (int k = 0; k < E; k++) assert_int_equal(fscanf(fp, "%f", &x->text[nt][k]), 1);
        ni += !strcmp(kind, "ids"), nm += !strcmp(kind, "image"), nt += !strcmp(kind, "text");
    }
    fclose(fp);
    assert_int_equal(ni, 3), assert_int_equal(nm, 2), assert_int_equal(nt, 3);
}

static void read_expected(expected *x) { read_expected_from(x, "api_expected.txt"); }

static double cosine(const float *a, const float *b) {
    double dot = 0, na = 0, nb = 0;
    for (int k = 0; k < E; k++) dot += (double)a[k] * b[k], na += (double)a[k] * a[k], nb += (double)b[k] * b[k];
    return dot / sqrt(na * nb);
}

/* the lowest cosine over the three texts and two images */
static double lowest_cosine(vlp_model *m, const expected *x) {
    const char *texts[] = {"the cat", "A photo of THE dog, then the end!", ""};
    const char *files[] = {ref_path("img_src.png"), ref_path("img_src.jpg")};
    float t[3][E], im[2][E];
    vlp_error err;
    assert_int_equal(vlp_encode_texts(m, texts, 3, &t[0][0], &err), VLP_OK);
    assert_int_equal(vlp_encode_image_files(m, files, 2, &im[0][0], &err), VLP_OK);
    double lowest = 1.0;
    for (int i = 0; i < 3; i++) lowest = fmin(lowest, cosine(t[i], x->text[i]));
    for (int i = 0; i < 2; i++) lowest = fmin(lowest, cosine(im[i], x->image[i]));
    return lowest;
}

static void assert_embedding(const char *what, const float *got, const float *want) {
    double worst = 0;
    for (int k = 0; k < E; k++) worst = fmax(worst, fabs((double)got[k] - want[k]));
    double c = cosine(got, want);
    if (c < 0.99999 || worst > 1e-4) fail_msg("%s: cosine %.7f, max abs error %.2e", what, c, worst);
}

static vlp_model *load_with(bool bf16) {
    vlp_model_opts o = vlp_model_opts_default();
    o.bf16 = bf16;
    o.vocab = ref_path("api_merges.txt");
    o.batch = 2; /* three texts: two batches */
    vlp_model *m = NULL;
    vlp_error err;
    if (vlp_model_load(&m, ref_path("api_model.safetensors"), &o, &err) != VLP_OK) {
        char buf[600];
        fail_msg("%s", vlp_error_format_debug(&err, buf, sizeof buf));
    }
    return m;
}

static vlp_model *load(void) { return load_with(false); }

static void test_embeddings_match_pytorch(void **state) {
    expected x;
    read_expected(&x);
    vlp_model *m = load();
    assert_int_equal(vlp_model_embed_dim(m), E);
    assert_int_equal(vlp_model_image_size(m), 32);
    assert_int_equal(vlp_model_context_length(m), 12);
    char desc[256];
    assert_non_null(strstr(vlp_model_describe(m, desc, sizeof desc), "GELU"));
    const char *texts[] = {"the cat", "A photo of THE dog, then the end!", ""};
    for (int i = 0; i < 3; i++) {
        int ids[12];
        vlp_tokenize(m, texts[i], ids, 12);
        assert_memory_equal(ids, x.ids[i], sizeof ids);
    }
    float t[3][E], im[2][E];
    vlp_error err;
    assert_int_equal(vlp_encode_texts(m, texts, 3, &t[0][0], &err), VLP_OK);
    const char *files[] = {ref_path("img_src.png"), ref_path("img_src.jpg")};
    assert_int_equal(vlp_encode_image_files(m, files, 2, &im[0][0], &err), VLP_OK);
    for (int i = 0; i < 3; i++) assert_embedding("text", t[i], x.text[i]);
    for (int i = 0; i < 2; i++) assert_embedding("image", im[i], x.image[i]);
    vlp_model_free(m);
}

/* bf16 matmuls: the same embeddings within bf16 rounding (cosine > 0.999 to
 * PyTorch's fp32), and really computed differently where the CPU has
 * AVX512-BF16 (else the model says it stayed fp32). */
static void test_bf16_embeddings_close(void **state) {
    expected x;
    read_expected(&x);
    vlp_model *m = load_with(true);
    char desc[256];
    vlp_model_describe(m, desc, sizeof desc);
    vlp_sysinfo si;
    vlp_sysinfo_get(&si);
    bool hw = si.avx512bf16;
    assert_non_null(strstr(desc, hw ? "; bf16 matmuls" : "no AVX512-BF16"));
    double lowest = lowest_cosine(m, &x);
    printf("# bf16 embeddings: lowest cosine to PyTorch fp32 %.6f\n", lowest);
    assert_true(lowest > 0.999);
    if (hw) assert_true(lowest < 0.9999995); /* not the fp32 numbers */
    vlp_model_free(m);
}

/* class embeddings: the renormalised mean of the templates' normalised embeddings */
static void test_encode_classes(void **state) {
    vlp_model *m = load();
    const char *classes[] = {"cat", "dog"}, *templates[] = {"a photo of a {}.", "the"};
    float W[2][E], t[2][E];
    vlp_error err;
    assert_int_equal(vlp_encode_classes(m, classes, 2, templates, 2, &W[0][0], &err), VLP_OK);
    const char *dog[] = {"a photo of a dog.", "the dog"};
    assert_int_equal(vlp_encode_texts(m, dog, 2, &t[0][0], &err), VLP_OK);
    float want[E];
    double norm = 0;
    for (int k = 0; k < E; k++) want[k] = (t[0][k] + t[1][k]) / 2, norm += (double)want[k] * want[k];
    for (int k = 0; k < E; k++) want[k] = (float)(want[k] / sqrt(norm));
    assert_embedding("class dog", W[1], want);
    assert_int_equal(vlp_encode_classes(m, classes, 0, templates, 2, &W[0][0], &err), VLP_ERR_ARG);
    vlp_model_free(m);
}

/* A model whose heads are not 64 wide in either tower (4 heads of 16 in each), saved by tests/ref/make_headwidth_ref.py without a config, as
 * open_clip's state dicts are: with its config (tests/ref/headwidth.json,
 * open_clip's head_width field) it embeds as PyTorch does; inferred from the
 * shapes (head width 64: one head per tower) it does not, and the load says
 * so; a config whose shapes disagree is refused, naming the tensor and both
 * shapes. */
static vlp_model *load_headwidth(const char *config, vlp_error *err) {
    vlp_model_opts o = vlp_model_opts_default();
    o.vocab = ref_path("api_merges.txt");
    o.model_config = config;
    vlp_model *m = NULL;
    return vlp_model_load(&m, ref_path("headwidth_model.safetensors"), &o, err) == VLP_OK ? m : NULL;
}

static void test_head_width_from_config(void **state) {
    expected x;
    read_expected_from(&x, "headwidth_expected.txt");
    vlp_error err = {0};
    vlp_model *m = load_headwidth(ref_path("headwidth.json"), &err);
    if (!m) fail_msg("%s", err.message);
    assert_null(vlp_model_warning(m));
    char desc[256];
    assert_non_null(strstr(vlp_model_describe(m, desc, sizeof desc), "x 2 layers (4 heads)"));
    for (int i = 0; i < 3; i++) {
        int ids[12];
        vlp_tokenize(m, i == 0 ? "the cat" : i == 1 ? "A photo of THE dog, then the end!" : "", ids, 12);
        assert_memory_equal(ids, x.ids[i], sizeof ids);
    }
    double with_config = lowest_cosine(m, &x);
    vlp_model_free(m);
    printf("# head width 16: lowest cosine to PyTorch %.7f with the config\n", with_config);
    assert_true(with_config >= 0.99999);

    /* no config: inferred with one head per tower, which this model does not have */
    m = load_headwidth(NULL, &err);
    if (!m) fail_msg("%s", err.message);
    assert_non_null(vlp_model_warning(m));
    assert_non_null(strstr(vlp_model_warning(m), "head width 64"));
    double inferred = lowest_cosine(m, &x);
    vlp_model_free(m);
    printf("# inferred from the shapes (1 head each): lowest cosine %.7f\n", inferred);
    assert_true(inferred < 0.999);

    /* a config whose tensors do not fit: the tensor and both shapes named */
    assert_null(load_headwidth("tiny", &err));
    assert_int_equal(err.code, VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "tensor 'positional_embedding' has shape [12, 64], the model wants [32, 256]"));
    /* an unknown name lists the known ones */
    assert_null(load_headwidth("ViT-B-17", &err));
    assert_int_equal(err.code, VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "ViT-bigG-14"));
}

static void test_errors(void **state) {
    vlp_model *m = NULL;
    vlp_error err;
    assert_int_equal(vlp_model_load(&m, "/nonexistent.safetensors", NULL, &err), VLP_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(err.message, "/nonexistent.safetensors"));
    /* the model's vocab does not fit OpenAI's tokenizer: said so */
    vlp_model_opts o = vlp_model_opts_default();
    o.vocab = ref_path("bpe_ref.tsv"); /* not a merges file at all */
    assert_int_not_equal(vlp_model_load(&m, ref_path("api_model.safetensors"), &o, &err), VLP_OK);
    m = load();
    float out[E];
    const char *missing[] = {"/nonexistent.png"};
    assert_int_equal(vlp_encode_image_files(m, missing, 1, out, &err), VLP_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent.png"));
    /* skipping: the rows of the images that decode, in order, and each other one's error */
    const char *some[] = {"/nonexistent.png", ref_path("img_src.png"), ref_path("api_merges.txt"), ref_path("img_src.jpg")};
    float rows[4][E], want[2][E];
    bool ok[4];
    int got = -1;
    vlp_error why[4];
    assert_int_equal(vlp_encode_image_files_skipping(m, some, 4, &rows[0][0], ok, &got, why, &err), VLP_OK);
    assert_int_equal(got, 2);
    assert_true(!ok[0] && ok[1] && !ok[2] && ok[3]);
    assert_non_null(strstr(why[0].message, "/nonexistent.png"));
    assert_non_null(strstr(why[2].message, "api_merges.txt: not a JPEG, PNG, WebP, GIF, TIFF or BMP image"));
    const char *good[] = {some[1], some[3]}; /* one batch, as the skipping call made it */
    assert_int_equal(vlp_encode_image_files(m, good, 2, &want[0][0], &err), VLP_OK);
    assert_memory_equal(rows, want, sizeof want);
    assert_int_equal(vlp_encode_texts(m, NULL, 1, out, &err), VLP_ERR_ARG);
    vlp_model_free(m);
    vlp_model_free(NULL);
}


/* Training options through the C API: the defaults of vlp train, set and
 * read back by key or flag, an objective's options as given before the
 * objective, refusals that name the option and its range. */
static void test_train_options(void **state) {
    vlp_error err = {0};
    vlp_train_opts *o;
    char v[64];
    assert_int_equal(vlp_train_opts_new(&o, &err), VLP_OK);
    assert_int_equal(vlp_train_opts_get(o, "lr", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "0.0005");
    assert_int_equal(vlp_train_opts_set(o, "--lr", "0.001", &err), VLP_OK);
    assert_int_equal(vlp_train_opts_get(o, "lr", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "0.001");
    assert_int_equal(vlp_train_opts_get(o, "--batch", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "128");
    assert_int_equal(vlp_train_opts_set(o, "caption_weight", "3", &err), VLP_OK); /* before its objective */
    assert_int_equal(vlp_train_opts_set(o, "objective", "coca", &err), VLP_OK);
    assert_int_equal(vlp_train_opts_get(o, "caption_weight", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "3");
    assert_int_equal(vlp_train_opts_get(o, "prior_alpha", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "1");
    assert_int_equal(vlp_train_opts_get(o, "mask_ratio", v, sizeof v, &err), VLP_ERR_ARG);
    assert_int_equal(vlp_train_opts_set(o, "batch", "1", &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--batch wants a whole number in 2..1048576, got '1'"));
    assert_int_equal(vlp_train_opts_set(o, "nope", "1", &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "unknown option 'nope'"));
    assert_int_equal(vlp_train_opts_set(o, "precision", "fp16", &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--precision must be fp32 or bf16, not 'fp16'"));
    assert_int_equal(vlp_train_opts_set(o, "white_background", "maybe", &err), VLP_ERR_ARG);
    assert_int_equal(vlp_train_opts_set(o, "white_background", NULL, &err), VLP_OK); /* a switch: on */
    assert_int_equal(vlp_train_opts_get(o, "white_background", v, sizeof v, &err), VLP_OK);
    assert_string_equal(v, "on");
    vlp_train_opts_free(o);
}

/* vlp_preprocess_image on pixels in memory equals the file's preprocessing
 * (the PNG decoded to the same RGB), and its encoding the file's embedding
 * bit for bit; a bad mode or size is refused by name */
static void test_preprocess_memory(void **state) {
    vlp_model *m = load();
    int S = vlp_model_image_size(m);
    size_t n = (size_t)3 * S * S;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    vlp_error err;
    const char *file = ref_path("modes/bmp_rgb24.bmp");
    assert_int_equal(vlp_preprocess_image_file(m, file, a, &err), VLP_OK);
    /* its RGB, as Pillow decodes it (tests/ref/make_modes_ref.py) */
    enum { W = 39, H = 30 };
    vlpt_file *f = ref_open("modes/modes");
    const int32_t *px = ref_i32(f, "bmp_rgb24.bmp:decode", W * H * 3);
    unsigned char *rgb = malloc(W * H * 3);
    for (int i = 0; i < W * H * 3; i++) rgb[i] = (unsigned char)px[i];
    vlpt_free(f);
    vlp_image im = {W, H, VLP_IMAGE_RGB, rgb, NULL};
    assert_int_equal(vlp_preprocess_image(m, &im, b, &err), VLP_OK);
    assert_memory_equal(a, b, sizeof(float) * n);
    float e1[E], e2[E];
    assert_int_equal(vlp_encode_images(m, b, 1, e1, &err), VLP_OK);
    assert_int_equal(vlp_encode_image_files(m, &file, 1, e2, &err), VLP_OK);
    assert_memory_equal(e1, e2, sizeof e1);
    im.mode = 42;
    assert_int_equal(vlp_preprocess_image(m, &im, b, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "mode 42"));
    im.mode = VLP_IMAGE_P; /* no palette */
    assert_int_equal(vlp_preprocess_image(m, &im, b, &err), VLP_ERR_ARG);
    im.mode = VLP_IMAGE_RGB, im.width = 0;
    assert_int_equal(vlp_preprocess_image(m, &im, b, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "a 0x"));
    assert_int_equal(vlp_preprocess_image_file(m, "/nonexistent.png", b, &err), VLP_ERR_IO);
    assert_true(vlp_model_parameter_count(m) > 1000);
    char json[4096], tiny[8];
    assert_int_equal(vlp_model_config_json(m, json, sizeof json, &err), VLP_OK);
    assert_non_null(strstr(json, "\"embed_dim\"")), assert_non_null(strstr(json, "\"vision_cfg\""));
    assert_int_equal(vlp_model_config_json(m, tiny, sizeof tiny, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "the buffer has 8"));
    free(a), free(b), free(rgb);
    vlp_model_free(m);
}

/* vlp_search against a brute force in doubles: the same rows in the same
 * order (ties by lower row), k past the rows, a zero row, several blocks of
 * rows and of queries */
static void test_search(void **state) {
    enum { ROWS = 9000, D = 7, NQ = 1100, K = 5 };
    float *x = malloc(sizeof(float) * ROWS * D), *q = malloc(sizeof(float) * NQ * D);
    unsigned s = 12345;
    for (int i = 0; i < ROWS * D; i++) s = s * 1103515245u + 12345u, x[i] = (float)((s >> 16) % 7) - 3;
    for (int i = 0; i < NQ * D; i++) s = s * 1103515245u + 12345u, q[i] = (float)((s >> 16) % 5) - 2;
    memset(x + 17 * D, 0, sizeof(float) * D);    /* a zero row */
    memcpy(x + 8000 * D, x + 5 * D, sizeof(float) * D); /* a tie: row 5 ranks first */
    long *ids = malloc(sizeof(long) * NQ * K);
    float *sc = malloc(sizeof(float) * NQ * K);
    vlp_error err;
    assert_int_equal(vlp_search(x, ROWS, D, q, NQ, K, ids, sc, &err), VLP_OK);
    for (int i = 0; i < NQ; i += 37) {
        double qn = 0;
        for (int c = 0; c < D; c++) qn += (double)q[i * D + c] * q[i * D + c];
        for (int j = 0; j < K; j++) {
            long r = ids[i * K + j];
            assert_true(r >= 0 && r < ROWS);
            double d = 0, rn = 0;
            for (int c = 0; c < D; c++) d += (double)q[i * D + c] * x[r * D + c], rn += (double)x[r * D + c] * x[r * D + c];
            double want = qn > 0 && rn > 0 ? d / sqrt(qn * rn) : 0;
            assert_true(fabs(want - sc[i * K + j]) < 1e-5);
            if (j) assert_true(sc[i * K + j] <= sc[i * K + j - 1]);
            /* nothing outside the answer scores higher */
            if (j == K - 1)
                for (long o = 0; o < ROWS; o++) {
                    bool in = false;
                    for (int a = 0; a < K; a++) in = in || ids[i * K + a] == o;
                    if (in) continue;
                    double od = 0, on = 0;
                    for (int c = 0; c < D; c++) od += (double)q[i * D + c] * x[o * D + c], on += (double)x[o * D + c] * x[o * D + c];
                    double os = qn > 0 && on > 0 ? od / sqrt(qn * on) : 0;
                    assert_true(os <= sc[i * K + j] + 1e-5);
                }
        }
    }
    /* row 5 and its copy 8000: the query equal to row 5 finds 5, then 8000 */
    long two[2];
    float two_sc[2];
    assert_int_equal(vlp_search(x, ROWS, D, x + 5 * D, 1, 2, two, two_sc, &err), VLP_OK);
    assert_int_equal(two[0], 5), assert_int_equal(two[1], 8000);
    assert_true(fabs(two_sc[0] - 1) < 1e-6 && two_sc[0] == two_sc[1]);
    /* k past the rows: -1 and -inf after them */
    long few[4];
    float few_sc[4];
    assert_int_equal(vlp_search(x, 2, D, q, 1, 4, few, few_sc, &err), VLP_OK);
    assert_true(few[0] >= 0 && few[1] >= 0 && few[2] == -1 && few[3] == -1 && isinf(few_sc[3]));
    assert_int_equal(vlp_search(x, ROWS, D, q, 1, 0, few, few_sc, &err), VLP_ERR_ARG);
    free(x), free(q), free(ids), free(sc);
}

static int stop_at_once(void *user, long long images) { return ++*(int *)user > 0; }

/* vlp_eval on a small set: the tasks by default, the counts, a caller's stop */
static void test_eval(void **state) {
    char dir[] = "/tmp/vlp-capi-eval.XXXXXX", path[600];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/set.tsv", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    const char *img[] = {"modes/grey.png", "modes/palette.png", "modes/rgba_alpha.png", "modes/bmp_rgb24.bmp",
                         "modes/tiff_rgb_lzw.tif", "modes/grey.gif"};
    fprintf(fp, "filepath\ttitle\tlabel\n");
    char abs[PATH_MAX]; /* a set's relative paths are its directory's */
    for (int i = 0; i < 24; i++) /* four times over: the probe has rows to train on and to test */
        fprintf(fp, "%s\ta picture of kind %d\t%s\n", realpath(ref_path(img[i % 6]), abs), i % 3, i % 2 ? "odd" : "even");
    fprintf(fp, "%s\ta broken picture\todd\n", realpath(ref_path("api_merges.txt"), abs));
    fclose(fp);
    vlp_model *m = load();
    vlp_eval_opts o = vlp_eval_opts_default();
    o.data = path, o.label_key = "label";
    vlp_eval_result r;
    vlp_error err;
    if (vlp_eval(m, &o, &r, &err) != VLP_OK) fail_msg("%s", err.message);
    assert_int_equal(r.images, 24), assert_int_equal(r.undecodable, 1);
    assert_non_null(strstr(r.first_undecodable, "api_merges.txt"));
    assert_true(r.has_zeroshot && r.has_retrieval && r.has_probe && !r.has_caption);
    assert_int_equal(r.classes, 2), assert_int_equal(r.texts, 3);
    assert_int_equal(r.class_images[0] + r.class_images[1], 24);
    assert_true(!strcmp(r.class_names[0], "even") && !strcmp(r.class_names[1], "odd"));
    assert_true(r.top1 >= 0 && r.top1 <= 1 && r.i2t_r10 == 1.0); /* 3 texts: all within 10 */
    vlp_eval_result_free(&r);
    int calls = 0;
    o.progress = stop_at_once, o.user = &calls;
    assert_int_equal(vlp_eval(m, &o, &r, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "stopped by the caller"));
    o = vlp_eval_opts_default(), o.data = path, o.linear_probe = true;
    assert_int_equal(vlp_eval(m, &o, &r, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "need the labels' key"));
    o.data = "/nonexistent/set.tsv", o.linear_probe = false;
    assert_int_not_equal(vlp_eval(m, &o, &r, &err), VLP_OK);
    assert_non_null(strstr(err.message, "/nonexistent/set.tsv"));
    vlp_model_free(m);
    remove(path), rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_options),
        cmocka_unit_test(test_embeddings_match_pytorch),
        cmocka_unit_test(test_bf16_embeddings_close),
        cmocka_unit_test(test_encode_classes),
        cmocka_unit_test(test_head_width_from_config),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_preprocess_memory),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_eval),
    };
    return cmocka_run_group_tests_name("c_api", tests, NULL, NULL);
}
