/* The check macro family. Inside a function that returns vlp_err and has a
 * `vlp_error *err` in scope (may be NULL), a failed check records where and
 * why, then returns the code:
 *
 *   VLP_CHECK_SHAPE(C % NH == 0, err, "width %d not divisible by heads %d", C, NH);
 *   float *p = malloc(n); VLP_CHECK_ALLOC(p, err, n);
 *   VLP_TRY(other_call(..., err));      // propagate a failure unchanged
 */
#ifndef VLP_CORE_ERROR_H
#define VLP_CORE_ERROR_H

#include <stdbool.h>
#include <stddef.h>

#include "vlp_error.h"

#if defined(__GNUC__)
#define VLP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define VLP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define VLP_PRINTF(f, a)
#define VLP_UNLIKELY(x) (x)
#endif

/* Fills *err (when non-NULL) and returns code. */
vlp_err vlp_error_set(vlp_error *err, vlp_err code, const char *file, int line,
                      const char *fmt, ...) VLP_PRINTF(5, 6);

#define VLP_FAIL(err, code, ...) \
    return vlp_error_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)

#define VLP_CHECK(cond, err, code, ...)                 \
    do {                                                \
        if (VLP_UNLIKELY(!(cond))) VLP_FAIL(err, code, __VA_ARGS__); \
    } while (0)

#define VLP_CHECK_SHAPE(cond, err, ...) VLP_CHECK(cond, err, VLP_ERR_SHAPE, __VA_ARGS__)
#define VLP_CHECK_ARG(cond, err, ...) VLP_CHECK(cond, err, VLP_ERR_ARG, __VA_ARGS__)
#define VLP_CHECK_IO(cond, err, ...) VLP_CHECK(cond, err, VLP_ERR_IO, __VA_ARGS__)
#define VLP_CHECK_FORMAT(cond, err, ...) VLP_CHECK(cond, err, VLP_ERR_FORMAT, __VA_ARGS__)
#define VLP_CHECK_ALLOC(ptr, err, bytes) \
    VLP_CHECK((ptr) != NULL, err, VLP_ERR_NOMEM, "could not allocate %zu bytes", (size_t)(bytes))

#define VLP_TRY(expr)                       \
    do {                                    \
        vlp_err vlp_try_e_ = (expr);        \
        if (vlp_try_e_ != VLP_OK) return vlp_try_e_; \
    } while (0)

#endif
