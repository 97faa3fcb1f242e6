/* The command line of every command, from tables of opt_desc
 * (core/optdesc.h): one parser, the --help text with each default (read
 * from the table's struct before parsing), and every error message. A
 * command is its tables (its own, and shared ones such as the model's,
 * tools/model_args.h) plus its usage line and paragraph. */
#ifndef VLP_TOOLS_OPTS_H
#define VLP_TOOLS_OPTS_H
#include <stdbool.h>
#include <stdio.h>

#include "core/optdesc.h"

/* one table and the struct its offsets point into */
typedef struct opt_group {
    const opt_desc *t;
    int n;
    void *base;
} opt_group;

typedef struct cmd_spec {
    const char *name;  // "embed", "data filter": messages say "vlp NAME: ..."
    const char *usage; // the line after "usage: "
    const char *about; // the paragraph under it
    const opt_group *groups;
    int ngroups;
    const char *extra_help; // printed after the options, or NULL
    /* the command takes words that are not options (vlp caption's images,
     * vlp tokenize's texts), anywhere; after "--" every word is one */
    bool positional;
    /* options no table holds (an objective's): whether flag is one (each
     * takes a value), and setting it; NULL: none */
    bool (*extra_is)(const char *flag);
    vlp_err (*extra_set)(void *ctx, const char *flag, const char *value, vlp_error *err);
    /* after each table option set (the run's record of what was given); may be NULL */
    void (*on_set)(void *ctx, const opt_desc *d);
    void *ctx;
    /* pairs of flags that may not be given together ({"--epochs", "--steps"}),
     * ended by {NULL}; NULL: none */
    const char *const (*exclusive)[2];
    /* the entries that must appear together in --help after the tables, or NULL */
    void (*help_more)(FILE *fp);
} cmd_spec;

/* 0: parsed (words: room for argc, receives the positional words, *nwords
 * their number; both NULL for a command without); 1: --help was printed
 * (exit 0); 2: an error was printed (exit 2). OPT_REQUIRED entries must be
 * given. */
int opts_parse(const cmd_spec *c, int argc, char **argv, char **words, int *nwords);

/* a cmd_spec.help_more for commands that read a set: the kinds of sets
 * (data/dataset.h's table), one a line */
void opts_help_data_kinds(FILE *fp);

/* The --help lines of a table, each default read from `defaults`;
 * OPT_HIDDEN entries are left out. */
void opts_help_table(FILE *fp, const opt_desc *t, int n, const void *defaults);
#endif
