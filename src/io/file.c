#include "io/file.h"
#include "core/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vlp_err read_whole_file(const char *path, size_t max, uint8_t **data, size_t *n, vlp_error *err) {
    *data = NULL;
    FILE *fp = fopen(path, "rb");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    vlp_err rc = VLP_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: larger than %zu bytes", path, max);
                break;
            }
            uint8_t *g = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
            if (!g) {
                rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: %zu bytes", path, cap);
                break;
            }
            buf = g;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) {
            if (ferror(fp)) rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot read %s", path);
            break;
        }
    }
    fclose(fp);
    if (rc != VLP_OK) {
        free(buf);
        return rc;
    }
    *data = buf, *n = len;
    return VLP_OK;
}

const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

vlp_err read_text_lines(const char *path, bool keep_empty, char ***out, int *n, vlp_error *err) {
    *out = NULL, *n = 0;
    FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    char **v = malloc(sizeof(char *)), *line = NULL;
    size_t lcap = 0;
    int cap = 1, k = 0;
    ssize_t len;
    bool ok = v != NULL;
    while (ok && (len = getline(&line, &lcap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len && !keep_empty) continue;
        if (k == cap) {
            char **g = realloc(v, sizeof(char *) * (size_t)(cap *= 2));
            if (!(ok = g != NULL)) break;
            v = g;
        }
        if ((ok = (v[k] = strdup(line)) != NULL)) k++;
    }
    bool bad = ferror(fp);
    free(line);
    if (fp != stdin) fclose(fp);
    if (!ok || bad) {
        for (int i = 0; i < k; i++) free(v[i]);
        free(v);
        VLP_FAIL(err, ok ? VLP_ERR_IO : VLP_ERR_NOMEM, "cannot read %s%s", path, ok ? "" : " (out of memory)");
    }
    *out = v, *n = k;
    return VLP_OK;
}
