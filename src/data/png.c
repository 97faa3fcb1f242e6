#include "data/png.h"
#include "core/error.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

vlp_err png_load_rgb(const char *path, const png_rgb_opts *o, uint8_t **rgb, int *w, int *h,
                     vlp_error *err) {
    *rgb = NULL;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    VLP_CHECK_FORMAT(png_image_begin_read_from_file(&img, path), err, "%s: %s", path, img.message);
    if (img.width == 0 || img.height == 0 || img.width > 16384 || img.height > 16384) {
        png_image_free(&img);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: %ux%u pixels is outside 1..16384", path, img.width,
                 img.height);
    }
    img.format = PNG_FORMAT_RGBA;
    size_t n = (size_t)img.width * img.height;
    uint8_t *rgba = malloc(n * 4), *out = malloc(n * 3);
    if (!rgba || !out) {
        png_image_free(&img);
        free(rgba), free(out);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: %zu pixels", path, n);
    }
    if (!png_image_finish_read(&img, NULL, rgba, 0, NULL)) {
        free(rgba), free(out);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: %s", path, img.message);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + 4 * i;
        for (int c = 0; c < 3; c++)
            out[3 * i + c] = o->composite ? (uint8_t)((p[c] * p[3] + o->background[c] * (255 - p[3]) + 127) / 255)
                                          : p[c];
    }
    free(rgba);
    *rgb = out;
    *w = (int)img.width;
    *h = (int)img.height;
    return VLP_OK;
}
