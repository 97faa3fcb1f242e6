/* TIFF through libtiff: the first page, to the mode Pillow 9.4 opens it in
 * (TiffImagePlugin's OPEN_INFO) for the kinds met in image data: bilevel
 * "1" and 2/4/8-bit grey L (min-is-white inverted), grey + alpha LA, 16-bit
 * grey I, RGB and RGBA (16-bit: the high byte; associated alpha divided out
 * as Pillow's RGBa unpacker; an unspecified extra sample dropped), palette P
 * (the colour map's high bytes), CMYK, and YCbCr as RGB (JPEG-compressed
 * through libjpeg in RGB, others through libtiff's RGBA reader). Strips or
 * tiles, any compression libtiff reads; separate planes and other kinds are
 * refused by name. The orientation tag is not applied (Pillow does not). */
#include "data/image_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct tiff_source {
    const uint8_t *bytes;
    toff_t n, at;
    char msg[256]; // libtiff's last error, for ours
} tiff_source;

static tmsize_t t_read(thandle_t h, void *buf, tmsize_t len) {
    tiff_source *s = h;
    toff_t k = len < 0 ? 0 : (toff_t)len;
    if (s->at > s->n) k = 0;
    else if (k > s->n - s->at) k = s->n - s->at;
    memcpy(buf, s->bytes + s->at, (size_t)k);
    s->at += k;
    return (tmsize_t)k;
}
static tmsize_t t_write(thandle_t h, void *buf, tmsize_t len) { (void)h, (void)buf, (void)len; return 0; }
static toff_t t_seek(thandle_t h, toff_t off, int whence) {
    tiff_source *s = h;
    toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->at : s->n;
    s->at = base + off;
    return s->at;
}
static int t_close(thandle_t h) { (void)h; return 0; }
static toff_t t_size(thandle_t h) { return ((tiff_source *)h)->n; }
static int t_map(thandle_t h, void **base, toff_t *size) { (void)h, (void)base, (void)size; return 0; }
static void t_unmap(thandle_t h, void *base, toff_t size) { (void)h, (void)base, (void)size; }

/* libtiff's messages, through this decode's own handlers (no process-wide
 * handler): the last error kept for ours, warnings dropped */
static int t_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)module;
    tiff_source *s = user;
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    return 1;
}
static int t_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1;
}

static unsigned maxv_of(int bps) { return (1u << (bps < 16 ? bps : 16)) - 1; }

/* the sample at x of a row of bps-bit samples (MSB first, as libtiff hands them) */
static unsigned sample(const uint8_t *row, long x, int bps) {
    if (bps == 8) return row[x];
    if (bps == 16) { uint16_t v; memcpy(&v, row + 2 * x, 2); return v; }
    long bit = x * bps;
    return (unsigned)(row[bit >> 3] >> (8 - bps - (bit & 7))) & ((1u << bps) - 1);
}

/* A tiled image read a band of tiles at a time: the band's rows assembled
 * as TIFFReadScanline would give them (sl bytes each), so memory holds one
 * band, not the image. A tile's width is a multiple of 16 pixels (the TIFF
 * rule libtiff enforces), so every tile starts on a byte at any bit depth. */
typedef struct tile_band {
    uint32_t tw, th;      // a tile's pixels
    size_t trs;           // bytes of a tile's row
    uint8_t *tile, *rows; // one tile; th rows of sl bytes
} tile_band;

static vlp_err band_open(TIFF *t, size_t sl, tile_band *b, const char *what, vlp_error *err) {
    memset(b, 0, sizeof *b);
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &b->tw), TIFFGetField(t, TIFFTAG_TILELENGTH, &b->th);
    tmsize_t trs = TIFFTileRowSize(t), ts = TIFFTileSize(t);
    VLP_CHECK_FORMAT(b->tw && b->th && b->tw % 16 == 0 && b->th <= IMAGE_MAX_SIDE && trs > 0 &&
                         ts >= trs * (tmsize_t)b->th,
                     err, "%s: TIFF: tiles of %ux%u pixels: not read", what, b->tw, b->th);
    b->trs = (size_t)trs;
    b->tile = malloc((size_t)ts), b->rows = malloc(sl * b->th);
    if (b->tile && b->rows) return VLP_OK;
    free(b->tile), free(b->rows);
    VLP_FAIL(err, VLP_ERR_NOMEM, "%s: TIFF: a band of %u rows of %zu bytes", what, b->th, sl);
}

/* the band of rows from y0 (rows past h are left as they are) */
static vlp_err band_read(TIFF *t, tile_band *b, uint32_t y0, uint32_t w, size_t sl, size_t bits_px,
                         const tiff_source *src, const char *what, vlp_error *err) {
    for (uint32_t x0 = 0; x0 < w; x0 += b->tw) {
        VLP_CHECK_FORMAT(TIFFReadTile(t, b->tile, x0, y0, 0, 0) >= 0, err, "%s: TIFF: the tile at (%u, %u): %s",
                         what, x0, y0, src->msg[0] ? src->msg : "damaged");
        size_t at = (size_t)x0 * bits_px / 8, span = sl - at < b->trs ? sl - at : b->trs;
        for (uint32_t y = 0; y < b->th; y++) memcpy(b->rows + (size_t)y * sl + at, b->tile + (size_t)y * b->trs, span);
    }
    return VLP_OK;
}

vlp_err image_decode_tiff(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err) {
    (void)o;
    tiff_source src = {bytes, n, 0, ""};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    VLP_CHECK_ALLOC(opts, err, 64);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, t_error, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, t_warning, &src);
    TIFF *t = TIFFClientOpenExt(what, "rm", &src, t_read, t_write, t_seek, t_close, t_size, t_map, t_unmap, opts);
    TIFFOpenOptionsFree(opts);
    VLP_CHECK_FORMAT(t, err, "%s: TIFF: %s", what, src.msg[0] ? src.msg : "not readable");
    uint32_t w = 0, h = 0;
    uint16_t bps = 1, spp = 1, photo = 0, planar = PLANARCONFIG_CONTIG, comp = COMPRESSION_NONE, fmt = SAMPLEFORMAT_UINT;
    uint16_t nextra = 0, *extra = NULL;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w), TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps), TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar), TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(t, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
    TIFFGetField(t, TIFFTAG_COMPRESSION, &comp);
    bool has_photo = TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photo);
    int extra0 = nextra ? extra[0] : -1;
    image_mode mode = IMAGE_RGB;
    bool ok = has_photo && planar == PLANARCONFIG_CONTIG && fmt == SAMPLEFORMAT_UINT;
    if (ok) switch (photo) {
        case PHOTOMETRIC_MINISWHITE: case PHOTOMETRIC_MINISBLACK: /* Pillow's table: 1, 2, 4, 8, 16 bits */
            if (spp == 1) mode = bps == 1 ? IMAGE_1 : bps == 16 ? IMAGE_I : IMAGE_L,
                          ok = bps == 1 || bps == 2 || bps == 4 || bps == 8 || bps == 16;
            else mode = IMAGE_LA, ok = spp == 2 && bps == 8 && extra0 == EXTRASAMPLE_UNASSALPHA &&
                                       photo == PHOTOMETRIC_MINISBLACK;
            break;
        case PHOTOMETRIC_RGB:
            ok = (bps == 8 || bps == 16) && spp >= 3;
            mode = spp >= 4 && extra0 != EXTRASAMPLE_UNSPECIFIED ? IMAGE_RGBA : IMAGE_RGB;
            break;
        case PHOTOMETRIC_PALETTE: mode = IMAGE_P, ok = spp == 1 && (bps == 1 || bps == 2 || bps == 4 || bps == 8); break;
        case PHOTOMETRIC_SEPARATED: mode = IMAGE_CMYK, ok = spp >= 4 && bps == 8; break;
        case PHOTOMETRIC_YCBCR: mode = IMAGE_RGB, ok = bps == 8 && spp == 3; break;
        default: ok = false;
        }
    vlp_err rc = ok ? image_check_size(what, (long)w, (long)h, n, err)
                    : vlp_error_set(err, VLP_ERR_UNSUPPORTED, __FILE__, __LINE__,
                                    "%s: TIFF of photometric %u, %u samples of %u bits%s: not read", what, photo, spp,
                                    bps, planar != PLANARCONFIG_CONTIG ? " in separate planes" : "");
    image_u8 im = {0};
    if (rc == VLP_OK) rc = image_alloc(&im, (int)w, (int)h, mode, what, err);
    uint8_t *row = NULL;
    uint32_t *rgba = NULL;
    tile_band band = {0};
    if (rc == VLP_OK && photo == PHOTOMETRIC_YCBCR && comp != COMPRESSION_JPEG) {
        rgba = malloc((size_t)w * h * 4);
        if (!rgba || !TIFFReadRGBAImageOriented(t, w, h, rgba, ORIENTATION_TOPLEFT, 0))
            rc = vlp_error_set(err, rgba ? VLP_ERR_FORMAT : VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: TIFF: %s", what,
                               src.msg[0] ? src.msg : "YCbCr data cannot be read");
        for (size_t i = 0; rc == VLP_OK && i < (size_t)w * h; i++)
            im.px[3 * i] = (uint8_t)TIFFGetR(rgba[i]), im.px[3 * i + 1] = (uint8_t)TIFFGetG(rgba[i]),
            im.px[3 * i + 2] = (uint8_t)TIFFGetB(rgba[i]);
    } else if (rc == VLP_OK) {
        if (photo == PHOTOMETRIC_YCBCR) TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB), spp = 3;
        tmsize_t sl = TIFFScanlineSize(t);
        bool tiled = TIFFIsTiled(t); /* a band of tiles at a time, else a row at a time */
        if (sl <= 0) rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: TIFF: rows of %lld bytes", what,
                                        (long long)sl);
        else if (tiled) rc = band_open(t, (size_t)sl, &band, what, err);
        else if (!(row = malloc((size_t)sl)))
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: TIFF: a row of %lld bytes", what,
                               (long long)sl);
        int pb = image_mode_bytes(mode);
        unsigned maxv = (1u << (bps < 16 ? bps : 16)) - 1;
        for (uint32_t y = 0; rc == VLP_OK && y < h; y++) {
            if (tiled && y % band.th == 0 &&
                (rc = band_read(t, &band, y, w, (size_t)sl, (size_t)bps * spp, &src, what, err)) != VLP_OK)
                break;
            const uint8_t *r = tiled ? band.rows + (size_t)(y % band.th) * (size_t)sl : row;
            if (!tiled && TIFFReadScanline(t, row, y, 0) < 0) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: TIFF: row %u: %s", what, y,
                                   src.msg[0] ? src.msg : "damaged");
                break;
            }
            uint8_t *o8 = im.px + (size_t)y * w * pb;
            for (uint32_t x = 0; x < w; x++) {
                if (mode == IMAGE_I) {
                    int32_t v = (int32_t)sample(r, x, 16); /* min-is-white not inverted: Pillow's I;16 */
                    memcpy(o8 + 4 * x, &v, 4);
                } else if (mode == IMAGE_1 || mode == IMAGE_L) {
                    unsigned v = sample(r, x, bps) * 255 / maxv; /* L;2 x 0x55, L;4 x 0x11 */
                    o8[x] = (uint8_t)(photo == PHOTOMETRIC_MINISWHITE ? 255 - v : v);
                } else if (mode == IMAGE_P) o8[x] = (uint8_t)sample(r, x, bps);
                else { /* 8 or 16-bit samples: the high byte */
                    int k = mode == IMAGE_LA ? 2 : mode == IMAGE_RGB ? 3 : 4;
                    for (int c = 0; c < k; c++) {
                        unsigned v = sample(r, (long)x * spp + c, bps);
                        o8[k * x + c] = (uint8_t)(bps == 16 ? v >> 8 : v);
                    }
                    if (mode == IMAGE_RGBA && extra0 == EXTRASAMPLE_ASSOCALPHA) { /* Pillow's unpackRGBa */
                        uint8_t *p = o8 + 4 * x, a = p[3];
                        for (int c = 0; c < 3; c++) p[c] = a == 0 ? 0 : a == 255 ? p[c] : (uint8_t)image_clip8(p[c] * 255 / a);
                    }
                }
            }
        }
    }
    if (rc == VLP_OK && mode == IMAGE_P) {
        uint16_t *r, *g, *b;
        if (!TIFFGetField(t, TIFFTAG_COLORMAP, &r, &g, &b))
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: TIFF: a palette image without a colour map", what);
        for (int i = 0; rc == VLP_OK && i < 256; i++) {
            uint8_t *e = im.palette + 4 * i;
            if (i <= (int)maxv_of(bps)) e[0] = (uint8_t)(r[i] >> 8), e[1] = (uint8_t)(g[i] >> 8), e[2] = (uint8_t)(b[i] >> 8);
            else e[0] = e[1] = e[2] = (uint8_t)i;
            e[3] = 255;
        }
    }
    free(row), free(rgba), free(band.tile), free(band.rows);
    TIFFClose(t);
    if (rc != VLP_OK) {
        image_free(&im);
        return rc;
    }
    *out = im;
    return VLP_OK;
}
