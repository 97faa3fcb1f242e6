/* The CLI's small helpers: lines of a file, zero-shot templates, --help
 * lines, sample warnings. (Options are tables: opts.h.) */
#ifndef VLP_TOOLS_ARGS_H
#define VLP_TOOLS_ARGS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The lines of a file ('-': stdin), newline and carriage return cut, empty
 * lines dropped unless keep_empty; NULL (and a message naming the file) when
 * it cannot be read or memory runs out. Free with free_lines. */
char **read_lines(const char *path, bool keep_empty, int *n);
void free_lines(char **v, int n);
/* Paths read from a list file, as a table's are: a relative one is relative
 * to the list's directory (stdin's, '-': the working directory's); rewritten
 * in place. False after a message (out of memory). */
bool paths_beside(const char *list, char **paths, int n);
/* Zero-shot templates: a name shipped with vlp ("default", "openai-imagenet":
 * templates/NAME.txt of the data directory) or a file, one template a line;
 * NULL and a message naming what failed. Free with free_lines. */
char **read_templates(const char *name_or_file, const char *cmd, int *n);
/* One --help entry: head ("      --x N") in a 26-column field, then text
 * wrapped at 90 columns, continuation lines indented 26. */
void help_item(FILE *fp, const char *head, const char *text);
#define TEMPLATES_DEFAULT "default"
/* the --images and --texts of the commands that read lists (embed, match) */
#define HELP_IMAGE_LIST \
    "image paths, one a line ('-': stdin); relative ones are relative to the list's directory, as a table's"
#define HELP_TEXT_LIST "texts, one a line ('-': stdin)"


/* Whether a file can be written at path: its directory made if missing, a
 * file created and removed there. Checked before a command's work, so a
 * bad --out fails at once; false after a message naming it. */
bool output_writable(const char *path, const char *cmd);

/* A library error as the CLI prints it: the message (vlp_error_format);
 * with --verbose (or VLP_VERBOSE=1) the source location and kind before it
 * (vlp_error_format_debug). Returns buf. */
struct vlp_error;
const char *tool_error_text(const struct vlp_error *e, char *buf, size_t n);

/* --on-error, one definition for the commands that read many images (an
 * image that cannot be read or decoded): "skip" (the default) names it,
 * counts it and goes on (embed, eval and adapt exit ON_ERROR_SKIPPED_EXIT
 * when any was skipped; filter and dedup count it as removed); "stop" stops
 * at it (exit 1). ON_ERROR_OPT(type, member) is its table entry
 * over a const char * member; on_error_stop says which, or -1 after a
 * message naming the bad value. */
#define ON_ERROR_SKIPPED_EXIT 3
#define ON_ERROR_HELP                                                                                          \
    "an image that cannot be read or decoded: 'skip' leaves it out, named and counted, and goes on (embed, match, "  \
    "eval and adapt then exit 3; curation counts it in the report); 'stop' ends the run there (exit 1, "      \
    "nothing written)"
#define ON_ERROR_OPT(type, member)                                                                             \
    {NULL, NULL, "--on-error", "skip|stop", &opt_string, offsetof(type, member), 0, 0, 0, ON_ERROR_HELP, NULL}
int on_error_stop(const char *value, const char *cmd);

/* A dataset warning callback: prints "warning: MSG" to stderr, the first 100
 * of a process, then one line saying the rest are only counted. Thread-safe. */
void cli_warn(void *ctx, const char *msg);
#endif
