/* An LD_PRELOAD shim that makes one write fail, for the fault tests: the
 * VLP_FAULT_AT-th call (from 1) of fwrite, fflush or fsync on a file other
 * than stdout/stderr fails with ENOSPC ("No space left on device"), as a
 * full disk does. VLP_FAULT_AT=0 fails nothing; with VLP_FAULT_COUNT=FILE
 * the number of such calls is written there at exit, so a test can fail each
 * of them in turn. Built as build/<mode>/tests/tools/libfaultshim.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long calls, fail_at = -1; /* the shim's own counters: one process, one test */

static int faulty(void) {
    if (fail_at < 0) {
        const char *v = getenv("VLP_FAULT_AT");
        fail_at = v ? atol(v) : 0;
    }
    return ++calls == fail_at;
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f) {
    static size_t (*real)(const void *, size_t, size_t, FILE *);
    if (!real) real = (size_t (*)(const void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fwrite");
    if (f != stdout && f != stderr && size * n > 0 && faulty()) {
        errno = ENOSPC;
        return 0;
    }
    return real(p, size, n, f);
}

int fflush(FILE *f) {
    static int (*real)(FILE *);
    if (!real) real = (int (*)(FILE *))dlsym(RTLD_NEXT, "fflush");
    if (f && f != stdout && f != stderr && faulty()) {
        errno = ENOSPC;
        return EOF;
    }
    return real(f);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (faulty()) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd);
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("VLP_FAULT_COUNT");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%ld\n", calls);
    fclose(f);
}
