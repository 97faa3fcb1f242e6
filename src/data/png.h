/* PNG decoding through libpng's simplified API: any PNG (palette, grey,
 * 16-bit, with or without alpha) to 8-bit RGB. Alpha is either dropped, as
 * PIL's convert('RGB') and so open_clip do, or composited on a background. */
#ifndef VLP_DATA_PNG_H
#define VLP_DATA_PNG_H
#include <stdbool.h>
#include <stdint.h>

#include "vlp.h"

typedef struct png_rgb_opts {
    bool composite;        // false: drop alpha; true: blend onto `background`
    uint8_t background[3]; // RGB
} png_rgb_opts;

/* Decodes `path` into a malloc'd (*h, *w, 3) buffer. */
vlp_err png_load_rgb(const char *path, const png_rgb_opts *o, uint8_t **rgb, int *w, int *h,
                     vlp_error *err);
#endif
