/* GIF through giflib: the first frame, as Pillow 9.4 opens it
 * (GifImagePlugin): mode P with the frame's colour table (its own, else the
 * global one), or L when that table is absent or exactly the grey ramp
 * (index i is (i, i, i)); the canvas is the logical screen (grown to the
 * frame when the frame is larger), filled with the frame's transparent
 * index when it has one, else 0, and the frame decoded at its place. A
 * transparent index is only the palette's alpha (used to composite, never by
 * convert('RGB')). Indices past the table are grey i (Pillow 9.4's ramp). */
#include "data/image_codec.h"

#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

typedef struct gif_source {
    const uint8_t *bytes;
    size_t n, at;
    bool ended; // the one empty block given past the end
} gif_source;

/* Pillow opens a GIF whose first frame ends without its block terminator
 * (the file cut after the frame's last data block), which giflib, reading
 * on to that terminator, refuses: past the end of the bytes, one 0 (an empty
 * block) is read. A file cut inside the frame's data still fails, as in
 * Pillow: giflib refuses an empty block where data should be. */
static int gif_read(GifFileType *g, GifByteType *out, int len) {
    gif_source *s = g->UserData;
    size_t k = len < 0 ? 0 : (size_t)len;
    if (k > s->n - s->at) k = s->n - s->at;
    memcpy(out, s->bytes + s->at, k);
    s->at += k;
    if (k == 0 && len == 1 && !s->ended) {
        s->ended = true, out[0] = 0;
        return 1;
    }
    return (int)k;
}

/* Pillow's _is_palette_needed: false for the identity grey ramp */
static bool palette_needed(const ColorMapObject *m) {
    for (int i = 0; m && i < m->ColorCount; i++)
        if (m->Colors[i].Red != i || m->Colors[i].Green != i || m->Colors[i].Blue != i) return true;
    return false;
}

vlp_err image_decode_gif(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                         image_u8 *out, vlp_error *err) {
    (void)o;
    gif_source src = {bytes, n, 0, false};
    int code = 0;
    GifFileType *g = DGifOpen(&src, gif_read, &code);
    VLP_CHECK_FORMAT(g, err, "%s: GIF: %s", what, GifErrorString(code));
    int transparent = -1;
    vlp_err rc = VLP_OK;
    GifRecordType type;
    bool frame = false;
    while (rc == VLP_OK && !frame) { /* up to the first image: its graphic control's transparent index */
        if (DGifGetRecordType(g, &type) == GIF_ERROR) break;
        if (type == TERMINATE_RECORD_TYPE) break;
        if (type == EXTENSION_RECORD_TYPE) {
            int ext_code;
            GifByteType *ext;
            if (DGifGetExtension(g, &ext_code, &ext) == GIF_ERROR) break;
            if (ext_code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) transparent = ext[1] & 1 ? ext[4] : -1;
            while (ext && DGifGetExtensionNext(g, &ext) != GIF_ERROR && ext) {}
        } else if (type == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(g) == GIF_ERROR) break;
            frame = true;
        }
    }
    if (!frame) {
        const char *why = g->Error ? GifErrorString(g->Error) : "no image in the file";
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: GIF: %s", what, why ? why : "damaged");
        DGifCloseFile(g, &code);
        return rc;
    }
    GifImageDesc d = g->Image;
    long cw = g->SWidth, ch = g->SHeight;
    if ((long)d.Left + d.Width > cw) cw = (long)d.Left + d.Width;
    if ((long)d.Top + d.Height > ch) ch = (long)d.Top + d.Height;
    const ColorMapObject *map = d.ColorMap ? d.ColorMap : g->SColorMap;
    bool pal = d.ColorMap ? palette_needed(d.ColorMap) : palette_needed(g->SColorMap);
    image_u8 im = {0};
    rc = image_check_size(what, cw, ch, n, err);
    if (rc == VLP_OK && (d.Width <= 0 || d.Height <= 0))
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: GIF: an empty first frame", what);
    if (rc == VLP_OK) rc = image_alloc(&im, (int)cw, (int)ch, pal ? IMAGE_P : IMAGE_L, what, err);
    GifPixelType *line = rc == VLP_OK ? malloc((size_t)d.Width) : NULL;
    if (rc == VLP_OK && !line) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: a GIF line", what);
    if (rc == VLP_OK) {
        memset(im.px, transparent >= 0 ? transparent : 0, (size_t)cw * ch);
        static const int start[] = {0, 4, 2, 1}, step[] = {8, 8, 4, 2};
        int passes = d.Interlace ? 4 : 1;
        for (int p = 0; rc == VLP_OK && p < passes; p++)
            for (int y = d.Interlace ? start[p] : 0; rc == VLP_OK && y < d.Height; y += d.Interlace ? step[p] : 1) {
                if (DGifGetLine(g, line, d.Width) == GIF_ERROR)
                    rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: GIF: %s", what,
                                       GifErrorString(g->Error) ? GifErrorString(g->Error) : "damaged");
                else memcpy(im.px + (size_t)(d.Top + y) * cw + d.Left, line, (size_t)d.Width);
            }
    }
    if (rc == VLP_OK && pal)
        for (int i = 0; i < 256; i++) {
            uint8_t *e = im.palette + 4 * i;
            if (i < map->ColorCount) e[0] = map->Colors[i].Red, e[1] = map->Colors[i].Green, e[2] = map->Colors[i].Blue;
            else e[0] = e[1] = e[2] = (uint8_t)i; /* Pillow 9.4's ramp past the table */
            e[3] = i == transparent ? 0 : 255;
        }
    free(line);
    DGifCloseFile(g, &code);
    if (rc != VLP_OK) {
        image_free(&im);
        return rc;
    }
    *out = im;
    return VLP_OK;
}
