#include "vlp.h"
#include "core/datadir.h"
#include "core/error.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VLP_INSTALL_DATADIR
#define VLP_INSTALL_DATADIR "/usr/local/share/vlp"
#endif

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* adds dir (canonicalised) unless it is missing or already listed */
static void add(char dirs[][4096], int max, int *n, const char *dir) {
    char real[PATH_MAX];
    if (*n >= max || !realpath(dir, real) || !is_dir(real)) return;
    for (int i = 0; i < *n; i++)
        if (!strcmp(dirs[i], real)) return;
    snprintf(dirs[(*n)++], 4096, "%s", real);
}

/* the installed and source-tree places next to the binary at `path` */
static void add_near(char dirs[][4096], int max, int *n, const char *path) {
    char dir[4096], probe[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return;
    *slash = '\0';
    snprintf(probe, sizeof probe, "%s/../share/vlp", dir);
    add(dirs, max, n, probe);
    /* the source tree of build/release/vlp, build/release/tests/test_x, build/release/bench/x */
    static const char *const up[] = {"/../..", "/../../.."};
    for (int k = 0; k < 2; k++) {
        snprintf(probe, sizeof probe, "%s%s/src/core/datadir.c", dir, up[k]);
        if (!is_file(probe)) continue;
        snprintf(probe, sizeof probe, "%s%s", dir, up[k]);
        add(dirs, max, n, probe);
    }
}

int vlp_data_dirs(char dirs[][4096], int max) {
    int n = 0;
    const char *env = getenv("VLP_DATA_DIR");
    if (env && *env) {
        add(dirs, max, &n, env);
        return n;
    }
    Dl_info info;
    if (dladdr((void *)vlp_data_dirs, &info) && info.dli_fname && strchr(info.dli_fname, '/'))
        add_near(dirs, max, &n, info.dli_fname);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        add_near(dirs, max, &n, exe);
    }
    add(dirs, max, &n, VLP_INSTALL_DATADIR);
    return n;
}

vlp_err vlp_data_file(const char *rel, char *out, size_t n, vlp_error *err) {
    VLP_CHECK_ARG(rel && *rel && out && n > 0, err, "vlp_data_file needs a name and a buffer");
    char dirs[4][4096];
    int nd = vlp_data_dirs(dirs, 4);
    for (int i = 0; i < nd; i++) {
        char path[8300];
        if (snprintf(path, sizeof path, "%s/%s", dirs[i], rel) >= (int)sizeof path || !is_file(path))
            continue;
        VLP_CHECK_ARG(strlen(path) < n, err, "%s: the path is longer than the buffer", path);
        snprintf(out, n, "%s", path);
        return VLP_OK;
    }
    const char *env = getenv("VLP_DATA_DIR");
    char tried[1024] = "";
    size_t k = 0;
    for (int i = 0; i < nd && k < sizeof tried; i++)
        k += (size_t)snprintf(tried + k, sizeof tried - k, "%s%s", i ? ", " : "", dirs[i]);
    if (env && *env)
        VLP_FAIL(err, VLP_ERR_IO, "%s: not in VLP_DATA_DIR=%s%s", rel, env,
                 nd ? "" : " (no such directory)");
    VLP_FAIL(err, VLP_ERR_IO,
             "%s: not found in vlp's data directories (%s); install vlp (make install) or set "
             "VLP_DATA_DIR to the folder holding configs/, vocab/ and templates/",
             rel, nd ? tried : "none found next to the program or in " VLP_INSTALL_DATADIR);
}

bool vlp_data_is_name(const char *arg, const char *ext) {
    size_t n = strlen(arg), e = strlen(ext);
    return n > 0 && !strchr(arg, '/') && !(n >= e && !strcmp(arg + n - e, ext));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **vlp_data_names(const char *sub, const char *ext, int *count) {
    *count = 0;
    char dirs[4][4096];
    int nd = vlp_data_dirs(dirs, 4), n = 0, cap = 0;
    size_t el = strlen(ext);
    char **names = NULL;
    for (int d = 0; d < nd; d++) {
        char path[4200];
        if (snprintf(path, sizeof path, "%s/%s", dirs[d], sub) >= (int)sizeof path) continue;
        DIR *dir = opendir(path);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t len = strlen(e->d_name);
            if (len <= el || strcmp(e->d_name + len - el, ext) || e->d_name[0] == '.') continue;
            bool seen = false; /* an earlier directory's file of the same name wins */
            for (int i = 0; i < n && !seen; i++)
                seen = strlen(names[i]) == len - el && !strncmp(names[i], e->d_name, len - el);
            if (seen) continue;
            if (n == cap) {
                char **grown = realloc(names, sizeof *names * (size_t)(cap = cap ? 2 * cap : 32));
                if (!grown) break;
                names = grown;
            }
            if (!(names[n] = strndup(e->d_name, len - el))) break;
            n++;
        }
        closedir(dir);
    }
    if (n) qsort(names, (size_t)n, sizeof *names, by_name);
    *count = n;
    return names;
}

void vlp_data_names_free(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

int vlp_data_names_text(const char *sub, const char *ext, char *buf, size_t cap) {
    int count;
    char **names = vlp_data_names(sub, ext, &count);
    size_t k = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < count && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", names[i]);
    vlp_data_names_free(names, count);
    return count;
}

vlp_err vlp_data_resolve(const char *dir, const char *ext, const char *arg, char *out, size_t n,
                         vlp_error *err) {
    VLP_CHECK_ARG(arg && *arg, err, "an empty name");
    /* a path, or a file of that name here (the user's "tmpl" is theirs, not a shipped set) */
    if (!vlp_data_is_name(arg, ext) || is_file(arg)) {
        VLP_CHECK_ARG(strlen(arg) < n, err, "%s: the path is too long", arg);
        snprintf(out, n, "%s", arg);
        return VLP_OK;
    }
    char rel[1024];
    VLP_CHECK_ARG(snprintf(rel, sizeof rel, "%s/%s%s", dir, arg, ext) < (int)sizeof rel, err,
                  "%s: the name is too long", arg);
    vlp_err rc = vlp_data_file(rel, out, n, err);
    if (rc == VLP_OK) return rc;
    char known[1024];
    if (vlp_data_names_text(dir, ext, known, sizeof known)) /* vlp's data is there: the name is not one of its */
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__,
                           "'%s' is no file here and no name of vlp's %s (those are %s)", arg, dir, known);
    return rc;
}

void vocab_beside(const char *weights, char *out, size_t n) {
    const char *slash = strrchr(weights, '/');
    snprintf(out, n, "%.*stokenizer.merges", slash ? (int)(slash - weights + 1) : 0, weights);
}
