/*
 * safetensors (huggingface/safetensors): u64 little-endian header length N,
 * N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
 * "__metadata__": {string: string}}, then the data; offsets are relative to
 * the end of the header. This is the checkpoint format: a file written here
 * is a state dict torch/open_clip load with safetensors.torch.load_file.
 *
 * The reader treats files as untrusted: the header length, every offset and
 * every shape product is checked against the file; overlapping tensors,
 * duplicate names and unknown dtypes are rejected with the tensor's name.
 */
#ifndef VLP_IO_SAFETENSORS_H
#define VLP_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ST_MAX_NDIM 8
#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

typedef enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_I64, ST_U64, ST_I32, ST_I8 } st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    size_t numel;
    const void *data; // writer: what to write; reader: into the mapped file (maybe unaligned)
} st_tensor;

typedef struct st_meta {
    const char *key, *value;
} st_meta;

typedef struct st_file st_file;

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);

/* Atomic write (temp file, fsync, rename) of `count` tensors and metadata. */
vlp_err st_write(const char *path, const st_tensor *tensors, int count, const st_meta *meta,
                 int nmeta, vlp_error *err);

vlp_err st_open(const char *path, st_file **out, vlp_error *err);
void st_close(st_file *f);
const char *st_path(const st_file *f);
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);
/* A __metadata__ value, or NULL. */
const char *st_meta_get(const st_file *f, const char *key);

/* Copy a floating tensor out as f32 (f16/bf16 widened). */
vlp_err st_read_f32(const st_file *f, const st_tensor *t, float *dst, vlp_error *err);
#endif
