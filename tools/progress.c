#include "progress.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

void progress_begin(progress *p, FILE *fp, const char *what, long total) {
    const char *env = getenv("VLP_PROGRESS_SECONDS");
    char *end;
    double every = env && *env ? strtod(env, &end) : 5.0;
    if (env && *env && (*end || !(every >= 0))) every = 5.0;
    *p = (progress){.fp = fp, .what = what, .total = total, .tty = isatty(fileno(fp)),
                    .t0 = now_s(), .every = every, .shown = -1};
    p->last = p->t0;
}

static void print(progress *p, long done, double t) {
    double dt = t - p->t0, rate = dt > 0 ? done / dt : 0;
    char eta[48] = "";
    if (p->total > 0 && rate > 0 && done < p->total)
        snprintf(eta, sizeof eta, ", ETA %.0fs", (p->total - done) / rate);
    if (p->total > 0)
        fprintf(p->fp, "%s%s %ld/%ld (%.0f%%, %.1f/s%s)%s", p->tty ? "\r\033[K" : "", p->what, done,
                p->total, 100.0 * done / p->total, rate, eta, p->tty ? "" : "\n");
    else
        fprintf(p->fp, "%s%s %ld (%.1f/s)%s", p->tty ? "\r\033[K" : "", p->what, done, rate,
                p->tty ? "" : "\n");
    fflush(p->fp);
    p->open = p->tty;
    p->shown = done;
    p->last = t;
}

void progress_update(progress *p, long done) {
    double t = now_s();
    if (p->tty ? t - p->last >= 0.1 || p->shown < 0 : t - p->last >= p->every) print(p, done, t);
}

void progress_end(progress *p, long done) {
    if (p->shown != done) print(p, done, now_s());
    progress_break(p);
}

void progress_break(progress *p) {
    if (p->open) fputc('\n', p->fp), fflush(p->fp);
    p->open = false;
}

void progress_line(progress *p, const char *line, bool due) {
    if (p->tty) {
        fprintf(p->fp, "\r\033[K%s", line);
        p->open = true;
    } else if (due) fprintf(p->fp, "%s\n", line);
    fflush(p->fp);
}
