/* vlp adapt: prompt learning (CoOp, CoCoOp, MaPLe) or a linear probe on a
 * frozen model, from a few labelled images a class. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapt/prompt.h"
#include "api/model_access.h"
#include "args.h"
#include "commands.h"
#include "core/hashmap.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/tar.h"
#include "eval/embed_set.h"
#include "eval/eval.h"
#include "io/file.h"
#include "model_args.h"
#include "opts.h"
#include "progress.h"

/* one labelled image kept for training: its encoded bytes */
typedef struct shot {
    uint8_t *bytes;
    size_t len;
    char *what; // where it came from, for messages
} shot;

/* K images a class, each class's a uniform sample of its images (a
 * reservoir per class, seeded): the whole set is read once, only K·C images
 * are held */
typedef struct shot_set {
    int K, C, cap;
    char **classes;   // (C) in the order met, sorted at the end
    shot *slots;      // (cap, K)
    int64_t *seen;    // (cap) images of each class met
    int64_t other;    // images whose label is not one of --classes
    bool fixed;       // the classes were given (--classes): others are left out
    str_map index;    // class name → its index
    rng64 r;
} shot_set;

static void shot_set_free(shot_set *s) {
    for (int c = 0; c < s->C; c++) {
        free(s->classes[c]);
        for (int k = 0; k < s->K; k++) free(s->slots[(size_t)c * s->K + k].bytes), free(s->slots[(size_t)c * s->K + k].what);
    }
    free(s->classes), free(s->slots), free(s->seen);
    str_map_free(&s->index);
}

static int add_class(shot_set *s, const char *name) {
    if (s->C == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **c = realloc(s->classes, sizeof(char *) * cap);
        if (c) s->classes = c;
        shot *sl = c ? realloc(s->slots, sizeof(shot) * (size_t)cap * s->K) : NULL;
        if (sl) s->slots = sl;
        int64_t *seen = sl ? realloc(s->seen, sizeof(int64_t) * cap) : NULL;
        if (!seen) return -1;
        s->seen = seen;
        memset(s->slots + (size_t)s->cap * s->K, 0, sizeof(shot) * (size_t)(cap - s->cap) * s->K);
        s->cap = cap;
    }
    s->classes[s->C] = strdup(name);
    if (!s->classes[s->C] || !str_map_put(&s->index, name, strlen(name), s->C)) return -1;
    s->seen[s->C] = 0;
    return s->C++;
}

/* offers one image of `label`; takes its bytes when the reservoir keeps it.
 * 0 ok, 1 out of memory */
static int offer(shot_set *s, const char *label, uint8_t **bytes, size_t len, const char *what) {
    int c = str_map_get(&s->index, label, strlen(label));
    if (c < 0 && s->fixed) return s->other++, 0;
    if (c < 0 && (c = add_class(s, label)) < 0) return 1;
    int64_t n = s->seen[c]++;
    int64_t slot = n < s->K ? n : (int64_t)(rng64_u64(&s->r) % (uint64_t)(n + 1));
    if (slot >= s->K) return 0;
    shot *sh = &s->slots[(size_t)c * s->K + slot];
    char *w = strdup(what);
    if (!w) return 1;
    free(sh->bytes), free(sh->what);
    sh->bytes = *bytes, sh->len = len, sh->what = w, *bytes = NULL;
    return 0;
}

/* Each drawn shot decoded once: one that does not is named, counted and
 * dropped (its class keeps the others, in order), or with stop ends the
 * run. have[c] gets each class's shots. 0 ok, 1 stopped. */
static int drop_bad_shots(shot_set *s, bool stop, int *have, int64_t *dropped) {
    image_decode_opts plain = {0};
    char buf[1024];
    *dropped = 0;
    for (int c = 0; c < s->C; c++) {
        int drawn = (int)(s->seen[c] < s->K ? s->seen[c] : s->K), kept = 0;
        for (int k = 0; k < drawn; k++) {
            shot *sh = &s->slots[(size_t)c * s->K + k];
            image_u8 im;
            vlp_error err = {0};
            if (image_decode(sh->bytes, sh->len, sh->what, &plain, &im, &err) == VLP_OK) {
                image_free(&im);
                s->slots[(size_t)c * s->K + kept++] = *sh;
                continue;
            }
            fprintf(stderr, "vlp adapt: %s%s\n", stop ? "" : "skipped: ", tool_error_text(&err, buf, sizeof buf));
            if (stop) return fprintf(stderr, "vlp adapt: stopped (--on-error stop)\n"), 1;
            free(sh->bytes), free(sh->what);
            (*dropped)++;
        }
        for (int k = kept; k < drawn; k++) s->slots[(size_t)c * s->K + k] = (shot){0};
        have[c] = kept;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* classes met in the data: sorted by name (as vlp eval orders them) */
static int sort_classes(shot_set *s) {
    if (s->fixed) return 0;
    int *order = malloc(sizeof(int) * (size_t)s->C);
    char **names = malloc(sizeof(char *) * (size_t)s->C);
    shot *slots = malloc(sizeof(shot) * (size_t)s->C * s->K);
    int64_t *seen = malloc(sizeof(int64_t) * (size_t)s->C);
    if (!order || !names || !slots || !seen) return free(order), free(names), free(slots), free(seen), 1;
    memcpy(names, s->classes, sizeof(char *) * s->C);
    qsort(names, (size_t)s->C, sizeof(char *), cmp_str);
    for (int i = 0; i < s->C; i++) order[i] = str_map_get(&s->index, names[i], strlen(names[i]));
    for (int i = 0; i < s->C; i++) {
        memcpy(slots + (size_t)i * s->K, s->slots + (size_t)order[i] * s->K, sizeof(shot) * s->K);
        seen[i] = s->seen[order[i]];
    }
    memcpy(s->classes, names, sizeof(char *) * s->C);
    memcpy(s->slots, slots, sizeof(shot) * (size_t)s->C * s->K);
    memcpy(s->seen, seen, sizeof(int64_t) * s->C);
    free(order), free(names), free(slots), free(seen);
    return 0;
}

/* a labelled set: rows or shards with the label in its own column / json
 * field, or a folder of class folders (data/dataset.h) */
static int read_stream(shot_set *s, const char *spec, const char *image_key, const char *label_key) {
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.image_key = image_key, o.caption_key = label_key, o.warn = cli_warn;
    sample_stream *st;
    vlp_error err = {0};
    char buf[1024];
    if (stream_open(&st, spec, &o, &err) != VLP_OK || stream_begin(st, 0, &err) != VLP_OK) {
        fprintf(stderr, "vlp adapt: %s\n", tool_error_text(&err, buf, sizeof buf));
        return 1;
    }
    bool done = false;
    int rc = 0;
    while (!rc) {
        raw_sample r;
        if (stream_next(st, &r, &done, &err) != VLP_OK) {
            fprintf(stderr, "vlp adapt: %s\n", tool_error_text(&err, buf, sizeof buf));
            rc = 1;
            break;
        }
        if (done) break;
        rc = offer(s, r.caption, &r.image, r.image_len, r.what);
        raw_sample_free(&r);
    }
    stream_free(st);
    return rc;
}

typedef struct adapt_args {
    const char *method, *data, *label_key, *image_key, *classes, *out, *init, *on_error;
    long shots, seed, n_ctx, depth, epochs, batch;
    double lr, wd, l2;
    bool csc, no_augment;
    model_args model;
} adapt_args;

/* the shots' pixels, the train or the eval transform */
static int shot_pixels(const shot *sh, const image_transform *tf, const image_decode_opts *dec, rng64 *r,
                       float *out) {
    image_u8 im;
    vlp_error err = {0};
    char buf[800];
    if (image_decode(sh->bytes, sh->len, sh->what, dec, &im, &err) != VLP_OK) {
        fprintf(stderr, "vlp adapt: %s\n", tool_error_text(&err, buf, sizeof buf));
        return 1;
    }
    vlp_err e = image_transform_apply(tf, &im, r, out, &err);
    image_free(&im);
    if (e != VLP_OK) fprintf(stderr, "vlp adapt: %s\n", tool_error_text(&err, buf, sizeof buf));
    return e != VLP_OK;
}

static int fail(const char *what, const vlp_error *err) {
    char buf[1024];
    fprintf(stderr, "vlp adapt: %s%s%s\n", what ? what : "", what ? ": " : "", tool_error_text(err, buf, sizeof buf));
    return 1;
}

/* the learner's image features as embed_batch's encoder */
static vlp_err probe_encode(void *ctx, const float *pixels, int n, float *out, vlp_error *err) {
    prompt_learner *pl = ctx;
    return pl->method->embed_images(pl, pixels, n, out, err);
}

/* the linear probe: every shot's feature (the evaluation pass's batch), one fit */
static int fit_probe(prompt_learner *pl, const shot_set *s, int *owner, int n, double l2) {
    int E = pl->E;
    float *img = malloc(sizeof(float) * (size_t)n * E);
    int *labels = malloc(sizeof(int) * (size_t)n);
    if (!img || !labels) return free(img), free(labels), fprintf(stderr, "vlp adapt: out of memory\n"), 1;
    vlp_error err = {0};
    embed_batch b;
    int rc = embed_batch_init(&b, pl->m->cfg.vision.image_size, E, pl->batch, &pl->m->cfg.vision.pre, probe_encode, pl, &err) != VLP_OK;
    if (rc) fail(NULL, &err);
    for (int i = 0, first = 0; !rc && i < n; i++) {
        const shot *sh = &s->slots[owner[i]];
        image_u8 im;
        labels[i] = owner[i] / s->K;
        rc = embed_batch_decode(&b, sh->bytes, sh->len, sh->what, &im, &err) != VLP_OK;
        if (!rc) rc = embed_batch_add(&b, &im, &err) != VLP_OK, image_free(&im);
        if (!rc && (embed_batch_full(&b) || i == n - 1)) {
            rc = embed_batch_encode(&b, &err) != VLP_OK;
            if (!rc) memcpy(img + (size_t)first * E, b.emb, sizeof(float) * (size_t)b.n * E);
            first += b.n, b.n = 0;
        }
        if (rc) fail(NULL, &err);
    }
    embed_batch_free(&b);
    if (!rc && pl->method->fit(pl, img, labels, n, l2, &err) != VLP_OK) rc = fail("the fit", &err);
    if (!rc) {
        float *scores = malloc(sizeof(float) * (size_t)n * pl->C);
        zeroshot_result z = {0};
        if (scores && pl->method->scores(pl, img, n, scores, &err) == VLP_OK)
            zeroshot_eval_scores(scores, labels, n, pl->C, &z, NULL, NULL, &err);
        fprintf(stderr, "linear probe: %d shots, l2 %g, train accuracy %.4f\n", n, l2, z.top1);
        free(scores);
    }
    free(img), free(labels);
    return rc;
}

/* SGD over the shots: epochs of shuffled batches, Dassl's schedule */
static int train(prompt_learner *pl, const shot_set *s, int *owner, int n, const adapt_args *a, int epochs,
                 double lr, int batch, const image_decode_opts *dec, float *pix) {
    int S = pl->m->cfg.vision.image_size, steps_per_epoch = (n + batch - 1) / batch;
    image_transform tf = image_transform_for(&pl->m->cfg.vision.pre, S, !a->no_augment);
    if (!a->no_augment) tf.scale_lo = 0.08f, tf.scale_hi = 1.0f, tf.hflip = true; /* Dassl's CoOp inputs */
    int *labels = malloc(sizeof(int) * (size_t)batch);
    if (!labels) return fprintf(stderr, "vlp adapt: out of memory\n"), 1;
    rng64 aug = {(uint64_t)a->seed ^ 0xA116ull};
    progress pr;
    progress_begin(&pr, stderr, "steps", (long)epochs * steps_per_epoch);
    vlp_error err = {0};
    int rc = 0;
    for (int e = 0; !rc && e < epochs; e++) {
        rng64 order = {((uint64_t)a->seed << 20) ^ (uint64_t)e ^ 0x5EEDull};
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(rng64_u64(&order) % (uint64_t)(i + 1)), t = owner[i];
            owner[i] = owner[j], owner[j] = t;
        }
        float elr = prompt_lr(lr, e, epochs);
        double sum = 0;
        int hits = 0;
        for (int i0 = 0; !rc && i0 < n; i0 += batch) {
            int b = n - i0 < batch ? n - i0 : batch, correct;
            for (int i = 0; !rc && i < b; i++) {
                rc = shot_pixels(&s->slots[owner[i0 + i]], &tf, dec, &aug, pix + (size_t)i * 3 * S * S);
                labels[i] = owner[i0 + i] / s->K;
            }
            float loss;
            if (!rc && prompt_train_step(pl, pix, labels, b, elr, (float)a->wd, &loss, &correct, &err) != VLP_OK)
                rc = fail("training", &err);
            if (rc) break;
            sum += loss * b, hits += correct;
            char line[200];
            bool end = i0 + b >= n;
            snprintf(line, sizeof line, "epoch %d/%d  step %d/%d  loss %.4f  train accuracy %.4f  lr %.3g", e + 1,
                     epochs, i0 / batch + 1, steps_per_epoch, sum / (i0 + b), (double)hits / (i0 + b), elr);
            progress_line(&pr, line, end && (e + 1 == epochs || e % 10 == 0));
        }
    }
    progress_break(&pr);
    free(labels);
    return rc;
}

int cmd_adapt(int argc, char **argv) {
    adapt_args a = {.label_key = "label", .image_key = "filepath", .shots = 16, .seed = 1, .n_ctx = -1,
                    .depth = 0, .epochs = 0, .batch = 0, .lr = 0, .wd = 5e-4, .l2 = 1e-3,
                    .model = {.o = vlp_model_opts_default(), .trainable = true}};
    const opt_desc opts[] = {
        {NULL, NULL, "--method", "M", &opt_string, offsetof(adapt_args, method), 0, 0, OPT_REQUIRED, "coop, cocoop, maple or linear-probe", NULL},
        {NULL, "-d", "--data", "SPEC", &opt_string, offsetof(adapt_args, data), 0, 0, OPT_REQUIRED,
         "the labelled images: a .tsv/.csv, WebDataset shards, or a folder with one folder of images a class", NULL},
        {NULL, NULL, "--label-key", "K", &opt_string, offsetof(adapt_args, label_key), 0, 0, 0, HELP_LABEL_KEY, NULL},
        {NULL, NULL, "--image-key", "K", &opt_string, offsetof(adapt_args, image_key), 0, 0, 0, HELP_IMAGE_KEY, NULL},
        {NULL, NULL, "--classes", "FILE", &opt_string, offsetof(adapt_args, classes), 0, 0, 0,
         "the classes, one a line, in this order; images of other labels are left out (default: every label, "
         "sorted)", NULL},
        {NULL, NULL, "--shots", "K", &opt_long, offsetof(adapt_args, shots), 1, 100000, 0, "images a class, drawn with --seed", NULL},
        {NULL, "-s", "--seed", "N", &opt_long, offsetof(adapt_args, seed), 0, 2147483647.0, 0, "the shots, the initialisation, the order", NULL},
        {NULL, "-o", "--out", "FILE", &opt_string, offsetof(adapt_args, out), 0, 0, OPT_REQUIRED, "the learnt prompts (.safetensors)", NULL},
        {NULL, NULL, "--n-ctx", "M", &opt_long, offsetof(adapt_args, n_ctx), -1, 64, 0,
         "context tokens (-1: the method's: CoOp 16, CoCoOp 4, MaPLe 2; with --init the phrase's)", NULL},
        {NULL, NULL, "--init", "PHRASE", &opt_string, offsetof(adapt_args, init), 0, 0, 0,
         "start the context from these words' embeddings (\"\" : N(0, 0.02); default: CoOp random, "
         "CoCoOp and MaPLe \"a photo of a\")", NULL},
        {NULL, NULL, "--csc", NULL, &opt_switch, offsetof(adapt_args, csc), 0, 0, 0, "CoOp: a context for each class", NULL},
        {NULL, NULL, "--depth", "J", &opt_long, offsetof(adapt_args, depth), 0, 48, 0,
         "MaPLe: layers with prompts (0: min(9, the towers' layers))", NULL},
        {NULL, NULL, "--epochs", "E", &opt_long, offsetof(adapt_args, epochs), 0, 1e6, 0,
         "0: the paper's (CoOp 50/100/100/200/200 for 1/2/4/8/16 shots; CoCoOp 10; MaPLe 5)", NULL},
        {NULL, "-b", "--batch", "N", &opt_long, offsetof(adapt_args, batch), 0, 4096, 0,
         "images a step, 0: the paper's (CoOp 32, CoCoOp 1, MaPLe 4; the probe embeds 32 at a time)", NULL},
        {NULL, NULL, "--lr", "X", &opt_double, offsetof(adapt_args, lr), 0, 100, 0, "SGD learning rate, 0: the paper's (0.002; MaPLe 0.0035)", NULL},
        {NULL, NULL, "--wd", "X", &opt_double, offsetof(adapt_args, wd), 0, 1, 0, "weight decay", NULL},
        {NULL, NULL, "--l2", "X", &opt_double, offsetof(adapt_args, l2), 0, 1e6, 0, "the linear probe's L2 penalty", NULL},
        {NULL, NULL, "--no-augment", NULL, &opt_switch, offsetof(adapt_args, no_augment), 0, 0, 0,
         "train on the center crops (default: random resized crops of scale 0.08-1 and flips, as CoOp)", NULL},
        ON_ERROR_OPT(adapt_args, on_error),
    };
    const opt_group groups[] = {{opts, (int)(sizeof opts / sizeof *opts), &a}, MODEL_GROUP(&a.model)};
    const cmd_spec spec = {
        .name = "adapt",
        .usage = "vlp adapt --method coop|cocoop|maple|linear-probe --model M --data SET --out P [options]",
        .about = "Adapts a frozen model to a classification task from a few labelled images a class:\n"
                        "  coop          M context vectors learnt in place of the words before the class name\n"
                        "                (Zhou et al. 2022); --csc learns one context a class;\n"
                        "  cocoop        CoOp's context shifted for each image by a small meta-net of its\n"
                        "                feature (conditional prompts; Zhou et al. 2022);\n"
                        "  maple         prompts in both towers, the image's coupled to the text's, in the\n"
                        "                first J layers (Khattak et al. 2023);\n"
                        "  linear-probe  logistic regression on the image features (the usual baseline).\n"
                        "Loss: cross-entropy of the model's logit scale times the cosines; SGD (momentum 0.9)\n"
                        "with a cosine schedule after a warm-up epoch. The towers do not change. The file holds\n"
                        "the parameters, the method, the classes and the model's hash; use it with\n"
                        "'vlp eval --prompts' and 'vlp classify --prompts'.",
        .groups = groups, .ngroups = 2, .help_more = opts_help_data_kinds};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!output_writable(a.out, "adapt")) return 1; /* before the work */
    const prompt_method *me = prompt_method_find(a.method);
    if (!me) return fprintf(stderr, "vlp adapt: --method %s is not one of %s\n", a.method, prompt_method_names()), 2;
    if (me->fit && (a.n_ctx > 0 || a.csc || a.init || a.depth || a.epochs || a.lr || a.wd != 5e-4 || a.no_augment)) {
        fprintf(stderr, "vlp adapt: the linear probe has no context, depth, epochs, learning rate, weight decay or "
                        "augmentation (only --l2)\n");
        return 2;
    }
    if (!me->fit && a.n_ctx == 0) {
        fprintf(stderr, "vlp adapt: with no context tokens %s has nothing to learn (it is zero-shot with \"{}.\")\n",
                me->name);
        return 2;
    }
    if (!me->deep && a.depth) return fprintf(stderr, "vlp adapt: --depth is MaPLe's\n"), 2;
    shot_set s = {.K = (int)a.shots, .r = {(uint64_t)a.seed * 0x9E3779B97F4A7C15ull + 1}};
    if (!str_map_init(&s.index, 64)) return fprintf(stderr, "vlp adapt: out of memory\n"), 1;
    if (a.classes) {
        int n;
        char **given = read_lines(a.classes, false, &n);
        if (!given) return shot_set_free(&s), 1;
        for (int c = 0; c < n && !rc; c++) {
            if (str_map_get(&s.index, given[c], strlen(given[c])) >= 0) {
                fprintf(stderr, "vlp adapt: %s: class \"%s\" appears twice\n", a.classes, given[c]);
                rc = 2;
            } else if (add_class(&s, given[c]) < 0) rc = 1;
        }
        free_lines(given, n);
        if (!rc && n < 2) fprintf(stderr, "vlp adapt: %s: %d classes; give at least 2\n", a.classes, n), rc = 2;
        if (rc) return shot_set_free(&s), rc;
        s.fixed = true;
    }
    int stop = on_error_stop(a.on_error, "adapt");
    if (stop < 0) return shot_set_free(&s), 2;
    rc = read_stream(&s, a.data, a.image_key, a.label_key);
    if (!rc && sort_classes(&s)) rc = 1, fprintf(stderr, "vlp adapt: out of memory\n");
    int n = 0, *have = rc ? NULL : calloc((size_t)s.C + 1, sizeof(int));
    int64_t dropped = 0;
    if (!rc && !have) rc = 1, fprintf(stderr, "vlp adapt: out of memory\n");
    if (!rc && (int64_t)s.C * s.K > 1 << 30)
        fprintf(stderr, "vlp adapt: %d classes of %d shots are more than vlp adapt holds\n", s.C, s.K), rc = 1;
    if (!rc) rc = drop_bad_shots(&s, stop, have, &dropped);
    for (int c = 0; !rc && c < s.C; c++) {
        if (have[c] < s.K && have[c] > 0)
            fprintf(stderr, "warning: class \"%s\" has %d usable image%s, fewer than %d shots: all of them are used\n",
                    s.classes[c], have[c], have[c] == 1 ? "" : "s", s.K);
        n += have[c];
    }
    if (!rc && s.C < 2) fprintf(stderr, "vlp adapt: %s has %d class%s; adapting needs 2 or more\n", a.data, s.C,
                                s.C == 1 ? "" : "es"), rc = 1;
    for (int c = 0; !rc && c < s.C; c++)
        if (!have[c]) fprintf(stderr, "vlp adapt: class \"%s\" has no usable image in %s\n", s.classes[c], a.data), rc = 1;
    if (rc) return free(have), shot_set_free(&s), rc;
    if (dropped) fprintf(stderr, "skipped %lld drawn images that could not be decoded (named above)\n", (long long)dropped);
    fprintf(stderr, "shots: %d images of %d classes (%d a class, seed %ld) from %s\n", n, s.C, s.K, a.seed, a.data);
    if (s.other) fprintf(stderr, "left out: %lld images of labels not in %s\n", (long long)s.other, a.classes);
    vlp_model *vm = open_model(&a.model, "adapt");
    if (!vm) return free(have), shot_set_free(&s), 1;
    int batch = a.batch ? (int)a.batch : me->batch ? me->batch : 32;
    int epochs = a.epochs ? (int)a.epochs : me->fit ? 0 : prompt_default_epochs(me, s.K);
    double lr = a.lr ? a.lr : me->lr;
    prompt_cfg cfg = {.n_ctx = (int)a.n_ctx, .csc = a.csc, .depth = (int)a.depth, .init = a.init, .batch = batch,
                      .seed = (uint64_t)a.seed};
    prompt_learner *pl = NULL;
    vlp_error err = {0};
    int S = vlp_model_image_size(vm);
    float *pix = malloc(sizeof(float) * (size_t)batch * 3 * S * S);
    int *owner = malloc(sizeof(int) * (size_t)n); /* the shots' slots, class-major */
    if (!pix || !owner) rc = 1, fprintf(stderr, "vlp adapt: out of memory\n");
    for (int c = 0, k = 0; !rc && c < s.C; c++)
        for (int j = 0; j < have[c]; j++) owner[k++] = c * s.K + j;
    if (!rc && prompt_create(&pl, me, &cfg, model_clip(vm), model_tokenizer(vm), (const char *const *)s.classes, s.C, &err) != VLP_OK)
        rc = fail(NULL, &err);
    image_decode_opts dec = image_decode_for(&model_clip(vm)->cfg.vision.pre);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!rc) {
        char buf[300];
        if (me->fit) fprintf(stderr, "method: %s\n", me->summary);
        else
            fprintf(stderr, "method: %s; %d context tokens%s%s%s%s%s; %zu parameters; %d epochs of batch %d, lr %g, "
                            "wd %g%s\n", me->name, pl->n, pl->csc ? " per class" : "", pl->init[0] ? " from \"" : "",
                    pl->init, pl->init[0] ? "\"" : "", me->deep ? (snprintf(buf, sizeof buf, ", depth %d", pl->depth), buf) : "",
                    pl->nfloats, epochs, batch, lr, a.wd, a.no_augment ? "" : "; random crops and flips");
        rc = me->fit ? fit_probe(pl, &s, owner, n, a.l2)
                     : train(pl, &s, owner, n, &a, epochs, lr, batch, &dec, pix);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc) {
        char shots[16], seed[24], ep[16], lrs[32], bs[16], aug[8];
        snprintf(shots, sizeof shots, "%d", s.K), snprintf(seed, sizeof seed, "%ld", a.seed);
        snprintf(ep, sizeof ep, "%d", epochs), snprintf(lrs, sizeof lrs, "%g", lr), snprintf(bs, sizeof bs, "%d", batch);
        snprintf(aug, sizeof aug, "%s", a.no_augment ? "off" : "on");
        st_meta extra[] = {{"shots", shots}, {"seed", seed}, {"epochs", ep}, {"lr", lrs}, {"batch", bs},
                           {"augment", aug}, {"data", a.data}, {"model", a.model.model},
                           {"white_background", dec.composite ? "true" : "false"}};
        if (prompt_save(pl, a.out, extra, (int)(sizeof extra / sizeof extra[0]), &err) != VLP_OK)
            rc = fail(NULL, &err);
        else
            fprintf(stderr, "wrote %s (%s, %d classes) in %.1f s\n", a.out, me->name, pl->C,
                    (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    }
    prompt_free(pl);
    free(pix), free(owner);
    vlp_model_free(vm);
    shot_set_free(&s);
    free(have);
    if (!rc && dropped) rc = ON_ERROR_SKIPPED_EXIT; /* learnt from the shots that decoded */
    return rc;
}
