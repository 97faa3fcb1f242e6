/* Small helpers for the CLI's option parsing: paired short/long flags and
 * numbers checked against a range, with the option named in every error. */
#ifndef VLP_TOOLS_ARGS_H
#define VLP_TOOLS_ARGS_H
#include <stdbool.h>
#include <stdio.h>

/* argv[*i] is `s` or `l`; true when it matches (and a value follows when want_value). */
bool arg_is(int argc, char **argv, int *i, const char *s, const char *l, bool want_value,
            const char *cmd, int *bad);
bool arg_long(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out);
bool arg_double(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);
/* The lines of a file ('-': stdin), newline and carriage return cut, empty
 * lines dropped unless keep_empty; NULL (and a message naming the file) when
 * it cannot be read or memory runs out. Free with free_lines. */
char **read_lines(const char *path, bool keep_empty, int *n);
void free_lines(char **v, int n);
/* Zero-shot templates: a name shipped with vlp ("default", "openai-imagenet":
 * templates/NAME.txt of the data directory) or a file, one template a line;
 * NULL and a message naming what failed. Free with free_lines. */
char **read_templates(const char *name_or_file, const char *cmd, int *n);
/* One --help entry: head ("      --x N") in a 26-column field, then text
 * wrapped at 90 columns, continuation lines indented 26. */
void help_item(FILE *fp, const char *head, const char *text);
#define TEMPLATES_DEFAULT "default"
#define TEMPLATES_HELP                                                                          \
    "      --templates T     zero-shot templates: a NAME shipped with vlp (default: \"a photo\n"  \
    "                        of a {}.\"; openai-imagenet: the CLIP paper's 80) or a FILE, one\n" \
    "                        template a line, {} for the class (default " TEMPLATES_DEFAULT ")\n"


/* A dataset warning callback: prints "warning: MSG" to stderr, the first 100
 * of a process, then one line saying the rest are only counted. Thread-safe. */
void cli_warn(void *ctx, const char *msg);
#endif
