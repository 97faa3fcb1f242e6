/* vlp eval: zero-shot classification, retrieval both ways and a linear probe
 * on a labelled image-caption set: the options, the lines printed and the
 * per-class file around the library's vlp_eval (src/api/eval_api.c). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "model_args.h"
#include "progress.h"
#include "blas_env.h"
#include "commands.h"
#include "data/dataset.h" /* the keys' help */
#include "io/atomic.h"
#include "io/json_text.h"
#include <jansson.h>
#include "vlp.h"

/* the progress line of the pass over the set, begun once the set has opened */
typedef struct eval_line {
    progress pr, pairs;
    bool begun, pairs_begun;
    long long images, pairs_done; // the last counts shown
} eval_line;
static int eval_progress(void *user, long long done) {
    eval_line *l = user;
    if (!l->begun) progress_begin(&l->pr, stderr, "images", 0), l->begun = true;
    progress_update(&l->pr, (long)(l->images = done));
    return 0;
}
/* re-ranking's, after the pass over the set: the ITM pairs */
static int rerank_progress(void *user, long long done, long long total) {
    eval_line *l = user;
    if (!l->pairs_begun) {
        if (l->begun) progress_end(&l->pr, (long)l->images), l->begun = false;
        progress_begin(&l->pairs, stderr, "ITM pairs", (long)total), l->pairs_begun = true;
    }
    progress_update(&l->pairs, (long)(l->pairs_done = done));
    return 0;
}

/* per class: images, correct, accuracy, as a JSON file written atomically
 * (what vlp data concepts joins with the captions' concept frequencies) */
static int write_per_class(const char *path, const vlp_eval_result *r, const char *model, const char *data) {
    json_doc doc = json_doc_new();
    json_t *j = doc.root, *arr = jd_array(&doc);
    jd_text(&doc, j, "model", model);
    jd_text(&doc, j, "data", data);
    jd_put(&doc, j, "top1", json_real(r->top1));
    jd_put(&doc, j, "balanced", json_real(r->balanced));
    for (int c = 0; c < r->classes; c++) {
        json_t *row = jd_object(&doc);
        jd_exact(&doc, row, "class", r->class_names[c]); /* vlp data concepts matches it */
        jd_put(&doc, row, "images", json_integer(r->class_images[c]));
        jd_put(&doc, row, "correct", json_integer(r->class_correct[c]));
        jd_put(&doc, row, "accuracy", json_real(r->class_images[c] ? (double)r->class_correct[c] / r->class_images[c] : 0));
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
    else fprintf(stderr, "per-class accuracy: %s (%d classes)\n", path, r->classes);
    return rc;
}

/* the result as vlp eval prints it: a line for a person and a RESULT line a task */
static void print_result(const vlp_eval_result *r, const vlp_eval_opts *o, int nt) {
    if (r->undecodable)
        fprintf(stderr, "evaluated %d images; skipped %lld that could not be decoded; the first: %s\n", r->images,
                r->undecodable, r->first_undecodable);
    if (r->skipped_rows) fprintf(stderr, "skipped %lld rows; the first: %s\n", r->skipped_rows, r->first_skipped);
    if (r->has_caption) {
        double mean = r->caption_nll / r->caption_tokens;
        printf("caption perplexity (%d captions, %ld tokens, %s): %.4f  (mean -log p %.4f)\n", r->images,
               r->caption_tokens, r->caption_image ? "given the image" : "text only", exp(mean), mean);
        printf("RESULT name=caption ppl=%.4f nll=%.4f tokens=%ld image=%d\n", exp(mean), mean, r->caption_tokens,
               r->caption_image);
    }
    if (r->has_zeroshot) {
        char how[300];
        if (o->prompts) vlp_prompts_describe(o->prompts, how, sizeof how);
        else snprintf(how, sizeof how, "%d templates", nt);
        int C = r->classes;
        printf("zero-shot (%d images, %d classes, %s): top-1 %.4f  top-5 %.4f  class-balanced %.4f"
               "   (chance: top-1 %.4f uniform, %.4f majority class)\n",
               r->zs_images, C, how, r->top1, r->top5, r->balanced, 1.0 / C, r->majority);
        printf("RESULT name=zeroshot top1=%.4f top5=%.4f balanced=%.4f chance=%.4f majority=%.4f images=%d classes=%d\n",
               r->top1, r->top5, r->balanced, 1.0 / C, r->majority, r->zs_images, C);
    }
    if (r->has_retrieval) {
        printf("retrieval (%d images, %d distinct captions):\n", r->images, r->texts);
        printf("  image->text  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f   (chance R@1 %.4f)\n",
               r->i2t_r1, r->i2t_r5, r->i2t_r10, r->i2t_mean_rank, r->i2t_median_rank, 1.0 / r->texts);
        printf("  text->image  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f\n", r->t2i_r1, r->t2i_r5,
               r->t2i_r10, r->t2i_mean_rank, r->t2i_median_rank);
        printf("RESULT name=retrieval i2t_r1=%.4f i2t_r5=%.4f i2t_r10=%.4f t2i_r1=%.4f t2i_r5=%.4f t2i_r10=%.4f\n",
               r->i2t_r1, r->i2t_r5, r->i2t_r10, r->t2i_r1, r->t2i_r5, r->t2i_r10);
    }
    if (r->rerank) {
        printf("retrieval re-ranked by ITM (each query's top %d by cosine, ordered by the fusion encoder's match "
               "probability):\n", r->rerank);
        printf("  image->text  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f\n", r->rr_i2t_r1,
               r->rr_i2t_r5, r->rr_i2t_r10, r->rr_i2t_mean_rank, r->rr_i2t_median_rank);
        printf("  text->image  R@1 %.4f  R@5 %.4f  R@10 %.4f  mean rank %.1f  median %.1f\n", r->rr_t2i_r1,
               r->rr_t2i_r5, r->rr_t2i_r10, r->rr_t2i_mean_rank, r->rr_t2i_median_rank);
        printf("RESULT name=retrieval_rerank k=%d i2t_r1=%.4f i2t_r5=%.4f i2t_r10=%.4f t2i_r1=%.4f t2i_r5=%.4f "
               "t2i_r10=%.4f\n",
               r->rerank, r->rr_i2t_r1, r->rr_i2t_r5, r->rr_i2t_r10, r->rr_t2i_r1, r->rr_t2i_r5, r->rr_t2i_r10);
    }
    if (r->has_probe) {
        printf("linear probe (L-BFGS logistic regression, l2 %g, %d classes, held-out fraction %.2f): "
               "test accuracy %.4f  train %.4f  (%d iterations, loss %.4f)\n",
               o->probe_l2, r->probe_classes, o->probe_test_fraction, r->probe_test_acc, r->probe_train_acc,
               r->probe_iterations, r->probe_loss);
        printf("RESULT name=linear_probe test_acc=%.4f train_acc=%.4f\n", r->probe_test_acc, r->probe_train_acc);
    }
}

typedef struct eval_args {
    model_args m;
    const char *data, *image_key, *caption_key, *label_key, *templates, *per_class_json, *prompts, *classes;
    const char *on_error;
    bool zs, rt, lp, text_only;
    double test_frac, l2;
    long seed, rerank;
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
    A(NULL, "--rerank", "K", opt_long, rerank, 0, 100000,
      "retrieval: also re-rank each query's top K by the fusion encoder's image-text matching probability, "
      "both ways (a model with fusion_cfg, e.g. trained with --objective itc-itm-mlm; 0: no)"),
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
        .usage = "vlp eval --model FILE --data SET [--zeroshot] [--retrieval [--rerank K]] [--linear-probe] [options]",
        .about = "Evaluates on a labelled image-caption set (.tsv/.csv or shards), in file order:\n"
                 "  zero-shot   classes = the distinct labels; each class embedding is the normalised\n"
                 "              mean of its template embeddings; top-1, top-5, class-balanced;\n"
                 "  retrieval   image->text and text->image over the distinct captions: R@1/5/10,\n"
                 "              mean and median rank (similarities computed 256 rows at a time);\n"
                 "              with --rerank K (a model with a fusion encoder) also each query's top K\n"
                 "              re-ordered by the image-text matching probability (ALBEF, BLIP);\n"
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
    vlp_eval_opts eo = vlp_eval_opts_default();
    eo.zeroshot = zs || prompts_file, eo.retrieval = rt, eo.linear_probe = lp, eo.label_key = label_key;
    vlp_eval_opts_resolve(&eo); /* the tasks when none is asked for */
    zs = eo.zeroshot, rt = eo.retrieval, lp = eo.linear_probe;
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
    if (text_only && !vlp_model_has_decoder(m))
        fprintf(stderr, "vlp eval: %s has no text decoder; --text-only does not apply\n", model);
    int stop = on_error_stop(e.on_error, "eval");
    if (stop < 0) return vlp_prompts_free(prompts), vlp_model_free(m), free_lines(tpl, nt), free_lines(given, ng), 2;
    eo = vlp_eval_opts_default();
    eo.data = data, eo.image_key = e.image_key, eo.caption_key = caption_key, eo.label_key = label_key;
    eo.zeroshot = zs, eo.retrieval = rt, eo.linear_probe = lp, eo.prompts = prompts, eo.text_only = text_only;
    eo.templates = (const char *const *)tpl, eo.n_templates = nt, eo.classes = (const char *const *)given;
    eo.n_classes = ng, eo.probe_test_fraction = test_frac, eo.probe_l2 = l2, eo.seed = (unsigned long long)seed;
    eo.stop_on_bad = stop, eo.warn = cli_warn, eo.rerank = (int)e.rerank;
    eval_line line = {0};
    eo.progress = eval_progress, eo.rerank_progress = rerank_progress, eo.user = &line;
    vlp_eval_result r;
    vlp_error err = {0};
    int rc = vlp_eval(m, &eo, &r, &err) != VLP_OK;
    if (line.begun) progress_end(&line.pr, r.images);
    if (line.pairs_begun) progress_end(&line.pairs, (long)line.pairs_done);
    print_result(&r, &eo, nt); /* the counts, and what was done before a failure */
    if (rc) {
        char buf[1024];
        fprintf(stderr, "vlp eval: %s\n", tool_error_text(&err, buf, sizeof buf));
    } else {
        if (per_class_json && r.has_zeroshot) rc = write_per_class(per_class_json, &r, model, data);
        if (!rc && r.undecodable) rc = ON_ERROR_SKIPPED_EXIT; /* the results hold the images that decoded */
    }
    vlp_eval_result_free(&r);
    free_lines(tpl, nt), free_lines(given, ng);
    vlp_prompts_free(prompts);
    vlp_model_free(m);
    return rc;
}
