/* Training from a program, through include/vlp.h alone: the run `vlp train`
 * makes, with the same option names.
 *
 *   train [--stop-at N] KEY=VALUE ...      e.g. train_data=pairs.tsv out=run steps=6
 *
 * Trains to the run's end (or, with --stop-at, to step N, saves, closes the
 * run and resumes it from its directory to the end), saves, evaluates on the
 * run's val_data / zeroshot_data when given, and prints a line a step
 * ("step 3/6 loss 2.0794") and the evaluation. Built by `make test`, run by
 * tests/test_train_api.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlp.h"

static void print_line(void *user, const char *line) { fprintf(stderr, "%s\n", line); }

static int failed(const char *what, const vlp_error *err) {
    char buf[1024];
    fprintf(stderr, "train: %s: %s\n", what, vlp_error_format(err, buf, sizeof buf));
    return 1;
}

/* the options of the command line; to resume, "resume" on and only where
 * the run is and how to read it (the run keeps the rest) */
static vlp_err options(vlp_train_opts **o, int argc, char **argv, int first, int resume, vlp_error *err) {
    vlp_err rc = vlp_train_opts_new(o, err);
    for (int i = first; rc == VLP_OK && i < argc; i++) {
        if (resume && strncmp(argv[i], "out=", 4) && strncmp(argv[i], "workers=", 8)) continue;
        char key[128];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof key) {
            fprintf(stderr, "train: '%s' is not KEY=VALUE\n", argv[i]);
            return VLP_ERR_ARG;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i]), argv[i]);
        rc = vlp_train_opts_set(*o, key, eq + 1, err);
    }
    if (rc == VLP_OK && resume) rc = vlp_train_opts_set(*o, "resume", "on", err);
    if (rc == VLP_OK) vlp_train_opts_set_messages(*o, print_line, NULL);
    return rc;
}

/* steps until the run's end or step stop_at (0: the end) */
static vlp_err steps(vlp_train *t, long stop_at, vlp_error *err) {
    while (!vlp_train_done(t) && (!stop_at || vlp_train_step_count(t) < stop_at)) {
        vlp_train_progress p;
        vlp_err rc = vlp_train_step(t, &p, err);
        if (rc != VLP_OK) return rc;
        printf("step %ld/%ld loss %.7g\n", p.step, p.steps, p.loss);
    }
    return vlp_train_save(t, NULL, 0, err);
}

int main(int argc, char **argv) {
    int first = 1;
    long stop_at = 0;
    if (argc > 2 && !strcmp(argv[1], "--stop-at")) stop_at = atol(argv[2]), first = 3;
    vlp_error err = {0};
    vlp_train_opts *o = NULL;
    vlp_train *t = NULL;
    if (options(&o, argc, argv, first, 0, &err) != VLP_OK) return failed("options", &err);
    if (vlp_train_open(&t, o, &err) != VLP_OK) return failed("open", &err);
    vlp_train_opts_free(o);
    if (steps(t, stop_at, &err) != VLP_OK) return failed("step", &err);
    if (stop_at) { /* the run from its directory: the options it was started with */
        vlp_train_close(t);
        if (options(&o, argc, argv, first, 1, &err) != VLP_OK) return failed("options", &err);
        if (vlp_train_open(&t, o, &err) != VLP_OK) return failed("resume", &err);
        vlp_train_opts_free(o);
        printf("resumed at step %ld\n", vlp_train_step_count(t));
        if (steps(t, 0, &err) != VLP_OK) return failed("step", &err);
    }
    vlp_train_eval e;
    if (vlp_train_evaluate(t, &e, &err) != VLP_OK) return failed("evaluate", &err);
    if (e.has_val)
        printf("eval step %ld images %d i2t_r1 %.4f t2i_r1 %.4f\n", e.step, e.images, e.i2t_r1, e.t2i_r1);
    if (e.has_zeroshot) printf("zeroshot step %ld classes %d top1 %.4f\n", e.step, e.classes, e.top1);
    vlp_train_close(t);
    return 0;
}
