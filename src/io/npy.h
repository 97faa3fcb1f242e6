/* NumPy .npy files of float32 matrices (format 1.0: magic, header dict,
 * C-order little-endian data), written atomically and read with every header
 * field and the length checked. */
#ifndef VLP_IO_NPY_H
#define VLP_IO_NPY_H
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

vlp_err npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, vlp_error *err);
/* the same from rows * cols floats read from raw (from its start): a matrix
 * written as it is computed, never held whole */
vlp_err npy_write_f32_stream(const char *path, FILE *raw, int64_t rows, int64_t cols, vlp_error *err);
/* *data is malloc'd (rows, cols). */
vlp_err npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols, vlp_error *err);
#endif
