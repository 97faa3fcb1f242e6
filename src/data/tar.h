/* POSIX ustar archives, streaming: the reader hands out regular files one by
 * one (GNU long names and pax path records honoured, other entries skipped),
 * checking every header checksum and size against the file; the writer
 * emits plain ustar members (what WebDataset shards are). */
#ifndef VLP_DATA_TAR_H
#define VLP_DATA_TAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/atomic.h"
#include "core/error.h"

#define TAR_MAX_MEMBER ((size_t)1 << 30) /* 1 GiB: larger members are refused */

typedef struct tar_reader {
    FILE *fp;
    char *path;
    uint64_t offset; // of the next header
    char name[4096]; // the current member's name
    uint8_t *data;   // its bytes (owned, reused)
    size_t size, cap;
} tar_reader;

vlp_err tar_open(tar_reader *t, const char *path, vlp_error *err);
/* The next regular file into t->name / t->data / t->size; *done at the end. */
vlp_err tar_next(tar_reader *t, bool *done, vlp_error *err);
void tar_close(tar_reader *t);

typedef struct tar_writer {
    atomic_file af;
} tar_writer;

/* Written to a temporary name and renamed on close (atomic). */
/* a member name the writer takes is shorter than this (ustar's name field) */
#define TAR_NAME_MAX 100
vlp_err tar_create(tar_writer *w, const char *path, vlp_error *err);
vlp_err tar_add(tar_writer *w, const char *name, const void *data, size_t n, vlp_error *err);
vlp_err tar_finish(tar_writer *w, vlp_error *err);
void tar_abort(tar_writer *w);
/* WebDataset: a member's key (its name up to the first dot of its last path
 * part, at most kcap - 1 bytes) and extension (after that dot, "" if none);
 * a sample is the run of members with one key. */
void wds_split_key(const char *name, char *key, size_t kcap, const char **ext);
/* the extensions WebDataset readers take an image from: jpg jpeg png webp gif tif tiff */
bool wds_is_image_ext(const char *ext);
#endif
