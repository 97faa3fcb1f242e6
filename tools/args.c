#include "args.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/datadir.h"
#include "io/atomic.h"
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
    *n = 0;
    FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!fp) {
        perror(path);
        return NULL;
    }
    char **v = malloc(sizeof(char *)), *line = NULL;
    size_t lcap = 0;
    int cap = 1;
    ssize_t len;
    bool ok = v != NULL;
    while (ok && (len = getline(&line, &lcap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len && !keep_empty) continue;
        if (*n == cap) {
            char **g = realloc(v, sizeof(char *) * (size_t)(cap *= 2));
            if (!(ok = g != NULL)) break;
            v = g;
        }
        if (!(ok = (v[*n] = strdup(line)) != NULL)) break;
        (*n)++;
    }
    ok = ok && !ferror(fp);
    free(line);
    if (fp != stdin) fclose(fp);
    if (!ok) {
        fprintf(stderr, "cannot read %s (or out of memory)\n", path);
        free_lines(v, *n);
        *n = 0;
        return NULL;
    }
    return v;
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
