/* A command's options as a table: one entry (flag, kind, where the value
 * goes, range, help) gives the parser, the --help text (with each default,
 * read from where the value goes before parsing) and every error message. */
#ifndef VLP_TOOLS_OPTS_H
#define VLP_TOOLS_OPTS_H
#include <stdbool.h>
#include <stdio.h>

typedef enum { OPT_STR, OPT_LONG, OPT_DBL, OPT_FLAG } opt_kind;

typedef struct cli_opt {
    const char *shrt, *lng; // "-i" (or NULL), "--data"
    const char *arg;        // the value's name in the help ("SPEC"); NULL for a flag
    opt_kind kind;
    void *dst;              // const char **, long *, double * or bool *
    double lo, hi;          // a number's range
    bool required;
    const char *help;
} cli_opt;

/* Options the table does not hold (a model's, shared with other commands):
 * true when argv[*i] was one (consumed; *bad set on a bad value). */
typedef bool (*opt_extra)(void *ctx, int argc, char **argv, int *i, int *bad);

/* 0: parsed; 1: --help was printed (exit 0); 2: an error was printed (exit 2).
 * usage: the line after "usage: "; about: the paragraph under it; extra_help
 * printed after the table (or NULL). */
int opts_parse(const char *cmd, const char *usage, const char *about, const cli_opt *opts, int n,
               opt_extra extra, void *extra_ctx, const char *extra_help, int argc, char **argv);
#endif
