/* torchvision's transforms as open_clip composes them (image.h): geometry,
 * resize in the image's mode, convert('RGB'), normalise. */
#include "data/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

vlp_err image_eval_rgb(const image_u8 *in, int S, image_u8 *out, vlp_error *err) {
    int rw, rh;
    crop_box box;
    eval_geometry(in->w, in->h, S, &rw, &rh, &box);
    image_u8 res, crop;
    VLP_TRY(image_resize(in, 0, 0, in->w, in->h, rw, rh, &res, err)); /* same size: a copy, as torchvision */
    vlp_err rc = image_crop(&res, box, &crop, err);
    image_free(&res);
    VLP_TRY(rc);
    rc = image_to_rgb(&crop, out, err);
    image_free(&crop);
    return rc;
}

vlp_err image_crop_rgb(const image_u8 *in, crop_box c, int S, image_u8 *out, vlp_error *err) {
    /* F.resized_crop: an integer crop, then a resize of the crop alone (no
     * box on the whole image: its edge pixels are not read) */
    image_u8 crop, res;
    VLP_TRY(image_crop(in, c, &crop, err));
    vlp_err rc = image_resize(&crop, 0, 0, crop.w, crop.h, S, S, &res, err);
    image_free(&crop);
    VLP_TRY(rc);
    rc = image_to_rgb(&res, out, err);
    image_free(&res);
    return rc;
}

vlp_err image_transform_apply(const image_transform *t, const image_u8 *in, rng64 *r, float *out,
                              vlp_error *err) {
    int S = t->size;
    image_u8 rgb;
    bool flip = false;
    if (t->train) {
        VLP_CHECK_ARG(r, err, "the train transform needs a random generator");
        crop_box c = random_resized_crop(in->w, in->h, t->scale_lo, t->scale_hi, t->ratio_lo, t->ratio_hi, r);
        VLP_TRY(image_crop_rgb(in, c, S, &rgb, err));
        flip = t->hflip && (rng64_u64(r) & 1);
    } else VLP_TRY(image_eval_rgb(in, S, &rgb, err));
    /* ToTensor then Normalize as torch computes them in float32: (v / 255 - mean) / std */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - t->mean[c]) / t->std[c];
    size_t plane = (size_t)S * S;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const uint8_t *p = rgb.px + ((size_t)y * S + (flip ? S - 1 - x : x)) * 3;
            for (int c = 0; c < 3; c++) out[c * plane + (size_t)y * S + x] = lut[c][p[c]];
        }
    image_free(&rgb);
    return VLP_OK;
}
