/* WebP through libwebp, to the mode Pillow gives: RGBA when the file has
 * alpha, else RGB; an animation's first frame (libwebp's demuxer composes
 * it on a transparent canvas, as Pillow's WebPAnimDecoder). */
#include "data/image_codec.h"

#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

static vlp_err first_frame(const uint8_t *bytes, size_t n, const char *what, uint8_t *rgba, int w, int h,
                           vlp_error *err) {
    WebPData data = {bytes, n};
    WebPAnimDecoderOptions opt;
    WebPAnimDecoderOptionsInit(&opt);
    opt.color_mode = MODE_RGBA;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &opt);
    VLP_CHECK_FORMAT(dec, err, "%s: WebP animation is corrupt", what);
    uint8_t *frame = NULL;
    int ts;
    WebPAnimInfo info;
    bool ok = WebPAnimDecoderGetInfo(dec, &info) && (int)info.canvas_width == w && (int)info.canvas_height == h &&
              WebPAnimDecoderGetNext(dec, &frame, &ts);
    if (ok) memcpy(rgba, frame, (size_t)w * h * 4);
    WebPAnimDecoderDelete(dec);
    VLP_CHECK_FORMAT(ok, err, "%s: WebP animation: no first frame", what);
    return VLP_OK;
}

vlp_err image_decode_webp(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err) {
    (void)o;
    WebPBitstreamFeatures f;
    VLP_CHECK_FORMAT(WebPGetFeatures(bytes, n, &f) == VP8_STATUS_OK, err, "%s: not a valid WebP image", what);
    VLP_TRY(image_check_size(what, f.width, f.height, n, err));
    image_u8 im;
    VLP_TRY(image_alloc(&im, f.width, f.height, f.has_alpha ? IMAGE_RGBA : IMAGE_RGB, what, err));
    size_t np = (size_t)f.width * f.height;
    vlp_err rc = VLP_OK;
    if (f.has_animation) {
        uint8_t *rgba = f.has_alpha ? im.px : malloc(np * 4);
        rc = rgba ? first_frame(bytes, n, what, rgba, f.width, f.height, err)
                  : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: %zu pixels", what, np);
        if (rc == VLP_OK && !f.has_alpha)
            for (size_t i = 0; i < np; i++) memcpy(im.px + 3 * i, rgba + 4 * i, 3);
        if (rgba != im.px) free(rgba);
    } else {
        uint8_t *got = f.has_alpha ? WebPDecodeRGBAInto(bytes, n, im.px, np * 4, f.width * 4)
                                   : WebPDecodeRGBInto(bytes, n, im.px, np * 3, f.width * 3);
        if (!got) rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: WebP data is corrupt", what);
    }
    if (rc != VLP_OK) {
        image_free(&im);
        return rc;
    }
    *out = im;
    return VLP_OK;
}
