/* An LD_PRELOAD shim that changes a file under a reader's feet, for the
 * fault tests: on the OPEN-th fopen of VLP_SWAP_PATH (exactly that string),
 * after the READ-th fread from that stream (VLP_SWAP_AT=OPEN:READ, from 1),
 * it does VLP_SWAP_DO to the path while the stream stays open:
 *   truncate:BYTES   cut the file in place (the open stream sees it shrink)
 *   replace:FILE     rename FILE over the path (the stream keeps the old file)
 *   remove           unlink the path
 * and says so on stderr ("swapshim: ..."), so a test knows it happened.
 * Built as build/<mode>/tests/tools/libswapshim.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the shim's own state: one process, one test, one reader thread */
static FILE *watched;
static long opens, reads, open_at = -1, read_at;
static int done;

static void configure(void) {
    if (open_at >= 0) return;
    const char *at = getenv("VLP_SWAP_AT");
    open_at = 0;
    if (at && sscanf(at, "%ld:%ld", &open_at, &read_at) != 2) open_at = 0;
}

static void act(const char *path) {
    const char *what = getenv("VLP_SWAP_DO");
    int rc = -1;
    if (!what) what = "(nothing)";
    if (!strncmp(what, "truncate:", 9)) rc = truncate(path, atol(what + 9));
    else if (!strncmp(what, "replace:", 8)) rc = rename(what + 8, path);
    else if (!strcmp(what, "remove")) rc = unlink(path);
    fprintf(stderr, "swapshim: %s %s after read %ld of open %ld: %s\n", what, path, read_at, open_at,
            rc == 0 ? "done" : "FAILED");
}

static FILE *watch(FILE *f, const char *path) {
    configure();
    const char *want = getenv("VLP_SWAP_PATH");
    if (f && want && !done && !strcmp(path, want) && ++opens == open_at) watched = f, reads = 0;
    return f;
}

FILE *fopen(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    if (!real) real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    return watch(real(path, mode), path);
}

FILE *fopen64(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    if (!real) real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen64");
    return watch(real(path, mode), path);
}

static void after_read(FILE *f) {
    if (f && f == watched && ++reads == read_at) {
        act(getenv("VLP_SWAP_PATH"));
        watched = NULL, done = 1;
    }
}

size_t fread(void *p, size_t size, size_t n, FILE *f) {
    static size_t (*real)(void *, size_t, size_t, FILE *);
    if (!real) real = (size_t (*)(void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fread");
    size_t got = real(p, size, n, f);
    after_read(f);
    return got;
}

/* what fread becomes under _FORTIFY_SOURCE */
size_t __fread_chk(void *p, size_t cap, size_t size, size_t n, FILE *f) {
    static size_t (*real)(void *, size_t, size_t, size_t, FILE *);
    if (!real) real = (size_t (*)(void *, size_t, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "__fread_chk");
    size_t got = real(p, cap, size, n, f);
    after_read(f);
    return got;
}

int fclose(FILE *f) {
    static int (*real)(FILE *);
    if (!real) real = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    if (f == watched) watched = NULL;
    return real(f);
}
