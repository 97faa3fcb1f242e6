/* PNG through libpng's low-level reader, to the mode Pillow 9.4 gives
 * (PngImagePlugin's table): 1-bit grey "1", 2/4/8-bit grey L (bits
 * replicated), 16-bit grey I (0..65535), RGB and RGBA (16-bit: the high
 * byte), 16-bit grey + alpha RGBA, 8-bit grey + alpha LA, palette P (an
 * index past the palette is grey i, Pillow 9.4's ramp). No gamma, no ICC,
 * and tRNS only as the palette's alpha (used to composite, never by
 * convert('RGB')) — libpng's simplified reader applied gamma and converted
 * 16-bit samples as linear light, which Pillow does not. */
#include "data/image_codec.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_source {
    const uint8_t *bytes;
    size_t n, at;
    char msg[200];
} png_source;

static void png_read_mem(png_structp png, png_bytep out, size_t len) {
    png_source *s = png_get_io_ptr(png);
    if (len > s->n - s->at) png_error(png, "truncated");
    memcpy(out, s->bytes + s->at, len);
    s->at += len;
}

static void png_fail(png_structp png, png_const_charp msg) {
    png_source *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

vlp_err image_decode_png(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err) {
    (void)o;
    png_source src = {bytes, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: PNG reader", what);
    }
    image_u8 im = {0};
    uint8_t *volatile rowbuf = NULL;
    png_bytep *volatile rows = NULL;
    volatile image_u8 *vim = &im;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        image_free((image_u8 *)vim);
        free(rowbuf), free(rows);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: PNG: %s", what, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    /* the header's CRCs are checked; IDAT's are not (Pillow does not check them) */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_DEFAULT);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    vlp_err rc = image_check_size(what, (long)w, (long)h, n, err);
    image_mode mode = IMAGE_RGB;
    int samples = 3; /* what libpng hands over a pixel, after the transformations set below */
    switch (type) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth == 16) mode = IMAGE_I, samples = 2; /* big-endian 16-bit, widened below */
        else mode = depth == 1 ? IMAGE_1 : IMAGE_L, samples = 1;
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        break;
    case PNG_COLOR_TYPE_PALETTE:
        mode = IMAGE_P, samples = 1;
        if (depth < 8) png_set_packing(png);
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        if (depth == 16) mode = IMAGE_RGBA, samples = 2, png_set_strip_16(png); /* Pillow: LA;16B → RGBA */
        else mode = IMAGE_LA, samples = 2;
        break;
    case PNG_COLOR_TYPE_RGB: mode = IMAGE_RGB, samples = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: mode = IMAGE_RGBA, samples = 4; break;
    default: rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: PNG colour type %d", what, type);
    }
    if ((type == PNG_COLOR_TYPE_RGB || type == PNG_COLOR_TYPE_RGB_ALPHA) && depth == 16)
        png_set_strip_16(png); /* the high byte, as Pillow's RGB;16B unpacker */
    int passes = png_set_interlace_handling(png);
    (void)passes;
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rc == VLP_OK) rc = image_alloc(&im, (int)w, (int)h, mode, what, err);
    if (rc == VLP_OK) {
        rowbuf = malloc(rowbytes * h), rows = malloc(sizeof(png_bytep) * h);
        if (!rowbuf || !rows) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: %ux%u pixels", what, w, h);
    }
    if (rc != VLP_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        image_free(&im);
        free(rowbuf), free(rows);
        return rc;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rowbuf + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* no png_read_end: nothing after the pixels is needed, and a file cut
     * after its last IDAT (no IEND) opens in Pillow too */
    size_t np = (size_t)w * h;
    if (mode == IMAGE_I) {
        for (size_t i = 0; i < np; i++) {
            int32_t v = rowbuf[2 * i] << 8 | rowbuf[2 * i + 1];
            memcpy(im.px + 4 * i, &v, 4);
        }
    } else if (type == PNG_COLOR_TYPE_GRAY_ALPHA && depth == 16) {
        for (size_t i = 0; i < np; i++) {
            uint8_t *q = im.px + 4 * i;
            q[0] = q[1] = q[2] = rowbuf[2 * i], q[3] = rowbuf[2 * i + 1];
        }
    } else {
        for (png_uint_32 y = 0; y < h; y++) memcpy(im.px + (size_t)y * w * samples, rows[y], (size_t)w * samples);
    }
    if (mode == IMAGE_P) {
        png_colorp pal = NULL;
        int npal = 0;
        png_get_PLTE(png, info, &pal, &npal);
        png_bytep trns = NULL;
        int ntrns = 0;
        png_get_tRNS(png, info, &trns, &ntrns, NULL);
        for (int i = 0; i < 256; i++) {
            uint8_t *e = im.palette + 4 * i;
            if (i < npal) e[0] = pal[i].red, e[1] = pal[i].green, e[2] = pal[i].blue;
            else e[0] = e[1] = e[2] = (uint8_t)i; /* Pillow 9.4's ramp past the palette */
            e[3] = trns && i < ntrns ? trns[i] : 255;
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rowbuf), free(rows);
    *out = im;
    return VLP_OK;
}
