/* vlp embed / search / classify: using a model (pretrained or vlp-trained). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "model_args.h"
#include "progress.h"
#include "blas_env.h"
#include "commands.h"
#include "data/image.h"
#include "io/npy.h"
#include "vlp.h"

/* encodes in chunks with a progress line */
static int encode_all(vlp_model *m, char **items, int n, bool images, float *out, const char *cmd) {
    int E = vlp_model_embed_dim(m), chunk = 64;
    vlp_error err = {0};
    progress pr;
    progress_begin(&pr, stderr, images ? "images" : "texts", n);
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        vlp_err rc = images ? vlp_encode_image_files(m, (const char *const *)items + i, k, out + (size_t)i * E, &err)
                            : vlp_encode_texts(m, (const char *const *)items + i, k, out + (size_t)i * E, &err);
        if (rc != VLP_OK) {
            char buf[1024];
            progress_break(&pr);
            fprintf(stderr, "vlp %s: %s\n", cmd, vlp_error_format(&err, buf, sizeof buf));
            return 1;
        }
        progress_update(&pr, i + k);
    }
    progress_end(&pr, n);
    return 0;
}

int cmd_embed(int argc, char **argv) {
    model_args a = {.o = vlp_model_opts_default()};
    const char *images = NULL, *texts = NULL, *out = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "embed", &bad)) {
            printf("usage: vlp embed --model FILE (--images LIST | --texts FILE) --out OUT.npy [options]\n"
                   "Embeds images (CLIP's eval preprocessing) or texts into a float32 .npy [N, D],\n"
                   "rows L2-normalised (numpy: np.load(OUT)).\n"
                   "  -i, --images LIST     image paths, one a line ('-': stdin)\n"
                   "  -T, --texts FILE      texts, one a line ('-': stdin)\n"
                   "  -o, --out FILE        the .npy to write\n"
                   "      --no-normalize    the projected features before L2 normalisation\n" MODEL_HELP);
            return 0;
        } else if (model_arg(argc, argv, &i, &a, "embed", &bad)) continue;
        else if (arg_is(argc, argv, &i, "-i", "--images", true, "embed", &bad)) images = argv[++i];
        else if (arg_is(argc, argv, &i, "-T", "--texts", true, "embed", &bad)) texts = argv[++i];
        else if (arg_is(argc, argv, &i, "-o", "--out", true, "embed", &bad)) out = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--no-normalize", false, "embed", &bad)) a.o.normalize = false;
        else if (!bad) fprintf(stderr, "vlp embed: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !out || (!images == !texts)) {
        if (!bad) fprintf(stderr, "vlp embed: give --out and one of --images, --texts (try --help)\n");
        return 2;
    }
    int n = 0;
    char **items = read_lines(images ? images : texts, false, &n);
    if (!items) return 1;
    vlp_model *m = open_model(&a, "embed");
    if (!m) return free_lines(items, n), 1;
    int E = vlp_model_embed_dim(m);
    float *emb = malloc(sizeof(float) * (size_t)(n ? n : 1) * E);
    int rc = emb ? encode_all(m, items, n, images != NULL, emb, "embed") : 1;
    vlp_error err = {0};
    if (!rc && npy_write_f32(out, emb, n, E, &err) != VLP_OK) {
        char buf[1024];
        fprintf(stderr, "vlp embed: %s\n", vlp_error_format(&err, buf, sizeof buf));
        rc = 1;
    }
    if (!rc) fprintf(stderr, "wrote %s: %d x %d float32\n", out, n, E);
    free(emb);
    free_lines(items, n);
    vlp_model_free(m);
    return rc;
}

typedef struct hit {
    float score;
    int index;
} hit;

static int by_score(const void *a, const void *b) {
    float x = ((const hit *)a)->score, y = ((const hit *)b)->score;
    return x < y ? 1 : x > y ? -1 : ((const hit *)a)->index - ((const hit *)b)->index;
}

int cmd_search(int argc, char **argv) {
    model_args a = {.o = vlp_model_opts_default()};
    const char *index = NULL, *text = NULL, *image = NULL, *names = NULL;
    long k = 5;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "search", &bad)) {
            printf("usage: vlp search --index EMB.npy (--text Q | --image F) --model FILE [-k N] [--names LIST]\n"
                   "The k rows of the index most similar (cosine) to the query's embedding.\n"
                   "  -x, --index FILE      embeddings from vlp embed\n"
                   "      --text Q, --image F   the query\n"
                   "  -k N                  results (default 5)\n"
                   "  -n, --names LIST      what each index row is (the list given to vlp embed)\n" MODEL_HELP);
            return 0;
        } else if (model_arg(argc, argv, &i, &a, "search", &bad)) continue;
        else if (arg_is(argc, argv, &i, "-x", "--index", true, "search", &bad)) index = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--text", true, "search", &bad)) text = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--image", true, "search", &bad)) image = argv[++i];
        else if (arg_is(argc, argv, &i, "-n", "--names", true, "search", &bad)) names = argv[++i];
        else if (arg_is(argc, argv, &i, "-k", NULL, true, "search", &bad)) bad = !arg_long("search", "-k", argv[++i], 1, 1 << 20, &k);
        else if (!bad) fprintf(stderr, "vlp search: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !index || (!text == !image)) {
        if (!bad) fprintf(stderr, "vlp search: give --index and one of --text, --image (try --help)\n");
        return 2;
    }
    float *idx;
    int64_t rows, cols;
    vlp_error err = {0};
    char buf[1024];
    if (npy_read_f32(index, &idx, &rows, &cols, &err) != VLP_OK) {
        fprintf(stderr, "vlp search: %s\n", vlp_error_format(&err, buf, sizeof buf));
        return 1;
    }
    int nn = 0;
    char **nm = names ? read_lines(names, false, &nn) : NULL;
    if (names && !nm) return free(idx), 1;
    vlp_model *m = open_model(&a, "search");
    int rc = m ? 0 : 1;
    if (!rc && cols != vlp_model_embed_dim(m)) {
        fprintf(stderr, "vlp search: %s has %lld columns, the model embeds in %d\n", index, (long long)cols, vlp_model_embed_dim(m));
        rc = 1;
    }
    float *q = rc ? NULL : malloc(sizeof(float) * (size_t)cols);
    if (!rc) {
        vlp_err e = text ? vlp_encode_texts(m, &text, 1, q, &err) : vlp_encode_image_files(m, &image, 1, q, &err);
        if (e != VLP_OK) fprintf(stderr, "vlp search: %s\n", vlp_error_format(&err, buf, sizeof buf)), rc = 1;
    }
    if (!rc) {
        hit *h = malloc(sizeof(hit) * (size_t)(rows ? rows : 1));
        for (int64_t r = 0; r < rows; r++) {
            double s = 0, nr = 0;
            for (int64_t c = 0; c < cols; c++) s += (double)q[c] * idx[r * cols + c], nr += (double)idx[r * cols + c] * idx[r * cols + c];
            h[r] = (hit){(float)(s / sqrt(nr > 0 ? nr : 1)), (int)r};
        }
        qsort(h, (size_t)rows, sizeof(hit), by_score);
        for (int64_t r = 0; r < rows && r < k; r++)
            printf("%lld\t%.4f\t%s\n", (long long)r + 1, h[r].score,
                   nm && h[r].index < nn ? nm[h[r].index] : (snprintf(buf, sizeof buf, "row %d", h[r].index), buf));
        free(h);
    }
    free(q), free(idx);
    free_lines(nm, nn);
    vlp_model_free(m);
    return rc;
}

/* classes from the most likely down, with their softmax probability: h the
 * classes' logits (sorted here), mx the largest */
static void print_softmax(hit *h, int C, double mx, const char *const *names) {
    double z = 0;
    for (int c = 0; c < C; c++) z += exp(h[c].score - mx);
    qsort(h, (size_t)C, sizeof(hit), by_score);
    for (int c = 0; c < C; c++) printf("%.4f\t%s\n", exp(h[c].score - mx) / z, names[h[c].index]);
}

/* comma-separated labels, cut in place: their count (at most cap) */
static int split_labels(char *list, char **lab, int cap) {
    int n = 0;
    char *save;
    for (char *t = list ? strtok_r(list, ",", &save) : NULL; t && n < cap; t = strtok_r(NULL, ",", &save)) lab[n++] = t;
    return n;
}

/* the softmax of a learnt classifier's logits */
static int classify_prompts(const model_args *a, const char *image, const char *labels, const char *file) {
    vlp_model *m = open_model(a, "classify");
    if (!m) return 1;
    vlp_prompts *p = NULL;
    vlp_error err = {0};
    char buf[1024], *copy = labels ? strdup(labels) : NULL, *lab[1024];
    int nl = split_labels(copy, lab, 1024), rc = vlp_prompts_load(&p, m, file, &err) != VLP_OK;
    if (!rc && labels && vlp_prompts_set_classes(p, (const char *const *)lab, nl, &err) != VLP_OK) rc = 1;
    int C = rc ? 0 : vlp_prompts_class_count(p), E = vlp_model_embed_dim(m);
    float *img = malloc(sizeof(float) * (size_t)E), *logit = malloc(sizeof(float) * (size_t)(C ? C : 1));
    if (!rc && (!img || !logit)) rc = 1, snprintf(err.message, sizeof err.message, "out of memory");
    if (!rc && (vlp_prompts_encode_image_files(p, &image, 1, img, &err) != VLP_OK ||
                vlp_prompts_scores(p, img, 1, logit, &err) != VLP_OK))
        rc = 1;
    if (rc) fprintf(stderr, "vlp classify: %s\n", vlp_error_format(&err, buf, sizeof buf));
    else {
        fprintf(stderr, "%s: %s\n", file, vlp_prompts_describe(p, buf, sizeof buf));
        hit *h = malloc(sizeof(hit) * (size_t)C);
        const char **names = malloc(sizeof(char *) * (size_t)C);
        double mx = -1e30;
        for (int c = 0; h && names && c < C; c++)
            h[c] = (hit){logit[c], c}, mx = fmax(mx, logit[c]), names[c] = vlp_prompts_class_name(p, c);
        if (h && names) print_softmax(h, C, mx, names);
        free(h), free(names);
    }
    free(img), free(logit), free(copy);
    vlp_prompts_free(p);
    vlp_model_free(m);
    return rc;
}

int cmd_classify(int argc, char **argv) {
    model_args a = {.o = vlp_model_opts_default()};
    const char *image = NULL, *labels = NULL, *templates = TEMPLATES_DEFAULT, *prompts_file = NULL;
    int bad = 0;
    bool tpl_given = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "classify", &bad)) {
            printf("usage: vlp classify --model FILE --image F (--labels \"cat,dog,car\" [--templates T] | --prompts P)\n"
                   "Zero-shot: the probability of each label, softmax over 100 * cosine between the\n"
                   "image and each label's text embedding (the normalised mean over the templates,\n"
                   "renormalised, as CLIP's prompt ensembles). With --prompts: the softmax of the\n"
                   "learnt classifier's logits (prompts from 'vlp adapt', the model's logit scale).\n"
                   "  -l, --labels LIST     comma-separated labels (with --prompts: default the file's\n"
                   "                        classes)\n" TEMPLATES_HELP
                   "      --prompts FILE    prompts learnt by 'vlp adapt' in place of the templates\n" MODEL_HELP);
            return 0;
        } else if (model_arg(argc, argv, &i, &a, "classify", &bad)) continue;
        else if (arg_is(argc, argv, &i, NULL, "--image", true, "classify", &bad)) image = argv[++i];
        else if (arg_is(argc, argv, &i, "-l", "--labels", true, "classify", &bad)) labels = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--templates", true, "classify", &bad)) templates = argv[++i], tpl_given = true;
        else if (arg_is(argc, argv, &i, NULL, "--prompts", true, "classify", &bad)) prompts_file = argv[++i];
        else if (!bad) fprintf(stderr, "vlp classify: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !image || (!labels && !prompts_file)) {
        if (!bad) fprintf(stderr, "vlp classify: --image and --labels (or --prompts) are required (try --help)\n");
        return 2;
    }
    if (prompts_file && tpl_given) {
        fprintf(stderr, "vlp classify: --prompts takes the place of --templates: give one of them\n");
        return 2;
    }
    if (prompts_file) return classify_prompts(&a, image, labels, prompts_file);
    int nt = 0;
    char *copy = strdup(labels), *lab[1024];
    int nl = split_labels(copy, lab, 1024);
    char **tpl = read_templates(templates, "classify", &nt);
    if (!tpl) return free(copy), 1;
    vlp_model *m = open_model(&a, "classify");
    int rc = m && nl ? 0 : 1, E = m ? vlp_model_embed_dim(m) : 0;
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)E), *cls = rc ? NULL : malloc(sizeof(float) * (size_t)nl * E);
    vlp_error err = {0};
    char buf[1024];
    if (!rc && (vlp_encode_image_files(m, &image, 1, img, &err) != VLP_OK ||
                vlp_encode_classes(m, (const char *const *)lab, nl, (const char *const *)tpl, nt, cls, &err) != VLP_OK))
        rc = 1;
    if (rc && m) fprintf(stderr, "vlp classify: %s\n", vlp_error_format(&err, buf, sizeof buf));
    if (!rc) {
        hit *h = malloc(sizeof(hit) * (size_t)nl);
        double mx = -1e30;
        for (int c = 0; h && c < nl; c++) {
            double s = 0;
            for (int k = 0; k < E; k++) s += (double)img[k] * cls[(size_t)c * E + k];
            h[c] = (hit){(float)(100 * s), c};
            mx = fmax(mx, 100 * s);
        }
        if (h) print_softmax(h, nl, mx, (const char *const *)lab);
        free(h);
    }
    free(img), free(cls), free(copy);
    free_lines(tpl, nt);
    vlp_model_free(m);
    return rc;
}

int cmd_caption(int argc, char **argv) {
    model_args a = {.o = vlp_model_opts_default()};
    long beam = 1;
    bool white = false;
    int bad = 0, nimg = 0;
    char **images = calloc((size_t)argc, sizeof(char *));
    if (!images) return 1;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "caption", &bad)) {
            printf("usage: vlp caption --model FILE [--beam K] [--white-background] IMAGE...\n"
                   "Captions images with a CoCa model's text decoder (a model trained with\n"
                   "--objective coca). Prints one line per image: path, mean token log-probability,\n"
                   "caption (lower case, as the tokenizer saw the training captions).\n"
                   "  -k, --beam K           beam search with K hypotheses and length-normalised\n"
                   "                         scores; 1 = greedy (default 1)\n"
                   "      --white-background composite transparent pixels on white, as training\n"
                   "                         with --white-background did (default: drop alpha)\n" MODEL_HELP);
            free(images);
            return 0;
        } else if (model_arg(argc, argv, &i, &a, "caption", &bad)) continue;
        else if (arg_is(argc, argv, &i, "-k", "--beam", true, "caption", &bad))
            bad = !arg_long("caption", "--beam", argv[++i], 1, 64, &beam);
        else if (arg_is(argc, argv, &i, NULL, "--white-background", false, "caption", &bad)) white = true;
        else if (argv[i][0] == '-' && argv[i][1]) {
            if (!bad) fprintf(stderr, "vlp caption: unknown option '%s' (try --help)\n", argv[i]);
            bad = 1;
        } else images[nimg++] = argv[i];
    }
    if (bad || !nimg) {
        if (!bad) fprintf(stderr, "vlp caption: give at least one image (try --help)\n");
        free(images);
        return 2;
    }
    if (a.o.batch < beam) a.o.batch = (int)beam; /* the hypotheses run as one batch */
    vlp_model *m = open_model(&a, "caption");
    int rc = m ? 0 : 1;
    vlp_error err = {0};
    char buf[1024];
    if (!rc && !vlp_model_has_decoder(m)) {
        fprintf(stderr, "vlp caption: %s has no text decoder: train one with --objective coca "
                        "and a config with multimodal_cfg\n", a.model);
        rc = 1;
    }
    int S = m ? vlp_model_image_size(m) : 0;
    float *pix = rc ? NULL : malloc(sizeof(float) * 3 * (size_t)S * S);
    if (!rc && !pix) fprintf(stderr, "vlp caption: out of memory\n"), rc = 1;
    image_transform tf = image_transform_default(S, false);
    image_decode_opts dec = {.composite = white, .background = {255, 255, 255}};
    progress pr;
    progress_begin(&pr, stderr, "captions", nimg);
    for (int i = 0; !rc && i < nimg; i++) {
        image_u8 im;
        char *text = NULL;
        float score = 0;
        vlp_err e = image_load(images[i], &dec, &im, &err);
        if (e == VLP_OK) {
            e = image_transform_apply(&tf, &im, NULL, pix, &err);
            image_free(&im);
        }
        if (e == VLP_OK) e = vlp_caption_images(m, pix, 1, (int)beam, &text, &score, &err);
        progress_break(&pr);
        if (e != VLP_OK) {
            fprintf(stderr, "vlp caption: %s\n", vlp_error_format(&err, buf, sizeof buf));
            rc = 1;
        } else printf("%s\t%.3f\t%s\n", images[i], score, text), fflush(stdout);
        free(text);
        if (!rc) progress_update(&pr, i + 1);
    }
    if (!rc && nimg) progress_end(&pr, nimg);
    free(pix), free(images);
    vlp_model_free(m);
    return rc;
}
