/* A training run as a whole: its options, its directory, its set-up, its
 * schedule (moved out of `vlp train`, so the C API trains too). */
#include "train/run.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/datadir.h"
#include "core/parallel.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/dataset.h"
#include "data/emoji.h"
#include "data/stream_loader.h"
#include "eval/eval.h"
#include "io/atomic.h"
#include "io/json_text.h"
#include "io/safetensors.h"
#include "model/clip_io.h"
#include "model/clip_pretrained.h"
#include "model/config.h"
#include "model/config_registry.h"
#include "ops/gemm.h"

#define DATA_FILE "data.json"
#define MERGES_FILE "tokenizer.merges"
#define TEMPLATES_DEFAULT "default"

/* ---- the options ------------------------------------------------------------------------------ */

#define R(key, shrt, flag, arg, type, member, lo, hi, flags, help)                               \
    {key, shrt, flag, arg, &type, offsetof(run_opts, member), lo, hi, flags, help, NULL}
#define DATA OPT_DATA
#define EVALSET (OPT_DATA | OPT_CHANGEABLE)
/* data.json holds the OPT_DATA entries in this order */
const opt_desc run_opt_table[] = {
    R("model_config", "-c", "--model-config", "C", opt_string, model_config, 0, 0, OPT_NEW_RUN,
      "the architecture: an open_clip name (ViT-B-32, ...; 'vlp models' lists them) or a JSON file "
      "in open_clip's fields"),
    R("model_config", NULL, "--config", "C", opt_string, model_config, 0, 0, OPT_NEW_RUN | OPT_ALIAS | OPT_HIDDEN,
      "the same as --model-config"),
    R("train_data", NULL, "--train-data", "SPEC", opt_string, train_data, 0, 0, DATA | OPT_PATH,
      "training pairs: a .tsv/.csv (columns filepath + --caption-key) or WebDataset shards "
      "('train-{000..011}.tar'; '::' joins lists); without it: the emoji images of --vendors from "
      "--emoji-dir, held in memory"),
    R("data", NULL, "--emoji-dir", "DIR", opt_string, data, 0, 0, DATA | OPT_PATH,
      "the emoji corpus (scripts/get-data.sh fetches it) for the in-memory loader"),
    R("vendors", NULL, "--vendors", "LIST", opt_string, vendors, 0, 0, DATA, "its training vendors"),
    R("image_key", NULL, "--image-key", "K", opt_string, image_key, 0, 0, DATA,
      HELP_IMAGE_KEY),
    R("caption_key", NULL, "--caption-key", "K", opt_string, caption_key, 0, 0, DATA,
      HELP_CAPTION_KEY),
    R("alt_caption_key", NULL, "--alt-caption-key", "K", opt_string, alt_caption_key, 0, 0, DATA,
      "a second caption column / json field, used with probability --alt-caption-prob per sample"),
    R("alt_caption_prob", NULL, "--alt-caption-prob", "P", opt_double, alt_caption_prob, 0, 1, DATA,
      "how often the second caption is used"),
    R("shuffle_buffer", NULL, "--shuffle-buffer", "N", opt_long, shuffle_buffer, 0, 1 << 24, DATA,
      "WebDataset sample shuffle buffer"),
    R("white_background", NULL, "--white-background", NULL, opt_switch, white_background, 0, 0, DATA,
      "composite transparent pixels on white (default: drop alpha, as open_clip); the model keeps "
      "it, and every command that loads it does the same"),
    R("hflip", NULL, "--hflip", NULL, opt_switch, hflip, 0, 0, DATA, "random horizontal flips"),
    R("crop_scale", NULL, "--crop-scale", "S", opt_double, crop_scale, 0.01, 1, DATA,
      "random resized crop keeps S..1 of the area"),
    R("val_data", NULL, "--val-data", "SPEC", opt_string, val_data, 0, 0, EVALSET | OPT_PATH,
      "validation pairs (as --train-data, --caption-key): InfoNCE loss over batches of --batch and "
      "retrieval R@1/5/10 both ways, every --eval-every steps and at the end"),
    R("zeroshot_data", NULL, "--zeroshot-data", "SPEC", opt_string, zeroshot_data, 0, 0, EVALSET | OPT_PATH,
      "a labelled set for zero-shot top-1 and class-balanced accuracy (the classes: the distinct "
      "--label-key values)"),
    R("label_key", NULL, "--label-key", "K", opt_string, label_key, 0, 0, EVALSET,
      HELP_LABEL_KEY " (of --zeroshot-data)"),
    R("templates", NULL, "--templates", "T", opt_string, templates, 0, 0, EVALSET | OPT_PATH,
      "zero-shot templates: a name shipped with vlp (\"default\": \"a photo of a {}.\"; openai-imagenet: "
      "the CLIP paper's 80) or a file, a template a line, {} for the class"),
    R("vocab", "-v", "--vocab", "FILE", opt_string, vocab, 0, 0, OPT_NEW_RUN,
      "BPE merges file (e.g. OpenAI's); default: learn one"),
    R("tokenizer_merges", NULL, "--tokenizer-merges", "N", opt_long, tokenizer_merges, 1, 1 << 22,
      OPT_NEW_RUN, "merges to learn from the training captions"),
    R("epochs", NULL, "--epochs", "E", opt_double, epochs, 1e-6, 1e6, OPT_NEW_RUN,
      "instead of --steps: passes over the training pairs, 0 = use --steps"),
    R("init_image", NULL, "--init-image", "FILE", opt_string, init_image, 0, 0, OPT_NEW_RUN,
      "start the image tower from a checkpoint (visual.* tensors)"),
    R("out", "-o", "--out", "DIR", opt_string, out, 0, 0, 0, "run directory"),
    R("workers", NULL, "--workers", "N", opt_long, workers, 1, 64, 0, "decode threads"),
    R("eval_every", NULL, "--eval-every", "N", opt_long, eval_every, 0, (double)TRAIN_MAX_STEPS, 0,
      "steps between evals, 0 = only at the end"),
    R("save_every", NULL, "--save-every", "N", opt_long, save_every, 0, (double)TRAIN_MAX_STEPS, 0,
      "steps between checkpoints, 0 = only at the end"),
    R("keep", NULL, "--keep", "N", opt_long, keep, 1, 1000, 0, "checkpoints kept"),
    R("resume", "-r", "--resume", NULL, opt_switch, resume, 0, 0, 0,
      "continue the run in --out from its latest checkpoint; the run's options apply, and any given "
      "again must agree, except --steps, which may extend it"),
};
#undef R
#undef DATA
#undef EVALSET
const int run_opt_count = (int)(sizeof run_opt_table / sizeof run_opt_table[0]);

run_opts run_opts_defaults(void) {
    return (run_opts){.o = train_opts_defaults(), .model_config = "tiny", .tokenizer_merges = 2000,
                      .data = "data/emoji", .vendors = "google,apple,facebook",
                      .image_key = "filepath", .caption_key = "title", .shuffle_buffer = 1000, .crop_scale = 0.9,
                      .label_key = "label", .templates = TEMPLATES_DEFAULT,
                      .out = "runs/emoji", .workers = 2, .save_every = 100, .eval_every = 0,
                      .keep = 2};
}

void run_opts_mark_given(run_opts *r, const char *key) {
    for (int i = 0; i < r->ngiven; i++)
        if (!strcmp(r->given[i], key)) return;
    if (r->ngiven < RUN_MAX_GIVEN) r->given[r->ngiven++] = key;
}

bool run_opts_given(const run_opts *r, const char *key) {
    for (int i = 0; i < r->ngiven; i++)
        if (!strcmp(r->given[i], key)) return true;
    return false;
}


bool run_objective_option(const char *key) { return objective_option_flag(key) != NULL; }

vlp_err run_opts_set(run_opts *r, const char *key, const char *text, vlp_error *err) {
    const opt_desc *d = opt_find(run_opt_table, run_opt_count, key);
    void *base = r;
    if (!d) d = opt_find(train_opt_table, train_opt_count, key), base = &r->o;
    if (d) {
        VLP_TRY(opt_set(d, base, text, err));
        run_opts_mark_given(r, d->key);
        return VLP_OK;
    }
    const char *flag = objective_option_flag(key);
    VLP_CHECK_ARG(flag, err, "unknown option '%s'", key);
    VLP_CHECK_ARG(r->nobj_args < RUN_MAX_GIVEN, err, "more than %d objective options", RUN_MAX_GIVEN);
    r->obj_args[r->nobj_args].flag = flag, r->obj_args[r->nobj_args++].value = text;
    return VLP_OK;
}

/* ---- the run ------------------------------------------------------------------------------------ */

struct run {
    run_opts opts;
    char *owned[RUN_MAX_GIVEN + 32]; // copies of the caller's strings opts points to
    int nowned;
    json_t *record;        // data.json on resume: strings of opts live here
    clip_config cfg;
    clip_model m;
    text_tokenizer tok;
    emoji_set train;
    batch_loader loader;
    trainer *t;
    image_norm norm;
    const char **captions; // (n, 6) what the in-memory loader serves
    int lock_fd;           // the run directory's lock
    clip_model refs[OBJECTIVE_MAX_OPTIONS]; // the objective's reference models (--prior-ref)
    const char *model_path[OBJECTIVE_MAX_OPTIONS];
    char ref_merges[4096]; // a reference model's tokenizer, when no vocab is given
    char **templates;      // zero-shot prompts
    int ntemplates;
    dist_group *dist;
    int rank, world;
    long start;
    run_evals res;
    bool evaluated;
    bool made_dir; // this open made the run directory: a failed new run takes it away again
};

static void say(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const run *r, const char *fmt, ...) {
    if (!r->opts.say) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->opts.say(r->opts.ctx, line);
}

static void free_strings(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

void run_close(run *r) {
    if (!r) return;
    trainer_free(r->t);
    loader_free(&r->loader);
    free(r->captions);
    emoji_free(&r->train);
    tokenizer_free(&r->tok);
    clip_free(&r->m);
    for (int i = 0; i < OBJECTIVE_MAX_OPTIONS; i++) clip_free(&r->refs[i]);
    free_strings(r->templates, r->ntemplates);
    if (r->lock_fd >= 0) close(r->lock_fd);
    json_decref(r->record);
    for (int i = 0; i < r->nowned; i++) free(r->owned[i]);
    free(r);
}

/* the run's own copy of a caller's string */
static vlp_err own(run *r, const char **s, vlp_error *err) {
    if (!*s) return VLP_OK;
    VLP_CHECK(r->nowned < (int)(sizeof r->owned / sizeof *r->owned), err, VLP_ERR_NOMEM, "run strings");
    char *c = strdup(*s);
    VLP_CHECK_ALLOC(c, err, strlen(*s) + 1);
    *s = r->owned[r->nowned++] = c;
    return VLP_OK;
}

/* every string of the options, so the caller's may go once run_open returns */
static vlp_err own_strings(run *r, vlp_error *err) {
    for (int i = 0; i < run_opt_count; i++) {
        const opt_desc *d = &run_opt_table[i];
        if (d->type == &opt_string && !(d->flags & OPT_ALIAS))
            VLP_TRY(own(r, (const char **)((char *)&r->opts + d->off), err));
    }
    for (int i = 0; i < r->opts.nobj_args; i++) VLP_TRY(own(r, &r->opts.obj_args[i].value, err));
    return VLP_OK;
}

const run_opts *run_options(const run *r) { return &r->opts; }
long run_step_count(const run *r) { return trainer_step_count(r->t); }
bool run_done(const run *r) { return trainer_step_count(r->t) >= r->opts.o.steps; }
long run_start_step(const run *r) { return r->start; }
clip_model *run_model(run *r) { return &r->m; }
const text_tokenizer *run_tokenizer(const run *r) { return &r->tok; }
int64_t run_epoch_size(const run *r) { return r->loader.epoch_size; }
const run_evals *run_last_eval(const run *r) { return r->evaluated ? &r->res : NULL; }

/* samples of the loader's epoch one step consumes: the sharded pair
 * loader's epoch is the whole set, a streaming rank's its own shards */
static long per_step(const run *r) {
    return (long)loader_samples_per_step(&r->loader, r->opts.o.batch / r->world);
}

double run_epochs(const run *r) {
    return (double)r->opts.o.steps * per_step(r) / (double)r->loader.epoch_size;
}

int64_t run_skipped_samples(const run *r, char *why, size_t cap) {
    if (cap) why[0] = 0;
    return r->opts.train_data && r->loader.impl ? stream_loader_skipped(&r->loader, why, cap) : 0;
}

/* ---- files of the run directory ------------------------------------------------------------------ */

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

/* A path option's value as the run records it: each '::'-joined part
 * absolute (against the directory the run was started from), so the run
 * resumes from anywhere; a shipped template set's name stays a name.
 * malloc'd; NULL when out of memory. */
static char *absolute_spec(const opt_desc *d, const char *v) {
    if (!strcmp(d->key, "templates") && vlp_data_is_name(v, ".txt")) return strdup(v);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return strdup(v);
    size_t cap = strlen(v) * 2 + 64, n = 0;
    char *out = malloc(cap), *copy = strdup(v);
    if (!out || !copy) return free(out), free(copy), NULL;
    out[0] = 0;
    for (char *p = copy, *next; p; p = next) {
        char *sep = strstr(p, "::");
        next = sep ? sep + 2 : NULL;
        if (sep) *sep = 0;
        size_t need = n + strlen(cwd) + strlen(p) + 4;
        if (need > cap) {
            char *g = realloc(out, cap = 2 * need);
            if (!g) return free(out), free(copy), NULL;
            out = g;
        }
        n += (size_t)sprintf(out + n, "%s%s%s%s", n ? "::" : "", p[0] == '/' ? "" : cwd, p[0] == '/' ? "" : "/", p);
    }
    free(copy);
    return out;
}

/* the value as data.json holds it: a path option's made absolute */
static json_t *record_value(const opt_desc *d, const run_opts *c) {
    const char *v = d->flags & OPT_PATH ? *(const char *const *)((const char *)c + d->off) : NULL;
    if (!v) return opt_to_json(d, c);
    char *abs = absolute_spec(d, v);
    json_t *j = abs ? json_string(abs) : NULL;
    free(abs);
    return j;
}

vlp_err run_data_record(const run_opts *c, const char *path, json_t **out, vlp_error *err) {
    json_t *j = *out = json_object();
    VLP_CHECK_ALLOC(j, err, 64);
    vlp_err rc = VLP_OK;
    for (int i = 0; rc == VLP_OK && i < run_opt_count; i++) {
        const opt_desc *d = &run_opt_table[i];
        if (!(d->flags & OPT_DATA) || (d->flags & OPT_ALIAS)) continue;
        const char *text = d->type == &opt_string ? *(const char *const *)((const char *)c + d->off) : NULL;
        /* a path or key that is not UTF-8 cannot be recorded, and a run that
         * cannot be resumed is refused before it trains */
        if (text && !utf8_valid(text))
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                               "%s '%s' is not UTF-8 text, and the run records it in %s (JSON); rename it", d->flag,
                               text, path);
        else rc = json_put(j, d->key, record_value(d, c), path, err);
    }
    if (rc != VLP_OK) json_decref(j), *out = NULL;
    return rc;
}

/* run/data.json, atomically: the data entries of the table, then the
 * reference models of the objective's options (coca's --prior-ref) */
static vlp_err write_data_record(const run *r, vlp_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" DATA_FILE, r->opts.out);
    json_t *j, *models = json_object();
    VLP_CHECK_ALLOC(models, err, 64);
    vlp_err rc = run_data_record(&r->opts, path, &j, err);
    const objective *obj = r->opts.o.objective;
    for (int i = 0; rc == VLP_OK && i < obj->noptions; i++)
        if (r->model_path[i]) rc = json_set_exact(models, obj->options[i].d.key, r->model_path[i], path, err);
    if (rc == VLP_OK) rc = json_put(j, "models", models, path, err), models = NULL;
    json_decref(models);
    char *text = rc == VLP_OK ? json_dumps(j, JSON_PRESERVE_ORDER | JSON_INDENT(2)) : NULL;
    json_decref(j);
    VLP_TRY(rc);
    VLP_CHECK_ALLOC(text, err, 1024);
    rc = write_text(path, text, err);
    free(text);
    return rc;
}

vlp_err run_data_record_read(const json_t *record, run_opts *c, const char *path, vlp_error *err) {
    VLP_CHECK_FORMAT(json_is_object(record), err, "%s: not a JSON object", path);
    for (int i = 0; i < run_opt_count; i++) {
        const opt_desc *f = &run_opt_table[i];
        if (!(f->flags & OPT_DATA) || (f->flags & OPT_ALIAS)) continue;
        json_t *v = json_object_get(record, f->key);
        if (!v) continue;
        bool given = run_opts_given(c, f->key);
        if (given && !(f->flags & OPT_CHANGEABLE)) {
            json_t *mine = opt_to_json(f, c), *mine_abs = record_value(f, c), *theirs_abs = NULL;
            if ((f->flags & OPT_PATH) && json_is_string(v)) { /* an older run's relative path: from here */
                run_opts rel = *c;
                *(const char **)((char *)&rel + f->off) = json_string_value(v);
                theirs_abs = record_value(f, &rel);
            }
            bool same = json_equal(mine, v) || (mine_abs && theirs_abs && json_equal(mine_abs, theirs_abs)) ||
                        (json_is_number(v) && json_is_number(mine) && json_number_value(v) == json_number_value(mine));
            char *theirs = json_dumps(v, JSON_ENCODE_ANY), *ours = json_dumps(mine, JSON_ENCODE_ANY);
            json_decref(mine), json_decref(mine_abs), json_decref(theirs_abs);
            vlp_err rc = same ? VLP_OK
                              : vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                                              "%s: the run was started with %s %s, not %s; a "
                                              "resumed run reads the same data", c->out, f->flag,
                                              theirs ? theirs : "?", ours ? ours : "?");
            free(theirs), free(ours);
            VLP_TRY(rc);
        }
        if (given) continue;
        VLP_TRY(opt_read_json(f, c, v, path, err)); /* the ranges and types of the flag that set it */
    }
    return VLP_OK;
}

/* The run's data options: those given again must agree (but the evaluation
 * sets), the others are the run's. A run without data.json (older vlp)
 * takes the ones given. */
static vlp_err resume_data(run *r, vlp_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" DATA_FILE, r->opts.out);
    if (access(path, F_OK) != 0) return VLP_OK;
    json_error_t je;
    r->record = json_load_file(path, 0, &je);
    VLP_CHECK_FORMAT(r->record, err, "%s: %s", path, je.text);
    return run_data_record_read(r->record, &r->opts, path, err);
}

/* The objective's options given, now that it is known. */
static vlp_err apply_objective_args(run *r, vlp_error *err) {
    run_opts *c = &r->opts;
    const objective *obj = c->o.objective;
    for (int k = 0; k < c->nobj_args; k++) {
        const char *flag = c->obj_args[k].flag, *v = c->obj_args[k].value;
        int i = objective_option_index(obj, flag);
        if (i < 0) VLP_TRY(train_opts_set(&c->o, flag, 0, err)); /* says whose option it is */
        opt_desc d = objective_option_desc(obj, i);
        VLP_TRY(opt_set(&d, &c->o, v, err));
        if (OBJECTIVE_IS_MODEL(obj, i)) r->model_path[i] = v;
        run_opts_mark_given(c, d.key);
    }
    return VLP_OK;
}

/* A resumed run's options: those given again must agree (the library's one
 * resume check for the math, the data table for data.json), the others are
 * the run's. */
static vlp_err resume_options(run *r, vlp_error *err) {
    run_opts *c = &r->opts;
    for (int i = 0; i < run_opt_count; i++)
        VLP_CHECK_ARG(!(run_opt_table[i].flags & OPT_NEW_RUN) || !run_opts_given(c, run_opt_table[i].key),
                      err, "%s applies to a new run; %s keeps its own (--steps may extend it)",
                      run_opt_table[i].flag, c->out);
    train_opts run_o;
    VLP_TRY(trainer_saved_opts(c->out, &run_o, err));
    VLP_TRY(resume_data(r, err));
    if (!run_opts_given(c, "objective")) train_opts_set_objective(&c->o, run_o.objective);
    VLP_TRY(apply_objective_args(r, err));
    VLP_TRY(train_opts_resume(&run_o, &c->o, c->given, c->ngiven, c->out, err));
    c->o = run_o;
    /* the reference models: the run's unless given again, and then the same file */
    json_t *models = json_object_get(r->record, "models");
    const objective *obj = c->o.objective;
    for (int i = 0; i < obj->noptions; i++) {
        const char *saved = json_string_value(json_object_get(models, obj->options[i].d.key));
        if (!saved || !c->o.obj[i]) continue;
        if (!r->model_path[i]) r->model_path[i] = saved;
        else VLP_CHECK_ARG(!strcmp(saved, r->model_path[i]), err,
                           "%s: the run was started with %s %s, not %s", c->out,
                           obj->options[i].d.flag, saved, r->model_path[i]);
    }
    char desc[1024];
    train_opts_describe(&c->o, desc, sizeof desc);
    say(r, "resuming %s: %s", c->out, desc);
    return VLP_OK;
}

/* ---- data ------------------------------------------------------------------------------------------ */

/* Every caption of the training stream (one pass, images not decoded). */
static vlp_err stream_captions(const char *spec, const dataset_opts *o, char ***out, int *n, vlp_error *err) {
    sample_stream *s;
    VLP_TRY(stream_open(&s, spec, o, err));
    vlp_err rc = stream_begin(s, 0, err);
    char **v = NULL;
    int cap = 0, k = 0;
    bool done = false;
    while (rc == VLP_OK && !done) {
        raw_sample rs;
        rc = stream_next(s, &rs, &done, err);
        if (rc != VLP_OK || done) break;
        if (k == cap) {
            char **g = realloc(v, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 1024));
            if (!g) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "captions");
            else v = g;
        }
        if (rc == VLP_OK) v[k++] = rs.caption, rs.caption = NULL;
        raw_sample_free(&rs);
    }
    if (rc == VLP_OK && k == 0) { /* every sample skipped: say why, not "no texts" further on */
        const char *why;
        int64_t skipped = stream_skipped(s, &why);
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%.300s: no usable sample (%lld skipped; the first: %.300s)",
                           spec, (long long)skipped, skipped ? why : "none");
    }
    stream_free(s);
    if (rc != VLP_OK) {
        free_strings(v, k);
        return rc;
    }
    *out = v, *n = k;
    return VLP_OK;
}

static dataset_opts train_dataset_opts(const run *r) {
    const run_opts *c = &r->opts;
    dataset_opts o = dataset_opts_default();
    o.rank = r->rank, o.world = r->world; /* each rank its own shards */
    o.image_key = c->image_key, o.caption_key = c->caption_key;
    o.alt_caption_key = c->alt_caption_key;
    o.shuffle_buffer = (int)c->shuffle_buffer;
    o.seed = c->o.seed;
    o.warn = c->warn, o.warn_ctx = c->ctx;
    return o;
}

/* The zero-shot prompts of the zero-shot set's classes, so the tokenizer
 * learns their words too: (classes × templates) strings, malloc'd. */
static vlp_err zeroshot_prompts(run *r, char ***out, int *n, vlp_error *err) {
    const run_opts *c = &r->opts;
    *out = NULL, *n = 0;
    if (!c->zeroshot_data) return VLP_OK;
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.caption_key = c->label_key, o.warn = c->warn, o.warn_ctx = c->ctx;
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
    free_strings(labels, nl);
    if (rc != VLP_OK) {
        free_strings(p, (int)np);
        return rc;
    }
    *out = p, *n = (int)np;
    return VLP_OK;
}

/* Learns the run's BPE from the training captions and the zero-shot prompts. */
static vlp_err learn_tokenizer(run *r, const char *path, vlp_error *err) {
    const run_opts *c = &r->opts;
    char **prompts = NULL, **streamed = NULL;
    int np = 0, n = r->train.n;
    VLP_TRY(zeroshot_prompts(r, &prompts, &np, err));
    vlp_err rc = VLP_OK;
    if (c->train_data) {
        dataset_opts o = train_dataset_opts(r);
        o.shuffle = false;
        o.rank = 0, o.world = 1; /* every caption, whatever the number of ranks */
        say(r, "reading the captions of %s to learn a tokenizer", c->train_data);
        rc = stream_captions(c->train_data, &o, &streamed, &n, err);
    }
    const char **texts = rc == VLP_OK ? malloc(sizeof(char *) * (size_t)(n + np + 1)) : NULL;
    if (rc == VLP_OK && !texts) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "captions");
    int learnt = 0;
    if (rc == VLP_OK) {
        for (int i = 0; i < n; i++) texts[i] = streamed ? streamed[i] : r->train.caption[i];
        for (int k = 0; k < np; k++) texts[n + k] = prompts[k];
        rc = bpe_train(texts, n + np, (int)c->tokenizer_merges, 2, path, &learnt, err);
    }
    free(texts);
    if (streamed) free_strings(streamed, n);
    free_strings(prompts, np);
    VLP_TRY(rc);
    say(r, "tokenizer: learnt %d BPE merges from %d training captions%s into %s", learnt, n,
        np ? " and the zero-shot prompts" : "", path);
    return VLP_OK;
}

/* The model config and tokenizer: from the run when resuming (or on a rank
 * but the first), else fresh (the config's vocab_size set from the
 * tokenizer), written into the run. */
static vlp_err model_and_tokenizer(run *r, bool from_run, vlp_error *err) {
    const run_opts *c = &r->opts;
    char path[4096];
    if (from_run) {
        snprintf(path, sizeof path, "%s/config.json", c->out);
        VLP_TRY(clip_config_load(path, &r->cfg, err));
        /* a run begun before configs kept it has it in data.json only */
        if (c->white_background) r->cfg.vision.pre.white_background = true;
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
    VLP_TRY(clip_config_resolve(c->model_config, &r->cfg, config_path, sizeof config_path, err));
    say(r, "model config: %s (%s)", c->model_config, config_path);
    /* the model keeps how its images were made, so every command that loads
     * it makes them the same way: the emoji loader composites on white */
    if (c->white_background || !c->train_data) r->cfg.vision.pre.white_background = true;
    const objective *obj = c->o.objective;
    if (obj->configure) obj->configure(&r->cfg);
    char hint[512];
    snprintf(hint, sizeof hint, "%s has none", c->model_config);
    VLP_TRY(objective_check_config(obj, &r->cfg, hint, err));
    snprintf(path, sizeof path, "%s/" MERGES_FILE, c->out);
    const char *ref = NULL, *vocab = c->vocab; /* a reference model reads the same token ids */
    for (int i = 0; i < obj->noptions && !ref; i++) ref = r->model_path[i];
    if (!vocab && ref) {
        const char *slash = strrchr(ref, '/');
        int dir = slash ? (int)(slash - ref) : 1;
        snprintf(r->ref_merges, sizeof r->ref_merges, "%.*s/" MERGES_FILE, dir, slash ? ref : ".");
        VLP_CHECK_ARG(access(r->ref_merges, R_OK) == 0, err,
                      "%s: no tokenizer next to the reference checkpoint %s; give its merges with "
                      "--vocab", r->ref_merges, ref);
        vocab = r->ref_merges;
        say(r, "tokenizer: the reference model's, %s", r->ref_merges);
    }
    if (vocab) VLP_TRY(copy_file(vocab, path, err)); /* copied, so resume finds it */
    else VLP_TRY(learn_tokenizer(r, path, err));
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
static vlp_err emoji_loader(run *r, vlp_error *err) {
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
                              &r->tok, r->cfg.text.context_length, &r->norm, r->opts.o.seed, err);
}

static vlp_err streaming_loader(run *r, vlp_error *err) {
    const run_opts *c = &r->opts;
    dataset_opts o = train_dataset_opts(r);
    sample_stream *s;
    VLP_TRY(stream_open(&s, c->train_data, &o, err));
    stream_loader_opts lo = stream_loader_defaults(r->cfg.vision.image_size, true,
                                                   r->cfg.text.context_length, &r->tok);
    lo.workers = (int)c->workers, lo.seed = c->o.seed, lo.alt_prob = (float)c->alt_caption_prob;
    lo.warn = c->warn, lo.warn_ctx = c->ctx;
    lo.prefetch = 2 * c->o.batch > 512 ? 2 * c->o.batch : 512;
    image_decode_opts dec = image_decode_for(&r->cfg.vision.pre);
    lo.decode.composite = dec.composite, memcpy(lo.decode.background, dec.background, 3);
    lo.tf = image_transform_for(&r->cfg.vision.pre, r->cfg.vision.image_size, true);
    lo.tf.scale_lo = (float)c->crop_scale, lo.tf.hflip = c->hflip;
    vlp_err rc = stream_loader_create(&r->loader, s, &lo, err);
    if (rc != VLP_OK) stream_free(s);
    return rc;
}

/* ---- evaluation ------------------------------------------------------------------------------------ */

/* How the evaluation sets are read: the validation set as pairs (with its
 * labels too when it is also the zero-shot set: one pass), the zero-shot set
 * as labelled images. */
static bool one_eval_set(const run_opts *c) {
    return c->val_data && c->zeroshot_data && !strcmp(c->val_data, c->zeroshot_data);
}

static val_opts eval_opts(const run *r, bool zeroshot) {
    const run_opts *c = &r->opts;
    val_opts vo = {.image_key = c->image_key, .caption_key = c->caption_key,
                   .loss_batch = c->o.batch, .warn = c->warn, .warn_ctx = c->ctx};
    if (zeroshot || one_eval_set(c)) {
        vo.label_key = c->label_key;
        vo.templates = (const char *const *)r->templates, vo.ntemplates = r->ntemplates;
        vo.zeroshot_only = zeroshot;
    }
    return vo;
}

/* The sets open as the evaluations will read them: a wrong path or column
 * stops the run before it trains, not at its first evaluation. */
static vlp_err check_eval_sets(const run *r, vlp_error *err) {
    const run_opts *c = &r->opts;
    val_opts vo = eval_opts(r, false);
    if (c->val_data) VLP_TRY(validate_check(c->val_data, &vo, err));
    vo = eval_opts(r, true);
    if (c->zeroshot_data && !one_eval_set(c)) VLP_TRY(validate_check(c->zeroshot_data, &vo, err));
    return VLP_OK;
}

static void say_eval(const run *r, const run_evals *e) {
    const run_opts *c = &r->opts;
    if (e->val) {
        say(r, "eval @ step %ld on %s (%d images, %d distinct captions): loss %.4f", e->step,
            c->val_data, e->v.n, e->v.texts, e->v.loss);
        say(r, "  image->text  R@1 %.4f  R@5 %.4f  R@10 %.4f   (chance R@1 %.4f)", e->v.i2t.r1,
            e->v.i2t.r5, e->v.i2t.r10, 1.0 / e->v.texts);
        say(r, "  text->image  R@1 %.4f  R@5 %.4f  R@10 %.4f", e->v.t2i.r1, e->v.t2i.r5, e->v.t2i.r10);
    }
    if (e->zs)
        say(r, "zero-shot @ step %ld on %s (%d images, %d classes): top-1 %.4f  class-balanced "
               "%.4f   (chance: majority class %.4f, balanced %.4f)", e->step, c->zeroshot_data,
            e->z.zs.n, e->z.classes, e->z.zs.top1, e->z.zs.balanced, e->z.zs.majority,
            1.0 / e->z.classes);
}

static vlp_err log_eval(trainer *t, const run_evals *e, vlp_error *err) {
    char line[1024], loss[32] = "null"; /* JSON has no NaN: a set of one pair has no loss */
    if (isfinite(e->v.loss)) snprintf(loss, sizeof loss, "%.6g", e->v.loss);
    int n = snprintf(line, sizeof line, "{\"step\":%ld", e->step);
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

vlp_err run_eval(run *r, vlp_error *err) {
    const run_opts *c = &r->opts;
    if (r->rank > 0 || (!c->val_data && !c->zeroshot_data)) return VLP_OK;
    run_evals got = {.step = trainer_step_count(r->t)};
    if (c->val_data) {
        val_opts vo = eval_opts(r, false);
        say(r, "validating on %s...", c->val_data);
        VLP_TRY(validate_pairs(&r->m, &r->tok, c->val_data, &vo, &got.v, err));
        got.val = true;
    }
    if (one_eval_set(c)) got.z = got.v, got.zs = true;
    else if (c->zeroshot_data) {
        val_opts vo = eval_opts(r, true);
        say(r, "zero-shot on %s...", c->zeroshot_data);
        VLP_TRY(validate_pairs(&r->m, &r->tok, c->zeroshot_data, &vo, &got.z, err));
        got.zs = true;
    }
    r->res = got, r->evaluated = true;
    say_eval(r, &got);
    return log_eval(r->t, &got, err);
}

/* ---- set-up ------------------------------------------------------------------------------------------ */

/* The models the objective's objective_model options name (coca's PRIOR
 * reference), for forward passes only: no gradients, one set of block
 * activations. */
static vlp_err reference_models(run *r, vlp_error *err) {
    const run_opts *c = &r->opts;
    const objective *obj = c->o.objective;
    for (int i = 0; i < obj->noptions; i++) {
        const opt_desc *p = &obj->options[i].d;
        if (!OBJECTIVE_IS_MODEL(obj, i) || !c->o.obj[i]) continue;
        VLP_CHECK_ARG(r->model_path[i], err, "the run was started with %s: give it again", p->flag);
        clip_load_opts lo = {.quick_gelu = -1, .inference = true};
        VLP_TRY(clip_load_pretrained(&r->refs[i], r->model_path[i], &lo, err));
        VLP_TRY(clip_set_precision(&r->refs[i], c->o.precision, omp_get_max_threads(), err));
        VLP_TRY(trainer_set_model(r->t, p->key, &r->refs[i], err));
        if (r->rank == 0) say(r, "%s %s", p->flag, r->model_path[i]);
    }
    return VLP_OK;
}

/* The run's options, the run's own on resume; bf16 without AVX512-BF16 */
static vlp_err settle_options(run *r, vlp_error *err) {
    run_opts *c = &r->opts;
    if (c->resume) VLP_TRY(resume_options(r, err));
    else VLP_TRY(apply_objective_args(r, err));
    if (c->o.precision == VLP_PRECISION_BF16 && !gemm_bf16_hw()) {
        if (!c->resume) { /* the portable kernel would be slower than fp32 BLAS */
            say(r, "vlp train: this CPU has no AVX512-BF16; --precision bf16 falls back to fp32");
            c->o.precision = VLP_PRECISION_FP32;
        } else /* the same results, computed slowly */
            say(r, "vlp train: %s trains in bf16 and this CPU has no AVX512-BF16: its matmuls run "
                   "on the portable kernel (slow)", c->out);
    }
    return VLP_OK;
}

static vlp_err setup(run *r, vlp_error *err) {
    run_opts *c = &r->opts;
    VLP_TRY(settle_options(r, err));
    r->norm = image_norm_openai();
    if (r->world > 1 && r->rank == 0)
        say(r, "data parallel: %d ranks (MPI), %d samples each per step", r->world, c->o.batch / r->world);
    if (!c->train_data) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/emoji.json", c->data);
        if (access(probe, R_OK) != 0) {
            char hint[4400];
            emoji_fetch_hint(c->data, hint, sizeof hint);
            VLP_FAIL(err, VLP_ERR_ARG,
                     "give the training pairs with --train-data (a .tsv/.csv or WebDataset shards); without it "
                     "vlp trains on the emoji corpus, which is not at %s (%s)", c->data, hint);
        }
        say(r, "loading emoji images of %s from %s", c->vendors, c->data);
        VLP_TRY(emoji_load(c->data, c->vendors, &r->train, err));
    }
    if (c->zeroshot_data) VLP_TRY(templates_load(c->templates, &r->templates, &r->ntemplates, err));
    if (r->rank == 0) {
        VLP_TRY(check_eval_sets(r, err));
        r->made_dir = !c->resume && access(c->out, F_OK) != 0;
        VLP_TRY(make_dirs(c->out, err));
        VLP_TRY(run_dir_lock(c->out, &r->lock_fd, err)); /* before anything in it is written */
        VLP_TRY(model_and_tokenizer(r, c->resume, err));
        VLP_TRY(write_data_record(r, err)); /* a resumed run's too: its evaluation sets may change */
        VLP_TRY(dist_barrier(r->dist, err)); /* config and tokenizer are on disk */
    } else {
        /* rank 0 writes the run's config and tokenizer; the others read them */
        VLP_TRY(dist_barrier(r->dist, err));
        VLP_TRY(model_and_tokenizer(r, true, err));
    }
    if (r->cfg.vision.pre.own_norm) /* the emoji loader's normalisation */
        memcpy(r->norm.mean, r->cfg.vision.pre.mean, sizeof r->norm.mean),
            memcpy(r->norm.std, r->cfg.vision.pre.std, sizeof r->norm.std);
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
        if (r->rank == 0) say(r, "image tower from %s", c->init_image);
    }
    if (r->rank == 0)
        say(r, "precision: %s matmuls in the transformer blocks, fp32 weights and the rest",
            c->o.precision == VLP_PRECISION_BF16 ? "bf16 (fp32 accumulation)" : "fp32");
    if (r->rank == 0 && c->o.grad_checkpointing)
        say(r, "activations: gradient checkpointing (each block's recomputed in the backward)");
    VLP_TRY(c->train_data ? streaming_loader(r, err) : emoji_loader(r, err));
    if (!c->train_data) VLP_TRY(pair_loader_shard(&r->loader, r->rank, r->world, err));
    if (c->epochs > 0 && !c->resume)
        c->o.steps = (long)ceil(c->epochs * (double)(r->loader.epoch_size / per_step(r)));
    /* every rank must run the same number of steps: rank 0's count */
    VLP_TRY(dist_broadcast(r->dist, &c->o.steps, sizeof c->o.steps, 0, err));
    VLP_TRY(trainer_create(&r->t, &r->m, &r->loader, &c->o, c->out, r->dist, err));
    VLP_TRY(reference_models(r, err));
    if (c->resume) VLP_TRY(trainer_resume(r->t, err));
    r->start = trainer_step_count(r->t);
    VLP_CHECK_ARG(r->start <= c->o.steps, err,
                  "%s is at step %ld: --steps %ld is behind it (give more steps to train on)", c->out, r->start,
                  c->o.steps);
    if (r->rank == 0 && c->o.warmup >= c->o.steps)
        say(r, "warning: --warmup %ld is as long as the run (%ld steps): the learning rate never reaches --lr %g",
            c->o.warmup, c->o.steps, c->o.adam.lr);
    return VLP_OK;
}

/* A new run that failed before its first step leaves nothing behind: the
 * files its set-up writes, and the directory it made (only when empty). */
static void forget_new_run(const run *r) {
    static const char *const files[] = {"config.json", DATA_FILE, MERGES_FILE, "metrics.jsonl", "lock"};
    char path[4200];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", r->opts.out, files[i]);
        unlink(path);
    }
    rmdir(r->opts.out);
}

vlp_err run_open(run **out, const run_opts *opts, dist_group *dist, vlp_error *err) {
    *out = NULL;
    run *r = calloc(1, sizeof *r);
    VLP_CHECK_ALLOC(r, err, sizeof *r);
    r->opts = *opts;
    r->lock_fd = -1;
    r->dist = dist, r->rank = dist_rank(dist), r->world = dist_world(dist);
    vlp_err rc = own_strings(r, err);
    if (rc == VLP_OK) rc = setup(r, err);
    if (rc != VLP_OK) {
        if (r->made_dir) forget_new_run(r);
        run_close(r);
        return rc;
    }
    *out = r;
    return VLP_OK;
}

/* ---- the schedule ------------------------------------------------------------------------------------ */

/* the step's metrics.jsonl line */
static vlp_err log_step(run *r, const train_step_info *info, vlp_error *err) {
    double sps = r->opts.o.batch / info->seconds;
    char json[512];
    snprintf(json, sizeof json,
             "{\"step\":%ld,\"loss\":%.7g,\"lr\":%.6g,\"logit_scale\":%.6g,\"grad_norm\":%.6g,"
             "\"samples_per_s\":%.2f,\"epoch\":%" PRId64 ",\"seconds\":%.4f,\"data_seconds\":%.4f%s}",
             info->step, isfinite(info->loss) ? info->loss : 0.0f, info->lr, info->logit_scale,
             isfinite(info->grad_norm) ? info->grad_norm : 0.0, sps, info->pos.epoch, info->seconds,
             info->data_seconds, info->skipped ? ",\"skipped\":true" : "");
    return trainer_log(r->t, json, err);
}

vlp_err run_step(run *r, train_step_info *info, bool *evaluated, vlp_error *err) {
    const run_opts *c = &r->opts;
    if (evaluated) *evaluated = false;
    VLP_CHECK_ARG(!run_done(r), err, "the run has done its %ld steps", c->o.steps);
    VLP_TRY(trainer_step(r->t, info, err));
    VLP_TRY(log_step(r, info, err));
    bool last = info->step == c->o.steps;
    if (c->save_every && info->step % c->save_every == 0 && !last)
        VLP_TRY(run_save(r, NULL, 0, err));
    if (c->eval_every && info->step % c->eval_every == 0 && !last && r->rank == 0 &&
        (c->val_data || c->zeroshot_data)) {
        vlp_error eval_err = {0};
        if (run_eval(r, &eval_err) != VLP_OK) { /* the run is worth more than one evaluation */
            char buf[1024];
            say(r, "vlp train: the evaluation at step %ld failed, training goes on: %s", info->step,
                vlp_error_format(&eval_err, buf, sizeof buf));
        } else if (evaluated) *evaluated = true;
    }
    return VLP_OK;
}

vlp_err run_stop_requested(run *r, bool local, bool *stop, vlp_error *err) {
    double s = local;
    VLP_TRY(dist_allreduce_sum_f64(r->dist, &s, 1, err));
    *stop = s > 0;
    return VLP_OK;
}

vlp_err run_save(run *r, char *written, size_t cap, vlp_error *err) {
    return trainer_save(r->t, (int)r->opts.keep, written, cap, err);
}
