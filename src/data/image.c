/* Images: the formats by signature, the size checks, modes, conversion to
 * RGB (Pillow's convert) and crops. Decoders: image_jpeg.c, image_png.c,
 * image_webp.c; resampling: image_resize.c; transforms: image_transform.c. */
#include "data/image.h"
#include "data/image_codec.h"
#include "core/error.h"
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int image_mode_bytes(image_mode m) {
    switch (m) {
    case IMAGE_RGB: return 3;
    case IMAGE_RGBA: case IMAGE_CMYK: case IMAGE_I: return 4;
    case IMAGE_LA: return 2;
    case IMAGE_L: case IMAGE_1: case IMAGE_P: return 1;
    }
    return 3;
}

const char *image_mode_name(image_mode m) {
    static const char *const names[] = {[IMAGE_RGB] = "RGB", [IMAGE_RGBA] = "RGBA", [IMAGE_L] = "L",
                                        [IMAGE_LA] = "LA", [IMAGE_1] = "1", [IMAGE_P] = "P",
                                        [IMAGE_CMYK] = "CMYK", [IMAGE_I] = "I"};
    return (unsigned)m < sizeof names / sizeof *names ? names[m] : "?";
}

void image_free(image_u8 *im) {
    if (!im) return;
    free(im->px);
    free(im->palette);
    memset(im, 0, sizeof *im);
}

vlp_err image_alloc(image_u8 *im, int w, int h, image_mode mode, const char *what, vlp_error *err) {
    *im = (image_u8){.w = w, .h = h, .mode = mode};
    size_t bytes = (size_t)w * (size_t)h * (size_t)image_mode_bytes(mode);
    im->px = malloc(bytes ? bytes : 1);
    if (im->px && mode == IMAGE_P) im->palette = calloc(256, 4);
    if (!im->px || (mode == IMAGE_P && !im->palette)) {
        image_free(im);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: %dx%d pixels", what, w, h);
    }
    return VLP_OK;
}

/* Is the declared image plausible for the n bytes that encode it? A large
 * image must come with enough of its file (a 687-byte truncated JPEG may
 * declare 16384×16384). Judged on the size the file declares, not the size
 * decoded to: a JPEG decoded at 1/8 scale still has every block of the
 * declared image entropy-decoded (a 682-byte JPEG declaring 805M pixels kept
 * a fuzzer busy for 10 s at 1/8 scale, its 12.6M output pixels allowed). */
vlp_err image_check_plausible(const char *what, long w, long h, size_t n, vlp_error *err) {
    unsigned long px = (unsigned long)w * (unsigned long)h;
    VLP_CHECK_FORMAT(px <= IMAGE_BOMB_PIXELS || px / (n ? n : 1) <= IMAGE_MAX_PIXELS_PER_BYTE, err,
                     "%s: %ldx%ld pixels declared in %zu bytes (more than %d pixels a byte above "
                     "%d pixels): a truncated or crafted image, refused", what, w, h, n,
                     IMAGE_MAX_PIXELS_PER_BYTE, IMAGE_BOMB_PIXELS);
    return VLP_OK;
}

/* The size to decode to, before anything is allocated for it: within the
 * limits, and plausible (above) */
vlp_err image_check_size(const char *what, long w, long h, size_t n, vlp_error *err) {
    VLP_CHECK_FORMAT(w > 0 && h > 0 && w <= IMAGE_MAX_SIDE && h <= IMAGE_MAX_SIDE &&
                         (unsigned long)w * (unsigned long)h <= IMAGE_MAX_PIXELS,
                     err, "%s: %ldx%ld pixels is outside 1..%d a side, %u in all", what, w, h,
                     IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
    return image_check_plausible(what, w, h, n, err);
}

/* ---- the formats ---------------------------------------------------------------------------- */

/* The formats by their signatures: the one place that tells them apart, and
 * that lists them (for messages, and for the file extensions a shard's or a
 * folder's image members go by). */
static const struct image_format {
    const char *name;        // in messages
    const char *ext;         // the extension vlp writes; `aliases` are read too
    const char *aliases[2];
    size_t need;             // bytes the signature spans
    size_t at, len;          // where its magic is, and how long
    const char *magic;
    image_decode_fn decode;
    size_t at2;              // a second magic (WebP's "WEBP" after the RIFF size)
    const char *magic2;
} formats[] = {
    {"JPEG", "jpg", {"jpeg"}, 3, 0, 3, "\xFF\xD8\xFF", image_decode_jpeg, 0, NULL},
    {"PNG", "png", {0}, 8, 0, 8, "\x89PNG\r\n\x1a\n", image_decode_png, 0, NULL},
    {"WebP", "webp", {0}, 12, 0, 4, "RIFF", image_decode_webp, 8, "WEBP"},
    {"GIF", "gif", {0}, 6, 0, 4, "GIF8", image_decode_gif, 0, NULL},
    {"TIFF", "tif", {"tiff"}, 4, 0, 4, "II*\0", image_decode_tiff, 0, NULL},
    {"TIFF", "tif", {"tiff"}, 4, 0, 4, "MM\0*", image_decode_tiff, 0, NULL},
    /* two letters: a text file that starts "BM" is refused by the BMP reader, by name */
    {"BMP", "bmp", {"dib"}, 18, 0, 2, "BM", image_decode_bmp, 0, NULL},
};
enum { NFORMATS = sizeof formats / sizeof formats[0] };

static const struct image_format *format_of(const uint8_t *b, size_t n) {
    for (size_t i = 0; b && i < NFORMATS; i++) {
        const struct image_format *f = &formats[i];
        if (n >= f->need && !memcmp(b + f->at, f->magic, f->len) &&
            (!f->magic2 || !memcmp(b + f->at2, f->magic2, strlen(f->magic2))))
            return f;
    }
    return NULL;
}

bool image_ext_known(const char *ext) {
    for (size_t i = 0; ext && i < NFORMATS; i++) {
        const struct image_format *f = &formats[i];
        if (!strcasecmp(ext, f->ext) || (f->aliases[0] && !strcasecmp(ext, f->aliases[0])) ||
            (f->aliases[1] && !strcasecmp(ext, f->aliases[1])))
            return true;
    }
    return false;
}

void image_unknown_why(const char *what, size_t n, char *buf, size_t cap) {
    if (n == 0) {
        snprintf(buf, cap, "%.300s: an empty file (0 bytes), not an image", what);
        return;
    }
    char names[128] = "";
    size_t k = 0, count = 0;
    for (size_t i = 0; i < NFORMATS; i++) count += !i || strcmp(formats[i].name, formats[i - 1].name);
    for (size_t i = 0, j = 0; i < NFORMATS; i++) {
        if (i && !strcmp(formats[i].name, formats[i - 1].name)) continue;
        j++;
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", j == 1 ? "" : j == count ? " or " : ", ",
                              formats[i].name);
    }
    snprintf(buf, cap, "%.300s: not a %s image (%zu bytes)", what, names, n);
}

const char *image_format_ext(const void *data, size_t n) {
    const struct image_format *f = format_of(data, n);
    return f ? f->ext : NULL;
}

vlp_err image_decode(const void *data, size_t n, const char *what, const image_decode_opts *o,
                     image_u8 *out, vlp_error *err) {
    memset(out, 0, sizeof *out);
    const struct image_format *f = format_of(data, n);
    if (!f) {
        char why[sizeof err->message];
        image_unknown_why(what, n, why, sizeof why);
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s", why);
    }
    VLP_TRY(f->decode(data, n, what, o, out, err));
    out->composite = o && o->composite; /* applied when converted to RGB, after any resize */
    if (o) memcpy(out->background, o->background, 3);
    return VLP_OK;
}

vlp_err image_load(const char *path, const image_decode_opts *o, image_u8 *out, vlp_error *err) {
    uint8_t *buf;
    size_t len;
    VLP_TRY(read_whole_file(path, (size_t)1 << 31, &buf, &len, err));
    vlp_err rc = image_decode(buf, len, path, o, out, err);
    free(buf);
    return rc;
}


/* ---- Pillow's convert('RGB'), crop ---------------------------------------------------------- */

/* one pixel of alpha a over the background: the image's composite rule */
static uint8_t over(int v, int a, int bg) { return (uint8_t)((v * a + bg * (255 - a) + 127) / 255); }

vlp_err image_to_rgb(const image_u8 *in, image_u8 *out, vlp_error *err) {
    VLP_TRY(image_alloc(out, in->w, in->h, IMAGE_RGB, "convert", err));
    out->composite = in->composite;
    memcpy(out->background, in->background, 3);
    size_t n = (size_t)in->w * in->h;
    const uint8_t *p = in->px, *bg = in->background;
    uint8_t *o = out->px;
    bool blend = in->composite;
    for (size_t i = 0; i < n; i++, o += 3) {
        switch (in->mode) {
        case IMAGE_RGB: memcpy(o, p + 3 * i, 3); break;
        case IMAGE_RGBA: /* rgba2rgb: alpha dropped */
            for (int c = 0; c < 3; c++) o[c] = blend ? over(p[4 * i + c], p[4 * i + 3], bg[c]) : p[4 * i + c];
            break;
        case IMAGE_L: case IMAGE_1: o[0] = o[1] = o[2] = p[i]; break;
        case IMAGE_LA: /* la2rgb */
            for (int c = 0; c < 3; c++) o[c] = blend ? over(p[2 * i], p[2 * i + 1], bg[c]) : p[2 * i];
            break;
        case IMAGE_P: { /* p2rgb: the palette's colour; its transparency only to composite */
            const uint8_t *e = in->palette + 4 * p[i];
            for (int c = 0; c < 3; c++) o[c] = blend ? over(e[c], e[3], bg[c]) : e[c];
            break;
        }
        case IMAGE_CMYK: { /* cmyk2rgb */
            const uint8_t *q = p + 4 * i;
            int nk = 255 - q[3];
            for (int c = 0; c < 3; c++) o[c] = (uint8_t)image_clip8(nk - image_muldiv255(q[c], nk));
            break;
        }
        case IMAGE_I: { /* I;16 → L → RGB: clipped at 255, not scaled */
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            o[0] = o[1] = o[2] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : v);
            break;
        }
        }
    }
    return VLP_OK;
}

vlp_err image_crop(const image_u8 *in, crop_box b, image_u8 *out, vlp_error *err) {
    VLP_CHECK_ARG(b.x >= 0 && b.y >= 0 && b.w > 0 && b.h > 0 && b.x + b.w <= in->w && b.y + b.h <= in->h, err,
                  "crop (%d, %d, %d, %d) of a %dx%d image", b.x, b.y, b.w, b.h, in->w, in->h);
    VLP_TRY(image_alloc(out, b.w, b.h, in->mode, "crop", err));
    out->composite = in->composite;
    memcpy(out->background, in->background, 3);
    if (in->palette) memcpy(out->palette, in->palette, 256 * 4);
    size_t pb = (size_t)image_mode_bytes(in->mode);
    for (int y = 0; y < b.h; y++)
        memcpy(out->px + (size_t)y * b.w * pb, in->px + ((size_t)(b.y + y) * in->w + b.x) * pb, (size_t)b.w * pb);
    return VLP_OK;
}
