#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const k_names[VLP_ERR__COUNT] = {
    [VLP_OK] = "ok",
    [VLP_ERR_NOMEM] = "out of memory",
    [VLP_ERR_SHAPE] = "bad shape",
    [VLP_ERR_ARG] = "bad argument",
    [VLP_ERR_IO] = "I/O error",
    [VLP_ERR_FORMAT] = "bad file format",
    [VLP_ERR_NUMERIC] = "non-finite value",
    [VLP_ERR_UNSUPPORTED] = "unsupported",
};

static const char *const k_hints[VLP_ERR__COUNT] = {
    [VLP_OK] = "",
    [VLP_ERR_NOMEM] = "reduce the batch size or the model size, or free memory",
    [VLP_ERR_SHAPE] = "check the model config and the dimensions passed in",
    [VLP_ERR_ARG] = "check the arguments of the call",
    [VLP_ERR_IO] = "check the path, its permissions and the free disk space",
    [VLP_ERR_FORMAT] = "the file is truncated, corrupt or written by another version",
    [VLP_ERR_NUMERIC] = "lower the learning rate or check the input data",
    [VLP_ERR_UNSUPPORTED] = "rebuild with the missing feature or use another setting",
};

const char *vlp_strerror(vlp_err code) {
    if ((unsigned)code >= VLP_ERR__COUNT) return "unknown error";
    return k_names[code];
}

const char *vlp_error_hint(vlp_err code) {
    if ((unsigned)code >= VLP_ERR__COUNT) return "";
    return k_hints[code];
}

vlp_err vlp_error_set(vlp_error *err, vlp_err code, const char *file, int line,
                      const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    /* keep the path short: "src/ops/attention.c" rather than a build-dir path */
    const char *base = strstr(file, "src/");
    snprintf(err->where, sizeof err->where, "%s:%d", base ? base : file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

const char *vlp_error_format(const vlp_error *e, char *buf, size_t n) {
    if (n == 0) return buf;
    /* a generic hint is wrong as often as right ("truncated or corrupt" for a
     * missing column): the message says what is wrong; only running out of
     * memory has the same remedy every time */
    if (e->code == VLP_ERR_NOMEM)
        snprintf(buf, n, "out of memory: %s (hint: %s)", e->message, vlp_error_hint(e->code));
    else snprintf(buf, n, "%s", e->message);
    return buf;
}

const char *vlp_error_format_debug(const vlp_error *e, char *buf, size_t n) {
    if (n == 0) return buf;
    snprintf(buf, n, "%s: %s: %s", e->where, vlp_strerror(e->code), e->message);
    return buf;
}
