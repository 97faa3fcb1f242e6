/* Reading a whole file into memory, with a size limit (image files, rows of a
 * dataset). */
#ifndef VLP_IO_FILE_H
#define VLP_IO_FILE_H
#include <stddef.h>
#include <stdint.h>

#include "vlp.h"

/* *data is malloc'd; files larger than max bytes are refused (VLP_ERR_FORMAT). */
vlp_err read_whole_file(const char *path, size_t max, uint8_t **data, size_t *n, vlp_error *err);
#endif
