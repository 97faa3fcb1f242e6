/*
 * vlpt: a small file of named tensors, for reference vectors and debug dumps.
 *
 * Layout, little-endian:
 *   "VLPTNSR\0"  u32 version (= 1)  u32 count
 *   count records:
 *     u16 name_len, name (UTF-8, no NUL), u8 dtype (0 = f32, 1 = i32), u8 ndim (<= 8),
 *     u64 dims[ndim], u64 nbytes (= 4 · Πdims), nbytes of data
 *   and nothing after the last record.
 * The reader treats the file as untrusted: every length is checked against
 * what is left of the file, products against overflow.
 */
#ifndef VLP_IO_TENSORFILE_H
#define VLP_IO_TENSORFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define VLPT_MAGIC "VLPTNSR"
#define VLPT_VERSION 1u
#define VLPT_MAX_NDIM 8

typedef enum vlpt_dtype { VLPT_F32 = 0, VLPT_I32 = 1 } vlpt_dtype;

typedef struct vlpt_tensor {
    char *name;
    vlpt_dtype dtype;
    int ndim;
    int64_t dims[VLPT_MAX_NDIM];
    size_t numel;
    void *data; // 64-byte aligned, numel elements of dtype
} vlpt_tensor;

typedef struct vlpt_file vlpt_file;

vlp_err vlpt_read(const char *path, vlpt_file **out, vlp_error *err);
/* Parse from memory; `what` names the source in error messages. */
vlp_err vlpt_parse(const void *bytes, size_t n, const char *what, vlpt_file **out,
                   vlp_error *err);
void vlpt_free(vlpt_file *f);

int vlpt_count(const vlpt_file *f);
const vlpt_tensor *vlpt_at(const vlpt_file *f, int i);
const vlpt_tensor *vlpt_find(const vlpt_file *f, const char *name);

/* The tensor `name` with dtype and shape as given (ndim < 0: any shape);
 * an error names the file, the tensor and what differs. */
vlp_err vlpt_get(const vlpt_file *f, const char *name, vlpt_dtype dtype, int ndim,
                 const int64_t *dims, const vlpt_tensor **out, vlp_error *err);

/* Atomic write: temp file, fsync, rename. */
vlp_err vlpt_write(const char *path, const vlpt_tensor *tensors, int count, vlp_error *err);

#endif
