/* The run directory: one process's lock, checkpoints with their training
 * state written atomically and pruned, each rank's data position, and
 * metrics.jsonl. */
#include "train/trainer_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/atomic.h"
#include "model/clip_io.h"
#include "train/runfiles.h"

#define MAX_CHECKPOINTS 4096 /* pruning looks at this many */

/* Two processes writing one run directory would interleave checkpoints and
 * metrics: the second one is refused. A POSIX record lock: a process may take
 * it twice (the CLI locks before it writes the tokenizer, the trainer again),
 * and it dies with the process. */
vlp_err run_dir_lock(const char *dir, int *fd_out, vlp_error *err) {
    char path[TRAIN_PATH_CAP];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    VLP_CHECK_IO(fd >= 0, err, "cannot open %s: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : -1;
        close(fd);
        VLP_CHECK(e != EACCES && e != EAGAIN, err, VLP_ERR_IO,
                  "%s is in use by another process (pid %ld): one training run per directory", dir, pid);
        VLP_FAIL(err, VLP_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return VLP_OK;
}

void run_path(char *out, const trainer *t, const char *name) {
    snprintf(out, TRAIN_PATH_CAP, "%s/%s", t->dir, name);
}

static void rank_pos_path(char *out, const trainer *t, long step, int rank) {
    snprintf(out, TRAIN_PATH_CAP, "%s/ckpt-%08ld.rank%d.pos", t->dir, step, rank);
}

/* the step of a "ckpt-N.safetensors" name (N digits, within a run's
 * steps), or -1 for any other name */
static long ckpt_step(const char *name) {
    const char *num = name + 5, *dot = strchr(num, '.');
    char digits[32];
    int64_t step;
    if (strncmp(name, "ckpt-", 5) || !dot || strcmp(dot, ".safetensors") || dot == num ||
        (size_t)(dot - num) >= sizeof digits)
        return -1;
    memcpy(digits, num, (size_t)(dot - num)), digits[dot - num] = '\0';
    return run_number(digits, name, "the step", TRAIN_MAX_STEPS, &step, NULL) == VLP_OK ? (long)step : -1;
}

/* Removes all but the newest `keep` ckpt-*.safetensors (and their states). */
static void prune(trainer *t, int keep) {
    DIR *d = opendir(t->dir);
    if (!d) return;
    long *steps = malloc(sizeof(long) * MAX_CHECKPOINTS);
    int n = 0;
    struct dirent *e;
    while (steps && (e = readdir(d)) && n < MAX_CHECKPOINTS) {
        long s = ckpt_step(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer < keep) continue;
        char p[TRAIN_PATH_CAP], name[64];
        snprintf(name, sizeof name, "ckpt-%08ld.state", steps[i]);
        run_path(p, t, name), unlink(p); /* the state first: it names the weights */
        for (int r = 1; r < t->world; r++) rank_pos_path(p, t, steps[i], r), unlink(p);
        snprintf(name, sizeof name, "ckpt-%08ld.safetensors", steps[i]);
        run_path(p, t, name), unlink(p);
    }
    free(steps);
}

static vlp_err save_rank_pos(trainer *t, vlp_error *err) {
    char path[TRAIN_PATH_CAP], line[RUN_POS_CAP];
    rank_pos_path(path, t, t->step, t->rank);
    int n = run_pos_format(line, t->data->tell(t->data->impl));
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    atomic_write(&af, line, (size_t)n);
    return atomic_commit(&af, err);
}

vlp_err load_rank_pos(trainer *t, long step, data_pos *pos, vlp_error *err) {
    char path[TRAIN_PATH_CAP], text[RUN_POS_CAP + 1];
    rank_pos_path(path, t, step, t->rank);
    FILE *f = fopen(path, "r");
    VLP_CHECK_IO(f, err, "cannot open %s (rank %d's data position): %s", path, t->rank,
                 strerror(errno));
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return run_pos_parse(text, path, pos, err);
}

/* rank 0's state: moments, step, data position, options */
static vlp_err write_state(trainer *t, const char *path, const char *ckpt_name, vlp_error *err) {
    run_state s = {.step = t->step, .pos = t->data->tell(t->data->impl), .world = t->world};
    snprintf(s.checkpoint, sizeof s.checkpoint, "%s", ckpt_name);
    char *opts = train_opts_to_json(&t->o);
    VLP_CHECK_ALLOC(opts, err, 256);
    s.options = opts;
    vlp_err rc = run_state_write(path, &s, t->exp_avg, t->exp_avg_sq, t->m->nfloats, err);
    free(opts);
    return rc;
}

vlp_err trainer_save(trainer *t, int keep, char *written, size_t cap, vlp_error *err) {
    char ckpt_name[64], state_name[64], path[TRAIN_PATH_CAP], step[32];
    snprintf(ckpt_name, sizeof ckpt_name, "ckpt-%08ld.safetensors", t->step);
    snprintf(state_name, sizeof state_name, "ckpt-%08ld.state", t->step);
    snprintf(step, sizeof step, "%ld", t->step);
    if (written) snprintf(written, cap, "%s/%s", t->dir, ckpt_name);
    /* every rank's position is on disk before rank 0's state names the step;
     * the weights and moments are the same on every rank: rank 0 writes them */
    if (t->rank > 0) VLP_TRY(save_rank_pos(t, err));
    VLP_TRY(dist_barrier(t->dist, err));
    if (t->rank > 0) return dist_barrier(t->dist, err); /* wait for rank 0's files */
    st_meta cm[] = {{"vlp.step", step}};
    run_path(path, t, ckpt_name);
    VLP_TRY(clip_save(t->m, path, cm, 1, err));
    run_path(path, t, state_name);
    VLP_TRY(write_state(t, path, ckpt_name, err)); /* after its checkpoint: it names it */
    run_path(path, t, "latest.safetensors");
    VLP_TRY(atomic_symlink(ckpt_name, path, err));
    run_path(path, t, "latest.state");
    VLP_TRY(atomic_symlink(state_name, path, err));
    prune(t, keep < 1 ? 1 : keep);
    return dist_barrier(t->dist, err);
}

vlp_err open_state(const char *dir, st_file **out, vlp_error *err) {
    char path[TRAIN_PATH_CAP];
    snprintf(path, sizeof path, "%s/latest.state", dir);
    VLP_TRY(st_open(path, out, err));
    vlp_err rc = run_state_check(*out, err);
    if (rc != VLP_OK) {
        st_close(*out);
        *out = NULL;
    }
    return rc;
}

vlp_err trainer_saved_opts(const char *run_dir, train_opts *o, vlp_error *err) {
    st_file *f;
    VLP_TRY(open_state(run_dir, &f, err));
    vlp_err rc = train_opts_from_json(st_meta_get(f, "options"), st_path(f), o, err);
    st_close(f);
    return rc;
}

vlp_err truncate_metrics(trainer *t, vlp_error *err) {
    char path[TRAIN_PATH_CAP];
    run_path(path, t, "metrics.jsonl");
    FILE *in = fopen(path, "r");
    if (!in) return VLP_OK;
    atomic_file af;
    vlp_err rc = atomic_open(&af, path, err);
    if (rc != VLP_OK) {
        fclose(in);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) { /* any length: a line is never cut */
        char *end;
        /* strtoll, not sscanf: a step beyond 2^63 is clamped (and dropped), never undefined */
        long long s = strncmp(line, "{\"step\":", 8) ? -1 : strtoll(line + 8, &end, 10);
        if (s >= 0 && end != line + 8 && s > t->step) continue;
        atomic_write(&af, line, (size_t)n);
    }
    free(line);
    fclose(in);
    return atomic_commit(&af, err);
}

vlp_err trainer_log(trainer *t, const char *json_line, vlp_error *err) {
    if (t->rank > 0) return VLP_OK; /* rank 0 writes the run's metrics */
    if (!t->metrics) {
        char path[TRAIN_PATH_CAP];
        run_path(path, t, "metrics.jsonl");
        t->metrics = fopen(path, "a");
        VLP_CHECK_IO(t->metrics, err, "cannot open %s: %s", path, strerror(errno));
    }
    VLP_CHECK_IO(fprintf(t->metrics, "%s\n", json_line) > 0 && fflush(t->metrics) == 0, err,
                 "cannot append to %s/metrics.jsonl: %s", t->dir, strerror(errno));
    return VLP_OK;
}
