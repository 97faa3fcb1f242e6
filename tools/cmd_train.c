/* vlp train: pre-training on image-caption pairs (a TSV/CSV or WebDataset
 * shards through the streaming loader, or the emoji corpus held in memory),
 * with checkpoints, exact resume and the emoji held-out eval when asked. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "blas_env.h"
#include "commands.h"
#include "progress.h"
#include "core/error.h"
#include "core/parallel.h"
#include "data/emoji.h"
#include "dist/dist.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/stream_loader.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "eval/validate.h"
#include "io/atomic.h"
#include "model/clip.h"
#include "model/clip_io.h"
#include "model/clip_pretrained.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/config_registry.h"
#include "train/trainer.h"
#include "vlp.h"

static volatile sig_atomic_t g_stop; /* the CLI's, not the library's: set by SIGINT/SIGTERM */

static void on_signal(int sig) {
    g_stop = sig;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

#define MAX_GIVEN 64

typedef struct train_cli {
    const char *config, *data, *out, *vendors, *vocab;
    const char *train_data, *caption_key, *alt_caption_key; // the streaming data path
    double alt_prob;
    long workers, shuffle_buffer;
    bool white;                 // composite alpha on white
    bool hflip;                 // random horizontal flips
    double crop_scale;          // RandomResizedCrop's smallest area fraction
    long tok_merges;
    train_opts o;
    double epochs;
    long save_every, eval_every, log_every, keep;
    int threads;
    const char *precision;      // fp32 | bf16: the blocks' matmuls
    const char *init_image;     // start the image tower from this checkpoint (LiT)
    /* validation on the user's pairs, and zero-shot on a labelled set */
    const char *val_data, *zeroshot_data, *label_key, *templates;
    /* an objective's options, applied once the objective is known */
    struct { const char *flag, *value; } obj_args[MAX_GIVEN];
    int nobj_args;
    const char *model_path[OBJECTIVE_MAX_OPTIONS]; // OBJECTIVE_MODEL options: the file
    char ref_merges[4096];      // a reference model's tokenizer, when --vocab is not given
    bool resume;
    /* the options given on the command line (train_opts keys): a resumed run
     * checks them against its own and keeps the others */
    const char *given[MAX_GIVEN];
    int ngiven;
    json_t *record;             // the run's data.json on resume: its strings live here
} train_cli;

/* The data a run reads, recorded in run/data.json and taken from there on
 * --resume (given again, it must agree, but for the evaluation sets). */
#define DATA_FILE "data.json"
typedef enum data_kind { D_STR, D_DBL, D_BOOL, D_LONG } data_kind;
typedef struct data_field {
    const char *key, *flag;
    data_kind kind;
    size_t off;
    bool changeable;
} data_field;
#define D(key, flag, kind, member, chg) {key, flag, kind, offsetof(train_cli, member), chg}
static const data_field data_fields[] = {
    D("train_data", "--train-data", D_STR, train_data, false),
    D("data", "--data", D_STR, data, false),
    D("vendors", "--vendors", D_STR, vendors, false),
    D("caption_key", "--caption-key", D_STR, caption_key, false),
    D("alt_caption_key", "--alt-caption-key", D_STR, alt_caption_key, false),
    D("alt_caption_prob", "--alt-caption-prob", D_DBL, alt_prob, false),
    D("shuffle_buffer", "--shuffle-buffer", D_LONG, shuffle_buffer, false),
    D("white_background", "--white-background", D_BOOL, white, false),
    D("hflip", "--hflip", D_BOOL, hflip, false),
    D("crop_scale", "--crop-scale", D_DBL, crop_scale, false),
    D("val_data", "--val-data", D_STR, val_data, true),
    D("zeroshot_data", "--zeroshot-data", D_STR, zeroshot_data, true),
    D("label_key", "--label-key", D_STR, label_key, true),
    D("templates", "--templates", D_STR, templates, true),
};
#undef D
#define NDATA ((int)(sizeof data_fields / sizeof data_fields[0]))

/* The objectives and their options, from the table. */
static void objectives_help(FILE *fp) {
    char text[1024], head[64];
    snprintf(text, sizeof text, "what the towers are trained for (default %s):", vlp_objectives[0]->name);
    help_item(fp, "      --objective O", text);
    for (int i = 0; vlp_objectives[i]; i++) {
        snprintf(head, sizeof head, "            %s", vlp_objectives[i]->name);
        help_item(fp, head, vlp_objectives[i]->help);
    }
    /* each option once, with the objectives that take it and their defaults */
    for (int i = 0; vlp_objectives[i]; i++) {
        for (int k = 0; k < vlp_objectives[i]->noptions; k++) {
            const objective_option *p = &vlp_objectives[i]->options[k];
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = objective_option_index(vlp_objectives[j], p->flag) >= 0;
            if (seen) continue;
            size_t n = (size_t)snprintf(text, sizeof text, "%s (%s", p->help,
                                        p->kind == OBJECTIVE_MODEL ? "" : "default: ");
            for (int j = i, first = 1; vlp_objectives[j] && n < sizeof text; j++) {
                int q = objective_option_index(vlp_objectives[j], p->flag);
                if (q < 0) continue;
                n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", first ? "" : ", ", vlp_objectives[j]->name);
                if (p->kind != OBJECTIVE_MODEL && n < sizeof text)
                    n += (size_t)snprintf(text + n, sizeof text - n, " %g", vlp_objectives[j]->options[q].def);
                first = 0;
            }
            if (n < sizeof text) snprintf(text + n, sizeof text - n, ")");
            snprintf(head, sizeof head, "      %s %s", p->flag, p->arg);
            help_item(fp, head, text);
        }
    }
}

static void usage(FILE *fp, const train_cli *d) {
    fprintf(fp,
            "usage: vlp train [options]\n"
            "Pre-trains a CLIP-family model on image-caption pairs. Writes checkpoints\n"
            "(open_clip state dicts in safetensors), training state and metrics.jsonl to the\n"
            "run directory.\n"
            "\n"
            "  -c, --model-config C    the architecture: an open_clip name (ViT-B-32, ...; 'vlp\n"
            "                          models' lists them) or a JSON file in open_clip's fields\n"
            "                          (--config is the same) (default %s)\n"
            "      --train-data SPEC   training pairs: a .tsv/.csv (columns filepath + --caption-key)\n"
            "                          or WebDataset shards ('train-{000..011}.tar'; '::' joins lists);\n"
            "                          without it: the emoji images of --vendors from --data, held\n"
            "                          in memory\n"
            "      --caption-key K     caption column / json field (default title)\n"
            "      --alt-caption-key K a second caption column / json field, used with\n"
            "      --alt-caption-prob P  probability P per sample (default 0)\n"
            "      --workers N         decode threads (default 2)\n"
            "      --shuffle-buffer N  WebDataset sample shuffle buffer (default 1000)\n"
            "      --white-background  composite transparent pixels on white (default: drop alpha)\n"
            "      --crop-scale S      random resized crop keeps S..1 of the area (default 0.9)\n"
            "      --hflip             random horizontal flips (default off)\n"
            "  -d, --data DIR          the emoji corpus (scripts/get-data.sh) for the in-memory\n"
            "                          loader (default %s)\n"
            "      --vendors LIST      its training vendors (default %s)\n"
            "      --val-data SPEC     validation pairs (as --train-data, --caption-key): InfoNCE\n"
            "                          loss over batches of --batch and retrieval R@1/5/10 both\n"
            "                          ways, every --eval-every steps and at the end\n"
            "      --zeroshot-data SPEC  a labelled set for zero-shot top-1 and class-balanced\n"
            "                          accuracy (the classes: the distinct --label-key values)\n"
            "      --label-key K       its label column / json field (default category)\n"
            "      --templates T       zero-shot prompts: a name (default, openai-imagenet) or a\n"
            "                          file, a template a line, {} for the class (default %s)\n"
            "  -v, --vocab FILE        BPE merges file (e.g. OpenAI's); default: learn one\n"
            "      --tokenizer-merges N  merges to learn from the training captions (default %ld)\n"
            "  -o, --out DIR           run directory (default %s)\n"
            "  -b, --batch N           samples per step, the loss's batch (default %d)\n"
            "      --accum K           micro-batches per step, contrastive accumulation (default %d)\n"
            "  -n, --steps N           optimizer steps (default %ld)\n"
            "      --epochs E          instead of --steps: passes over the training pairs\n"
            "      --lr X              peak learning rate (default %g)\n"
            "      --warmup N          linear warmup steps (default %ld)\n"
            "      --wd X              AdamW weight decay (default %g)\n"
            "      --wd-embeddings on|off  decay the embedding tables too, as open_clip (off: exempt\n"
            "                          token, positional and class embeddings) (default on)\n"
            "      --beta1 X, --beta2 X, --eps X   AdamW (default %g, %g, %g)\n"
            "      --grad-clip X       clip the global gradient norm to X, 0 = off (default %g)\n"
            "      --skip-nonfinite    a step whose loss or gradient is NaN/Inf updates nothing and\n"
            "                          the run goes on, counting it (default: the run stops at it,\n"
            "                          its last checkpoint intact)\n"
            "      --grad-checkpointing  recompute each block's activations in the backward: the same\n"
            "                          gradients in a fraction of the activation memory, for about one\n"
            "                          more forward of the blocks (default off; a resumed run may turn it\n"
            "                          on, or off with --no-grad-checkpointing)\n"
            "  -s, --seed N            initialisation and data order (default %" PRIu64 ")\n"
            "  -t, --threads N         threads, 0 = one per core (default %d)\n",
            d->config, d->data, d->vendors, d->templates, d->tok_merges, d->out, d->o.batch,
            d->o.accum, d->o.steps, d->o.adam.lr, d->o.warmup, d->o.adam.weight_decay,
            d->o.adam.beta1, d->o.adam.beta2, d->o.adam.eps, d->o.grad_clip, d->o.seed, d->threads);
    objectives_help(fp);
    fprintf(fp,
            "      --init-image FILE   start the image tower from a checkpoint (visual.* tensors)\n"
            "      --lock-image        LiT: freeze the image tower (no gradients, no updates)\n"
            "      --lock-image-unlocked-groups N  but train its last N groups (open_clip's:\n"
            "                          proj, then [last block, ln_post], then the other blocks\n"
            "                          from the top, the stem last) (default 0)\n"
            "  -p, --precision P       fp32, or bf16: the transformer matmuls in bfloat16 with fp32\n"
            "                          accumulation and fp32 weights (AVX512-BF16; without it\n"
            "                          the run falls back to fp32 and says so) (default %s)\n"
            "      --eval-every N      steps between evals, 0 = only at the end (default %ld)\n"
            "      --save-every N      steps between checkpoints, 0 = only at the end (default %ld)\n"
            "      --keep N            checkpoints kept (default %ld)\n"
            "      --log-every N       steps between progress lines when not a terminal (default %ld)\n"
            "  -r, --resume            continue the run in --out from its latest checkpoint; the\n"
            "                          run's options apply, and any given again must agree, except\n"
            "                          --steps, which may extend it\n"
            "  -h, --help              this text\n"
            "Ctrl-C saves a checkpoint and exits; a second Ctrl-C exits at once.\n"
            "Under 'mpirun -np N' the N ranks train data-parallel: --batch is the global batch,\n"
            "rank 0 writes the run, --resume needs the same N (docs/scaling.md).\n",
            d->precision, d->eval_every, d->save_every, d->keep, d->log_every);
}

static train_cli defaults(void) {
    train_cli c = {.config = "tiny", .data = "data/emoji", .out = "runs/emoji",
                   .vendors = "google,apple,facebook", .label_key = "category",
                   .templates = TEMPLATES_DEFAULT,
                   .o = train_opts_defaults(), .save_every = 100, .eval_every = 0,
                   .log_every = 10, .keep = 2, .threads = 0, .tok_merges = 2000, .precision = "fp32",
                   .caption_key = "title", .workers = 2, .shuffle_buffer = 1000, .crop_scale = 0.9};
    return c;
}

/* an option of some objective: kept until the objective is known */
static bool objective_flag(const char *flag) {
    for (int i = 0; vlp_objectives[i]; i++)
        for (int k = 0; k < vlp_objectives[i]->noptions; k++)
            if (!strcmp(vlp_objectives[i]->options[k].flag, flag)) return true;
    return false;
}

/* each key once: there are fewer keys than MAX_GIVEN */
static void mark_given(train_cli *c, const char *key) {
    for (int i = 0; i < c->ngiven; i++)
        if (!strcmp(c->given[i], key)) return;
    if (c->ngiven < MAX_GIVEN) c->given[c->ngiven++] = key;
}

/* The objective's options given on the command line, now that it is known. */
static bool apply_objective_args(train_cli *c) {
    const objective *obj = c->o.objective;
    for (int k = 0; k < c->nobj_args; k++) {
        const char *flag = c->obj_args[k].flag, *v = c->obj_args[k].value;
        int i = objective_option_index(obj, flag);
        vlp_error err = {0};
        if (i < 0) {
            train_opts_set(&c->o, flag, 0, &err); /* the message: whose option it is */
            fprintf(stderr, "vlp train: %s\n", err.message);
            return false;
        }
        const objective_option *p = &obj->options[i];
        double x = 1;
        if (p->kind == OBJECTIVE_MODEL) c->model_path[i] = v;
        else if (!arg_double("train", flag, v, p->lo, p->hi, &x)) return false;
        c->o.obj[i] = (float)x;
        mark_given(c, p->key);
    }
    return true;
}

/* returns 0 ok, 1 help shown, 2 bad usage */
static int parse(int argc, char **argv, train_cli *c) {
    const char *cmd = "train";
    train_cli d = defaults();
    *c = d;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        long l;
        double x;
        const char *a = argv[i];
#define VAL(s, lo) (arg_is(argc, argv, &i, s, lo, true, cmd, &bad) && (a = argv[++i], 1))
        if (arg_is(argc, argv, &i, "-h", "--help", false, cmd, &bad)) {
            usage(stdout, &d);
            return 1;
        } else if (VAL("-c", "--model-config") || VAL(NULL, "--config")) c->config = a, mark_given(c, "--model-config");
        else if (VAL("-d", "--data")) c->data = a, mark_given(c, "data");
        else if (VAL(NULL, "--vendors")) c->vendors = a, mark_given(c, "vendors");
        else if (VAL(NULL, "--val-data")) c->val_data = a, mark_given(c, "val_data");
        else if (VAL(NULL, "--zeroshot-data")) c->zeroshot_data = a, mark_given(c, "zeroshot_data");
        else if (VAL(NULL, "--label-key")) c->label_key = a, mark_given(c, "label_key");
        else if (VAL(NULL, "--templates")) c->templates = a, mark_given(c, "templates");
        else if (VAL("-v", "--vocab")) c->vocab = a, mark_given(c, "--vocab");
        else if (VAL(NULL, "--train-data")) c->train_data = a, mark_given(c, "train_data");
        else if (VAL(NULL, "--caption-key")) c->caption_key = a, mark_given(c, "caption_key");
        else if (VAL(NULL, "--alt-caption-key")) c->alt_caption_key = a, mark_given(c, "alt_caption_key");
        else if (VAL(NULL, "--alt-caption-prob")) bad = !arg_double(cmd, "--alt-caption-prob", a, 0, 1, &c->alt_prob), mark_given(c, "alt_caption_prob");
        else if (VAL(NULL, "--workers")) bad = !arg_long(cmd, "--workers", a, 1, 64, &c->workers);
        else if (VAL(NULL, "--shuffle-buffer")) bad = !arg_long(cmd, "--shuffle-buffer", a, 0, 1 << 24, &c->shuffle_buffer), mark_given(c, "shuffle_buffer");
        else if (arg_is(argc, argv, &i, NULL, "--white-background", false, cmd, &bad)) c->white = true, mark_given(c, "white_background");
        else if (arg_is(argc, argv, &i, NULL, "--hflip", false, cmd, &bad)) c->hflip = true, mark_given(c, "hflip");
        else if (VAL(NULL, "--crop-scale")) bad = !arg_double(cmd, "--crop-scale", a, 0.01, 1, &c->crop_scale), mark_given(c, "crop_scale");
        else if (VAL(NULL, "--tokenizer-merges")) bad = !arg_long(cmd, "--tokenizer-merges", a, 1, 1 << 22, &c->tok_merges), mark_given(c, "--tokenizer-merges");
        else if (VAL("-o", "--out")) c->out = a;
        else if (VAL("-b", "--batch")) bad = !arg_long(cmd, "--batch", a, 2, 1 << 20, &l), c->o.batch = (int)l, mark_given(c, "batch");
        else if (VAL(NULL, "--accum")) bad = !arg_long(cmd, "--accum", a, 1, 1 << 16, &l), c->o.accum = (int)l, mark_given(c, "accum");
        else if (VAL("-n", "--steps")) bad = !arg_long(cmd, "--steps", a, 1, 1L << 40, &c->o.steps), mark_given(c, "steps");
        else if (VAL(NULL, "--epochs")) bad = !arg_double(cmd, "--epochs", a, 1e-6, 1e6, &c->epochs), mark_given(c, "--epochs");
        else if (VAL(NULL, "--lr")) bad = !arg_double(cmd, "--lr", a, 1e-12, 10, &x), c->o.adam.lr = (float)x, mark_given(c, "lr");
        else if (VAL(NULL, "--warmup")) bad = !arg_long(cmd, "--warmup", a, 0, 1L << 40, &c->o.warmup), mark_given(c, "warmup");
        else if (VAL(NULL, "--wd")) bad = !arg_double(cmd, "--wd", a, 0, 10, &x), c->o.adam.weight_decay = (float)x, mark_given(c, "weight_decay");
        else if (VAL(NULL, "--beta1")) bad = !arg_double(cmd, "--beta1", a, 0, 0.999999, &x), c->o.adam.beta1 = (float)x, mark_given(c, "beta1");
        else if (VAL(NULL, "--beta2")) bad = !arg_double(cmd, "--beta2", a, 0, 0.999999, &x), c->o.adam.beta2 = (float)x, mark_given(c, "beta2");
        else if (VAL(NULL, "--eps")) bad = !arg_double(cmd, "--eps", a, 1e-30, 1, &x), c->o.adam.eps = (float)x, mark_given(c, "eps");
        else if (arg_is(argc, argv, &i, NULL, "--skip-nonfinite", false, cmd, &bad))
            c->o.skip_nonfinite = true, mark_given(c, "skip_nonfinite");
        else if (arg_is(argc, argv, &i, NULL, "--grad-checkpointing", false, cmd, &bad))
            c->o.grad_checkpointing = true, mark_given(c, "grad_checkpointing");
        else if (arg_is(argc, argv, &i, NULL, "--no-grad-checkpointing", false, cmd, &bad))
            c->o.grad_checkpointing = false, mark_given(c, "grad_checkpointing");
        else if (VAL(NULL, "--wd-embeddings")) {
            bool off = !strcmp(a, "off");
            if (off || !strcmp(a, "on")) c->o.adam.decay_embeddings = !off, mark_given(c, "decay_embeddings");
            else fprintf(stderr, "vlp train: --wd-embeddings must be on or off, not '%s'\n", a), bad = 1;
        } else if (VAL(NULL, "--grad-clip")) bad = !arg_double(cmd, "--grad-clip", a, 0, 1e30, &c->o.grad_clip), mark_given(c, "grad_clip");
        else if (VAL("-s", "--seed")) bad = !arg_long(cmd, "--seed", a, 0, (long)(~0UL >> 1), &l), c->o.seed = (uint64_t)l, mark_given(c, "seed");
        else if (VAL("-t", "--threads")) bad = !arg_long(cmd, "--threads", a, 0, 4096, &l), c->threads = (int)l;
        else if (VAL(NULL, "--init-image")) c->init_image = a, mark_given(c, "--init-image");
        else if (arg_is(argc, argv, &i, NULL, "--lock-image", false, cmd, &bad)) {
            if (c->o.lock_image < 0) c->o.lock_image = 0;
            mark_given(c, "lock_image");
        } else if (VAL(NULL, "--lock-image-unlocked-groups")) {
            bad = !arg_long(cmd, "--lock-image-unlocked-groups", a, 0, 4096, &l);
            c->o.lock_image = (int)l;
            mark_given(c, "lock_image");
        } else if (VAL(NULL, "--objective")) {
            const objective *obj = objective_find(a);
            if (!obj) {
                char names[256];
                fprintf(stderr, "vlp train: --objective must be one of %s, not '%s'\n",
                        objective_names(names, sizeof names), a);
                bad = 1;
            } else train_opts_set_objective(&c->o, obj), mark_given(c, "objective");
        } else if (VAL("-p", "--precision")) {
            c->precision = a;
            mark_given(c, "precision");
            if (strcmp(a, "fp32") && strcmp(a, "bf16")) {
                fprintf(stderr, "vlp train: --precision must be fp32 or bf16, not '%s'\n", a);
                bad = 1;
            }
        } else if (VAL(NULL, "--eval-every")) bad = !arg_long(cmd, "--eval-every", a, 0, 1L << 40, &c->eval_every);
        else if (VAL(NULL, "--save-every")) bad = !arg_long(cmd, "--save-every", a, 0, 1L << 40, &c->save_every);
        else if (VAL(NULL, "--keep")) bad = !arg_long(cmd, "--keep", a, 1, 1000, &c->keep);
        else if (VAL(NULL, "--log-every")) bad = !arg_long(cmd, "--log-every", a, 1, 1L << 40, &c->log_every);
        else if (arg_is(argc, argv, &i, "-r", "--resume", false, cmd, &bad)) c->resume = true;
        else if (objective_flag(a) && VAL(NULL, a)) {
            if (c->nobj_args == MAX_GIVEN) {
                fprintf(stderr, "vlp train: more than %d objective options\n", MAX_GIVEN);
                bad = 1;
            } else c->obj_args[c->nobj_args].flag = argv[i - 1], c->obj_args[c->nobj_args++].value = a;
        } else if (!bad) {
            fprintf(stderr, "vlp train: unknown option '%s' (try --help)\n", a);
            bad = 1;
        }
#undef VAL
    }
    if (!strcmp(c->precision, "bf16")) c->o.precision = VLP_PRECISION_BF16;
    return bad ? 2 : 0;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

/* the job's ranks (a tool's state, not the library's): an error on one rank
 * must stop the others, which would wait for it in a collective forever */
static vlp_dist *g_dist;

static int fail(const vlp_error *e) {
    char buf[1024];
    if (dist_world(g_dist) > 1) {
        fprintf(stderr, "vlp train: rank %d of %d: %s\n", dist_rank(g_dist), dist_world(g_dist),
                vlp_error_format(e, buf, sizeof buf));
        fflush(stderr);
        dist_abort(g_dist, 1);
    }
    fprintf(stderr, "vlp train: %s\n", vlp_error_format(e, buf, sizeof buf));
    return 1;
}

/* What the run is judged by: validation pairs and a zero-shot set. */
typedef struct evals {
    long step;  // when
    bool val, zs;
    val_result v, z;
} evals;

static void print_eval(FILE *fp, long step, const train_cli *c, const evals *e) {
    if (e->val)
        fprintf(fp,
                "eval @ step %ld on %s (%d images, %d distinct captions): loss %.4f\n"
                "  image->text  R@1 %.4f  R@5 %.4f  R@10 %.4f   (chance R@1 %.4f)\n"
                "  text->image  R@1 %.4f  R@5 %.4f  R@10 %.4f\n",
                step, c->val_data, e->v.n, e->v.texts, e->v.loss, e->v.i2t.r1, e->v.i2t.r5,
                e->v.i2t.r10, 1.0 / e->v.texts, e->v.t2i.r1, e->v.t2i.r5, e->v.t2i.r10);
    if (e->zs)
        fprintf(fp,
                "zero-shot @ step %ld on %s (%d images, %d classes): top-1 %.4f  class-balanced "
                "%.4f   (chance: majority class %.4f, balanced %.4f)\n",
                step, c->zeroshot_data, e->z.zs.n, e->z.classes, e->z.zs.top1, e->z.zs.balanced,
                e->z.zs.majority, 1.0 / e->z.classes);
}

static vlp_err log_eval(trainer *t, long step, const evals *e, vlp_error *err) {
    char line[1024], loss[32] = "null"; /* JSON has no NaN: a set of one pair has no loss */
    if (isfinite(e->v.loss)) snprintf(loss, sizeof loss, "%.6g", e->v.loss);
    int n = snprintf(line, sizeof line, "{\"step\":%ld", step);
    if (e->val)
        n += snprintf(line + n, sizeof line - (size_t)n,
                      ",\"val\":{\"images\":%d,\"texts\":%d,\"loss\":%s,\"i2t_r1\":%.5f,"
                      "\"i2t_r5\":%.5f,\"i2t_r10\":%.5f,\"t2i_r1\":%.5f,\"t2i_r5\":%.5f,"
                      "\"t2i_r10\":%.5f,\"chance_r1\":%.6f}",
                      e->v.n, e->v.texts, loss, e->v.i2t.r1, e->v.i2t.r5, e->v.i2t.r10,
                      e->v.t2i.r1, e->v.t2i.r5, e->v.t2i.r10, 1.0 / e->v.texts);
    if (e->zs)
        n += snprintf(line + n, sizeof line - (size_t)n,
                      ",\"zeroshot\":{\"images\":%d,\"classes\":%d,\"top1\":%.5f,\"balanced\":%.5f,"
                      "\"chance_majority\":%.5f}",
                      e->z.zs.n, e->z.classes, e->z.zs.top1, e->z.zs.balanced, e->z.zs.majority);
    if (n < (int)sizeof line) snprintf(line + n, sizeof line - (size_t)n, "}");
    return trainer_log(t, line, err);
}

#define MERGES_FILE "tokenizer.merges"

static vlp_err copy_file(const char *from, const char *to, vlp_error *err) {
    FILE *in = fopen(from, "rb");
    VLP_CHECK_IO(in, err, "cannot open %s: %s", from, strerror(errno));
    atomic_file af;
    vlp_err rc = atomic_open(&af, to, err);
    char buf[1 << 16];
    size_t n;
    while (rc == VLP_OK && (n = fread(buf, 1, sizeof buf, in)) > 0) atomic_write(&af, buf, n);
    bool bad = ferror(in);
    fclose(in);
    if (rc != VLP_OK) return rc;
    if (bad) {
        atomic_abort(&af);
        VLP_FAIL(err, VLP_ERR_IO, "cannot read %s", from);
    }
    return atomic_commit(&af, err);
}

/* written atomically: a run killed meanwhile keeps the old file or none */
static vlp_err write_text(const char *path, const char *text, vlp_error *err) {
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    atomic_write(&af, text, strlen(text));
    return atomic_commit(&af, err);
}

static bool was_given(const train_cli *c, const char *key) {
    for (int i = 0; i < c->ngiven; i++)
        if (!strcmp(c->given[i], key)) return true;
    return false;
}

static json_t *data_value(const train_cli *c, const data_field *f) {
    const void *p = (const char *)c + f->off;
    switch (f->kind) {
    case D_STR: return *(const char *const *)p ? json_string(*(const char *const *)p) : json_null();
    case D_DBL: return json_real(*(const double *)p);
    case D_BOOL: return json_boolean(*(const bool *)p);
    case D_LONG: return json_integer(*(const long *)p);
    }
    return json_null();
}

/* run/data.json, atomically */
static vlp_err write_data_record(const train_cli *c, vlp_error *err) {
    json_t *j = json_object(), *models = json_object();
    for (int i = 0; j && i < NDATA; i++) json_object_set_new(j, data_fields[i].key, data_value(c, &data_fields[i]));
    /* the reference models of the objective's options (coca's --prior-ref) */
    const objective *obj = c->o.objective;
    for (int i = 0; models && i < obj->noptions; i++)
        if (c->model_path[i]) json_object_set_new(models, obj->options[i].key, json_string(c->model_path[i]));
    if (j) json_object_set_new(j, "models", models);
    else json_decref(models);
    char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER | JSON_INDENT(2)) : NULL;
    json_decref(j);
    VLP_CHECK_ALLOC(text, err, 1024);
    char path[4200];
    snprintf(path, sizeof path, "%s/" DATA_FILE, c->out);
    vlp_err rc = write_text(path, text, err);
    free(text);
    return rc;
}

/* The run's data options: those given again must agree (but the evaluation
 * sets), the others are the run's. A run without data.json (older vlp)
 * takes the command line's. */
static int resume_data(train_cli *c) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" DATA_FILE, c->out);
    if (access(path, F_OK) != 0) return 0;
    json_error_t je;
    c->record = json_load_file(path, 0, &je);
    if (!json_is_object(c->record)) {
        fprintf(stderr, "vlp train: %s: %s\n", path, c->record ? "not a JSON object" : je.text);
        return 1;
    }
    for (int i = 0; i < NDATA; i++) {
        const data_field *f = &data_fields[i];
        json_t *v = json_object_get(c->record, f->key);
        if (!v) continue;
        json_t *mine = data_value(c, f);
        bool same = json_equal(mine, v) || (f->kind == D_DBL && json_is_number(v) &&
                                            json_number_value(v) == json_number_value(mine));
        if (was_given(c, f->key) && !same && !f->changeable) {
            char *theirs = json_dumps(v, JSON_ENCODE_ANY), *ours = json_dumps(mine, JSON_ENCODE_ANY);
            fprintf(stderr, "vlp train: %s: the run was started with %s %s, not %s; a resumed run "
                            "reads the same data\n", c->out, f->flag, theirs ? theirs : "?", ours ? ours : "?");
            free(theirs), free(ours);
            json_decref(mine);
            return 2;
        }
        json_decref(mine);
        if (was_given(c, f->key)) continue;
        void *p = (char *)c + f->off;
        bool ok = true;
        switch (f->kind) {
        case D_STR: ok = json_is_string(v) || json_is_null(v); if (ok) *(const char **)p = json_string_value(v); break;
        case D_DBL: ok = json_is_number(v); if (ok) *(double *)p = json_number_value(v); break;
        case D_BOOL: ok = json_is_boolean(v); if (ok) *(bool *)p = json_is_true(v); break;
        case D_LONG: ok = json_is_integer(v); if (ok) *(long *)p = (long)json_integer_value(v); break;
        }
        if (!ok) {
            fprintf(stderr, "vlp train: %s: \"%s\" has a value of the wrong type\n", path, f->key);
            return 1;
        }
    }
    return 0;
}

/* Everything a run needs that is not the trainer itself. */
typedef struct run {
    clip_config cfg;
    clip_model m;
    vlp_tokenizer tok;
    emoji_set train;
    vlp_loader loader;
    trainer *t;
    image_norm norm;
    const char **captions; // (n, 3) what the loader serves
    int lock_fd;           // the run directory's lock
    clip_model refs[OBJECTIVE_MAX_OPTIONS]; // the objective's reference models (--prior-ref)
    char **templates;      // zero-shot prompts
    int ntemplates;
    vlp_dist *dist;        // the mpirun job, or one process
    int rank, world;
} run;

static void run_free(run *r) {
    trainer_free(r->t);
    loader_free(&r->loader);
    free(r->captions);
    emoji_free(&r->train);
    tokenizer_free(&r->tok);
    clip_free(&r->m);
    for (int i = 0; i < OBJECTIVE_MAX_OPTIONS; i++) clip_free(&r->refs[i]);
    free_lines(r->templates, r->ntemplates);
    if (r->lock_fd >= 0) close(r->lock_fd);
}

/* Every caption of the training stream (one pass, images not decoded). */
static vlp_err stream_captions(const char *spec, const dataset_opts *o, char ***out, int *n, vlp_error *err) {
    sample_stream *s;
    VLP_TRY(stream_open(&s, spec, o, err));
    vlp_err rc = stream_begin(s, 0, err);
    char **v = NULL;
    int cap = 0, k = 0;
    bool done = false;
    while (rc == VLP_OK && !done) {
        raw_sample r;
        rc = stream_next(s, &r, &done, err);
        if (rc != VLP_OK || done) break;
        if (k == cap) {
            char **g = realloc(v, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 1024));
            if (!g) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "captions");
            else v = g;
        }
        if (rc == VLP_OK) v[k++] = r.caption, r.caption = NULL;
        raw_sample_free(&r);
    }
    if (rc == VLP_OK && k == 0) { /* every sample skipped: say why, not "no texts" further on */
        const char *why;
        int64_t skipped = stream_skipped(s, &why);
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%.300s: no usable sample (%lld skipped; the first: %.300s)",
                           spec, (long long)skipped, skipped ? why : "none");
    }
    stream_free(s);
    if (rc != VLP_OK) {
        for (int i = 0; i < k; i++) free(v[i]);
        free(v);
        return rc;
    }
    *out = v, *n = k;
    return VLP_OK;
}

static dataset_opts train_dataset_opts(const train_cli *c) {
    dataset_opts o = dataset_opts_default();
    o.rank = dist_rank(g_dist), o.world = dist_world(g_dist); /* each rank its own shards */
    o.caption_key = c->caption_key;
    o.alt_caption_key = c->alt_caption_key;
    o.shuffle_buffer = (int)c->shuffle_buffer;
    o.seed = c->o.seed;
    o.warn = cli_warn;
    return o;
}

/* Learns the run's BPE from the training captions and the eval prompts. */
/* The zero-shot prompts of --zeroshot-data's classes, so the tokenizer
 * learns their words too: (classes × templates) strings, malloc'd. */
static vlp_err zeroshot_prompts(train_cli *c, run *r, char ***out, int *n, vlp_error *err) {
    *out = NULL, *n = 0;
    if (!c->zeroshot_data) return VLP_OK;
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.caption_key = c->label_key, o.warn = cli_warn;
    char **labels;
    int nl, C;
    VLP_TRY(stream_captions(c->zeroshot_data, &o, &labels, &nl, err));
    const char **cls = distinct_strings((const char *const *)labels, nl, &C, NULL);
    size_t np = (size_t)C * r->ntemplates;
    char **p = cls ? calloc(np ? np : 1, sizeof(char *)) : NULL;
    vlp_err rc = p ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "prompts");
    for (int k = 0; rc == VLP_OK && k < C; k++)
        for (int t = 0; rc == VLP_OK && t < r->ntemplates; t++)
            if (!(p[(size_t)k * r->ntemplates + t] = class_prompt(r->templates[t], cls[k])))
                rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "prompt");
    free(cls);
    free_lines(labels, nl);
    if (rc != VLP_OK) {
        free_lines(p, (int)np);
        return rc;
    }
    *out = p, *n = (int)np;
    return VLP_OK;
}

/* Learns the run's BPE from the training captions and the zero-shot prompts. */
static vlp_err learn_tokenizer(train_cli *c, run *r, const char *path, vlp_error *err) {
    char **prompts = NULL, **streamed = NULL;
    int np = 0, n = r->train.n;
    VLP_TRY(zeroshot_prompts(c, r, &prompts, &np, err));
    vlp_err rc = VLP_OK;
    if (c->train_data) {
        dataset_opts o = train_dataset_opts(c);
        o.shuffle = false;
        o.rank = 0, o.world = 1; /* every caption, whatever the number of ranks */
        fprintf(stderr, "reading the captions of %s to learn a tokenizer\n", c->train_data);
        rc = stream_captions(c->train_data, &o, &streamed, &n, err);
    }
    const char **texts = rc == VLP_OK ? malloc(sizeof(char *) * (size_t)(n + np + 1)) : NULL;
    if (rc == VLP_OK && !texts) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "captions");
    int learnt = 0;
    if (rc == VLP_OK) {
        for (int i = 0; i < n; i++) texts[i] = streamed ? streamed[i] : r->train.caption[i];
        for (int k = 0; k < np; k++) texts[n + k] = prompts[k];
        rc = bpe_train(texts, n + np, (int)c->tok_merges, 2, path, &learnt, err);
    }
    free(texts);
    if (streamed) free_lines(streamed, n);
    free_lines(prompts, np);
    VLP_TRY(rc);
    fprintf(stderr, "tokenizer: learnt %d BPE merges from %d training captions%s into %s\n", learnt,
            n, np ? " and the zero-shot prompts" : "", path);
    return VLP_OK;
}

/* The model config and tokenizer: from the run when resuming, else fresh
 * (the config's vocab_size set from the tokenizer), written into the run. */
static vlp_err model_and_tokenizer(train_cli *c, run *r, vlp_error *err) {
    char path[4096];
    if (c->resume) {
        snprintf(path, sizeof path, "%s/config.json", c->out);
        VLP_TRY(clip_config_load(path, &r->cfg, err));
        snprintf(path, sizeof path, "%s/" MERGES_FILE, c->out);
        return bpe_load(path, 0, &r->tok, err);
    }
    /* a new run never mixes with an old one's files */
    snprintf(path, sizeof path, "%s/latest.state", c->out);
    VLP_CHECK_ARG(access(path, F_OK) != 0, err,
                  "%s already holds a run; continue it with --resume, or choose another --out", c->out);
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->out);
    unlink(path);
    char config_path[4200];
    VLP_TRY(clip_config_resolve(c->config, &r->cfg, config_path, sizeof config_path, err));
    fprintf(stderr, "model config: %s (%s)\n", c->config, config_path);
    const objective *obj = c->o.objective;
    if (obj->configure) obj->configure(&r->cfg);
    char hint[512];
    snprintf(hint, sizeof hint, "%s has none", c->config);
    VLP_TRY(objective_check_config(obj, &r->cfg, hint, err));
    snprintf(path, sizeof path, "%s/" MERGES_FILE, c->out);
    const char *ref = NULL; /* a reference model reads the same token ids */
    for (int i = 0; i < obj->noptions && !ref; i++) ref = c->model_path[i];
    if (!c->vocab && ref) {
        char *ref_merges = c->ref_merges;
        const char *slash = strrchr(ref, '/');
        int dir = slash ? (int)(slash - ref) : 1;
        snprintf(ref_merges, sizeof c->ref_merges, "%.*s/" MERGES_FILE, dir, slash ? ref : ".");
        VLP_CHECK_ARG(access(ref_merges, R_OK) == 0, err,
                      "%s: no tokenizer next to the reference checkpoint %s; give its merges with "
                      "--vocab", ref_merges, ref);
        c->vocab = ref_merges;
        fprintf(stderr, "tokenizer: the reference model's, %s\n", ref_merges);
    }
    if (c->vocab) VLP_TRY(copy_file(c->vocab, path, err)); /* copied, so resume finds it */
    else VLP_TRY(learn_tokenizer(c, r, path, err));
    VLP_TRY(bpe_load(path, 0, &r->tok, err));
    r->cfg.text.vocab_size = r->tok.vocab_size;
    char *json = clip_config_to_json(&r->cfg);
    VLP_CHECK_ALLOC(json, err, 1024);
    snprintf(path, sizeof path, "%s/config.json", c->out);
    vlp_err wrc = write_text(path, json, err);
    free(json);
    return wrc;
}

/* The in-memory emoji loader: each image with its coarse caption ("a face
 * smiling emoji of smileys & emotion") one time in COARSE_EVERY. */
static vlp_err emoji_loader(train_cli *c, run *r, vlp_error *err) {
    enum { COARSE_EVERY = 6 };
    VLP_CHECK_ARG(r->cfg.vision.image_size == EMOJI_SIZE, err,
                  "the in-memory emoji loader serves %dx%d images; the config's image_size is %d "
                  "(use --train-data, which resizes)", EMOJI_SIZE, EMOJI_SIZE, r->cfg.vision.image_size);
    size_t ncap = (size_t)COARSE_EVERY * r->train.n;
    r->captions = malloc(sizeof(char *) * ncap);
    VLP_CHECK_ALLOC(r->captions, err, sizeof(char *) * ncap);
    for (size_t i = 0; i < (size_t)r->train.n; i++) {
        for (int k = 0; k < COARSE_EVERY - 1; k++) r->captions[COARSE_EVERY * i + k] = r->train.caption[i];
        r->captions[COARSE_EVERY * i + COARSE_EVERY - 1] = emoji_coarse_caption(r->train.caption[i]);
    }
    return pair_loader_create(&r->loader, r->train.rgb, r->captions, COARSE_EVERY, r->train.n, EMOJI_SIZE,
                              &r->tok, r->cfg.text.context_length, &r->norm, c->o.seed, err);
}

static vlp_err streaming_loader(train_cli *c, run *r, vlp_error *err) {
    dataset_opts o = train_dataset_opts(c);
    sample_stream *s;
    VLP_TRY(stream_open(&s, c->train_data, &o, err));
    stream_loader_opts lo = stream_loader_defaults(r->cfg.vision.image_size, true,
                                                   r->cfg.text.context_length, &r->tok);
    lo.workers = (int)c->workers, lo.seed = c->o.seed, lo.alt_prob = (float)c->alt_prob;
    lo.warn = cli_warn;
    lo.prefetch = 2 * c->o.batch > 512 ? 2 * c->o.batch : 512;
    if (c->white) lo.decode.composite = true, memset(lo.decode.background, 255, 3);
    lo.tf.scale_lo = (float)c->crop_scale, lo.tf.hflip = c->hflip;
    vlp_err rc = stream_loader_create(&r->loader, s, &lo, err);
    if (rc != VLP_OK) stream_free(s);
    return rc;
}

/* samples of the loader's epoch one step consumes: the sharded pair
 * loader's epoch is the whole set, a streaming rank's its own shards */
static long per_step(const train_cli *c, const run *r) {
    return (long)loader_samples_per_step(&r->loader, c->o.batch / r->world);
}

/* How the evaluation sets are read: the validation set as pairs (with its
 * labels too when it is also the zero-shot set: one pass), the zero-shot set
 * as labelled images. */
static bool one_eval_set(const train_cli *c) {
    return c->val_data && c->zeroshot_data && !strcmp(c->val_data, c->zeroshot_data);
}

static val_opts eval_opts(const train_cli *c, const run *r, bool zeroshot) {
    val_opts vo = {.caption_key = c->caption_key, .white = c->white, .loss_batch = c->o.batch,
                   .warn = cli_warn};
    if (zeroshot || one_eval_set(c)) {
        vo.label_key = c->label_key;
        vo.templates = (const char *const *)r->templates, vo.ntemplates = r->ntemplates;
        vo.zeroshot_only = zeroshot;
    }
    return vo;
}

/* The sets open as the evaluations will read them: a wrong path or column
 * stops the run before it trains, not at its first evaluation. */
static vlp_err check_eval_sets(const train_cli *c, const run *r, vlp_error *err) {
    val_opts vo = eval_opts(c, r, false);
    if (c->val_data) VLP_TRY(validate_check(c->val_data, &vo, err));
    vo = eval_opts(c, r, true);
    if (c->zeroshot_data && !one_eval_set(c)) VLP_TRY(validate_check(c->zeroshot_data, &vo, err));
    return VLP_OK;
}

/* Validation and zero-shot on the user's sets; rank 0 evaluates, the others go on. */
static vlp_err do_eval(train_cli *c, run *r, long step, evals *e, progress *pr, vlp_error *err) {
    if (r->rank > 0 || (!c->val_data && !c->zeroshot_data)) return VLP_OK;
    progress_break(pr);
    evals got = {.step = step};
    if (c->val_data) {
        val_opts vo = eval_opts(c, r, false);
        fprintf(stderr, "validating on %s...\n", c->val_data);
        VLP_TRY(validate_pairs(&r->m, &r->tok, c->val_data, &vo, &got.v, err));
        got.val = true;
    }
    if (one_eval_set(c)) got.z = got.v, got.zs = true;
    else if (c->zeroshot_data) {
        val_opts vo = eval_opts(c, r, true);
        fprintf(stderr, "zero-shot on %s...\n", c->zeroshot_data);
        VLP_TRY(validate_pairs(&r->m, &r->tok, c->zeroshot_data, &vo, &got.z, err));
        got.zs = true;
    }
    *e = got;
    print_eval(stderr, step, c, e);
    return log_eval(r->t, step, e, err);
}

/* The models the objective's OBJECTIVE_MODEL options name (coca's PRIOR
 * reference), for forward passes only: no gradients, one set of block
 * activations. */
static vlp_err reference_models(train_cli *c, run *r, vlp_error *err) {
    const objective *obj = c->o.objective;
    for (int i = 0; i < obj->noptions; i++) {
        const objective_option *p = &obj->options[i];
        if (p->kind != OBJECTIVE_MODEL || !c->o.obj[i]) continue;
        VLP_CHECK_ARG(c->model_path[i], err, "the run was started with %s: give it again", p->flag);
        clip_load_opts lo = {.quick_gelu = -1, .inference = true};
        VLP_TRY(clip_load_pretrained(&r->refs[i], c->model_path[i], &lo, err));
        VLP_TRY(clip_set_precision(&r->refs[i], c->o.precision, omp_get_max_threads(), err));
        VLP_TRY(trainer_set_model(r->t, p->key, &r->refs[i], err));
        if (r->rank == 0) fprintf(stderr, "%s %s\n", p->flag, c->model_path[i]);
    }
    return VLP_OK;
}

static vlp_err setup(train_cli *c, run *r, vlp_error *err) {
    r->norm = image_norm_openai();
    if (!c->train_data) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/emoji.json", c->data);
        VLP_CHECK_ARG(access(probe, R_OK) == 0, err,
                      "give the training pairs with --train-data (a .tsv/.csv or WebDataset shards); "
                      "without it vlp trains on the emoji corpus, which is not at %s "
                      "(scripts/get-data.sh %s fetches it)", c->data, c->data);
        fprintf(stderr, "loading emoji images of %s from %s\n", c->vendors, c->data);
        VLP_TRY(emoji_load(c->data, c->vendors, &r->train, err));
    }
    if (c->zeroshot_data) {
        r->templates = read_templates(c->templates, "train", &r->ntemplates);
        VLP_CHECK_ARG(r->templates, err, "no zero-shot templates (--templates %s)", c->templates);
    }
    if (r->rank == 0) {
        VLP_TRY(check_eval_sets(c, r, err));
        VLP_TRY(make_dirs(c->out, err));
        VLP_TRY(run_dir_lock(c->out, &r->lock_fd, err)); /* before anything in it is written */
        VLP_TRY(model_and_tokenizer(c, r, err));
        VLP_TRY(write_data_record(c, err)); /* a resumed run's too: its evaluation sets may change */
        VLP_TRY(dist_barrier(r->dist, err)); /* config and tokenizer are on disk */
    } else {
        /* rank 0 writes the run's config and tokenizer; the others read them */
        VLP_TRY(dist_barrier(r->dist, err));
        bool resume = c->resume;
        c->resume = true;
        vlp_err mrc = model_and_tokenizer(c, r, err);
        c->resume = resume;
        VLP_TRY(mrc);
    }
    VLP_CHECK_ARG(r->cfg.text.vocab_size == r->tok.vocab_size, err,
                  "%s/config.json has vocab_size %d, its tokenizer %d ids", c->out,
                  r->cfg.text.vocab_size, r->tok.vocab_size);
    VLP_TRY(clip_init(&r->m, &r->cfg, err));
    clip_init_weights(&r->m, c->o.seed);
    if (c->init_image && !c->resume) { /* a resumed run has its own weights */
        st_file *f;
        VLP_TRY(st_open(c->init_image, &f, err));
        vlp_err lrc = clip_load_prefix(&r->m, f, "visual.", err);
        st_close(f);
        VLP_TRY(lrc);
        if (r->rank == 0) fprintf(stderr, "image tower from %s\n", c->init_image);
    }
    if (r->rank == 0)
        fprintf(stderr, "precision: %s matmuls in the transformer blocks, fp32 weights and the rest\n",
                c->o.precision == VLP_PRECISION_BF16 ? "bf16 (fp32 accumulation)" : "fp32");
    if (r->rank == 0 && c->o.grad_checkpointing)
        fprintf(stderr, "activations: gradient checkpointing (each block's recomputed in the backward)\n");
    VLP_TRY(c->train_data ? streaming_loader(c, r, err) : emoji_loader(c, r, err));
    if (!c->train_data) VLP_TRY(pair_loader_shard(&r->loader, r->rank, r->world, err));
    if (c->epochs > 0 && !c->resume)
        c->o.steps = (long)ceil(c->epochs * (double)(r->loader.epoch_size / per_step(c, r)));
    /* every rank must run the same number of steps: rank 0's count */
    VLP_TRY(dist_broadcast(r->dist, &c->o.steps, sizeof c->o.steps, 0, err));
    VLP_TRY(trainer_create(&r->t, &r->m, &r->loader, &c->o, c->out, r->dist, err));
    VLP_TRY(reference_models(c, r, err));
    if (c->resume) VLP_TRY(trainer_resume(r->t, err));
    return VLP_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Validation and zero-shot on the user's sets; rank 0 evaluates, the others go on. */
/* what a new run decides once: given to --resume, refused */
static const char *const new_run_only[] = {"--model-config", "--vocab", "--tokenizer-merges",
                                           "--epochs", "--init-image"};

/* The run's options for a resumed run: those given again must agree (the
 * library's one resume check), the others are the run's. */
static int resume_options(train_cli *c) {
    for (size_t i = 0; i < sizeof new_run_only / sizeof *new_run_only; i++)
        if (was_given(c, new_run_only[i])) {
            fprintf(stderr, "vlp train: %s applies to a new run; %s keeps its own (--steps may "
                            "extend it)\n", new_run_only[i], c->out);
            return 2;
        }
    vlp_error err = {0};
    train_opts run_o;
    if (trainer_saved_opts(c->out, &run_o, &err) != VLP_OK) return fail(&err);
    int drc = resume_data(c);
    if (drc) return drc;
    if (!was_given(c, "objective")) train_opts_set_objective(&c->o, run_o.objective);
    if (!apply_objective_args(c)) return 2;
    if (train_opts_resume(&run_o, &c->o, c->given, c->ngiven, c->out, &err) != VLP_OK) {
        fprintf(stderr, "vlp train: %s\n", err.message);
        return 2;
    }
    c->o = run_o;
    /* the reference models: the run's unless given again, and then the same file */
    json_t *models = json_object_get(c->record, "models");
    const objective *obj = c->o.objective;
    for (int i = 0; i < obj->noptions; i++) {
        const char *saved = json_string_value(json_object_get(models, obj->options[i].key));
        if (!saved || !c->o.obj[i]) continue;
        if (!c->model_path[i]) c->model_path[i] = saved;
        else if (strcmp(saved, c->model_path[i])) {
            fprintf(stderr, "vlp train: %s: the run was started with %s %s, not %s\n", c->out,
                    obj->options[i].flag, saved, c->model_path[i]);
            return 2;
        }
    }
    char desc[1024];
    train_opts_describe(&c->o, desc, sizeof desc);
    fprintf(stderr, "resuming %s: %s\n", c->out, desc);
    return 0;
}

/* What one invocation did, for its progress lines and summary. */
typedef struct session {
    long start, done;            // the run's step when it began; steps done since
    long skipped;                // steps not finite, skipped (--skip-nonfinite)
    double t_start, ema;         // wall clock; moving average of a step's seconds
    double train_s, data_s;      // seconds in steps, of which waiting for data
    float last_loss;
    char saved[4096];            // the last checkpoint written
    evals res;                   // the last evaluation
} session;

/* The step's progress line (rank 0) and its metrics.jsonl line. */
static vlp_err report_step(const train_cli *c, run *r, session *s, const train_step_info *info,
                           progress *pr, vlp_error *err) {
    s->done++;
    s->skipped += info->skipped;
    if (info->skipped) {
        progress_break(pr);
        fprintf(stderr, "vlp train: step %ld: the loss or the gradient is not finite; skipped (%ld so far)\n",
                info->step, s->skipped);
    }
    s->train_s += info->seconds, s->data_s += info->data_seconds;
    s->last_loss = info->loss;
    s->ema = s->done == 1 ? info->seconds : 0.9 * s->ema + 0.1 * info->seconds;
    double sps = c->o.batch / info->seconds, eta = s->ema * (double)(c->o.steps - info->step);
    char line[512], eta_s[32];
    fmt_duration(eta_s, sizeof eta_s, eta);
    snprintf(line, sizeof line, "step %ld/%ld  loss %.4f  lr %.2e  scale %.2f  %.1f samples/s  ETA %s",
             info->step, c->o.steps, info->loss, info->lr, info->logit_scale, sps, eta_s);
    if (r->rank == 0) progress_line(pr, line, info->step % c->log_every == 0 || info->step == c->o.steps);
    char json[512];
    snprintf(json, sizeof json,
             "{\"step\":%ld,\"loss\":%.7g,\"lr\":%.6g,\"logit_scale\":%.6g,\"grad_norm\":%.6g,"
             "\"samples_per_s\":%.2f,\"epoch\":%" PRId64 ",\"seconds\":%.4f,\"data_seconds\":%.4f%s}",
             info->step, isfinite(info->loss) ? info->loss : 0.0f, info->lr, info->logit_scale,
             isfinite(info->grad_norm) ? info->grad_norm : 0.0, sps, info->pos.epoch, info->seconds,
             info->data_seconds, info->skipped ? ",\"skipped\":true" : "");
    return trainer_log(r->t, json, err);
}

/* Steps until the run's end or a signal; checkpoints and evals on their
 * schedule (the last step's are the caller's). */
static vlp_err train_loop(train_cli *c, run *r, session *s, progress *pr, vlp_error *err) {
    while (trainer_step_count(r->t) < c->o.steps) {
        /* the ranks stop together: a signal may reach them at different steps */
        double stop = g_stop;
        VLP_TRY(dist_allreduce_sum_f64(r->dist, &stop, 1, err));
        if (stop > 0) {
            g_stop = 1;
            return VLP_OK;
        }
        train_step_info info;
        vlp_err rc = trainer_step(r->t, &info, err);
        if (rc != VLP_OK) progress_break(pr);
        VLP_TRY(rc);
        VLP_TRY(report_step(c, r, s, &info, pr, err));
        bool last = info.step == c->o.steps;
        if (c->save_every && info.step % c->save_every == 0 && !last)
            VLP_TRY(trainer_save(r->t, (int)c->keep, s->saved, sizeof s->saved, err));
        if (c->eval_every && info.step % c->eval_every == 0 && !last &&
            do_eval(c, r, info.step, &s->res, pr, err) != VLP_OK) {
            /* the run is worth more than one evaluation: say so and go on */
            char buf[1024];
            fprintf(stderr, "vlp train: the evaluation at step %ld failed, training goes on: %s\n",
                    info.step, vlp_error_format(err, buf, sizeof buf));
            *err = (vlp_error){0};
        }
    }
    return VLP_OK;
}

static void print_summary(const train_cli *c, run *r, const session *s, long step) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char wall_s[32];
    fmt_duration(wall_s, sizeof wall_s, now_s() - s->t_start);
    fprintf(stderr, "\nsummary: %ld steps this session (%ld..%ld of %ld), %s wall, %.1f samples/s "
                    "while training, %.1f%% of it waiting for data, final loss %.4f, peak RSS %.0f MiB\n",
            s->done, s->start, step, c->o.steps, wall_s,
            s->train_s > 0 ? s->done * c->o.batch / s->train_s : 0.0,
            s->train_s > 0 ? 100 * s->data_s / s->train_s : 0.0, s->last_loss, ru.ru_maxrss / 1024.0);
    if (s->saved[0]) fprintf(stderr, "checkpoint: %s (also %s/latest.safetensors)\n", s->saved, c->out);
    if (s->skipped) fprintf(stderr, "skipped %ld steps whose loss or gradient was not finite\n", s->skipped);
    if (c->train_data && r->loader.impl) {
        char why[512];
        int64_t skipped = stream_loader_skipped(&r->loader, why, sizeof why);
        if (skipped) fprintf(stderr, "skipped %lld unusable samples; the first: %s\n", (long long)skipped, why);
    }
    const evals *e = &s->res;
    if (e->val)
        printf("RESULT name=val step=%ld images=%d loss=%.4f i2t_r1=%.4f i2t_r5=%.4f i2t_r10=%.4f "
               "t2i_r1=%.4f t2i_r5=%.4f t2i_r10=%.4f chance_r1=%.4f\n",
               e->step, e->v.n, e->v.loss, e->v.i2t.r1, e->v.i2t.r5, e->v.i2t.r10, e->v.t2i.r1,
               e->v.t2i.r5, e->v.t2i.r10, 1.0 / e->v.texts);
    if (e->zs)
        printf("RESULT name=zeroshot step=%ld images=%d classes=%d top1=%.4f balanced=%.4f "
               "majority=%.4f\n", e->step, e->z.zs.n, e->z.classes, e->z.zs.top1, e->z.zs.balanced,
               e->z.zs.majority);
}

static void print_header(const train_cli *c, run *r, long start) {
    fprintf(stderr,
            "model: %zu parameters (%.1f MiB); objective %s; %d training pairs (%s%s); validation "
            "%s; vocab %d; batch %d%s; steps %ld (%.2f epochs); run dir %s\n",
            r->m.nfloats, r->m.nfloats * 4.0 / 1048576, c->o.objective->name, (int)r->loader.epoch_size,
            c->train_data ? c->train_data : c->vendors,
            c->train_data && r->world > 1 ? ": rank 0's shards" : "", c->val_data ? c->val_data : "none",
            r->tok.vocab_size, c->o.batch, c->o.accum > 1 ? " (accumulated)" : "", c->o.steps,
            (double)c->o.steps * per_step(c, r) / (double)r->loader.epoch_size, c->out);
    if (start) fprintf(stderr, "resumed at step %ld\n", start);
}

static int train_session(train_cli *cp) {
    int prc = cp->resume ? resume_options(cp) : apply_objective_args(cp) ? 0 : 2;
    if (prc) return prc;
    if (cp->o.precision == VLP_PRECISION_BF16 && !gemm_bf16_hw()) {
        if (!cp->resume) { /* the portable kernel would be slower than fp32 BLAS */
            fprintf(stderr, "vlp train: this CPU has no AVX512-BF16; --precision bf16 falls back to fp32\n");
            cp->o.precision = VLP_PRECISION_FP32;
        } else /* the same results, computed slowly */
            fprintf(stderr, "vlp train: %s trains in bf16 and this CPU has no AVX512-BF16: its "
                            "matmuls run on the portable kernel (slow)\n", cp->out);
    }
    train_cli c = *cp;
    vlp_error err = {0};
    vlp_set_threads(c.threads);
    tool_print_sysinfo(stderr);
    run r;
    memset(&r, 0, sizeof r);
    r.lock_fd = -1;
    r.dist = g_dist, r.rank = dist_rank(g_dist), r.world = dist_world(g_dist);
    bool lead = r.rank == 0; /* rank 0 reports; the others only on errors */
    if (r.world > 1 && lead)
        fprintf(stderr, "data parallel: %d ranks (MPI), %d samples each per step\n", r.world,
                c.o.batch / r.world);
    if (setup(&c, &r, &err) != VLP_OK) {
        run_free(&r);
        return fail(&err);
    }
    session s = {.start = trainer_step_count(r.t), .t_start = now_s(), .last_loss = NAN};
    if (lead) print_header(&c, &r, s.start);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    progress pr;
    progress_begin(&pr, stderr, "steps", c.o.steps);
    int rc = train_loop(&c, &r, &s, &pr, &err) == VLP_OK ? 0 : fail(&err);
    progress_break(&pr);
    long step = trainer_step_count(r.t);
    if (rc == 0) { /* the last checkpoint: at the end or where a signal stopped */
        if (trainer_save(r.t, (int)c.keep, s.saved, sizeof s.saved, &err) != VLP_OK) rc = fail(&err);
        else if (g_stop && lead) fprintf(stderr, "interrupted at step %ld: checkpoint %s; continue with "
                                         "'vlp train -o %s --resume'\n", step, s.saved, c.out);
    }
    if (rc == 0 && !g_stop && step >= c.o.steps && do_eval(&c, &r, step, &s.res, &pr, &err) != VLP_OK)
        rc = fail(&err);
    if (lead) print_summary(&c, &r, &s, step);
    run_free(&r);
    if (rc == 0 && g_stop) return 130;
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_cli c;
    int p = parse(argc, argv, &c);
    if (p) return p == 1 ? 0 : 2;
    vlp_error err = {0};
    if (dist_init(&g_dist, &err) != VLP_OK) return fail(&err);
    int rc = train_session(&c);
    json_decref(c.record);
    dist_free(g_dist);
    g_dist = NULL;
    return rc;
}
