/* vlp eval: zero-shot classification, retrieval both ways and a linear probe
 * on a labelled image-caption set. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "model_args.h"
#include "api/model_access.h"
#include "progress.h"
#include "blas_env.h"
#include "commands.h"
#include "core/hashmap.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/image.h"
#include "eval/embed_set.h"
#include "eval/eval.h"
#include "eval/linear_probe.h"
#include "io/atomic.h"
#include "io/json_text.h"
#include <jansson.h>
#include "vlp.h"

typedef enum caption_mode { CAPTION_OFF, CAPTION_IMAGE, CAPTION_TEXT_ONLY } caption_mode;

/* the set's embeddings, captions and labels, and the caption perplexity
 * (models with a decoder): −log p summed over the captions' tokens, and
 * their count */
typedef struct eval_set {
    embedded_set e;
    double nll;
    long targets;
} eval_set;

/* what embed_set calls back: the model (or its learnt prompts), the
 * perplexity, the progress line */
typedef struct set_pass {
    vlp_model *m;
    vlp_prompts *prompts;
    caption_mode ppl;
    eval_set *s;
    progress pr;
} set_pass;

static vlp_err pass_encode(void *ctx, const float *pixels, int n, float *out, vlp_error *err) {
    set_pass *p = ctx;
    return p->prompts ? vlp_prompts_encode_images(p->prompts, pixels, n, out, err)
                      : vlp_encode_images(p->m, pixels, n, out, err);
}

static vlp_err pass_batch(void *ctx, const float *pixels, char *const *captions, int first, int n,
                          vlp_error *err) {
    set_pass *p = ctx;
    if (p->ppl == CAPTION_OFF) return VLP_OK;
    double nll;
    long nt;
    VLP_TRY(vlp_caption_nll(p->m, p->ppl == CAPTION_IMAGE ? pixels : NULL, (const char *const *)captions, n,
                            &nll, &nt, err));
    p->s->nll += nll, p->s->targets += nt;
    return VLP_OK;
}

static void pass_progress(void *ctx, int64_t done) { progress_update(&((set_pass *)ctx)->pr, (long)done); }

/* reads the set in its order (embed_set), embedding the images in batches */
static int load_set(vlp_model *m, vlp_prompts *prompts, const char *spec, const char *image_key,
                    const char *caption_key, const char *label_key, caption_mode ppl, bool stop, eval_set *s) {
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.image_key = image_key, o.caption_key = caption_key, o.alt_caption_key = label_key, o.warn = cli_warn;
    sample_stream *st;
    vlp_error err = {0};
    char buf[1024];
    memset(s, 0, sizeof *s);
    if (stream_open(&st, spec, &o, &err) != VLP_OK) {
        fprintf(stderr, "vlp eval: %s\n", tool_error_text(&err, buf, sizeof buf));
        return 1;
    }
    set_pass p = {.m = m, .prompts = prompts, .ppl = ppl, .s = s};
    embed_set_opts eo = {.image_size = vlp_model_image_size(m), .embed_dim = vlp_model_embed_dim(m),
                         .batch = 32, .pre = &model_clip(m)->cfg.vision.pre, .warn = cli_warn, .batch_done = pass_batch,
                         .progress = pass_progress, .ctx = &p, .stop_on_bad = stop};
    progress_begin(&p.pr, stderr, "images", 0);
    int rc = embed_set(st, pass_encode, &eo, &s->e, &err) != VLP_OK;
    progress_end(&p.pr, s->e.n);
    if (rc) fprintf(stderr, "vlp eval: %s%s\n", tool_error_text(&err, buf, sizeof buf), stop ? " (--on-error stop)" : "");
    if (!rc && s->e.undecodable)
        fprintf(stderr, "evaluated %d images; skipped %lld that could not be decoded; the first: %s\n", s->e.n,
                (long long)s->e.undecodable, s->e.first_undecodable);
    const char *why;
    int64_t skipped = stream_skipped(st, &why);
    if (skipped) fprintf(stderr, "skipped %lld rows; the first: %s\n", (long long)skipped, why);
    stream_free(st);
    return rc;
}

static int embed_texts(vlp_model *m, const char **t, int n, float *out) {
    vlp_error err = {0};
    if (vlp_encode_texts(m, t, n, out, &err) == VLP_OK) return 0;
    char buf[1024];
    fprintf(stderr, "vlp eval: %s\n", tool_error_text(&err, buf, sizeof buf));
    return 1;
}

/* per class: images, correct, accuracy, as a JSON file written atomically
 * (what vlp data concepts joins with the captions' concept frequencies) */
static int write_per_class(const char *path, const char **cls, int C, const int *images, const int *correct,
                           const zeroshot_result *z, const char *model, const char *data) {
    json_doc doc = json_doc_new();
    json_t *j = doc.root, *arr = jd_array(&doc);
    jd_text(&doc, j, "model", model);
    jd_text(&doc, j, "data", data);
    jd_put(&doc, j, "top1", json_real(z->top1));
    jd_put(&doc, j, "balanced", json_real(z->balanced));
    for (int c = 0; c < C; c++) {
        json_t *row = jd_object(&doc);
        jd_exact(&doc, row, "class", cls[c]); /* vlp data concepts matches it */
        jd_put(&doc, row, "images", json_integer(images[c]));
        jd_put(&doc, row, "correct", json_integer(correct[c]));
        jd_put(&doc, row, "accuracy", json_real(images[c] ? (double)correct[c] / images[c] : 0));
        jd_append(&doc, arr, row);
    }
    jd_put(&doc, j, "classes", arr);
    vlp_error err = {0};
    char *text = json_doc_dumps(&doc, JSON_PRESERVE_ORDER | JSON_INDENT(1), path, &err);
    json_doc_free(&doc);
    atomic_file af;
    int rc = !text;
    if (!rc && atomic_open(&af, path, &err) == VLP_OK) {
        atomic_write(&af, text, strlen(text));
        atomic_write(&af, "\n", 1);
        rc = atomic_commit(&af, &err) != VLP_OK;
    } else rc = 1;
    free(text);
    char buf[800];
    if (rc) fprintf(stderr, "vlp eval: %s\n", err.message[0] ? tool_error_text(&err, buf, sizeof buf) : "out of memory");
    else fprintf(stderr, "per-class accuracy: %s (%d classes)\n", path, C);
    return rc;
}

/* each label's index in the given classes (-1: not one of them); 0 when
 * some image has one, 1 when none, -1 out of memory */
static int classes_of_labels(eval_set *s, char **given, int C, int *y) {
    str_map index;
    if (!str_map_init(&index, (size_t)C)) return -1;
    for (int c = 0; c < C; c++) /* a name given twice: its first line */
        if (str_map_get(&index, given[c], strlen(given[c])) < 0 && !str_map_put(&index, given[c], strlen(given[c]), c))
            return str_map_free(&index), -1;
    int used = 0;
    for (int i = 0; i < s->e.n; i++) {
        y[i] = s->e.label[i] ? str_map_get(&index, s->e.label[i], strlen(s->e.label[i])) : -1;
        used += y[i] >= 0;
    }
    str_map_free(&index);
    return used == 0;
}

static int zeroshot(vlp_model *m, vlp_prompts *prompts, eval_set *s, char **templates, int nt, char **given, int ng,
                    const char *per_class_json, const char *model, const char *data) {
    int E = vlp_model_embed_dim(m), C = ng, *y = malloc(sizeof(int) * (size_t)s->e.n);
    const char **cls = given ? (const char **)given : distinct_strings((const char *const *)s->e.label, s->e.n, &C, y);
    int none = given && y ? classes_of_labels(s, given, ng, y) : 0;
    if (none) {
        if (none > 0) fprintf(stderr, "vlp eval: no image of the set has one of the %d classes given\n", ng);
        else fprintf(stderr, "vlp eval: out of memory\n");
        free(y);
        return 1;
    }
    float *scores = malloc(sizeof(float) * (size_t)(prompts ? s->e.n : C) * (prompts ? C : E));
    int *images = calloc((size_t)C + 1, sizeof(int)), *correct = calloc((size_t)C + 1, sizeof(int));
    vlp_error err = {0};
    int rc = !y || !cls || !scores || !images || !correct;
    if (!rc && prompts)
        rc = vlp_prompts_set_classes(prompts, cls, C, &err) != VLP_OK ||
             vlp_prompts_scores(prompts, s->e.emb, s->e.n, scores, &err) != VLP_OK;
    else if (!rc) rc = vlp_encode_classes(m, cls, C, (const char *const *)templates, nt, scores, &err) != VLP_OK;
    if (rc) fprintf(stderr, "vlp eval: %s\n", err.message[0] ? err.message : "out of memory");
    zeroshot_result z;
    if (!rc && (prompts ? zeroshot_eval_scores(scores, y, s->e.n, C, &z, images, correct, &err)
                        : zeroshot_eval_per_class(s->e.emb, scores, y, s->e.n, C, E, &z, images, correct, &err)) == VLP_OK) {
        char how[300];
        if (prompts) vlp_prompts_describe(prompts, how, sizeof how);
        else snprintf(how, sizeof how, "%d templates", nt);
        printf("zero-shot (%d images, %d classes, %s): top-1 %.4f  top-5 %.4f  class-balanced %.4f"
               "   (chance: top-1 %.4f uniform, %.4f majority class)\n",
               z.n, C, how, z.top1, z.top5, z.balanced, 1.0 / C, z.majority);
        printf("RESULT name=zeroshot top1=%.4f top5=%.4f balanced=%.4f chance=%.4f majority=%.4f images=%d classes=%d\n",
               z.top1, z.top5, z.balanced, 1.0 / C, z.majority, z.n, C);
        if (per_class_json) rc = write_per_class(per_class_json, cls, C, images, correct, &z, model, data);
    } else rc = 1;
    free(y), free(images), free(correct), free(scores);
    if (!given) free(cls);
    return rc;
}

static int retrieval(vlp_model *m, eval_set *s) {
    int E = vlp_model_embed_dim(m), nt, *cap_of = malloc(sizeof(int) * (size_t)s->e.n);
    const char **caps = distinct_strings((const char *const *)s->e.caption, s->e.n, &nt, cap_of);
    float *T = caps ? malloc(sizeof(float) * (size_t)nt * E) : NULL;
    int rc = !T || embed_texts(m, caps, nt, T);
    retrieval_result i2t, t2i;
    vlp_error err = {0};
    if (!rc && (retrieval_eval(s->e.emb, T, cap_of, s->e.n, nt, E, &i2t, &err) != VLP_OK ||
                retrieval_eval_multi(T, s->e.emb, cap_of, nt, s->e.n, E, &t2i, &err) != VLP_OK))
        rc = 1;
    if (!rc) {
        printf("retrieval (%d images, %d distinct captions):\n", s->e.n, nt);
        printf("  image->text  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f   (chance R@1 %.4f)\n",
               i2t.r1, i2t.r5, i2t.r10, i2t.mean_rank, i2t.median_rank, 1.0 / nt);
        printf("  text->image  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f\n", t2i.r1, t2i.r5,
               t2i.r10, t2i.mean_rank, t2i.median_rank);
        printf("RESULT name=retrieval i2t_r1=%.4f i2t_r5=%.4f i2t_r10=%.4f t2i_r1=%.4f t2i_r5=%.4f t2i_r10=%.4f\n",
               i2t.r1, i2t.r5, i2t.r10, t2i.r1, t2i.r5, t2i.r10);
    } else fprintf(stderr, "vlp eval: %s\n", err.message);
    free(cap_of), free(caps), free(T);
    return rc;
}

static int probe(vlp_model *m, eval_set *s, double test_frac, double l2, uint64_t seed) {
    int E = vlp_model_embed_dim(m), C, *y = malloc(sizeof(int) * (size_t)s->e.n);
    const char **cls = distinct_strings((const char *const *)s->e.label, s->e.n, &C, y);
    bool *is_test = malloc(sizeof(bool) * (size_t)s->e.n);
    float *x = malloc(sizeof(float) * (size_t)s->e.n * E);
    int n = 0;
    rng64 r = {seed ^ 0x5EEDull};
    for (int i = 0; i < s->e.n; i++) { /* labelled rows only */
        if (y[i] < 0) continue;
        memcpy(x + (size_t)n * E, s->e.emb + (size_t)i * E, sizeof(float) * E);
        y[n] = y[i], is_test[n] = rng64_uniform(&r) < test_frac;
        n++;
    }
    probe_result pr;
    vlp_error err = {0};
    int rc = linear_probe(x, y, is_test, n, E, C, l2, 1000, &pr, &err) != VLP_OK;
    free(x);
    if (!rc) {
        printf("linear probe (L-BFGS logistic regression, l2 %g, %d classes, held-out fraction %.2f): "
               "test accuracy %.4f  train %.4f  (%d iterations, loss %.4f)\n",
               l2, C, test_frac, pr.test_acc, pr.train_acc, pr.iterations, pr.final_loss);
        printf("RESULT name=linear_probe test_acc=%.4f train_acc=%.4f\n", pr.test_acc, pr.train_acc);
    } else fprintf(stderr, "vlp eval: %s\n", err.message);
    free(y), free(cls), free(is_test);
    return rc;
}

typedef struct eval_args {
    model_args m;
    const char *data, *image_key, *caption_key, *label_key, *templates, *per_class_json, *prompts, *classes;
    const char *on_error;
    bool zs, rt, lp, text_only;
    double test_frac, l2;
    long seed;
} eval_args;

#define A(shrt, flag, arg, type, member, lo, hi, help)                                            \
    {NULL, shrt, flag, arg, &type, offsetof(eval_args, member), lo, hi, 0, help, NULL}
static const opt_desc eval_opts[] = {
    A("-d", "--data", "SPEC", opt_string, data, 0, 0, "the set"),
    A(NULL, "--zeroshot", NULL, opt_switch, zs, 0, 0, "zero-shot classification"),
    A(NULL, "--retrieval", NULL, opt_switch, rt, 0, 0, "image-text retrieval both ways"),
    A(NULL, "--linear-probe", NULL, opt_switch, lp, 0, 0, "a linear probe on the image embeddings"),
    A(NULL, "--image-key", "K", opt_string, image_key, 0, 0, HELP_IMAGE_KEY),
    A(NULL, "--caption-key", "K", opt_string, caption_key, 0, 0, HELP_CAPTION_KEY),
    A(NULL, "--label-key", "K", opt_string, label_key, 0, 0,
      HELP_LABEL_KEY "; without it, retrieval only; rows with an empty label are left out of zero-shot "
      "and the probe"),
    A(NULL, "--templates", "T", opt_string, templates, 0, 0,
      "zero-shot templates: a name shipped with vlp (\"default\": \"a photo of a {}.\"; openai-imagenet: "
      "the CLIP paper's 80) or a file, a template a line, {} for the class"),
    A(NULL, "--prompts", "FILE", opt_string, prompts, 0, 0,
      "zero-shot with prompts learnt by 'vlp adapt' (CoOp, CoCoOp, MaPLe or a linear probe) in place "
      "of the templates; zero-shot only"),
    A(NULL, "--classes", "FILE", opt_string, classes, 0, 0,
      "zero-shot over these classes (one a line), leaving out images of others (default: every "
      "label of the set)"),
    A(NULL, "--per-class-json", "FILE", opt_string, per_class_json, 0, 0,
      "zero-shot: write each class's images, correct and accuracy to F (vlp data concepts joins it "
      "with concept frequencies)"),
    A(NULL, "--probe-test-fraction", "F", opt_double, test_frac, 0.01, 0.99, "the probe's held-out part"),
    A(NULL, "--probe-l2", "X", opt_double, l2, 0, 1e6, "the probe's L2 penalty"),
    A(NULL, "--text-only", NULL, opt_switch, text_only, 0, 0,
      "a model with a decoder: caption perplexity without the image (a textlm run: PRIOR's reference)"),
    A("-s", "--seed", "N", opt_long, seed, 0, 9223372036854775807.0, "the probe's split"),
    ON_ERROR_OPT(eval_args, on_error),
};
#undef A

int cmd_eval(int argc, char **argv) {
    eval_args e = {.m = model_args_default(), .image_key = "filepath", .caption_key = "title", .templates = TEMPLATES_DEFAULT, .test_frac = 0.5, .l2 = 1e-3};
    const opt_group groups[] = {{eval_opts, (int)(sizeof eval_opts / sizeof *eval_opts), &e},
                                MODEL_GROUP(&e.m)};
    static const char *const exclusive[][2] = {{"--prompts", "--templates"}, {NULL}};
    const cmd_spec spec = {
        .name = "eval", .exclusive = exclusive,
        .usage = "vlp eval --model FILE --data SET [--zeroshot] [--retrieval] [--linear-probe] [options]",
        .about = "Evaluates on a labelled image-caption set (.tsv/.csv or shards), in file order:\n"
                 "  zero-shot   classes = the distinct labels; each class embedding is the normalised\n"
                 "              mean of its template embeddings; top-1, top-5, class-balanced;\n"
                 "  retrieval   image->text and text->image over the distinct captions: R@1/5/10,\n"
                 "              mean and median rank (similarities computed 256 rows at a time);\n"
                 "  linear probe  L-BFGS logistic regression on the frozen image embeddings, a\n"
                 "              random held-out part as the test set.\n"
                 "  caption perplexity  models with a text decoder (CoCa): exp of the mean −log p of\n"
                 "              every caption token given the image, always reported.\n"
                 "Without a task flag: retrieval, plus zero-shot and the probe when --label-key is given.",
        .groups = groups, .ngroups = 2, .help_more = opts_help_data_kinds};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    if (e.per_class_json && !output_writable(e.per_class_json, "eval")) return 1; /* before the work */
    model_args a = e.m;
    const char *data = e.data, *caption_key = e.caption_key, *label_key = e.label_key;
    const char *templates = e.templates;
    const char *per_class_json = e.per_class_json, *prompts_file = e.prompts, *classes_file = e.classes;
    bool zs = e.zs, rt = e.rt, lp = e.lp, text_only = e.text_only;
    double test_frac = e.test_frac, l2 = e.l2;
    long seed = e.seed;
    int bad = 0;
    const char *model = a.model;
    if (bad || !model || !data) {
        if (!bad) fprintf(stderr, "vlp eval: --model and --data are required (try --help)\n");
        return 2;
    }
    if (prompts_file && (rt || lp)) {
        fprintf(stderr, "vlp eval: --prompts evaluates the learnt classifier (zero-shot); run retrieval and the probe "
                        "without it\n");
        return 2;
    }
    if (prompts_file) zs = true;
    if (!zs && !rt && !lp) rt = true, zs = lp = label_key != NULL;
    if (classes_file && !zs) {
        fprintf(stderr, "vlp eval: --classes is zero-shot's: give --zeroshot (and --label-key)\n");
        return 2;
    }
    if (per_class_json && !zs) {
        fprintf(stderr, "vlp eval: --per-class-json is zero-shot's: give --zeroshot (and --label-key)\n");
        return 2;
    }
    if ((zs || lp) && !label_key) {
        fprintf(stderr, "vlp eval: zero-shot and the linear probe need --label-key\n");
        return 2;
    }
    int nt = 0;
    char **tpl = zs && !prompts_file ? read_templates(templates, "eval", &nt) : NULL;
    if (zs && !prompts_file && !tpl) return 1;
    int ng = 0;
    char **given = classes_file ? read_lines(classes_file, false, &ng) : NULL;
    if (classes_file && (!given || ng == 0)) {
        if (given) fprintf(stderr, "vlp eval: %s: no classes\n", classes_file);
        return free_lines(given, ng), free_lines(tpl, nt), 1;
    }
    vlp_model *m = open_model(&a, "eval");
    if (!m) return free_lines(tpl, nt), free_lines(given, ng), 1;
    vlp_prompts *prompts = NULL;
    if (prompts_file) {
        vlp_error perr = {0};
        char buf[1024];
        if (vlp_prompts_load(&prompts, m, prompts_file, &perr) != VLP_OK) {
            fprintf(stderr, "vlp eval: %s\n", tool_error_text(&perr, buf, sizeof buf));
            vlp_model_free(m);
            return free_lines(given, ng), 1;
        }
        fprintf(stderr, "%s: %s\n", prompts_file, vlp_prompts_describe(prompts, buf, sizeof buf));
    }
    eval_set s = {0};
    caption_mode ppl = !vlp_model_has_decoder(m) ? CAPTION_OFF : text_only ? CAPTION_TEXT_ONLY : CAPTION_IMAGE;
    if (text_only && ppl == CAPTION_OFF)
        fprintf(stderr, "vlp eval: %s has no text decoder; --text-only does not apply\n", model);
    int stop = on_error_stop(e.on_error, "eval");
    if (stop < 0) return vlp_prompts_free(prompts), vlp_model_free(m), free_lines(tpl, nt), free_lines(given, ng), 2;
    int rc = load_set(m, prompts, data, e.image_key, caption_key, label_key, ppl, stop, &s);
    if (!rc && s.e.n == 0) fprintf(stderr, "vlp eval: %s holds no usable samples\n", data), rc = 1;
    if (!rc && ppl != CAPTION_OFF && s.targets > 0) {
        printf("caption perplexity (%d captions, %ld tokens, %s): %.4f  (mean -log p %.4f)\n", s.e.n,
               s.targets, ppl == CAPTION_IMAGE ? "given the image" : "text only", exp(s.nll / s.targets),
               s.nll / s.targets);
        printf("RESULT name=caption ppl=%.4f nll=%.4f tokens=%ld image=%d\n", exp(s.nll / s.targets),
               s.nll / s.targets, s.targets, ppl == CAPTION_IMAGE);
    }
    if (!rc && zs) rc = zeroshot(m, prompts, &s, tpl, nt, given, ng, per_class_json, model, data);
    if (!rc && rt) rc = retrieval(m, &s);
    if (!rc && lp) rc = probe(m, &s, test_frac, l2, (uint64_t)seed);
    if (!rc && s.e.undecodable) rc = ON_ERROR_SKIPPED_EXIT; /* the results hold the images that decoded */
    embedded_set_free(&s.e); /* idempotent: embed_set empties it on failure */
    free_lines(tpl, nt), free_lines(given, ng);
    vlp_prompts_free(prompts);
    vlp_model_free(m);
    return rc;
}
