/*
 * vlp's error codes and error record (part of the public API, included by
 * vlp.h). On its own so the library's internal layers can report errors
 * without the whole public header: an edit of vlp.h rebuilds only what uses
 * the API (src/api, the tools), not every layer.
 */
#ifndef VLP_ERROR_H
#define VLP_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vlp_err {
    VLP_OK = 0,
    VLP_ERR_NOMEM,   /* an allocation failed */
    VLP_ERR_SHAPE,   /* dimensions that do not fit together */
    VLP_ERR_ARG,     /* a bad argument: NULL pointer, value out of range */
    VLP_ERR_IO,      /* open/read/write/rename failed */
    VLP_ERR_FORMAT,  /* a file is corrupt, truncated or of another version */
    VLP_ERR_NUMERIC, /* NaN/Inf where a finite value is required */
    VLP_ERR_UNSUPPORTED, /* valid request this build or CPU cannot serve */
    VLP_ERR__COUNT
} vlp_err;

/* Details of the last failure of one call, written by the library when the
 * caller passes it. `where` is "file.c:123" of the check that failed. */
typedef struct vlp_error {
    vlp_err code;
    char where[64];
    char message[448];
} vlp_error;

/* Short fixed name of a code ("out of memory", "bad shape", ...). */
const char *vlp_strerror(vlp_err code);

/* What usually causes this kind of error, in general (the message itself
 * says what is wrong in the case at hand). */
const char *vlp_error_hint(vlp_err code);

/* The line for the user, in buf: the message, which names the file, line,
 * field or tensor at fault; out of memory adds its hint (the one that is
 * right whatever ran out). Returns buf. */
const char *vlp_error_format(const vlp_error *e, char *buf, size_t n);
/* The same for a developer: "where: kind: message". */
const char *vlp_error_format_debug(const vlp_error *e, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* VLP_ERROR_H */
