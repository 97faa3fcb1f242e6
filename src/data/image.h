/*
 * Images: decoding (JPEG through libjpeg-turbo, PNG through libpng's
 * low-level reader, WebP through libwebp, GIF through giflib, TIFF through
 * libtiff, BMP through stb_image; the format is sniffed from the
 * bytes) to the mode Pillow opens them in, and the transforms CLIP training
 * and evaluation use, computed the way open_clip's transform computes them
 * on an image as Image.open gives it (PIL 9.4 + torchvision):
 *   - resize in the image's own mode (Image.resize): bicubic (a = -0.5)
 *     with antialiasing, fixed-point coefficients and an 8-bit intermediate
 *     for L, RGB and CMYK; RGBA and LA premultiplied around it; palette and
 *     bilevel images by nearest neighbour; 16-bit grey in doubles;
 *   - then convert('RGB'): alpha dropped (or, a model's own rule, composited
 *     on a background), palettes looked up, CMYK by Pillow's formula,
 *     16-bit grey clipped at 255;
 *   - eval: Resize(S) on the shortest side (long side truncated as
 *     torchvision), CenterCrop(S) (offsets rounded half to even);
 *   - train: RandomResizedCrop(S, scale, ratio) as torchvision samples it
 *     (crop, then resize), optional horizontal flip;
 *   - to (3, S, S) floats, (x / 255 - mean) / std in float32 as torch.
 * No ICC profile, gamma or EXIF orientation is applied (Pillow applies none).
 */
#ifndef VLP_DATA_IMAGE_H
#define VLP_DATA_IMAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/error.h"

/* the modes images are decoded to: Pillow's, for what open_clip's transform
 * does with each */
typedef enum image_mode {
    IMAGE_RGB = 0, // 3 bytes a pixel
    IMAGE_RGBA,    // 4, alpha not premultiplied
    IMAGE_L,       // 1, grey
    IMAGE_LA,      // 2, grey and alpha
    IMAGE_1,       // 1, 0 or 255: bilevel (resized by nearest neighbour)
    IMAGE_P,       // 1, an index into `palette` (resized by nearest neighbour)
    IMAGE_CMYK,    // 4, as Pillow holds CMYK (a JPEG's Adobe-inverted bytes inverted back)
    IMAGE_I,       // 4: an int32 a pixel, 16-bit grey 0..65535
} image_mode;

/* bytes a pixel of the mode */
int image_mode_bytes(image_mode m);
const char *image_mode_name(image_mode m);

typedef struct image_u8 {
    int w, h;
    uint8_t *px;          // (h, w, image_mode_bytes(mode)); owned
    image_mode mode;      // IMAGE_RGB when zero-initialised
    uint8_t *palette;     // IMAGE_P: (256, 4) RGBA, alpha from tRNS (used only to composite); owned
    bool composite;       // the decode's rule for alpha, applied when converted to RGB
    uint8_t background[3];
} image_u8;

/* Normalisation of 8-bit RGB: (x/255 - mean) / std per channel. */
typedef struct image_norm {
    float mean[3], std[3];
} image_norm;

/* OpenAI CLIP's mean and std, what open_clip uses by default. */
image_norm image_norm_openai(void);

typedef struct image_decode_opts {
    bool composite;        // alpha, when converted to RGB: false drops it (Pillow), true blends onto background
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

/* "jpg", "png", "webp", "gif", "tif" or "bmp" by the bytes' signature (the one image_decode
 * goes by), NULL for anything else, an empty or short buffer included */
const char *image_format_ext(const void *data, size_t n);

/* what image_decode says of bytes image_format_ext does not know ("an empty
 * file" or "not a JPEG, PNG, WebP, GIF, TIFF or BMP image"), naming `what` */
/* a file extension (any case) of a format image_decode reads: jpg, jpeg, png,
 * webp, gif, tif, tiff, bmp, dib */
bool image_ext_known(const char *ext);
void image_unknown_why(const char *what, size_t n, char *buf, size_t cap);

/* `what` names the source in errors (a path, or "shard.tar:key.jpg"). The
 * image keeps the mode it was stored in (image_to_rgb converts it). */
vlp_err image_decode(const void *bytes, size_t n, const char *what, const image_decode_opts *o,
                     image_u8 *out, vlp_error *err);
vlp_err image_load(const char *path, const image_decode_opts *o, image_u8 *out, vlp_error *err);
void image_free(image_u8 *im);
/* Pillow's convert('RGB') (or the image's composite rule) into out (RGB) */
vlp_err image_to_rgb(const image_u8 *in, image_u8 *out, vlp_error *err);

typedef struct crop_box {
    int x, y, w, h;
} crop_box;

/* Image.resize((ow, oh), BICUBIC, box) of `in` in its own mode, PIL-exact;
 * the box (x0, y0, w, h) on the source; same size and whole box: a copy. */
vlp_err image_resize(const image_u8 *in, int x0, int y0, int w, int h, int ow, int oh,
                     image_u8 *out, vlp_error *err);
/* Image.crop: the box, in the image's mode */
vlp_err image_crop(const image_u8 *in, crop_box b, image_u8 *out, vlp_error *err);

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

/* The S x S RGB image the transform normalises. Eval: Resize(S) and
 * CenterCrop(S) in the image's mode, then RGB. Train: the crop c (from
 * random_resized_crop), resized to S x S in the image's mode, then RGB. */
vlp_err image_eval_rgb(const image_u8 *in, int S, image_u8 *out, vlp_error *err);
vlp_err image_crop_rgb(const image_u8 *in, crop_box c, int S, image_u8 *out, vlp_error *err);

/* in → (3, S, S) floats; r is used by the train transform (may be NULL for eval). */
vlp_err image_transform_apply(const image_transform *t, const image_u8 *in, rng64 *r, float *out,
                              vlp_error *err);
#endif
