/* vlp embed / search / classify: using a model (pretrained or vlp-trained). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "model_args.h"
#include "api/model_access.h"
#include "progress.h"
#include "blas_env.h"
#include "commands.h"
#include "data/image.h"
#include "io/atomic.h"
#include "io/npy.h"
#include "vlp.h"

/* texts encoded in chunks with a progress line (images: encode_images_skipping) */
static int encode_texts(vlp_model *m, char **items, int n, float *out) {
    int E = vlp_model_embed_dim(m), chunk = 64;
    vlp_error err = {0};
    progress pr;
    progress_begin(&pr, stderr, "texts", n);
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        if (vlp_encode_texts(m, (const char *const *)items + i, k, out + (size_t)i * E, &err) != VLP_OK) {
            char buf[1024];
            progress_break(&pr);
            fprintf(stderr, "vlp embed: %s\n", tool_error_text(&err, buf, sizeof buf));
            return 1;
        }
        progress_update(&pr, i + k);
    }
    progress_end(&pr, n);
    return 0;
}

typedef struct embed_args {
    model_args m;
    const char *images, *texts, *out, *on_error;
} embed_args;

static const opt_desc embed_opts[] = {
    {NULL, "-i", "--images", "LIST", &opt_string, offsetof(embed_args, images), 0, 0, 0, HELP_IMAGE_LIST, NULL},
    {NULL, "-T", "--texts", "FILE", &opt_string, offsetof(embed_args, texts), 0, 0, 0, HELP_TEXT_LIST, NULL},
    {NULL, "-o", "--out", "FILE", &opt_string, offsetof(embed_args, out), 0, 0, OPT_REQUIRED,
     "the .npy to write", NULL},
    {NULL, NULL, "--no-normalize", NULL, &opt_switch_off, offsetof(embed_args, m.o.normalize), 0, 0, 0,
     "the projected features before L2 normalisation", NULL},
    ON_ERROR_OPT(embed_args, on_error),
};

/* OUT.npy's companion: the path of each row, OUT.paths.txt (OUT.npy minus .npy) */
static void paths_file_of(const char *out, char *buf, size_t cap) {
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".npy")) n -= 4;
    snprintf(buf, cap, "%.*s.paths.txt", (int)n, out);
}

/* the rows' paths, atomically; false after a message */
static bool write_paths(const char *path, char **items, const bool *ok, int n) {
    atomic_file af;
    vlp_error err = {0};
    if (atomic_open(&af, path, &err) == VLP_OK) {
        for (int i = 0; i < n; i++)
            if (ok[i]) fprintf(af.fp, "%s\n", items[i]);
        if (atomic_commit(&af, &err) == VLP_OK) return true;
    }
    char buf[1024];
    fprintf(stderr, "vlp embed: %s\n", tool_error_text(&err, buf, sizeof buf));
    return false;
}

/* the images that decode, in chunks with a progress line; a bad one named
 * and skipped (or, with stop, the end); *rows written */
static int encode_images_skipping(vlp_model *m, char **items, int n, bool stop, float *out, bool *ok, int *rows,
                                  int *skipped) {
    enum { CHUNK = 64 };
    int E = vlp_model_embed_dim(m);
    vlp_error err = {0}, *bad = calloc(CHUNK, sizeof *bad);
    char buf[1024];
    if (!bad) return fprintf(stderr, "vlp embed: out of memory\n"), 1;
    progress pr;
    progress_begin(&pr, stderr, "images", n);
    *rows = *skipped = 0;
    int rc = 0;
    for (int i = 0; !rc && i < n; i += CHUNK) {
        int k = n - i < CHUNK ? n - i : CHUNK, got = 0;
        if (vlp_encode_image_files_skipping(m, (const char *const *)items + i, k, out + (size_t)*rows * E, ok + i,
                                            &got, bad, &err) != VLP_OK) {
            progress_break(&pr);
            fprintf(stderr, "vlp embed: %s\n", tool_error_text(&err, buf, sizeof buf));
            rc = 1;
            break;
        }
        *rows += got;
        for (int j = 0; !rc && j < k; j++) {
            if (ok[i + j]) continue;
            progress_break(&pr);
            (*skipped)++;
            if (stop) fprintf(stderr, "vlp embed: %s (--on-error stop)\n", tool_error_text(&bad[j], buf, sizeof buf)), rc = 1;
            else fprintf(stderr, "vlp embed: skipped: %s\n", tool_error_text(&bad[j], buf, sizeof buf));
        }
        if (!rc) progress_update(&pr, i + k);
    }
    if (!rc) progress_end(&pr, n);
    free(bad);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    embed_args e = {.m = model_args_default()};
    const opt_group groups[] = {{embed_opts, (int)(sizeof embed_opts / sizeof *embed_opts), &e},
                                MODEL_GROUP(&e.m)};
    const cmd_spec spec = {
        .name = "embed",
        .usage = "vlp embed --model FILE (--images LIST | --texts FILE) --out OUT.npy [options]",
        .about = "Embeds images (CLIP's eval preprocessing) or texts into a float32 .npy [N, D],\n"
                 "rows L2-normalised (numpy: np.load(OUT)).",
        .groups = groups, .ngroups = 2};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *images = e.images, *texts = e.texts, *out = e.out;
    model_args a = e.m;
    int stop = on_error_stop(e.on_error, "embed");
    if (stop < 0) return 2;
    if (!images == !texts) {
        fprintf(stderr, "vlp embed: give --out and one of --images, --texts (try --help)\n");
        return 2;
    }
    int n = 0;
    char **items = read_lines(images ? images : texts, false, &n);
    if (!items) return 1;
    if (images && !paths_beside(images, items, n)) return free_lines(items, n), 1;
    if (n == 0) {
        fprintf(stderr, "vlp embed: %s holds no %s (one a line)\n", images ? images : texts, images ? "image path" : "text");
        free_lines(items, n);
        return 1;
    }
    if (!output_writable(out, "embed")) return free_lines(items, n), 1; /* before the work, not after it */
    vlp_model *m = open_model(&a, "embed");
    if (!m) return free_lines(items, n), 1;
    int E = vlp_model_embed_dim(m), rows = n, skipped = 0;
    float *emb = malloc(sizeof(float) * (size_t)(n ? n : 1) * E);
    bool *ok = images ? calloc((size_t)n, sizeof(bool)) : NULL;
    int rc = !emb || (images && !ok) ? (fprintf(stderr, "vlp embed: out of memory\n"), 1) : 0;
    if (!rc) rc = images ? encode_images_skipping(m, items, n, stop, emb, ok, &rows, &skipped)
                         : encode_texts(m, items, n, emb);
    char paths[4200] = "";
    if (images) paths_file_of(out, paths, sizeof paths);
    if (!rc && images && rows == 0) {
        fprintf(stderr, "vlp embed: none of the %d images could be read; nothing written\n", n);
        rc = 1;
    }
    vlp_error err = {0};
    if (!rc && npy_write_f32(out, emb, rows, E, &err) != VLP_OK) {
        char buf[1024];
        fprintf(stderr, "vlp embed: %s\n", tool_error_text(&err, buf, sizeof buf));
        rc = 1;
    }
    if (!rc && images && !write_paths(paths, items, ok, n)) rc = 1, remove(out);
    if (!rc) fprintf(stderr, "wrote %s: %d x %d float32%s%s\n", out, rows, E, images ? "; the path of each row: " : "",
                     paths);
    if (!rc && skipped) {
        fprintf(stderr, "embedded %d of %d images; skipped %d that could not be read (named above)\n", rows, n,
                skipped);
        rc = ON_ERROR_SKIPPED_EXIT;
    }
    free(emb), free(ok);
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

typedef struct search_args {
    model_args m;
    const char *index, *text, *image, *names;
    long k;
} search_args;

static const opt_desc search_opts[] = {
    {NULL, "-x", "--index", "FILE", &opt_string, offsetof(search_args, index), 0, 0, OPT_REQUIRED,
     "embeddings from vlp embed", NULL},
    {NULL, NULL, "--text", "Q", &opt_string, offsetof(search_args, text), 0, 0, 0, "the query: a text", NULL},
    {NULL, NULL, "--image", "F", &opt_string, offsetof(search_args, image), 0, 0, 0, "the query: an image", NULL},
    {NULL, "-k", "--top", "N", &opt_long, offsetof(search_args, k), 1, 1 << 20, 0, "results", NULL},
    {NULL, NULL, "--names", "LIST", &opt_string, offsetof(search_args, names), 0, 0, 0,
     "what each index row is (vlp embed writes it beside the index: OUT.paths.txt)", NULL},
};

int cmd_search(int argc, char **argv) {
    search_args sa = {.m = model_args_default(), .k = 5};
    const opt_group groups[] = {{search_opts, (int)(sizeof search_opts / sizeof *search_opts), &sa},
                                MODEL_GROUP(&sa.m)};
    const cmd_spec spec = {
        .name = "search",
        .usage = "vlp search --index EMB.npy (--text Q | --image F) --model FILE [-k N] [--names LIST]",
        .about = "The k rows of the index most similar (cosine) to the query's embedding.",
        .groups = groups, .ngroups = 2};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    model_args a = sa.m;
    const char *index = sa.index, *text = sa.text, *image = sa.image, *names = sa.names;
    long k = sa.k;
    if (!text == !image) {
        fprintf(stderr, "vlp search: give --index and one of --text, --image (try --help)\n");
        return 2;
    }
    float *idx;
    int64_t rows, cols;
    vlp_error err = {0};
    char buf[1024];
    if (npy_read_f32(index, &idx, &rows, &cols, &err) != VLP_OK) {
        fprintf(stderr, "vlp search: %s\n", tool_error_text(&err, buf, sizeof buf));
        return 1;
    }
    int nn = 0;
    char **nm = names ? read_lines(names, false, &nn) : NULL;
    if (names && !nm) return free(idx), 1;
    if (nm && nn != rows) { /* a list of another set, or shifted: the names printed would be wrong */
        fprintf(stderr, "vlp search: %s has %d names, %s has %lld rows: give the list the index was embedded from\n",
                names, nn, index, (long long)rows);
        free_lines(nm, nn);
        free(idx);
        return 2;
    }
    vlp_model *m = open_model(&a, "search");
    int rc = m ? 0 : 1;
    if (!rc && cols != vlp_model_embed_dim(m)) {
        fprintf(stderr, "vlp search: %s has %lld columns, the model embeds in %d\n", index, (long long)cols, vlp_model_embed_dim(m));
        rc = 1;
    }
    float *q = rc ? NULL : malloc(sizeof(float) * (size_t)cols);
    if (!rc) {
        vlp_err e = text ? vlp_encode_texts(m, &text, 1, q, &err) : vlp_encode_image_files(m, &image, 1, q, &err);
        if (e != VLP_OK) fprintf(stderr, "vlp search: %s\n", tool_error_text(&err, buf, sizeof buf)), rc = 1;
    }
    int top = (int)(k < rows ? k : rows);
    long *ids = rc || !top ? NULL : malloc(sizeof(long) * (size_t)top);
    float *sc = rc || !top ? NULL : malloc(sizeof(float) * (size_t)top);
    if (!rc && top && (!ids || !sc)) fprintf(stderr, "vlp search: out of memory\n"), rc = 1;
    if (!rc && top && vlp_search(idx, (long)rows, (int)cols, q, 1, top, ids, sc, &err) != VLP_OK)
        fprintf(stderr, "vlp search: %s\n", tool_error_text(&err, buf, sizeof buf)), rc = 1;
    for (int r = 0; !rc && r < top; r++)
        printf("%d\t%.4f\t%s\n", r + 1, sc[r],
               nm && ids[r] < nn ? nm[ids[r]] : (snprintf(buf, sizeof buf, "row %ld", ids[r]), buf));
    free(ids), free(sc);
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
    if (rc) fprintf(stderr, "vlp classify: %s\n", tool_error_text(&err, buf, sizeof buf));
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

typedef struct classify_args {
    model_args m;
    const char *image, *labels, *templates, *prompts;
} classify_args;

static const opt_desc classify_opts[] = {
    {NULL, NULL, "--image", "F", &opt_string, offsetof(classify_args, image), 0, 0, OPT_REQUIRED,
     "the image", NULL},
    {NULL, "-l", "--labels", "LIST", &opt_string, offsetof(classify_args, labels), 0, 0, 0,
     "comma-separated labels (with --prompts: default the file's classes)", NULL},
    {NULL, NULL, "--templates", "T", &opt_string, offsetof(classify_args, templates), 0, 0, 0,
     "zero-shot templates: a name shipped with vlp (\"default\": \"a photo of a {}.\"; openai-imagenet: "
      "the CLIP paper's 80) or a file, a template a line, {} for the class", NULL},
    {NULL, NULL, "--prompts", "FILE", &opt_string, offsetof(classify_args, prompts), 0, 0, 0,
     "prompts learnt by 'vlp adapt' in place of the templates", NULL},
};

int cmd_classify(int argc, char **argv) {
    classify_args ca = {.m = model_args_default(), .templates = TEMPLATES_DEFAULT};
    const opt_group groups[] = {{classify_opts, (int)(sizeof classify_opts / sizeof *classify_opts), &ca},
                                MODEL_GROUP(&ca.m)};
    static const char *const exclusive[][2] = {{"--prompts", "--templates"}, {NULL}};
    const cmd_spec spec = {
        .name = "classify", .exclusive = exclusive,
        .usage = "vlp classify --model FILE --image F (--labels \"cat,dog,car\" [--templates T] | --prompts P)",
        .about = "Zero-shot: the probability of each label, softmax over 100 * cosine between the\n"
                 "image and each label's text embedding (the normalised mean over the templates,\n"
                 "renormalised, as CLIP's prompt ensembles). With --prompts: the softmax of the\n"
                 "learnt classifier's logits (prompts from 'vlp adapt', the model's logit scale).",
        .groups = groups, .ngroups = 2};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    model_args a = ca.m;
    const char *image = ca.image, *labels = ca.labels, *templates = ca.templates, *prompts_file = ca.prompts;
    if (!labels && !prompts_file) {
        fprintf(stderr, "vlp classify: --image and --labels (or --prompts) are required (try --help)\n");
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
    if (rc && m) fprintf(stderr, "vlp classify: %s\n", tool_error_text(&err, buf, sizeof buf));
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

typedef struct caption_args {
    model_args m;
    long beam;
} caption_args;

static const opt_desc caption_opts[] = {
    {NULL, NULL, "--beam", "K", &opt_long, offsetof(caption_args, beam), 1, 64, 0,
     "beam search with K hypotheses and length-normalised scores; 1 = greedy", NULL},
};

int cmd_caption(int argc, char **argv) {
    caption_args ca = {.m = model_args_default(), .beam = 1};
    const opt_group groups[] = {{caption_opts, (int)(sizeof caption_opts / sizeof *caption_opts), &ca},
                                MODEL_GROUP(&ca.m)};
    const cmd_spec spec = {
        .name = "caption",
        .usage = "vlp caption --model FILE [--beam K] IMAGE...",
        .about = "Captions images with a CoCa model's text decoder (a model trained with\n"
                 "--objective coca). Prints one line per image: path, mean token log-probability,\n"
                 "caption (lower case, as the tokenizer saw the training captions).",
        .groups = groups, .ngroups = 2, .positional = true};
    int nimg = 0;
    char **images = calloc((size_t)argc + 1, sizeof(char *));
    if (!images) return 1;
    int prc = opts_parse(&spec, argc, argv, images, &nimg);
    if (prc) return free(images), prc == 1 ? 0 : 2;
    if (!nimg) {
        fprintf(stderr, "vlp caption: give at least one image (try --help)\n");
        free(images);
        return 2;
    }
    model_args a = ca.m;
    long beam = ca.beam;
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
    const image_preprocess *pre = m ? &model_clip(m)->cfg.vision.pre : NULL;
    image_transform tf = image_transform_for(pre, S, false);
    image_decode_opts dec = image_decode_for(pre);
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
            fprintf(stderr, "vlp caption: %s\n", tool_error_text(&err, buf, sizeof buf));
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
