/* vlp train: parse → run_open → run_step until done → report. The run
 * itself (directory, data, resume, schedule) is the library's (src/train/run.h);
 * every option comes from the tables of src/train/run.c and options.c and
 * the objectives' own. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "args.h"
#include "blas_env.h"
#include "commands.h"
#include "opts.h"
#include "progress.h"
#include "core/optdesc.h"
#include "dist/dist.h"
#include "interrupt.h"
#include "train/run.h"
#include "vlp.h"


/* what only the command line has: the process's threads and its log */
typedef struct train_cli {
    run_opts r;
    int threads;
    long log_every;
} train_cli;

static const opt_desc cli_table[] = {
    {NULL, "-t", "--threads", "N", &opt_int, offsetof(train_cli, threads), 0, 4096, 0,
     "threads, 0 = one per core", NULL},
    {NULL, NULL, "--log-every", "N", &opt_long, offsetof(train_cli, log_every), 1, 1099511627776.0, 0,
     "steps between progress lines when not a terminal", NULL},
};
#define NCLI ((int)(sizeof cli_table / sizeof cli_table[0]))

/* The objectives and their options, from the table: each option once, with
 * the objectives that take it and their defaults. */
static void objectives_help(FILE *fp) {
    char text[1024], head[64];
    snprintf(text, sizeof text, "what the towers are trained for (default %s):", vlp_objectives[0]->name);
    help_item(fp, "      --objective O", text);
    for (int i = 0; vlp_objectives[i]; i++) {
        snprintf(head, sizeof head, "            %s", vlp_objectives[i]->name);
        help_item(fp, head, vlp_objectives[i]->help);
    }
    for (int i = 0; vlp_objectives[i]; i++) {
        for (int k = 0; k < vlp_objectives[i]->noptions; k++) {
            const opt_desc *p = &vlp_objectives[i]->options[k].d;
            bool model = OBJECTIVE_IS_MODEL(vlp_objectives[i], k);
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = objective_option_index(vlp_objectives[j], p->flag) >= 0;
            if (seen) continue;
            size_t n = (size_t)snprintf(text, sizeof text, "%s (%s", p->help,
                                        model ? "" : "default: ");
            for (int j = i, first = 1; vlp_objectives[j] && n < sizeof text; j++) {
                int q = objective_option_index(vlp_objectives[j], p->flag);
                if (q < 0) continue;
                n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", first ? "" : ", ", vlp_objectives[j]->name);
                if (!model && n < sizeof text)
                    n += (size_t)snprintf(text + n, sizeof text - n, " %g", vlp_objectives[j]->options[q].def);
                first = 0;
            }
            if (n < sizeof text) snprintf(text + n, sizeof text - n, ")");
            snprintf(head, sizeof head, "      %s %s", p->flag, p->arg);
            help_item(fp, head, text);
        }
    }
    opts_help_data_kinds(fp);
}

/* the run's lines, between the progress lines */
static void say(void *ctx, const char *line) {
    progress_break(ctx);
    fprintf(stderr, "%s\n", line);
}

static vlp_err set_objective_option(void *ctx, const char *flag, const char *value, vlp_error *err) {
    return run_opts_set(ctx, flag, value, err);
}

static void given(void *ctx, const opt_desc *d) {
    if (d->key) run_opts_mark_given(ctx, d->key);
}

/* returns 0 ok, 1 help shown, 2 bad usage */
static int parse(int argc, char **argv, train_cli *c) {
    *c = (train_cli){.r = run_opts_defaults(), .threads = 0, .log_every = 10};
    c->r.say = say, c->r.warn = cli_warn;
    const opt_group groups[] = {{run_opt_table, run_opt_count, &c->r},
                                {train_opt_table, train_opt_count, &c->r.o},
                                {cli_table, NCLI, c}};
    static const char *const exclusive[][2] = {{"--epochs", "--steps"}, {NULL}};
    const cmd_spec spec = {
        .name = "train", .usage = "vlp train [options]", .exclusive = exclusive,
        .about = "Pre-trains a CLIP-family model on image-caption pairs. Writes checkpoints\n"
                 "(open_clip state dicts in safetensors), training state and metrics.jsonl to the\n"
                 "run directory.",
        .groups = groups, .ngroups = 3, .help_more = objectives_help,
        .extra_help = "Ctrl-C saves a checkpoint and exits; a second Ctrl-C exits at once.\n"
                      "Under 'mpirun -np N' the N ranks train data-parallel: --batch is the global batch,\n"
                      "rank 0 writes the run, --resume needs the same N (docs/scaling.md).\n",
        .extra_is = run_objective_option, .extra_set = set_objective_option, .on_set = given,
        .ctx = &c->r};
    return opts_parse(&spec, argc, argv, NULL, NULL);
}

/* the job's ranks (a tool's state, not the library's): an error on one rank
 * must stop the others, which would wait for it in a collective forever */
static int fail(dist_group *dist, const vlp_error *e) {
    char buf[1024];
    if (dist_world(dist) > 1) {
        fprintf(stderr, "vlp train: rank %d of %d: %s\n", dist_rank(dist), dist_world(dist),
                tool_error_text(e, buf, sizeof buf));
        fflush(stderr);
        dist_abort(dist, 1);
    }
    fprintf(stderr, "vlp train: %s\n", tool_error_text(e, buf, sizeof buf));
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%.0fs", s);
}

/* What one invocation did, for its progress lines and summary. */
typedef struct session {
    long done, skipped;          // steps done since the start; of which not finite, skipped
    double t_start, ema;         // wall clock; moving average of a step's seconds
    double train_s, data_s;      // seconds in steps, of which waiting for data
    float last_loss;
    char saved[4096];            // the last checkpoint written
} session;

static void report_step(const train_cli *c, run *r, session *s, const train_step_info *info,
                        progress *pr, bool lead) {
    const run_opts *o = run_options(r);
    s->done++;
    s->skipped += info->skipped;
    if (info->skipped && lead) {
        progress_break(pr);
        fprintf(stderr, "vlp train: step %ld: the loss or the gradient is not finite; skipped (%ld so far)\n",
                info->step, s->skipped);
    }
    s->train_s += info->seconds, s->data_s += info->data_seconds;
    s->last_loss = info->loss;
    s->ema = s->done == 1 ? info->seconds : 0.9 * s->ema + 0.1 * info->seconds;
    char line[512], eta[32];
    fmt_duration(eta, sizeof eta, s->ema * (double)(o->o.steps - info->step));
    snprintf(line, sizeof line, "step %ld/%ld  loss %.4f  lr %.2e  scale %.2f  %.1f samples/s  ETA %s",
             info->step, o->o.steps, info->loss, info->lr, info->logit_scale,
             o->o.batch / info->seconds, eta);
    if (lead) progress_line(pr, line, info->step % c->log_every == 0 || info->step == o->o.steps);
}

static void print_summary(run *r, const session *s) {
    const run_opts *o = run_options(r);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char wall[32];
    fmt_duration(wall, sizeof wall, now_s() - s->t_start);
    fprintf(stderr, "\nsummary: %ld steps this session (%ld..%ld of %ld), %s wall, %.1f samples/s "
                    "while training, %.1f%% of it waiting for data, final loss %.4f, peak RSS %.0f MiB\n",
            s->done, run_start_step(r), run_step_count(r), o->o.steps, wall,
            s->train_s > 0 ? s->done * o->o.batch / s->train_s : 0.0,
            s->train_s > 0 ? 100 * s->data_s / s->train_s : 0.0, s->last_loss, ru.ru_maxrss / 1024.0);
    if (s->saved[0]) fprintf(stderr, "checkpoint: %s (also %s/latest.safetensors)\n", s->saved, o->out);
    if (s->skipped) fprintf(stderr, "skipped %ld steps whose loss or gradient was not finite\n", s->skipped);
    char why[512];
    int64_t skipped = run_skipped_samples(r, why, sizeof why);
    if (skipped) fprintf(stderr, "skipped %lld unusable samples; the first: %s\n", (long long)skipped, why);
    const run_evals *e = run_last_eval(r);
    if (e && e->val)
        printf("RESULT name=val step=%ld images=%d loss=%.4f i2t_r1=%.4f i2t_r5=%.4f i2t_r10=%.4f "
               "t2i_r1=%.4f t2i_r5=%.4f t2i_r10=%.4f chance_r1=%.4f\n",
               e->step, e->v.n, e->v.loss, e->v.i2t.r1, e->v.i2t.r5, e->v.i2t.r10, e->v.t2i.r1,
               e->v.t2i.r5, e->v.t2i.r10, 1.0 / e->v.texts);
    if (e && e->zs)
        printf("RESULT name=zeroshot step=%ld images=%d classes=%d top1=%.4f balanced=%.4f "
               "majority=%.4f\n", e->step, e->z.zs.n, e->z.classes, e->z.zs.top1, e->z.zs.balanced,
               e->z.zs.majority);
}

static void print_header(run *r) {
    const run_opts *o = run_options(r);
    clip_model *m = run_model(r);
    fprintf(stderr,
            "model: %zu parameters (%.1f MiB); objective %s; %d training pairs (%s); validation "
            "%s; vocab %d; batch %d%s; steps %ld (%.2f epochs); run dir %s\n",
            m->nfloats, m->nfloats * 4.0 / 1048576, o->o.objective->name, (int)run_epoch_size(r),
            o->train_data ? o->train_data : o->vendors, o->val_data ? o->val_data : "none",
            run_tokenizer(r)->vocab_size, o->o.batch, o->o.accum > 1 ? " (accumulated)" : "",
            o->o.steps, run_epochs(r), o->out);
    if (run_start_step(r)) fprintf(stderr, "resumed at step %ld\n", run_start_step(r));
}

/* Steps until the run's end or a signal (the ranks stop together: a signal
 * may reach them at different steps). */
static vlp_err train_loop(const train_cli *c, run *r, session *s, progress *pr, bool lead, vlp_error *err) {
    while (!run_done(r)) {
        bool stop;
        VLP_TRY(run_stop_requested(r, interrupted(), &stop, err));
        if (stop) {
            interrupt_request();
            return VLP_OK;
        }
        train_step_info info;
        VLP_TRY(run_step(r, &info, NULL, err));
        report_step(c, r, s, &info, pr, lead);
    }
    return VLP_OK;
}

static int train_session(train_cli *c, dist_group *dist) {
    vlp_error err = {0};
    vlp_set_threads(c->threads);
    tool_print_sysinfo(stderr);
    bool lead = dist_rank(dist) == 0; /* rank 0 reports; the others only on errors */
    if (!lead) c->r.say = NULL;
    progress pr = {0};
    c->r.ctx = &pr;
    run *r;
    vlp_err orc = run_open(&r, &c->r, dist, &err);
    if (orc == VLP_ERR_ARG && dist_world(dist) == 1) { /* what was asked for: a usage error */
        fprintf(stderr, "vlp train: %s\n", err.message);
        return 2;
    }
    if (orc != VLP_OK) return fail(dist, &err);
    const run_opts *o = run_options(r);
    if (run_done(r)) { /* a resumed run with nothing left: no step, no checkpoint, no second eval line */
        if (lead) fprintf(stderr, "%s has done its %ld steps: nothing to train (--steps N with more to go on)\n",
                          o->out, o->o.steps);
        run_close(r);
        return 0;
    }
    session s = {.t_start = now_s(), .last_loss = NAN};
    if (lead) print_header(r);
    interrupt_catch();
    progress_begin(&pr, stderr, "steps", o->o.steps);
    int rc = train_loop(c, r, &s, &pr, lead, &err) == VLP_OK ? 0 : fail(dist, &err);
    progress_break(&pr);
    long step = run_step_count(r);
    if (rc == 0) { /* the last checkpoint: at the end or where a signal stopped */
        if (run_save(r, s.saved, sizeof s.saved, &err) != VLP_OK) rc = fail(dist, &err);
        else if (interrupted() && lead) fprintf(stderr, "interrupted at step %ld: checkpoint %s; continue with "
                                         "'vlp train -o %s --resume'\n", step, s.saved, o->out);
    }
    if (rc == 0 && !interrupted() && run_done(r) && run_eval(r, &err) != VLP_OK) rc = fail(dist, &err);
    if (lead) print_summary(r, &s);
    run_close(r);
    if (rc == 0 && interrupted()) return INTERRUPT_EXIT;
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_cli c;
    int p = parse(argc, argv, &c);
    if (p) return p == 1 ? 0 : 2;
    vlp_error err = {0};
    dist_group *dist = NULL;
    if (dist_init(&dist, &err) != VLP_OK) return fail(NULL, &err);
    int rc = train_session(&c, dist);
    dist_free(dist);
    return rc;
}
