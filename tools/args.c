#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool arg_is(int argc, char **argv, int *i, const char *s, const char *l, bool want_value,
            const char *cmd, int *bad) {
    const char *a = argv[*i];
    if (!((s && !strcmp(a, s)) || (l && !strcmp(a, l)))) return false;
    if (want_value && *i + 1 >= argc) {
        fprintf(stderr, "vlp %s: %s needs a value (try --help)\n", cmd, a);
        *bad = 1;
        return false;
    }
    return true;
}

bool arg_long(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "vlp %s: %s wants a whole number in %ld..%ld, got '%s'\n", cmd, opt, lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

bool arg_double(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "vlp %s: %s wants a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

void cli_warn(void *ctx, const char *msg) {
    static int printed; /* the CLI's own counter, shared by all its threads */
    int n = __atomic_fetch_add(&printed, 1, __ATOMIC_RELAXED);
    if (n < 100) fprintf(stderr, "warning: %s\n", msg);
    else if (n == 100) fprintf(stderr, "warning: more samples skipped; only counted from here on\n");
    (void)ctx;
}
