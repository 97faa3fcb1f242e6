/* Pillow's Image.resize(size, BICUBIC, box) in the image's own mode
 * (PIL 9.4: Image.py resize, libImaging/Resample.c, Geometry.c):
 *   - L, RGB, CMYK: separable bicubic (a = -0.5) widened by the downscale
 *     factor, coefficients in doubles rounded to 22-bit integers, the
 *     horizontal pass first into an 8-bit intermediate, each pass clipped;
 *   - RGBA, LA: premultiplied (MULDIV255) around that, alpha resampled as a
 *     channel, then divided back (truncating; alpha 0 and 255 copied);
 *   - P and 1: nearest neighbour (ImagingScaleAffine's accumulated steps);
 *   - I: the same filter in doubles, rounded to int32 per pass, no clip. */
#include "data/image_codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* one axis's filter: source range [in0, in1) of in_size → out_size outputs;
 * bounds (out, 2): first source index, count; k (out, ksize) doubles (PIL's
 * precompute_coeffs) */
typedef struct axis {
    int ksize, *bounds;
    double *k;
    int32_t *kk; // k as 22-bit integers (normalize_coeffs_8bpc)
} axis;

static void axis_free(axis *a) {
    free(a->bounds), free(a->k), free(a->kk);
    *a = (axis){0}; /* freed twice (a failed init, then the caller's cleanup): harmless */
}

static bool axis_init(axis *a, int in_size, double in0, double in1, int out_size) {
    double scale = (in1 - in0) / out_size, filterscale = scale < 1 ? 1 : scale;
    double support = 2.0 * filterscale;
    a->ksize = (int)ceil(support) * 2 + 1;
    size_t nk = (size_t)out_size * a->ksize;
    a->k = malloc(sizeof(double) * nk), a->kk = malloc(sizeof(int32_t) * nk);
    a->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    if (!a->k || !a->kk || !a->bounds) return axis_free(a), false;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = a->k + (size_t)xx * a->ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w, ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0) k[x] /= ww;
        for (; x < a->ksize; x++) k[x] = 0;
        a->bounds[2 * xx] = xmin, a->bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < nk; i++)
        a->kk[i] = a->k[i] < 0 ? (int32_t)(-0.5 + a->k[i] * (1 << PRECISION_BITS))
                               : (int32_t)(0.5 + a->k[i] * (1 << PRECISION_BITS));
    return true;
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

static int32_t round_up(double f) { return (int32_t)(f >= 0.0 ? f + 0.5f : f - 0.5f); }

/* one 8-bit pass over nb channels of pb-byte pixels; vertical: along columns */
static void pass8(const uint8_t *in, int in_stride, uint8_t *out, int out_w, int out_h, int nb, const axis *a,
                  bool vertical, int first) {
    for (int yy = 0; yy < out_h; yy++)
        for (int xx = 0; xx < out_w; xx++) {
            int o = vertical ? yy : xx;
            const int32_t *k = a->kk + (size_t)o * a->ksize;
            int min = a->bounds[2 * o] - (vertical ? first : 0), cnt = a->bounds[2 * o + 1];
            for (int c = 0; c < nb; c++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < cnt; x++) {
                    size_t at = vertical ? (size_t)(x + min) * in_stride + (size_t)xx * nb
                                         : (size_t)yy * in_stride + (size_t)(x + min) * nb;
                    ss += in[at + c] * k[x];
                }
                out[((size_t)yy * out_w + xx) * nb + c] = clip8(ss);
            }
        }
}

/* the same in doubles on int32 pixels (mode I) */
static void pass32(const int32_t *in, int in_stride, int32_t *out, int out_w, int out_h, const axis *a,
                   bool vertical, int first) {
    for (int yy = 0; yy < out_h; yy++)
        for (int xx = 0; xx < out_w; xx++) {
            int o = vertical ? yy : xx;
            const double *k = a->k + (size_t)o * a->ksize;
            int min = a->bounds[2 * o] - (vertical ? first : 0), cnt = a->bounds[2 * o + 1];
            double ss = 0;
            for (int x = 0; x < cnt; x++)
                ss += in[vertical ? (size_t)(x + min) * in_stride + xx : (size_t)yy * in_stride + x + min] * k[x];
            out[(size_t)yy * out_w + xx] = round_up(ss);
        }
}

/* Pillow's ImagingScaleAffine for NEAREST: positions stepped by an accumulated double */
static bool nearest(const image_u8 *in, double x0, double y0, double sx, double sy, image_u8 *out) {
    int pb = image_mode_bytes(in->mode);
    int *xin = malloc(sizeof(int) * (size_t)out->w);
    if (!xin) return false;
    double xo = x0 + sx * 0.5;
    for (int x = 0; x < out->w; x++, xo += sx) {
        int v = xo < 0 ? -1 : (int)xo;
        xin[x] = v < 0 ? 0 : v >= in->w ? in->w - 1 : v;
    }
    double yo = y0 + sy * 0.5;
    for (int y = 0; y < out->h; y++, yo += sy) {
        int yi = yo < 0 ? -1 : (int)yo;
        yi = yi < 0 ? 0 : yi >= in->h ? in->h - 1 : yi;
        for (int x = 0; x < out->w; x++)
            memcpy(out->px + ((size_t)y * out->w + x) * pb, in->px + ((size_t)yi * in->w + xin[x]) * pb, (size_t)pb);
    }
    free(xin);
    return true;
}

/* RGBA/LA in place: premultiply (rgbA2rgba, lA2la) or back (rgba2rgbA, la2lA) */
static void premultiply(uint8_t *px, size_t n, int nb, bool back) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = px + i * (size_t)nb;
        int a = p[nb - 1];
        for (int c = 0; c < nb - 1; c++) {
            if (!back) p[c] = (uint8_t)image_muldiv255(p[c], a);
            else if (a != 0 && a != 255) p[c] = (uint8_t)image_clip8(255 * p[c] / a);
        }
    }
}

vlp_err image_resize(const image_u8 *in, int x0, int y0, int w, int h, int ow, int oh,
                     image_u8 *out, vlp_error *err) {
    /* the output bounded by its area, not its sides: Resize(S) of a 150 x 32768
     * image is 224 x 48933, which torchvision makes */
    VLP_CHECK_ARG(x0 >= 0 && y0 >= 0 && w > 0 && h > 0 && x0 + w <= in->w && y0 + h <= in->h &&
                      ow > 0 && oh > 0 && ow <= (1 << 20) && oh <= (1 << 20) &&
                      (uint64_t)ow * (uint64_t)oh <= IMAGE_MAX_PIXELS,
                  err, "resize box (%d, %d, %d, %d) of a %dx%d image to %dx%d", x0, y0, w, h,
                  in->w, in->h, ow, oh);
    if (ow == w && oh == h) return image_crop(in, (crop_box){x0, y0, w, h}, out, err); /* PIL: a crop, or a copy */
    VLP_TRY(image_alloc(out, ow, oh, in->mode, "resize", err));
    out->composite = in->composite;
    memcpy(out->background, in->background, 3);
    if (in->palette) memcpy(out->palette, in->palette, 256 * 4);
    if (in->mode == IMAGE_P || in->mode == IMAGE_1) {
        if (nearest(in, x0, y0, (double)w / ow, (double)h / oh, out)) return VLP_OK;
        image_free(out);
        VLP_FAIL(err, VLP_ERR_NOMEM, "resize to %dx%d", ow, oh);
    }
    axis ah = {0}, av = {0};
    int pb = image_mode_bytes(in->mode), nb = in->mode == IMAGE_I ? 1 : pb;
    bool alpha = in->mode == IMAGE_RGBA || in->mode == IMAGE_LA;
    bool ok = axis_init(&ah, in->w, x0, x0 + w, ow) && axis_init(&av, in->h, y0, y0 + h, oh);
    /* PIL's passes: horizontal when the width or box changes, over the rows
     * the vertical pass reads; vertical when the height or box changes */
    bool horiz = ow != in->w || x0 != 0 || w != in->w, vert = oh != in->h || y0 != 0 || h != in->h;
    int first = ok && vert ? av.bounds[0] : 0;
    int last = ok && vert ? av.bounds[2 * (oh - 1)] + av.bounds[2 * (oh - 1) + 1] : in->h;
    uint8_t *src = NULL, *tmp = NULL;
    size_t src_n = (size_t)in->w * in->h;
    if (ok && alpha) { /* premultiplied copy of the rows read */
        src = malloc(src_n * (size_t)pb);
        if (src) memcpy(src, in->px, src_n * (size_t)pb), premultiply(src, src_n, nb, false);
        ok = src != NULL;
    }
    const uint8_t *from = alpha ? src : in->px;
    int tw = horiz ? ow : in->w, th = last - first;
    if (ok) tmp = malloc((size_t)tw * th * (size_t)pb + 1);
    ok = ok && tmp;
    if (ok) {
        if (in->mode == IMAGE_I) {
            if (horiz) pass32((const int32_t *)from + (size_t)first * in->w, in->w, (int32_t *)tmp, tw, th, &ah, false, 0);
            else memcpy(tmp, from + (size_t)first * in->w * pb, (size_t)tw * th * pb);
            if (vert) pass32((const int32_t *)tmp, tw, (int32_t *)out->px, ow, oh, &av, true, first);
            else memcpy(out->px, tmp, (size_t)ow * oh * pb);
        } else {
            if (horiz) pass8(from + (size_t)first * in->w * pb, in->w * pb, tmp, tw, th, nb, &ah, false, 0);
            else memcpy(tmp, from + (size_t)first * in->w * pb, (size_t)tw * th * pb);
            if (vert) pass8(tmp, tw * pb, out->px, ow, oh, nb, &av, true, first);
            else memcpy(out->px, tmp, (size_t)ow * oh * pb);
            if (alpha) premultiply(out->px, (size_t)ow * oh, nb, true);
        }
    }
    free(src), free(tmp);
    axis_free(&ah), axis_free(&av);
    if (!ok) {
        image_free(out);
        VLP_FAIL(err, VLP_ERR_NOMEM, "resize to %dx%d", ow, oh);
    }
    return VLP_OK;
}
