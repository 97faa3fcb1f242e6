/* Progress of a long command, one rule for all: on a terminal one line
 * refreshed in place; otherwise (a log file, a pipe) whole lines, one every
 * VLP_PROGRESS_SECONDS seconds (default 5; 0 = every update) and one at the
 * end, so `vlp eval ... 2>&1 | cat` and logs read line by line. */
#ifndef VLP_TOOLS_PROGRESS_H
#define VLP_TOOLS_PROGRESS_H
#include <stdbool.h>
#include <stdio.h>

typedef struct progress {
    FILE *fp;
    const char *what;  // "images", "samples", ...
    long total;        // 0 when unknown
    bool tty;
    double t0, last, every;
    long shown;        // the count of the last line printed
    bool open;         // a terminal line is waiting for its newline
} progress;

void progress_begin(progress *p, FILE *fp, const char *what, long total);
/* `done` items so far; prints when the rule above says so */
void progress_update(progress *p, long done);
/* the final count, always printed, and the line ended */
void progress_end(progress *p, long done);
/* before printing anything else: ends a terminal line in progress */
void progress_break(progress *p);
/* a caller's own text as a progress line (the trainer's step line): refreshed
 * on a terminal, printed as a whole line when `due` otherwise */
void progress_line(progress *p, const char *line, bool due);
#endif
