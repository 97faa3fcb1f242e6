/* What the image decoders share (image.c and image_FORMAT.c): the size
 * checks made before a pixel buffer is allocated, and an image of a mode allocated at once. */
#ifndef VLP_DATA_IMAGE_CODEC_H
#define VLP_DATA_IMAGE_CODEC_H
#include "data/image.h"

/* the declared size within the limits, and plausible for the n bytes that
 * declare it (a tiny file declaring a huge image is refused) */
vlp_err image_check_size(const char *what, long w, long h, size_t n, vlp_error *err);
/* plausibility only: a JPEG decoded scaled down is judged on its declared size */
vlp_err image_check_plausible(const char *what, long w, long h, size_t n, vlp_error *err);
/* *im as a w x h image of the mode (a palette too for IMAGE_P), pixels uninitialised */
vlp_err image_alloc(image_u8 *im, int w, int h, image_mode mode, const char *what, vlp_error *err);

/* one decoder a format: bytes → the image in its stored mode */
typedef vlp_err (*image_decode_fn)(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                                   image_u8 *out, vlp_error *err);
vlp_err image_decode_jpeg(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err);
vlp_err image_decode_png(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err);
vlp_err image_decode_gif(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err);
vlp_err image_decode_tiff(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err);
vlp_err image_decode_bmp(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err);
vlp_err image_decode_webp(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err);

/* Pillow's integer helpers (libImaging/ImagingUtils.h) */
static inline int image_muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}
static inline int image_clip8(int v) { return v <= 0 ? 0 : v < 256 ? v : 255; }
#endif
