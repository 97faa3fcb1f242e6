/* The run directory's state and position files: read with the ranges a run
 * can make, written so that they read back the same (runfiles.h). */
#include "train/runfiles.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "train/trainer.h"

vlp_err run_number(const char *text, const char *where, const char *what, int64_t max, int64_t *out,
                   vlp_error *err) {
    char *end = NULL;
    errno = 0;
    /* digits only: strtoll would take a sign, spaces and an overflow clamped to 2^63 - 1 */
    bool digits = text && *text >= '0' && *text <= '9';
    long long x = digits ? strtoll(text, &end, 10) : -1;
    VLP_CHECK_FORMAT(digits && end && !*end && errno == 0 && x <= max, err,
                     "%s: %s is %s%s%s, not a whole number in 0..%lld", where, what, text ? "'" : "missing",
                     text ? text : "", text ? "'" : "", (long long)max);
    *out = x;
    return VLP_OK;
}

vlp_err run_state_check(const st_file *f, vlp_error *err) {
    const char *fmt = st_meta_get(f, "format"), *ver = st_meta_get(f, "version");
    VLP_CHECK_FORMAT(fmt && !strcmp(fmt, RUN_STATE_FORMAT) && ver && !strcmp(ver, RUN_STATE_VERSION), err,
                     "%s: not a vlp training state of version %s", st_path(f), RUN_STATE_VERSION);
    return VLP_OK;
}

/* a metadata entry as run_number */
static vlp_err meta_number(const st_file *f, const char *key, int64_t max, int64_t *out, vlp_error *err) {
    char what[64];
    snprintf(what, sizeof what, "metadata \"%s\"", key);
    return run_number(st_meta_get(f, key), st_path(f), what, max, out, err);
}

vlp_err run_state_read(const st_file *f, run_state *s, vlp_error *err) {
    VLP_TRY(run_state_check(f, err));
    *s = (run_state){.world = 1};
    if (st_meta_get(f, "world")) { /* states before MPI have none */
        VLP_TRY(meta_number(f, "world", RUN_MAX_WORLD, &s->world, err));
        VLP_CHECK_FORMAT(s->world >= 1, err, "%s: metadata \"world\" is 0", st_path(f));
    }
    VLP_TRY(meta_number(f, "step", TRAIN_MAX_STEPS, &s->step, err));
    VLP_TRY(meta_number(f, "epoch", RUN_MAX_EPOCH, &s->pos.epoch, err));
    VLP_TRY(meta_number(f, "index", RUN_MAX_INDEX, &s->pos.index, err));
    /* a file name in the run directory, never a path out of it */
    const char *ckpt = st_meta_get(f, "checkpoint");
    VLP_CHECK_FORMAT(ckpt && *ckpt && !strchr(ckpt, '/') && strcmp(ckpt, ".") && strcmp(ckpt, "..") &&
                         strlen(ckpt) < sizeof s->checkpoint,
                     err, "%s: metadata \"checkpoint\" is missing or not a file name", st_path(f));
    strcpy(s->checkpoint, ckpt);
    s->options = st_meta_get(f, "options");
    VLP_CHECK_FORMAT(s->options, err, "%s: metadata \"options\" is missing", st_path(f));
    return VLP_OK;
}

vlp_err run_state_write(const char *path, const run_state *s, const float *exp_avg, const float *exp_avg_sq,
                        size_t nfloats, vlp_error *err) {
    char step[32], epoch[32], index[32], world[32];
    snprintf(step, sizeof step, "%" PRId64, s->step);
    snprintf(world, sizeof world, "%" PRId64, s->world);
    snprintf(epoch, sizeof epoch, "%" PRId64, s->pos.epoch);
    snprintf(index, sizeof index, "%" PRId64, s->pos.index);
    st_meta sm[] = {{"format", RUN_STATE_FORMAT}, {"version", RUN_STATE_VERSION}, {"step", step},
                    {"epoch", epoch},             {"index", index},               {"checkpoint", s->checkpoint},
                    {"options", s->options},      {"world", world}};
    int64_t nf = (int64_t)nfloats;
    st_tensor ts[2] = {{.name = "exp_avg", .dtype = ST_F32, .ndim = 1, .shape = {nf}, .data = exp_avg},
                       {.name = "exp_avg_sq", .dtype = ST_F32, .ndim = 1, .shape = {nf}, .data = exp_avg_sq}};
    return st_write(path, ts, 2, sm, (int)(sizeof sm / sizeof sm[0]), err);
}

int run_pos_format(char line[RUN_POS_CAP], data_pos p) {
    return snprintf(line, RUN_POS_CAP, "%" PRId64 " %" PRId64 "\n", p.epoch, p.index);
}

vlp_err run_pos_parse(const char *text, const char *path, data_pos *p, vlp_error *err) {
    char line[RUN_POS_CAP], *sp, *nl;
    size_t n = strlen(text);
    /* "epoch index\n", as run_pos_format writes it */
    bool shape = n < sizeof line && (memcpy(line, text, n + 1), (sp = strchr(line, ' ')) != NULL) &&
                 (nl = strchr(sp + 1, '\n')) != NULL && nl[1] == '\0';
    VLP_CHECK_FORMAT(shape, err, "%s: not \"epoch index\" on one line", path);
    *sp = *nl = '\0';
    VLP_TRY(run_number(line, path, "the epoch", RUN_MAX_EPOCH, &p->epoch, err));
    return run_number(sp + 1, path, "the index", RUN_MAX_INDEX, &p->index, err);
}
