/* Reading a whole file into memory, with a size limit (image files, rows of a
 * dataset); a tensor's shape as text for the messages of the file readers. */
#ifndef VLP_IO_FILE_H
#define VLP_IO_FILE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* *data is malloc'd; files larger than max bytes are refused (VLP_ERR_FORMAT). */
vlp_err read_whole_file(const char *path, size_t max, uint8_t **data, size_t *n, vlp_error *err);

/* The lines of a text file ("-": stdin), newline and carriage return cut,
 * empty ones dropped unless keep_empty; each malloc'd, in a malloc'd array
 * (one even for no line). */
vlp_err read_text_lines(const char *path, bool keep_empty, char ***out, int *n, vlp_error *err);

/* "[768, 512]" into buf (truncated to n); returns buf. */
const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape);
#endif
