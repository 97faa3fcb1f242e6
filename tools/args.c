#include "args.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/datadir.h"
#include "io/atomic.h"
#include "io/file.h"
#include "eval/eval.h"

void cli_warn(void *ctx, const char *msg) {
    static int printed; /* the CLI's own counter, shared by all its threads */
    int n = __atomic_fetch_add(&printed, 1, __ATOMIC_RELAXED);
    if (n < 100) fprintf(stderr, "warning: %s\n", msg);
    else if (n == 100) fprintf(stderr, "warning: more samples skipped; only counted from here on\n");
    (void)ctx;
}

void free_lines(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

char **read_lines(const char *path, bool keep_empty, int *n) {
    char **v;
    vlp_error err = {0};
    if (read_text_lines(path, keep_empty, &v, n, &err) == VLP_OK) return v;
    fprintf(stderr, "vlp: %s\n", err.message);
    return NULL;
}

char **read_templates(const char *arg, const char *cmd, int *n) {
    char **t;
    vlp_error err = {0};
    if (templates_load(arg, &t, n, &err) == VLP_OK) return t;
    fprintf(stderr, "vlp %s: %s\n", cmd, err.message);
    return NULL;
}

void help_item(FILE *fp, const char *head, const char *text) {
    enum { INDENT = 26, WIDTH = 90 };
    int col = fprintf(fp, "%s", head);
    if (col >= INDENT) fprintf(fp, "\n"), col = 0;
    fprintf(fp, "%*s", INDENT - col, "");
    col = INDENT;
    while (*text) {
        size_t w = strcspn(text, " ");
        if (col > INDENT && col + 1 + (int)w > WIDTH) fprintf(fp, "\n%*s", INDENT, ""), col = INDENT;
        else if (col > INDENT) fputc(' ', fp), col++;
        col += fprintf(fp, "%.*s", (int)w, text);
        text += w;
        while (*text == ' ') text++;
    }
    fputc('\n', fp);
}

bool output_writable(const char *path, const char *cmd) {
    char dir[4096], probe[4200];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    vlp_error err = {0};
    if (slash && slash != path && make_dirs(dir, &err) != VLP_OK) {
        fprintf(stderr, "vlp %s: cannot write %s: %s\n", cmd, path, err.message);
        return false;
    }
    snprintf(probe, sizeof probe, "%s/.vlp-write-check.%d", slash == path ? "" : dir, (int)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "vlp %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        return false;
    }
    close(fd);
    unlink(probe);
    return true;
}

const char *tool_error_text(const vlp_error *e, char *buf, size_t n) {
    const char *v = getenv("VLP_VERBOSE");
    return v && *v && strcmp(v, "0") ? vlp_error_format_debug(e, buf, n) : vlp_error_format(e, buf, n);
}

bool paths_beside(const char *list, char **paths, int n) {
    const char *slash = strrchr(list, '/');
    if (!slash || !strcmp(list, "-")) return true; /* the list is here: its paths are as given */
    int dir = (int)(slash - list + 1);
    for (int i = 0; i < n; i++) {
        if (paths[i][0] == '/') continue;
        char *p = malloc((size_t)dir + strlen(paths[i]) + 1);
        if (!p) return fprintf(stderr, "vlp: out of memory\n"), false;
        memcpy(p, list, (size_t)dir), strcpy(p + dir, paths[i]);
        free(paths[i]), paths[i] = p;
    }
    return true;
}

int on_error_stop(const char *value, const char *cmd) {
    if (!value || !strcmp(value, "skip")) return 0;
    if (!strcmp(value, "stop")) return 1;
    fprintf(stderr, "vlp %s: --on-error takes skip or stop, not '%s'\n", cmd, value);
    return -1;
}
