/* Crash-safe file replacement: write to a temporary file in the target's
 * directory, fsync it, rename it over the target, fsync the directory. A
 * process killed at any point leaves either the old file or the new one,
 * never a torn one (at worst a stray "<path>.tmp.<pid>"). */
#ifndef VLP_IO_ATOMIC_H
#define VLP_IO_ATOMIC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct atomic_file {
    FILE *fp;       // write through this
    char *path;     // the target
    char *tmp;      // the temporary file
    bool failed;    // a write went wrong; commit will report it
    int saved_errno;
} atomic_file;

vlp_err atomic_open(atomic_file *af, const char *path, vlp_error *err);
/* fwrite that remembers the first failure; returns false once anything failed. */
bool atomic_write(atomic_file *af, const void *p, size_t n);
/* Flush, fsync, rename, fsync the directory. On failure the target is untouched. */
vlp_err atomic_commit(atomic_file *af, vlp_error *err);
/* Drop the temporary file (after an error elsewhere). */
void atomic_abort(atomic_file *af);

/* mkdir -p: creates `dir` and any missing parents. */
vlp_err make_dirs(const char *dir, vlp_error *err);
/* make_dirs for an output's directory that a failed run takes away again:
 * *made gets a copy of dir when it did not exist (else NULL). out_dir_release
 * removes that directory when `failed` and it is still empty (nothing of
 * anyone else's goes), then frees the copy. */
vlp_err out_dir_make(const char *dir, char **made, vlp_error *err);
void out_dir_release(char *made, bool failed);

/* Replace (or create) the symlink `link` to point at `target`, atomically. */
vlp_err atomic_symlink(const char *target, const char *link, vlp_error *err);
#endif
