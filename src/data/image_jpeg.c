/* JPEG through libjpeg-turbo, to the mode Pillow gives: L for grey, RGB,
 * and CMYK for four components (YCCK converted by libjpeg). Pillow reads
 * every four-component JPEG with Adobe's inverted convention ("CMYK;I"),
 * marker or not, so the bytes are inverted back here as it does. A file
 * that ends before its end-of-image marker is refused, as Pillow refuses it
 * ("image file is truncated"), where libjpeg would pad it with grey. */
#include "data/image_codec.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    bool cut; // libjpeg met the end of the data before the end-of-image marker
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* warnings are not errors (Pillow ignores libjpeg's: corrupt data it can
 * decode past), except the end of the data, which Pillow refuses */
static void jpeg_warn(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ((jpeg_err *)cinfo->err)->cut = true;
}

vlp_err image_decode_jpeg(const uint8_t *bytes, size_t n, const char *what, const image_decode_opts *o,
                          image_u8 *out, vlp_error *err) {
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    image_u8 im = {0};
    uint8_t *volatile px = NULL; /* what longjmp must free */
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_warn;
    je.cut = false;
    if (setjmp(je.jump)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: JPEG: %s", what, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, bytes, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    image_mode mode = IMAGE_RGB;
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) ci.out_color_space = JCS_CMYK, mode = IMAGE_CMYK;
    else if (ci.num_components == 1) ci.out_color_space = JCS_GRAYSCALE, mode = IMAGE_L;
    else ci.out_color_space = JCS_RGB;
    if (o && o->min_side > 0) { /* libjpeg's scaled IDCT: far cheaper than decoding then shrinking */
        unsigned denom = 8;
        while (denom > 1 && (ci.image_width / denom < (unsigned)o->min_side ||
                             ci.image_height / denom < (unsigned)o->min_side))
            denom /= 2;
        ci.scale_num = 1, ci.scale_denom = denom;
    }
    jpeg_calc_output_dimensions(&ci);
    vlp_err rc = image_check_plausible(what, (long)ci.image_width, (long)ci.image_height, n, err);
    if (rc == VLP_OK) rc = image_check_size(what, (long)ci.output_width, (long)ci.output_height, n, err);
    if (rc == VLP_OK) rc = image_alloc(&im, (int)ci.output_width, (int)ci.output_height, mode, what, err);
    if (rc != VLP_OK) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    px = im.px;
    jpeg_start_decompress(&ci);
    size_t stride = (size_t)ci.output_width * (size_t)ci.output_components;
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = im.px + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    if (je.cut) {
        image_free(&im);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: JPEG: the file ends before the image does (cut short; Pillow refuses it too)",
                 what);
    }
    if (mode == IMAGE_CMYK) /* Pillow's "CMYK;I" */
        for (size_t i = 0; i < stride * im.h; i++) im.px[i] = (uint8_t)(255 - im.px[i]);
    *out = im;
    return VLP_OK;
}
