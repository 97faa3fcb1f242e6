/*
 * Images: decoding (JPEG through libjpeg-turbo, PNG through libpng, WebP
 * through libwebp; the format is sniffed from the bytes) to 8-bit RGB, and
 * the transforms CLIP training and evaluation use, computed the way
 * PIL + torchvision compute them:
 *   - resize: PIL's separable bicubic (a = -0.5) with antialiasing (the
 *     kernel widens by the downscale factor), fixed-point coefficients and an
 *     8-bit intermediate — the same integers PIL's ImagingResample produces;
 *   - eval: Resize(S) on the shortest side (long side truncated as
 *     torchvision), CenterCrop(S) (offsets rounded);
 *   - train: RandomResizedCrop(S, scale, ratio) as torchvision samples it,
 *     optional horizontal flip;
 *   - to (3, S, S) floats normalised by mean/std.
 * Grey and palette images are expanded; alpha is dropped (PIL's
 * convert('RGB'), what open_clip does) or composited on a background.
 */
#ifndef VLP_DATA_IMAGE_H
#define VLP_DATA_IMAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/error.h"

typedef struct image_u8 {
    int w, h;
    uint8_t *px; // (h, w, 3) RGB
} image_u8;

/* Normalisation of 8-bit RGB: (x/255 - mean) / std per channel. */
typedef struct image_norm {
    float mean[3], std[3];
} image_norm;

/* OpenAI CLIP's mean and std, what open_clip uses by default. */
image_norm image_norm_openai(void);

typedef struct image_decode_opts {
    bool composite;        // alpha: false drops it, true blends onto background
    uint8_t background[3];
    int min_side;          // > 0: JPEG may decode at 1/2, 1/4, 1/8 while both sides stay >= this
} image_decode_opts;

#define IMAGE_MAX_SIDE 32768
#define IMAGE_MAX_PIXELS (1u << 28)
/* Above IMAGE_BOMB_PIXELS an image must come with at least one byte of its
 * file per IMAGE_MAX_PIXELS_PER_BYTE pixels (a solid 16384² PNG takes ~800 KB,
 * 340 pixels a byte): tiny files that declare huge images are refused before
 * their buffer is allocated. */
#define IMAGE_BOMB_PIXELS (1 << 24)
#define IMAGE_MAX_PIXELS_PER_BYTE 1024

/* "jpg", "png" or "webp" by the bytes' signature (the one image_decode
 * goes by), NULL for anything else, an empty or short buffer included */
const char *image_format_ext(const void *data, size_t n);

/* what image_decode says of bytes image_format_ext does not know ("an empty
 * file" or "not a JPEG, PNG or WebP image"), naming `what` */
void image_unknown_why(const char *what, size_t n, char *buf, size_t cap);

/* `what` names the source in errors (a path, or "shard.tar:key.jpg"). */
vlp_err image_decode(const void *bytes, size_t n, const char *what, const image_decode_opts *o,
                     image_u8 *out, vlp_error *err);
vlp_err image_load(const char *path, const image_decode_opts *o, image_u8 *out, vlp_error *err);
void image_free(image_u8 *im);

/* The crop box (x0, y0, w, h) of `in` resized to (ow, oh), PIL-exact. */
vlp_err image_resize(const image_u8 *in, int x0, int y0, int w, int h, int ow, int oh,
                     image_u8 *out, vlp_error *err);

typedef struct crop_box {
    int x, y, w, h;
} crop_box;

/* torchvision's Resize(S) then CenterCrop(S), as one box on the source and the
 * intermediate size: resize `in` to (*rw, *rh) then take `box` of that. */
void eval_geometry(int w, int h, int S, int *rw, int *rh, crop_box *box);

/* torchvision RandomResizedCrop.get_params. */
crop_box random_resized_crop(int w, int h, float scale_lo, float scale_hi, float ratio_lo,
                             float ratio_hi, rng64 *r);

typedef struct image_transform {
    int size;                    // S
    bool train;                  // random resized crop (else resize + center crop)
    float scale_lo, scale_hi;    // RandomResizedCrop scale (default 0.9, 1.0)
    float ratio_lo, ratio_hi;    // aspect ratios (3/4, 4/3)
    bool hflip;                  // random horizontal flip (train only; default off)
    float mean[3], std[3];
} image_transform;

image_transform image_transform_default(int size, bool train);

/* How a model wants its images, kept with the model (its config's
 * vision_cfg: open_clip's image_mean / image_std, and vlp's
 * image_background): the normalisation, and what transparent pixels become.
 * All zero is open_clip's default: OpenAI's mean and std, alpha dropped. */
typedef struct image_preprocess {
    bool own_norm;         // mean/std below; false: OpenAI's
    float mean[3], std[3];
    bool white_background; // alpha composited on white; false: dropped (PIL's convert('RGB'), open_clip's)
} image_preprocess;

/* the transform (eval or train) and the decoding a model's preprocessing asks for */
image_transform image_transform_for(const image_preprocess *p, int size, bool train);
image_decode_opts image_decode_for(const image_preprocess *p);

/* in → (3, S, S) floats; r is used by the train transform (may be NULL for eval). */
vlp_err image_transform_apply(const image_transform *t, const image_u8 *in, rng64 *r, float *out,
                              vlp_error *err);
#endif
