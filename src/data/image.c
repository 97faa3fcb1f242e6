#include "data/image.h"
#include "core/error.h"
#include "io/file.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

void image_free(image_u8 *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

/* Is the declared image plausible for the n bytes that encode it? A large
 * image must come with enough of its file (a 687-byte truncated JPEG may
 * declare 16384×16384). Judged on the size the file declares, not the size
 * decoded to: a JPEG decoded at 1/8 scale still has every block of the
 * declared image entropy-decoded (a 682-byte JPEG declaring 805M pixels kept
 * a fuzzer busy for 10 s at 1/8 scale, its 12.6M output pixels allowed). */
static vlp_err check_plausible(const char *what, long w, long h, size_t n, vlp_error *err) {
    unsigned long px = (unsigned long)w * (unsigned long)h;
    VLP_CHECK_FORMAT(px <= IMAGE_BOMB_PIXELS || px / (n ? n : 1) <= IMAGE_MAX_PIXELS_PER_BYTE, err,
                     "%s: %ldx%ld pixels declared in %zu bytes (more than %d pixels a byte above "
                     "%d pixels): a truncated or crafted image, refused", what, w, h, n,
                     IMAGE_MAX_PIXELS_PER_BYTE, IMAGE_BOMB_PIXELS);
    return VLP_OK;
}

/* The size to decode to, before anything is allocated for it: within the
 * limits, and plausible (above) */
static vlp_err check_size(const char *what, long w, long h, size_t n, vlp_error *err) {
    VLP_CHECK_FORMAT(w > 0 && h > 0 && w <= IMAGE_MAX_SIDE && h <= IMAGE_MAX_SIDE &&
                         (unsigned long)w * (unsigned long)h <= IMAGE_MAX_PIXELS,
                     err, "%s: %ldx%ld pixels is outside 1..%d a side, %u in all", what, w, h,
                     IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
    return check_plausible(what, w, h, n, err);
}

/* RGBA → RGB, dropping alpha or blending onto the background */
static void rgba_to_rgb(uint8_t *rgb, const uint8_t *rgba, size_t n, const image_decode_opts *o) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + 4 * i;
        for (int c = 0; c < 3; c++)
            rgb[3 * i + c] = o->composite ? (uint8_t)((p[c] * p[3] + o->background[c] * (255 - p[3]) + 127) / 255)
                                          : p[c];
    }
}

/* ---- JPEG ------------------------------------------------------------------------------ */

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; }

static vlp_err decode_jpeg(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                           image_u8 *out, vlp_error *err) {
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    uint8_t *volatile px = NULL;
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_quiet; /* warnings (e.g. premature end) are not errors */
    if (setjmp(je.jump)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: JPEG: %s", what, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, bytes, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: CMYK JPEG is not supported; convert it to RGB", what);
    }
    ci.out_color_space = JCS_RGB;
    if (o->min_side > 0) { /* libjpeg's scaled IDCT: far cheaper than decoding then shrinking */
        unsigned denom = 8;
        while (denom > 1 && (ci.image_width / denom < (unsigned)o->min_side ||
                             ci.image_height / denom < (unsigned)o->min_side))
            denom /= 2;
        ci.scale_num = 1, ci.scale_denom = denom;
    }
    jpeg_calc_output_dimensions(&ci);
    vlp_err rc = check_plausible(what, (long)ci.image_width, (long)ci.image_height, n, err);
    if (rc == VLP_OK) rc = check_size(what, (long)ci.output_width, (long)ci.output_height, n, err);
    if (rc != VLP_OK) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    jpeg_start_decompress(&ci);
    size_t stride = (size_t)ci.output_width * 3;
    px = malloc(stride * ci.output_height);
    if (!px) {
        jpeg_destroy_decompress(&ci);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: %ux%u pixels", what, ci.output_width, ci.output_height);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    *out = (image_u8){(int)ci.output_width, (int)ci.output_height, px};
    jpeg_destroy_decompress(&ci);
    return VLP_OK;
}

/* ---- PNG, WebP --------------------------------------------------------------------------- */

static vlp_err decode_png(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    VLP_CHECK_FORMAT(png_image_begin_read_from_memory(&img, bytes, n), err, "%s: PNG: %s", what,
                     img.message);
    vlp_err rc = check_size(what, (long)img.width, (long)img.height, n, err);
    if (rc != VLP_OK) {
        png_image_free(&img);
        return rc;
    }
    img.format = PNG_FORMAT_RGBA;
    size_t np = (size_t)img.width * img.height;
    uint8_t *rgba = malloc(np * 4), *rgb = malloc(np * 3);
    if (!rgba || !rgb) {
        png_image_free(&img);
        free(rgba), free(rgb);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: %zu pixels", what, np);
    }
    if (!png_image_finish_read(&img, NULL, rgba, 0, NULL)) {
        free(rgba), free(rgb);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: PNG: %s", what, img.message);
    }
    rgba_to_rgb(rgb, rgba, np, o);
    free(rgba);
    *out = (image_u8){(int)img.width, (int)img.height, rgb};
    return VLP_OK;
}

static vlp_err decode_webp(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                           image_u8 *out, vlp_error *err) {
    int w, h;
    VLP_CHECK_FORMAT(WebPGetInfo(bytes, n, &w, &h), err, "%s: not a valid WebP image", what);
    VLP_TRY(check_size(what, w, h, n, err));
    uint8_t *rgba = WebPDecodeRGBA(bytes, n, &w, &h);
    VLP_CHECK_FORMAT(rgba, err, "%s: WebP data is corrupt", what);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) {
        WebPFree(rgba);
        VLP_FAIL(err, VLP_ERR_NOMEM, "%s: %dx%d pixels", what, w, h);
    }
    rgba_to_rgb(rgb, rgba, (size_t)w * h, o);
    WebPFree(rgba);
    *out = (image_u8){w, h, rgb};
    return VLP_OK;
}

/* The formats by their signatures: the one place that tells them apart. */
typedef vlp_err (*decode_fn)(const uint8_t *, size_t, const char *, const image_decode_opts *,
                             image_u8 *, vlp_error *);
static const struct image_format {
    const char *ext;
    size_t need;             // bytes the signature spans
    size_t at, len;          // where its magic is, and how long
    const char *magic;
    decode_fn decode;
    size_t at2;              // a second magic (WebP's "WEBP" after the RIFF size)
    const char *magic2;
} formats[] = {
    {"jpg", 3, 0, 3, "\xFF\xD8\xFF", decode_jpeg, 0, NULL},
    {"png", 8, 0, 8, "\x89PNG\r\n\x1a\n", decode_png, 0, NULL},
    {"webp", 12, 0, 4, "RIFF", decode_webp, 8, "WEBP"},
};

static const struct image_format *format_of(const uint8_t *b, size_t n) {
    for (size_t i = 0; b && i < sizeof formats / sizeof formats[0]; i++) {
        const struct image_format *f = &formats[i];
        if (n >= f->need && !memcmp(b + f->at, f->magic, f->len) &&
            (!f->magic2 || !memcmp(b + f->at2, f->magic2, strlen(f->magic2))))
            return f;
    }
    return NULL;
}

void image_unknown_why(const char *what, size_t n, char *buf, size_t cap) {
    if (n == 0) snprintf(buf, cap, "%.300s: an empty file (0 bytes), not an image", what);
    else snprintf(buf, cap, "%.300s: not a JPEG, PNG or WebP image (%zu bytes)", what, n);
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
    return f->decode(data, n, what, o, out, err);
}

vlp_err image_load(const char *path, const image_decode_opts *o, image_u8 *out, vlp_error *err) {
    uint8_t *buf;
    size_t len;
    VLP_TRY(read_whole_file(path, (size_t)1 << 31, &buf, &len, err));
    vlp_err rc = image_decode(buf, len, path, o, out, err);
    free(buf);
    return rc;
}

/* ---- PIL's resampling ------------------------------------------------------------------- */

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for one axis: source range
 * [in0, in1) of in_size → out_size outputs. bounds (out, 2): first, count. */
static int coeffs(int in_size, double in0, double in1, int out_size, int **bounds_out, int32_t **kk_out) {
    double scale = (in1 - in0) / out_size, filterscale = scale < 1 ? 1 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = malloc(sizeof(double) * (size_t)out_size * ksize);
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    if (!pre || !bounds || !kk) {
        free(pre), free(bounds), free(kk);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w, ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[2 * xx] = xmin, bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS))
                           : (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
    free(pre);
    *bounds_out = bounds, *kk_out = kk;
    return ksize;
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

vlp_err image_resize(const image_u8 *in, int x0, int y0, int w, int h, int ow, int oh,
                     image_u8 *out, vlp_error *err) {
    VLP_CHECK_ARG(x0 >= 0 && y0 >= 0 && w > 0 && h > 0 && x0 + w <= in->w && y0 + h <= in->h &&
                      ow > 0 && oh > 0 && ow <= IMAGE_MAX_SIDE && oh <= IMAGE_MAX_SIDE,
                  err, "resize box (%d, %d, %d, %d) of a %dx%d image to %dx%d", x0, y0, w, h,
                  in->w, in->h, ow, oh);
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    int ksh = coeffs(in->w, x0, x0 + w, ow, &bh, &kh);
    int ksv = ksh ? coeffs(in->h, y0, y0 + h, oh, &bv, &kv) : 0;
    /* rows of the source the vertical pass reads */
    int first = ksv ? bv[0] : 0, last = ksv ? bv[2 * (oh - 1)] + bv[2 * (oh - 1) + 1] : 0;
    uint8_t *tmp = ksv ? malloc((size_t)(last - first) * ow * 3) : NULL;
    uint8_t *px = tmp ? malloc((size_t)ow * oh * 3) : NULL;
    if (!px) {
        free(bh), free(kh), free(bv), free(kv), free(tmp);
        VLP_FAIL(err, VLP_ERR_NOMEM, "resize to %dx%d", ow, oh);
    }
    /* horizontal pass over the needed rows, 8-bit result (as PIL) */
    for (int y = first; y < last; y++) {
        const uint8_t *row = in->px + (size_t)y * in->w * 3;
        uint8_t *o = tmp + (size_t)(y - first) * ow * 3;
        for (int xx = 0; xx < ow; xx++) {
            const int32_t *k = kh + (size_t)xx * ksh;
            int xmin = bh[2 * xx], n = bh[2 * xx + 1];
            for (int c = 0; c < 3; c++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < n; x++) ss += row[(size_t)(x + xmin) * 3 + c] * k[x];
                o[xx * 3 + c] = clip8(ss);
            }
        }
    }
    /* vertical pass, a whole row at a time (the inner loop vectorises) */
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)ow * 3);
    if (!acc) {
        free(bh), free(kh), free(bv), free(kv), free(tmp), free(px);
        VLP_FAIL(err, VLP_ERR_NOMEM, "resize to %dx%d", ow, oh);
    }
    for (int yy = 0; yy < oh; yy++) {
        const int32_t *k = kv + (size_t)yy * ksv;
        int ymin = bv[2 * yy] - first, n = bv[2 * yy + 1], row = ow * 3;
        for (int xx = 0; xx < row; xx++) acc[xx] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *src = tmp + (size_t)(y + ymin) * row;
            int32_t wy = k[y];
            for (int xx = 0; xx < row; xx++) acc[xx] += src[xx] * wy;
        }
        uint8_t *o = px + (size_t)yy * row;
        for (int xx = 0; xx < row; xx++) o[xx] = clip8(acc[xx]);
    }
    free(acc);
    free(bh), free(kh), free(bv), free(kv), free(tmp);
    *out = (image_u8){ow, oh, px};
    return VLP_OK;
}

/* ---- geometry --------------------------------------------------------------------------- */

void eval_geometry(int w, int h, int S, int *rw, int *rh, crop_box *box) {
    /* torchvision Resize(int): the short side becomes S, the long int(S * long / short) */
    if (w <= h) *rw = S, *rh = (int)((double)S * h / w);
    else *rh = S, *rw = (int)((double)S * w / h);
    /* CenterCrop: int(round((size - S) / 2)), Python's round (half to even) */
    box->x = (int)nearbyint((*rw - S) / 2.0), box->y = (int)nearbyint((*rh - S) / 2.0);
    box->w = box->h = S;
}

crop_box random_resized_crop(int w, int h, float scale_lo, float scale_hi, float ratio_lo,
                             float ratio_hi, rng64 *r) {
    double area = (double)w * h, lr0 = log(ratio_lo), lr1 = log(ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale_lo + (scale_hi - scale_lo) * rng64_uniform(r));
        double aspect = exp(lr0 + (lr1 - lr0) * rng64_uniform(r));
        int cw = (int)nearbyint(sqrt(target * aspect)), ch = (int)nearbyint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            int y = (int)(rng64_u64(r) % (uint64_t)(h - ch + 1));
            int x = (int)(rng64_u64(r) % (uint64_t)(w - cw + 1));
            return (crop_box){x, y, cw, ch};
        }
    }
    /* fallback: the whole image's central crop with the ratio clamped */
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < ratio_lo) ch = (int)nearbyint(w / ratio_lo);
    else if (in_ratio > ratio_hi) cw = (int)nearbyint(h * ratio_hi);
    return (crop_box){(w - cw) / 2, (h - ch) / 2, cw, ch};
}

image_norm image_norm_openai(void) {
    return (image_norm){{0.48145466f, 0.4578275f, 0.40821073f},
                        {0.26862954f, 0.26130258f, 0.27577711f}};
}

image_transform image_transform_default(int size, bool train) {
    image_transform t = {.size = size, .train = train, .scale_lo = 0.9f, .scale_hi = 1.0f,
                         .ratio_lo = 3.0f / 4, .ratio_hi = 4.0f / 3, .hflip = false};
    image_norm n = image_norm_openai();
    memcpy(t.mean, n.mean, sizeof t.mean), memcpy(t.std, n.std, sizeof t.std);
    return t;
}

image_transform image_transform_for(const image_preprocess *p, int size, bool train) {
    image_transform t = image_transform_default(size, train);
    if (p && p->own_norm) memcpy(t.mean, p->mean, sizeof t.mean), memcpy(t.std, p->std, sizeof t.std);
    return t;
}

image_decode_opts image_decode_for(const image_preprocess *p) {
    image_decode_opts o = {0};
    if (p && p->white_background) o.composite = true, memset(o.background, 255, sizeof o.background);
    return o;
}

vlp_err image_transform_apply(const image_transform *t, const image_u8 *in, rng64 *r, float *out,
                              vlp_error *err) {
    int S = t->size;
    image_u8 res;
    crop_box box;
    bool flip = false;
    if (t->train) {
        VLP_CHECK_ARG(r, err, "the train transform needs a random generator");
        crop_box c = random_resized_crop(in->w, in->h, t->scale_lo, t->scale_hi, t->ratio_lo, t->ratio_hi, r);
        VLP_TRY(image_resize(in, c.x, c.y, c.w, c.h, S, S, &res, err));
        box = (crop_box){0, 0, S, S};
        flip = t->hflip && (rng64_u64(r) & 1);
    } else {
        int rw, rh;
        eval_geometry(in->w, in->h, S, &rw, &rh, &box);
        VLP_TRY(image_resize(in, 0, 0, in->w, in->h, rw, rh, &res, err));
    }
    size_t plane = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        float scale = 1.0f / (255.0f * t->std[c]), shift = t->mean[c] / t->std[c];
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sx = flip ? box.x + S - 1 - x : box.x + x;
                uint8_t v = res.px[((size_t)(box.y + y) * res.w + sx) * 3 + c];
                out[c * plane + (size_t)y * S + x] = v * scale - shift;
            }
    }
    image_free(&res);
    return VLP_OK;
}
