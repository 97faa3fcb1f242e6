/* vlp train: pre-training on image-caption pairs (a TSV/CSV or WebDataset
 * shards through the streaming loader, or the emoji corpus held in memory),
 * with checkpoints, exact resume and the emoji held-out eval when asked. */
#include <errno.h>
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
#include "eval/emoji_eval.h"
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

typedef struct train_cli {
    const char *config, *data, *out, *vendors, *eval_vendor, *vocab;
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
    const char *prior_ref;      // PRIOR's text-only reference LM (a textlm run's checkpoint)
    char ref_merges[4096];      // its run's tokenizer, when --vocab is not given
    bool resume, steps_given;
    /* loss options given on the command line: the contrastive weight (coca,
     * clip-mae), the caption's (coca), MAE's (mae, clip-mae) */
    bool clip_given, caption_given, mae_given;
} train_cli;

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
            "  -d, --data DIR          the emoji corpus (scripts/get-data.sh), for the in-memory\n"
            "                          loader and --eval-vendor (default %s)\n"
            "      --vendors LIST      training vendors (default %s)\n"
            "      --eval-vendor V     evaluate on this held-out emoji vendor of --data (e.g.\n"
            "                          twitter) every --eval-every steps and at the end\n"
            "                          (default %s)\n"
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
            "      --beta1 X, --beta2 X, --eps X   AdamW (default %g, %g, %g)\n"
            "      --grad-clip X       clip the global gradient norm to X, 0 = off (default %g)\n"
            "  -s, --seed N            initialisation and data order (default %" PRIu64 ")\n"
            "  -t, --threads N         threads, 0 = one per core (default %d)\n"
            "      --objective O       clip (InfoNCE), siglip (pairwise sigmoid; adds logit_bias,\n"
            "                          initialised as SigLIP: scale ln 10, bias -10, unless the\n"
            "                          config sets init_logit_scale/init_logit_bias), or filip\n"
            "                          (token-wise late interaction), coca (contrastive +\n"
            "                          captioning; the config needs multimodal_cfg), or textlm\n"
            "                          (the decoder as a text-only LM on the captions: PRIOR's\n"
            "                          reference), mae (masked image modeling alone; the config\n"
            "                          needs mae_cfg), or clip-mae (contrastive on the masked\n"
            "                          images + MAE) (default %s)\n"
            "      --clip-weight X     coca, clip-mae: weight of the contrastive loss (default %g)\n"
            "      --caption-weight X  coca: weight of the caption loss (default %g)\n"
            "      --prior-ref CKPT    coca: weight each caption token's loss by PRIOR's\n"
            "                          (1 - p_ref)^alpha from this textlm checkpoint (its run's\n"
            "                          tokenizer is used unless --vocab is given)\n"
            "      --prior-alpha A     PRIOR's exponent alpha (default %g)\n"
            "      --mask-ratio X      mae, clip-mae: share of patches masked (default %g)\n"
            "      --mae-weight X      clip-mae: weight of the reconstruction loss (default %g)\n"
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
            "  -r, --resume            continue the run in --out from its latest checkpoint;\n"
            "                          options come from the run, --steps may extend it\n"
            "  -h, --help              this text\n"
            "Ctrl-C saves a checkpoint and exits; a second Ctrl-C exits at once.\n"
            "Under 'mpirun -np N' the N ranks train data-parallel: --batch is the global batch,\n"
            "rank 0 writes the run, --resume needs the same N (docs/scaling.md).\n",
            d->config, d->data, d->vendors, *d->eval_vendor ? d->eval_vendor : "none", d->tok_merges, d->out, d->o.batch, d->o.accum,
            d->o.steps, d->o.adam.lr, d->o.warmup, d->o.adam.weight_decay, d->o.adam.beta1,
            d->o.adam.beta2, d->o.adam.eps, d->o.grad_clip, d->o.seed, d->threads,
            vlp_objective_name(d->o.objective), d->o.clip_weight, d->o.caption_weight,
            d->o.prior_alpha, d->o.mask_ratio, d->o.mae_weight, d->precision, d->eval_every,
            d->save_every, d->keep, d->log_every);
}

static train_cli defaults(void) {
    train_cli c = {.config = "tiny", .data = "data/emoji", .out = "runs/emoji",
                   .vendors = "google,apple,facebook", .eval_vendor = "",
                   .o = train_opts_defaults(), .save_every = 100, .eval_every = 0,
                   .log_every = 10, .keep = 2, .threads = 0, .tok_merges = 2000, .precision = "fp32",
                   .caption_key = "title", .workers = 2, .shuffle_buffer = 1000, .crop_scale = 0.9};
    return c;
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
        } else if (VAL("-c", "--model-config") || VAL(NULL, "--config")) c->config = a;
        else if (VAL("-d", "--data")) c->data = a;
        else if (VAL(NULL, "--vendors")) c->vendors = a;
        else if (VAL(NULL, "--eval-vendor")) c->eval_vendor = a;
        else if (VAL("-v", "--vocab")) c->vocab = a;
        else if (VAL(NULL, "--train-data")) c->train_data = a;
        else if (VAL(NULL, "--caption-key")) c->caption_key = a;
        else if (VAL(NULL, "--alt-caption-key")) c->alt_caption_key = a;
        else if (VAL(NULL, "--alt-caption-prob")) bad = !arg_double(cmd, "--alt-caption-prob", a, 0, 1, &c->alt_prob);
        else if (VAL(NULL, "--workers")) bad = !arg_long(cmd, "--workers", a, 1, 64, &c->workers);
        else if (VAL(NULL, "--shuffle-buffer")) bad = !arg_long(cmd, "--shuffle-buffer", a, 0, 1 << 24, &c->shuffle_buffer);
        else if (arg_is(argc, argv, &i, NULL, "--white-background", false, cmd, &bad)) c->white = true;
        else if (arg_is(argc, argv, &i, NULL, "--hflip", false, cmd, &bad)) c->hflip = true;
        else if (VAL(NULL, "--crop-scale")) bad = !arg_double(cmd, "--crop-scale", a, 0.01, 1, &c->crop_scale);
        else if (VAL(NULL, "--tokenizer-merges")) bad = !arg_long(cmd, "--tokenizer-merges", a, 1, 1 << 22, &c->tok_merges);
        else if (VAL("-o", "--out")) c->out = a;
        else if (VAL("-b", "--batch")) bad = !arg_long(cmd, "--batch", a, 2, 1 << 20, &l), c->o.batch = (int)l;
        else if (VAL(NULL, "--accum")) bad = !arg_long(cmd, "--accum", a, 1, 1 << 16, &l), c->o.accum = (int)l;
        else if (VAL("-n", "--steps")) bad = !arg_long(cmd, "--steps", a, 1, 1L << 40, &c->o.steps), c->steps_given = true;
        else if (VAL(NULL, "--epochs")) bad = !arg_double(cmd, "--epochs", a, 1e-6, 1e6, &c->epochs);
        else if (VAL(NULL, "--lr")) bad = !arg_double(cmd, "--lr", a, 1e-12, 10, &x), c->o.adam.lr = (float)x;
        else if (VAL(NULL, "--warmup")) bad = !arg_long(cmd, "--warmup", a, 0, 1L << 40, &c->o.warmup);
        else if (VAL(NULL, "--wd")) bad = !arg_double(cmd, "--wd", a, 0, 10, &x), c->o.adam.weight_decay = (float)x;
        else if (VAL(NULL, "--beta1")) bad = !arg_double(cmd, "--beta1", a, 0, 0.999999, &x), c->o.adam.beta1 = (float)x;
        else if (VAL(NULL, "--beta2")) bad = !arg_double(cmd, "--beta2", a, 0, 0.999999, &x), c->o.adam.beta2 = (float)x;
        else if (VAL(NULL, "--eps")) bad = !arg_double(cmd, "--eps", a, 1e-30, 1, &x), c->o.adam.eps = (float)x;
        else if (VAL(NULL, "--grad-clip")) bad = !arg_double(cmd, "--grad-clip", a, 0, 1e30, &c->o.grad_clip);
        else if (VAL("-s", "--seed")) bad = !arg_long(cmd, "--seed", a, 0, (long)(~0UL >> 1), &l), c->o.seed = (uint64_t)l;
        else if (VAL("-t", "--threads")) bad = !arg_long(cmd, "--threads", a, 0, 4096, &l), c->threads = (int)l;
        else if (VAL(NULL, "--init-image")) c->init_image = a;
        else if (VAL(NULL, "--clip-weight")) bad = !arg_double(cmd, "--clip-weight", a, 0, 1e6, &x), c->o.clip_weight = (float)x, c->clip_given = true;
        else if (VAL(NULL, "--caption-weight")) bad = !arg_double(cmd, "--caption-weight", a, 0, 1e6, &x), c->o.caption_weight = (float)x, c->caption_given = true;
        else if (VAL(NULL, "--prior-ref")) c->prior_ref = a, c->o.prior = true;
        else if (VAL(NULL, "--prior-alpha")) bad = !arg_double(cmd, "--prior-alpha", a, 0, 100, &x), c->o.prior_alpha = (float)x, c->caption_given = true;
        else if (VAL(NULL, "--mask-ratio")) bad = !arg_double(cmd, "--mask-ratio", a, 1e-6, 1 - 1e-6, &x), c->o.mask_ratio = (float)x, c->mae_given = true;
        else if (VAL(NULL, "--mae-weight")) bad = !arg_double(cmd, "--mae-weight", a, 0, 1e6, &x), c->o.mae_weight = (float)x, c->mae_given = true;
        else if (arg_is(argc, argv, &i, NULL, "--lock-image", false, cmd, &bad)) {
            if (c->o.lock_image < 0) c->o.lock_image = 0;
        } else if (VAL(NULL, "--lock-image-unlocked-groups")) {
            bad = !arg_long(cmd, "--lock-image-unlocked-groups", a, 0, 4096, &l);
            c->o.lock_image = (int)l;
        } else if (VAL(NULL, "--objective")) {
            if (!vlp_objective_parse(a, &c->o.objective)) {
                fprintf(stderr, "vlp train: --objective must be clip, siglip, filip, coca, textlm, mae or clip-mae, not '%s'\n", a);
                bad = 1;
            }
        } else if (VAL("-p", "--precision")) {
            c->precision = a;
            if (strcmp(a, "fp32") && strcmp(a, "bf16")) {
                fprintf(stderr, "vlp train: --precision must be fp32 or bf16, not '%s'\n", a);
                bad = 1;
            }
        } else if (VAL(NULL, "--eval-every")) bad = !arg_long(cmd, "--eval-every", a, 0, 1L << 40, &c->eval_every);
        else if (VAL(NULL, "--save-every")) bad = !arg_long(cmd, "--save-every", a, 0, 1L << 40, &c->save_every);
        else if (VAL(NULL, "--keep")) bad = !arg_long(cmd, "--keep", a, 1, 1000, &c->keep);
        else if (VAL(NULL, "--log-every")) bad = !arg_long(cmd, "--log-every", a, 1, 1L << 40, &c->log_every);
        else if (arg_is(argc, argv, &i, "-r", "--resume", false, cmd, &bad)) c->resume = true;
        else if (!bad) {
            fprintf(stderr, "vlp train: unknown option '%s' (try --help)\n", a);
            bad = 1;
        }
#undef VAL
    }
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

static void print_eval(FILE *fp, long step, const emoji_eval_result *r, const char *vendor) {
    fprintf(fp,
            "eval @ step %ld on %s (%d images, %d distinct captions):\n"
            "  image->text retrieval  R@1 %.3f  R@5 %.3f  R@10 %.3f  mean rank %.1f  median %.0f"
            "   (chance R@1 %.4f, R@5 %.4f)\n"
            "  zero-shot categories   top-1 %.3f  balanced %.3f   (chance: majority class %.3f, "
            "balanced %.3f)\n",
            step, vendor, r->images, r->texts, r->i2t.r1, r->i2t.r5, r->i2t.r10, r->i2t.mean_rank,
            r->i2t.median_rank, 1.0 / r->texts, 5.0 / r->texts, r->zs.top1, r->zs.balanced,
            r->zs.majority, 1.0 / r->zs.classes);
}

static vlp_err log_eval(trainer *t, long step, const emoji_eval_result *r, vlp_error *err) {
    char line[1024];
    snprintf(line, sizeof line,
             "{\"step\":%ld,\"eval\":{\"images\":%d,\"texts\":%d,\"i2t_r1\":%.5f,\"i2t_r5\":%.5f,"
             "\"i2t_r10\":%.5f,\"i2t_mean_rank\":%.2f,\"i2t_median_rank\":%.1f,\"zeroshot_top1\":%.5f,"
             "\"zeroshot_balanced\":%.5f,\"chance_r1\":%.6f,\"chance_top1_majority\":%.5f,"
             "\"chance_balanced\":%.5f}}",
             step, r->images, r->texts, r->i2t.r1, r->i2t.r5, r->i2t.r10, r->i2t.mean_rank,
             r->i2t.median_rank, r->zs.top1, r->zs.balanced, 1.0 / r->texts, r->zs.majority,
             1.0 / r->zs.classes);
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

static vlp_err write_text(const char *path, const char *text, vlp_error *err) {
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0) {
        vlp_err rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot write %s: %s", path,
                                   strerror(errno));
        return rc;
    }
    return VLP_OK;
}

/* Everything a run needs that is not the trainer itself. */
typedef struct run {
    clip_config cfg;
    clip_model m;
    vlp_tokenizer tok;
    emoji_set train, held;
    vlp_loader loader;
    trainer *t;
    image_norm norm;
    const char **captions; // (n, 3) what the loader serves
    int lock_fd;           // the run directory's lock
    clip_model ref;        // PRIOR's reference LM (--prior-ref)
    vlp_dist *dist;        // the mpirun job, or one process
    int rank, world;
} run;

static void run_free(run *r) {
    trainer_free(r->t);
    loader_free(&r->loader);
    free(r->captions);
    emoji_free(&r->train), emoji_free(&r->held);
    tokenizer_free(&r->tok);
    clip_free(&r->m);
    clip_free(&r->ref);
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
static vlp_err learn_tokenizer(train_cli *c, run *r, const char *path, vlp_error *err) {
    char prompts[EMOJI_NCATEGORIES][64];
    emoji_prompts(prompts);
    char **streamed = NULL;
    int n = r->train.n;
    if (c->train_data) {
        dataset_opts o = train_dataset_opts(c);
        o.shuffle = false;
        o.rank = 0, o.world = 1; /* every caption, whatever the number of ranks */
        fprintf(stderr, "reading the captions of %s to learn a tokenizer\n", c->train_data);
        VLP_TRY(stream_captions(c->train_data, &o, &streamed, &n, err));
    }
    const char **texts = malloc(sizeof(char *) * (size_t)(n + EMOJI_NCATEGORIES));
    vlp_err rc = texts ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "captions");
    int learnt = 0;
    if (rc == VLP_OK) {
        for (int i = 0; i < n; i++) texts[i] = streamed ? streamed[i] : r->train.caption[i];
        for (int k = 0; k < EMOJI_NCATEGORIES; k++) texts[n + k] = prompts[k];
        rc = bpe_train(texts, n + EMOJI_NCATEGORIES, (int)c->tok_merges, 2, path, &learnt, err);
    }
    free(texts);
    for (int i = 0; streamed && i < n; i++) free(streamed[i]);
    free(streamed);
    VLP_TRY(rc);
    fprintf(stderr, "tokenizer: learnt %d BPE merges from %d training captions into %s\n", learnt, n, path);
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
    VLP_CHECK_ARG(r->cfg.multimodal.layers > 0 || (c->o.objective != VLP_OBJECTIVE_COCA &&
                                                   c->o.objective != VLP_OBJECTIVE_TEXTLM),
                  err, "%s has no multimodal_cfg: the %s objective trains a text decoder (try "
                  "--model-config tiny-coca)", c->config, vlp_objective_name(c->o.objective));
    VLP_CHECK_ARG(!c->o.prior || c->o.objective == VLP_OBJECTIVE_COCA, err,
                  "--prior-ref weights CoCa's caption loss: add --objective coca");
    bool coca = c->o.objective == VLP_OBJECTIVE_COCA, clip_mae = c->o.objective == VLP_OBJECTIVE_CLIP_MAE;
    bool mae = clip_mae || c->o.objective == VLP_OBJECTIVE_MAE;
    VLP_CHECK_ARG(!c->caption_given || coca, err,
                  "--caption-weight and --prior-alpha belong to --objective coca");
    VLP_CHECK_ARG(!c->clip_given || coca || clip_mae, err,
                  "--clip-weight belongs to --objective coca or clip-mae");
    VLP_CHECK_ARG(!c->mae_given || mae, err,
                  "--mask-ratio and --mae-weight belong to --objective mae or clip-mae");
    VLP_CHECK_ARG(r->cfg.mae.layers > 0 || !mae, err,
                  "%s has no mae_cfg: the %s objective trains an MAE decoder (try "
                  "--model-config tiny-mae)", c->config, vlp_objective_name(c->o.objective));
    VLP_CHECK_ARG(c->o.lock_image < 0 || !mae, err,
                  "--lock-image: the %s objective trains the image tower",
                  vlp_objective_name(c->o.objective));
    if (c->o.objective == VLP_OBJECTIVE_SIGLIP && !r->cfg.has_logit_bias) {
        /* SigLIP's initialisation (Zhai et al.: t' = ln 10, b = -10) */
        r->cfg.has_logit_bias = true, r->cfg.init_logit_bias = -10.0f;
        if (!r->cfg.has_logit_scale_init)
            r->cfg.has_logit_scale_init = true, r->cfg.init_logit_scale = logf(10.0f);
    }
    snprintf(path, sizeof path, "%s/" MERGES_FILE, c->out);
    if (!c->vocab && c->prior_ref) { /* PRIOR's reference reads the same token ids */
        char *ref_merges = c->ref_merges;
        const char *slash = strrchr(c->prior_ref, '/');
        int dir = slash ? (int)(slash - c->prior_ref) : 1;
        snprintf(ref_merges, sizeof c->ref_merges, "%.*s/" MERGES_FILE, dir, slash ? c->prior_ref : ".");
        VLP_CHECK_ARG(access(ref_merges, R_OK) == 0, err,
                      "%s: no tokenizer next to the --prior-ref checkpoint; give its merges with "
                      "--vocab", ref_merges);
        c->vocab = ref_merges;
        fprintf(stderr, "tokenizer: PRIOR's reference's, %s\n", ref_merges);
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
    if (c->eval_vendor && *c->eval_vendor) VLP_TRY(emoji_load(c->data, c->eval_vendor, &r->held, err));
    if (r->rank == 0) {
        VLP_TRY(make_dirs(c->out, err));
        VLP_TRY(run_dir_lock(c->out, &r->lock_fd, err)); /* before anything in it is written */
        VLP_TRY(model_and_tokenizer(c, r, err));
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
    vlp_precision prec = VLP_PRECISION_FP32;
    if (strcmp(c->precision, "bf16") == 0) {
        if (gemm_bf16_hw())
            prec = VLP_PRECISION_BF16;
        else /* the portable bf16 kernel would be slower than fp32 BLAS */
            fprintf(stderr, "vlp train: this CPU has no AVX512-BF16; --precision bf16 falls back "
                            "to fp32\n");
    }
    VLP_TRY(clip_set_precision(&r->m, prec, omp_get_max_threads(), err));
    if (r->rank == 0)
        fprintf(stderr, "precision: %s matmuls in the transformer blocks, fp32 weights and the rest\n",
            prec == VLP_PRECISION_BF16 ? "bf16 (AVX512-BF16, fp32 accumulation)" : "fp32");
    VLP_TRY(c->train_data ? streaming_loader(c, r, err) : emoji_loader(c, r, err));
    if (!c->train_data) VLP_TRY(pair_loader_shard(&r->loader, r->rank, r->world, err));
    if (c->epochs > 0 && !c->resume)
        c->o.steps = (long)ceil(c->epochs * (double)(r->loader.epoch_size / per_step(c, r)));
    /* every rank must run the same number of steps: rank 0's count */
    VLP_TRY(dist_broadcast(r->dist, &c->o.steps, sizeof c->o.steps, 0, err));
    VLP_TRY(trainer_create(&r->t, &r->m, &r->loader, &c->o, c->out, r->dist, err));
    if (c->o.prior) {
        VLP_CHECK_ARG(c->prior_ref, err,
                      "the run weights captions with PRIOR: give its reference with --prior-ref");
        /* forward passes only: no gradients, one set of block activations */
        clip_load_opts lo = {.quick_gelu = -1, .inference = true};
        VLP_TRY(clip_load_pretrained(&r->ref, c->prior_ref, &lo, err));
        VLP_TRY(clip_set_precision(&r->ref, prec, omp_get_max_threads(), err));
        VLP_TRY(trainer_set_prior_ref(r->t, &r->ref, err));
        if (r->rank == 0)
            fprintf(stderr, "PRIOR: caption tokens weighted by (1 - p)^%g of %s\n", c->o.prior_alpha,
                    c->prior_ref);
    }
    if (c->resume) VLP_TRY(trainer_resume(r->t, err));
    return VLP_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static vlp_err do_eval(train_cli *c, run *r, long step, emoji_eval_result *res, progress *pr, vlp_error *err) {
    if (!r->held.n || r->rank > 0) return VLP_OK; /* rank 0 evaluates; the others go on */
    progress_break(pr);
    fprintf(stderr, "evaluating on %s...\n", c->eval_vendor);
    VLP_TRY(emoji_eval(&r->m, &r->tok, &r->held, &r->norm, res, err));
    print_eval(stderr, step, res, c->eval_vendor);
    return log_eval(r->t, step, res, err);
}

static int train_session(train_cli *cp) {
    train_cli c = *cp;
    vlp_error err = {0};
    if (c.resume) {
        long steps = c.o.steps;
        train_opts given = c.o;
        if (trainer_saved_opts(c.out, &c.o, &err) != VLP_OK) return fail(&err);
        if (given.prior && !c.o.prior) {
            fprintf(stderr, "vlp train: %s was started without PRIOR; --prior-ref does not apply\n", c.out);
            return 2;
        }
        /* the run's options win; a loss weight given again must agree */
        if ((c.clip_given && given.clip_weight != c.o.clip_weight) ||
            (c.caption_given && (given.caption_weight != c.o.caption_weight ||
                                 given.prior_alpha != c.o.prior_alpha))) {
            fprintf(stderr, "vlp train: %s was started with --clip-weight %g --caption-weight %g "
                            "--prior-alpha %g; a resumed run keeps them\n",
                    c.out, c.o.clip_weight, c.o.caption_weight, c.o.prior_alpha);
            return 2;
        }
        if (c.mae_given && (given.mask_ratio != c.o.mask_ratio || given.mae_weight != c.o.mae_weight)) {
            fprintf(stderr, "vlp train: %s was started with --mask-ratio %g --mae-weight %g; a "
                            "resumed run keeps them\n", c.out, c.o.mask_ratio, c.o.mae_weight);
            return 2;
        }
        if (c.steps_given) c.o.steps = steps;
        fprintf(stderr, "resuming %s: batch %d, accum %d, lr %g, warmup %ld, seed %" PRIu64 ", %ld steps\n",
                c.out, c.o.batch, c.o.accum, c.o.adam.lr, c.o.warmup, c.o.seed, c.o.steps);
    }
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
    long start = trainer_step_count(r.t);
    if (lead) fprintf(stderr,
            "model: %zu parameters (%.1f MiB); %d training pairs (%s%s), %d held out (%s); "
            "vocab %d; batch %d%s; steps %ld (%.2f epochs); run dir %s\n",
            r.m.nfloats, r.m.nfloats * 4.0 / 1048576, (int)r.loader.epoch_size,
            c.train_data ? c.train_data : c.vendors,
            c.train_data && r.world > 1 ? ": rank 0's shards" : "", r.held.n, r.held.n ? c.eval_vendor : "none",
            r.tok.vocab_size, c.o.batch, c.o.accum > 1 ? " (accumulated)" : "", c.o.steps,
            (double)c.o.steps * per_step(&c, &r) / (double)r.loader.epoch_size, c.out);
    if (start && lead) fprintf(stderr, "resumed at step %ld\n", start);

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    progress pr;
    progress_begin(&pr, stderr, "steps", c.o.steps);
    double t_start = now_s(), ema = 0, train_s = 0, data_s = 0;
    long done = 0;
    float last_loss = NAN;
    int rc = 0;
    emoji_eval_result res = {0};
    bool have_eval = false;
    char saved[4096] = "";
    while (trainer_step_count(r.t) < c.o.steps) {
        /* the ranks stop together: a signal may reach them at different steps */
        double stop = g_stop;
        if (dist_allreduce_sum_f64(r.dist, &stop, 1, &err) != VLP_OK) {
            rc = fail(&err);
            break;
        }
        if (stop > 0) {
            g_stop = 1;
            break;
        }
        train_step_info info;
        if (trainer_step(r.t, &info, &err) != VLP_OK) {
            progress_break(&pr);
            rc = fail(&err);
            break;
        }
        done++;
        train_s += info.seconds, data_s += info.data_seconds;
        last_loss = info.loss;
        ema = done == 1 ? info.seconds : 0.9 * ema + 0.1 * info.seconds;
        double sps = c.o.batch / info.seconds, eta = ema * (double)(c.o.steps - info.step);
        char line[512], eta_s[32];
        fmt_duration(eta_s, sizeof eta_s, eta);
        snprintf(line, sizeof line,
                 "step %ld/%ld  loss %.4f  lr %.2e  scale %.2f  %.1f samples/s  ETA %s",
                 info.step, c.o.steps, info.loss, info.lr, info.logit_scale, sps, eta_s);
        if (lead) progress_line(&pr, line, info.step % c.log_every == 0 || info.step == c.o.steps);
        char json[512];
        snprintf(json, sizeof json,
                 "{\"step\":%ld,\"loss\":%.7g,\"lr\":%.6g,\"logit_scale\":%.6g,\"grad_norm\":%.6g,"
                 "\"samples_per_s\":%.2f,\"epoch\":%" PRId64 ",\"seconds\":%.4f,\"data_seconds\":%.4f}",
                 info.step, info.loss, info.lr, info.logit_scale, info.grad_norm, sps,
                 info.pos.epoch, info.seconds, info.data_seconds);
        if (trainer_log(r.t, json, &err) != VLP_OK) {
            rc = fail(&err);
            break;
        }
        bool last = info.step == c.o.steps;
        if (c.save_every && info.step % c.save_every == 0 && !last) {
            if (trainer_save(r.t, (int)c.keep, saved, sizeof saved, &err) != VLP_OK) {
                rc = fail(&err);
                break;
            }
        }
        if (c.eval_every && info.step % c.eval_every == 0 && !last) {
            if (do_eval(&c, &r, info.step, &res, &pr, &err) != VLP_OK) {
                rc = fail(&err);
                break;
            }
        }
    }
    progress_break(&pr);
    long step = trainer_step_count(r.t);
    if (rc == 0) {
        if (trainer_save(r.t, (int)c.keep, saved, sizeof saved, &err) != VLP_OK) rc = fail(&err);
        else if (g_stop && lead) fprintf(stderr, "interrupted at step %ld: checkpoint %s; continue with "
                                         "'vlp train -o %s --resume'\n", step, saved, c.out);
    }
    if (rc == 0 && !g_stop && step >= c.o.steps) {
        if (do_eval(&c, &r, step, &res, &pr, &err) != VLP_OK) rc = fail(&err);
        else have_eval = r.held.n > 0;
    }
    if (lead) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double wall = now_s() - t_start;
        char wall_s[32];
        fmt_duration(wall_s, sizeof wall_s, wall);
        fprintf(stderr, "\nsummary: %ld steps this session (%ld..%ld of %ld), %s wall, %.1f samples/s "
                        "while training, %.1f%% of it waiting for data, final loss %.4f, peak RSS %.0f MiB\n",
                done, start, step, c.o.steps, wall_s, train_s > 0 ? done * c.o.batch / train_s : 0.0,
                train_s > 0 ? 100 * data_s / train_s : 0.0, last_loss, ru.ru_maxrss / 1024.0);
        if (saved[0]) fprintf(stderr, "checkpoint: %s (also %s/latest.safetensors)\n", saved, c.out);
        if (c.train_data && r.loader.impl) {
            char why[512];
            int64_t skipped = stream_loader_skipped(&r.loader, why, sizeof why);
            if (skipped) fprintf(stderr, "skipped %lld unusable samples; the first: %s\n", (long long)skipped, why);
        }
        if (have_eval)
            printf("RESULT emoji heldout=%s i2t_r1=%.4f i2t_r5=%.4f chance_r1=%.4f chance_r5=%.4f "
                   "zeroshot_top1=%.4f zeroshot_balanced=%.4f chance_top1=%.4f chance_balanced=%.4f\n",
                   c.eval_vendor, res.i2t.r1, res.i2t.r5, 1.0 / res.texts, 5.0 / res.texts, res.zs.top1,
                   res.zs.balanced, res.zs.majority, 1.0 / res.zs.classes);
    }
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
    dist_free(g_dist);
    g_dist = NULL;
    return rc;
}
