/* BMP, opened as Pillow 9.4 opens it (BmpImagePlugin), its pixels unpacked by
 * stb_image (Debian's libstb).
 *
 * Pillow decides the mode from the header: 1-, 4- and 8-bit images are P
 * with the file's palette, or "1" (two colours, black then white) or L (the
 * palette is the grey ramp 0, 1, 2, …); 16-bit is RGB scaled v * 255 / 31
 * (or / 63) with truncation; 24-bit RGB; 32-bit RGB (a fourth byte is not
 * alpha), or RGBA when BI_BITFIELDS names an alpha mask. Palette indices past
 * the palette are grey i, as in Pillow 9.4.
 *
 * stb_image reads what it is given with quirks of its own (a palette sized
 * from the gap before the pixels, OS/2 palettes four entries short, no gap
 * allowed before 16- to 32-bit pixels, a 32-bit image whose fourth bytes are
 * all 0 read as opaque, 5- and 6-bit channels widened by bit replication). So
 * it is handed one canonical file made from the header read here: a V4
 * header, for 1- to 8-bit images a palette whose entry i is (i, 0, 0) so that
 * its red channel is the index, for 16 and 32 bits the file's masks, then the
 * file's rows. What stb gives is mapped back to Pillow's values here.
 *
 * Refused, each by name: RLE compression (stb does not decode it), bit
 * depths, masks and headers Pillow does not read, rows cut short (Pillow
 * raises "image file is truncated"), palettes past 256 entries, and the grey
 * palettes Pillow 9.4 itself misreads (a two-colour black-and-white palette
 * on 4- or 8-bit pixels, a grey ramp on 1- or 4-bit pixels). */
#include "data/image_codec.h"

#include <stb_image.h>
#include <stdlib.h>
#include <string.h>

enum { BMP_RAW = 0, BMP_RLE8 = 1, BMP_RLE4 = 2, BMP_BITFIELDS = 3 };
enum { BMP_V4 = 108, CANON_AT = 14 + BMP_V4 }; /* the canonical file's header and where its palette starts */

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xFFFF), put16(p + 2, v >> 16); }

/* what the header says, by Pillow's reading of it */
typedef struct bmp_layout {
    long w, h;
    bool top_down;           // rows stored top first (a negative height)
    unsigned bits, compression;
    uint32_t mask[4];        // r, g, b, a (BI_BITFIELDS; else the defaults Pillow's raw mode implies)
    unsigned long colors;    // palette entries (1 to 8 bits)
    const uint8_t *palette;  // the file's entries, `entry` bytes each, blue first
    unsigned entry;          // 3 (OS/2 header) or 4
    size_t rows_at, stride;  // the pixels: where, and bytes a row
    size_t avail;            // the rows' bytes the file has (the last row's padding may be missing)
    image_mode mode;
} bmp_layout;

/* Pillow's BITFIELDS table (BmpImagePlugin SUPPORTED / MASK_MODES): the masks
 * it reads (r, g, b, a; 24- and 16-bit: r, g, b) and the masks they mean,
 * which the canonical file carries (Pillow reads all-zero masks as BGRA) */
static const struct bmp_masks {
    unsigned bits;
    uint32_t m[4], means[4];
} supported[] = {
    {32, {0xFF0000, 0xFF00, 0xFF, 0}, {0xFF0000, 0xFF00, 0xFF, 0}},
    {32, {0xFF000000, 0xFF0000, 0xFF00, 0}, {0xFF000000, 0xFF0000, 0xFF00, 0}},
    {32, {0xFF000000, 0xFF0000, 0xFF00, 0xFF}, {0xFF000000, 0xFF0000, 0xFF00, 0xFF}},
    {32, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}},
    {32, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}},
    {32, {0, 0, 0, 0}, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}},
    {24, {0xFF0000, 0xFF00, 0xFF, 0}, {0xFF0000, 0xFF00, 0xFF, 0}},
    {16, {0xF800, 0x7E0, 0x1F, 0}, {0xF800, 0x7E0, 0x1F, 0}},
    {16, {0x7C00, 0x3E0, 0x1F, 0}, {0x7C00, 0x3E0, 0x1F, 0}},
};

static vlp_err read_layout(const uint8_t *b, size_t n, const char *what, bmp_layout *L, vlp_error *err) {
    memset(L, 0, sizeof *L);
    if (n < 18) VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: the header is cut short (%zu bytes)", what, n);
    size_t offset = le32(b + 10), hsz = le32(b + 14), at = 14 + hsz;
    if (hsz != 12 && hsz != 40 && hsz != 64 && hsz != 108 && hsz != 124)
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP header of %zu bytes: not read (Pillow reads 12, 40, 64, 108 "
                   "and 124)", what, hsz);
    if (n < at) VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: the %zu-byte header is cut short (%zu bytes)", what, hsz, n);
    const uint8_t *h = b + 18; /* the header after its size */
    if (hsz == 12) {
        L->w = (long)le16(h), L->h = (long)le16(h + 2), L->bits = le16(h + 6), L->entry = 3;
    } else {
        L->top_down = h[7] == 0xFF; /* Pillow's test: a height of -1 .. -2^24 */
        L->w = (long)le32(h), L->h = L->top_down ? (long)(0x100000000ull - le32(h + 4)) : (long)le32(h + 4);
        L->bits = le16(h + 10), L->compression = le32(h + 12), L->colors = le32(h + 28), L->entry = 4;
        if (L->compression == BMP_BITFIELDS) {
            const uint8_t *m = hsz >= 56 ? h + 36 : b + at;
            size_t nm = hsz >= 56 ? 4 : 3;
            if (hsz < 56) at += 12;
            if (n < at) VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: the colour masks are cut short", what);
            for (size_t i = 0; i < nm; i++) L->mask[i] = le32(m + 4 * i);
        }
    }
    unsigned bits = L->bits;
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP of %u bits a pixel: not read (Pillow reads 1, 4, 8, 16, 24 and 32)",
                   what, bits);
    if (L->compression == BMP_RLE8 || L->compression == BMP_RLE4)
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: RLE-compressed BMP: not read (stb_image, which vlp reads BMP with, "
                   "does not decode RLE; convert it to PNG)", what);
    if (L->compression != BMP_RAW && L->compression != BMP_BITFIELDS)
        VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP compression %u: not read", what, L->compression);
    L->mode = bits <= 8 ? IMAGE_P : IMAGE_RGB;
    if (L->compression == BMP_BITFIELDS) {
        const struct bmp_masks *s = NULL;
        for (size_t i = 0; !s && i < sizeof supported / sizeof supported[0]; i++)
            if (supported[i].bits == bits &&
                !memcmp(supported[i].m, L->mask, (bits == 32 ? 4 : 3) * sizeof(uint32_t))) /* Pillow's rgb_mask below 32 */
                s = &supported[i];
        if (!s)
            VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP of %u bits with masks %08x %08x %08x %08x: a layout Pillow "
                       "does not read", what, bits, L->mask[0], L->mask[1], L->mask[2], L->mask[3]);
        memcpy(L->mask, s->means, sizeof L->mask);
        if (s->means[3]) L->mode = IMAGE_RGBA;
    } else if (bits == 16) { /* Pillow's raw mode BGR;15 */
        memcpy(L->mask, (uint32_t[4]){0x7C00, 0x3E0, 0x1F, 0}, sizeof L->mask);
    } else if (bits == 32) { /* BGRX: the fourth byte is not alpha */
        memcpy(L->mask, (uint32_t[4]){0xFF0000, 0xFF00, 0xFF, 0}, sizeof L->mask);
    }
    if (bits <= 8) {
        if (!L->colors) L->colors = 1ul << bits;
        if (L->colors > 256)
            VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP palette of %lu colours: not read (at most 256)", what, L->colors);
        if (L->colors * L->entry > n - at) VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: the palette is cut short", what);
        L->palette = b + at;
        bool grey = true;
        for (unsigned long i = 0; grey && i < L->colors; i++) {
            unsigned v = L->colors == 2 ? (unsigned)i * 255 : (unsigned)i;
            const uint8_t *e = L->palette + i * L->entry;
            grey = e[0] == v && e[1] == v && e[2] == v;
        }
        if (grey) {
            L->mode = L->colors == 2 ? IMAGE_1 : IMAGE_L;
            if ((L->mode == IMAGE_1) != (bits == 1) || (L->mode == IMAGE_L && bits != 8))
                VLP_FAIL(err, VLP_ERR_UNSUPPORTED, "%s: BMP of %u bits with a grey palette of %lu colours: Pillow 9.4 "
                           "reads its pixels as %d-bit, so vlp cannot match it; not read", what, bits, L->colors,
                           L->mode == IMAGE_1 ? 1 : 8);
        }
        if (offset == 14 + hsz) offset += 4 * L->colors; /* Pillow's repair of a header-only offset */
        at += L->colors * L->entry;
    }
    L->rows_at = offset ? offset : at; /* Pillow: no offset, the pixels follow */
    VLP_TRY(image_check_size(what, L->w, L->h, n, err));
    L->stride = (((size_t)L->w * bits + 31) >> 3) & ~(size_t)3;
    /* Pillow's raw decoder stops after the last row's pixels: its padding may be missing */
    size_t need = L->stride * (size_t)(L->h - 1) + (((size_t)L->w * bits + 7) >> 3);
    if (L->rows_at > n || need > n - L->rows_at)
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: the pixels are cut short (%zu bytes of rows from byte %zu; the file has %zu)", what,
                 need, L->rows_at, n);
    L->avail = n - L->rows_at < L->stride * (size_t)L->h ? n - L->rows_at : L->stride * (size_t)L->h;
    return VLP_OK;
}

/* the file stb_image is given: a V4 header, the index palette, the rows */
static uint8_t *canonical_file(const bmp_layout *L, const uint8_t *b, size_t *len) {
    size_t pal = L->bits <= 8 ? 256 * 4 : 0, rows = L->stride * (size_t)L->h;
    *len = CANON_AT + pal + rows;
    uint8_t *c = calloc(1, *len);
    if (!c) return NULL;
    c[0] = 'B', c[1] = 'M';
    put32(c + 2, (uint32_t)*len), put32(c + 10, (uint32_t)(CANON_AT + pal));
    uint8_t *h = c + 14;
    put32(h, BMP_V4), put32(h + 4, (uint32_t)L->w);
    put32(h + 8, L->top_down ? (uint32_t)-(int32_t)L->h : (uint32_t)L->h);
    put16(h + 12, 1), put16(h + 14, L->bits);
    put32(h + 16, L->bits == 16 || L->bits == 32 ? BMP_BITFIELDS : BMP_RAW); /* 24-bit BITFIELDS is BGR */
    put32(h + 20, (uint32_t)rows), put32(h + 32, pal ? 256 : 0);
    for (int i = 0; i < 4; i++) put32(h + 40 + 4 * i, L->mask[i]);
    for (size_t i = 0; i < pal / 4; i++) c[CANON_AT + 4 * i + 2] = (uint8_t)i; /* red = the index */
    memcpy(c + CANON_AT + pal, b + L->rows_at, L->avail); /* the rest stays zero */
    return c;
}

/* a channel stb widened from k bits by replication, as Pillow widens it: v * 255 / (2^k - 1) */
static uint8_t pillow_widen(uint8_t stb, uint32_t mask) {
    int k = __builtin_popcount(mask);
    if (k >= 8 || k == 0) return stb;
    unsigned v = stb >> (8 - k);
    return (uint8_t)(v * 255 / ((1u << k) - 1));
}

vlp_err image_decode_bmp(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err) {
    (void)o;
    bmp_layout L;
    VLP_TRY(read_layout(bytes, n, what, &L, err));
    size_t len;
    uint8_t *canon = canonical_file(&L, bytes, &len);
    VLP_CHECK_ALLOC(canon, err, len);
    int want = L.mode == IMAGE_RGBA ? 4 : 3, w = 0, h = 0, got = 0;
    uint8_t *px = stbi_load_from_memory(canon, (int)len, &w, &h, &got, want);
    free(canon);
    if (!px || w != L.w || h != L.h) {
        const char *why = px ? "a different size" : stbi_failure_reason();
        stbi_image_free(px);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: BMP: stb_image: %s", what, why ? why : "failed");
    }
    image_u8 im;
    vlp_err rc = image_alloc(&im, w, h, L.mode, what, err);
    size_t np = (size_t)w * h;
    if (rc == VLP_OK) switch (L.mode) {
        case IMAGE_RGB: case IMAGE_RGBA:
            if (L.bits == 16)
                for (size_t i = 0; i < np * 3; i++) px[i] = pillow_widen(px[i], L.mask[i % 3]);
            memcpy(im.px, px, np * (size_t)want);
            break;
        case IMAGE_1: for (size_t i = 0; i < np; i++) im.px[i] = px[3 * i] ? 255 : 0; break;
        case IMAGE_L: for (size_t i = 0; i < np; i++) im.px[i] = px[3 * i]; break;
        default: /* IMAGE_P */
            for (size_t i = 0; i < np; i++) im.px[i] = px[3 * i];
            for (unsigned i = 0; i < 256; i++) {
                uint8_t *e = im.palette + 4 * i;
                const uint8_t *f = L.palette + (size_t)i * L.entry;
                if (i < L.colors) e[0] = f[2], e[1] = f[1], e[2] = f[0];
                else e[0] = e[1] = e[2] = (uint8_t)i; /* Pillow 9.4's ramp past the palette */
                e[3] = 255;
            }
        }
    stbi_image_free(px);
    if (rc == VLP_OK) *out = im;
    return rc;
}
