/* Images against PIL (tests/ref/make_image_ref.py): PNG and JPEG decode to
 * the very pixels PIL gives, bicubic resizes (down, up, a crop box, after a
 * JPEG decode) equal PIL's integers exactly, and the CLIP eval transform
 * equals PIL + torchvision's to 1e-6. Bad inputs of every kind are errors
 * naming the source, never crashes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "data/image.h"
#include <webp/encode.h>
#include <webp/types.h>

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* pixels equal to the reference (h, w, 3) int32 tensor, exactly */
static void assert_pixels(const char *what, const image_u8 *im, const vlpt_file *f, const char *name) {
    const vlpt_tensor *t = vlpt_find(f, name);
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    if (t->dims[0] != im->h || t->dims[1] != im->w) fail_msg("%s: %dx%d, PIL %lldx%lld", what, im->w, im->h, (long long)t->dims[1], (long long)t->dims[0]);
    const int32_t *want = t->data;
    int bad = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) {
        int d = abs((int)im->px[i] - want[i]);
        if (d) bad++;
        if (d > worst) worst = d, at = i;
    }
    if (bad) fail_msg("%s: %d values differ from PIL, worst by %d at %zu", what, bad, worst, at);
}

static const image_decode_opts DROP = {0};

/* a w x h grey image of a gradient */
static vlp_err image_alloc_for_test(image_u8 *im, int w, int h, vlp_error *err) {
    *im = (image_u8){.w = w, .h = h, .mode = IMAGE_L, .px = malloc((size_t)w * h)};
    if (!im->px) return vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "test image");
    for (size_t i = 0; i < (size_t)w * h; i++) im->px[i] = (uint8_t)(i * 7 % 251);
    return VLP_OK;
}

static void test_decode_matches_pil(void **state) {
    vlpt_file *f = ref_open("image");
    vlp_error err = {0};
    image_u8 png, jpg;
    check(image_load(ref_path("img_src.png"), &DROP, &png, &err), &err);
    assert_pixels("png decode", &png, f, "png_pixels");
    check(image_load(ref_path("img_src.jpg"), &DROP, &jpg, &err), &err);
    assert_pixels("jpeg decode", &jpg, f, "jpg_pixels");
    image_free(&png), image_free(&jpg);
    vlpt_free(f);
}

static void test_resize_matches_pil(void **state) {
    vlpt_file *f = ref_open("image");
    vlp_error err = {0};
    image_u8 src, jpg, out;
    check(image_load(ref_path("img_src.png"), &DROP, &src, &err), &err);
    check(image_load(ref_path("img_src.jpg"), &DROP, &jpg, &err), &err);
    check(image_resize(&src, 0, 0, src.w, src.h, 40, 25, &out, &err), &err);
    assert_pixels("resize down", &out, f, "resize_down");
    image_free(&out);
    check(image_resize(&src, 0, 0, src.w, src.h, 150, 90, &out, &err), &err);
    assert_pixels("resize up", &out, f, "resize_up");
    image_free(&out);
    check(image_resize(&src, 13, 7, 50, 40, 31, 17, &out, &err), &err);
    assert_pixels("resize box", &out, f, "resize_box");
    image_free(&out);
    check(image_resize(&jpg, 0, 0, jpg.w, jpg.h, 33, 21, &out, &err), &err);
    assert_pixels("resize jpeg", &out, f, "resize_jpg");
    image_free(&out);
    /* a box outside the image is an argument error */
    assert_int_equal(image_resize(&src, 90, 0, 20, 10, 5, 5, &out, &err), VLP_ERR_ARG);
    image_free(&src), image_free(&jpg);
    vlpt_free(f);
}

static void test_eval_transform_matches_torchvision(void **state) {
    vlpt_file *f = ref_open("image");
    vlp_error err = {0};
    image_u8 src;
    check(image_load(ref_path("img_src.png"), &DROP, &src, &err), &err);
    image_transform t = image_transform_default(32, false);
    float out[3 * 32 * 32];
    check(image_transform_apply(&t, &src, NULL, out, &err), &err);
    assert_close("eval transform", out, ref_f32(f, "eval_32", 3 * 32 * 32), 3 * 32 * 32, 1e-6, 1e-6);
    image_free(&src);
    vlpt_free(f);
}

static void test_train_transform(void **state) {
    vlp_error err = {0};
    image_u8 src;
    check(image_load(ref_path("img_src.png"), &DROP, &src, &err), &err);
    image_transform t = image_transform_default(24, true);
    t.scale_lo = 0.5f; /* 97x61 is wider than 4:3: at 0.9 every attempt fails and the crop is central */
    float a[3 * 24 * 24], b[3 * 24 * 24];
    rng64 r1 = {5}, r2 = {5}, r3 = {6};
    check(image_transform_apply(&t, &src, &r1, a, &err), &err);
    check(image_transform_apply(&t, &src, &r2, b, &err), &err);
    assert_memory_equal(a, b, sizeof a); /* same seed, same crop */
    check(image_transform_apply(&t, &src, &r3, b, &err), &err);
    assert_memory_not_equal(a, b, sizeof a);
    /* crops stay inside, keep 90-100% of the area (a square source), ratios within limits */
    rng64 r = {9};
    for (int i = 0; i < 1000; i++) {
        crop_box c = random_resized_crop(80, 80, 0.9f, 1.0f, 0.75f, 4.0f / 3, &r);
        assert_true(c.x >= 0 && c.y >= 0 && c.x + c.w <= 80 && c.y + c.h <= 80 && c.w > 0 && c.h > 0);
        double area = (double)c.w * c.h / (80.0 * 80), ratio = (double)c.w / c.h;
        assert_true(area > 0.87 && area <= 1.0 && ratio > 0.72 && ratio < 1.37);
    }
    /* the wide source falls back to the central 4:3 crop, as torchvision */
    crop_box c = random_resized_crop(97, 61, 0.9f, 1.0f, 0.75f, 4.0f / 3, &r);
    assert_int_equal(c.h, 61);
    assert_int_equal(c.w, 81);
    assert_int_equal(c.x, 8);
    image_free(&src);
}

/* libjpeg's scaled decode: the smallest 1/2^k scale keeping both sides >= min_side */
static void test_scaled_jpeg_decode(void **state) {
    vlp_error err = {0};
    image_u8 im;
    image_decode_opts o = {.min_side = 30};
    check(image_load(ref_path("img_src.jpg"), &o, &im, &err), &err);
    assert_int_equal(im.w, 49); /* 97x61 at 1/2 */
    assert_int_equal(im.h, 31);
    image_free(&im);
    o.min_side = 40; /* 1/2 would give 31 rows: full size */
    check(image_load(ref_path("img_src.jpg"), &o, &im, &err), &err);
    assert_int_equal(im.w, 97);
    image_free(&im);
}

/* WebP, lossless: the decode gives back the encoded pixels; alpha dropped or composited */
static void test_webp(void **state) {
    uint8_t rgba[8 * 4 * 4];
    for (int i = 0; i < 8 * 4; i++) rgba[4 * i] = (uint8_t)(i * 7), rgba[4 * i + 1] = 200, rgba[4 * i + 2] = 3, rgba[4 * i + 3] = i < 16 ? 255 : 0;
    uint8_t *enc = NULL;
    size_t n = WebPEncodeLosslessRGBA(rgba, 8, 4, 8 * 4, &enc);
    assert_true(n > 0);
    vlp_error err = {0};
    image_u8 im;
    check(image_decode(enc, n, "t.webp", &DROP, &im, &err), &err);
    assert_int_equal(im.w, 8);
    assert_int_equal(im.h, 4);
    assert_int_equal(im.mode, IMAGE_RGBA); /* as Pillow opens it */
    /* opaque pixels exactly (the encoder may rewrite the colour under alpha 0) */
    for (int i = 0; i < 16; i++) assert_int_equal(im.px[4 * i], rgba[4 * i]);
    image_free(&im);
    image_decode_opts white = {.composite = true, .background = {255, 255, 255}};
    image_u8 rgb;
    check(image_decode(enc, n, "t.webp", &white, &im, &err), &err);
    check(image_to_rgb(&im, &rgb, &err), &err);
    assert_int_equal(rgb.px[3 * 20 + 1], 255); /* transparent: the background */
    assert_int_equal(rgb.px[3 * 2 + 1], 200);  /* opaque: itself */
    image_free(&im), image_free(&rgb);
    assert_int_equal(image_decode(enc, n / 2, "half.webp", &DROP, &im, &err), VLP_ERR_FORMAT);
    WebPFree(enc);
}

static void test_bad_images(void **state) {
    vlp_error err = {0};
    image_u8 im;
    /* not an image */
    assert_int_equal(image_decode("hello", 5, "hello.txt", &DROP, &im, &err), VLP_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "hello.txt"));
    assert_int_equal(image_decode("", 0, "empty", &DROP, &im, &err), VLP_ERR_UNSUPPORTED);
    /* every truncation of real files */
    const char *files[] = {"img_src.png", "img_src.jpg"};
    for (int k = 0; k < 2; k++) {
        FILE *fp = fopen(ref_path(files[k]), "rb");
        assert_non_null(fp);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        for (size_t cut = 0; cut < n; cut += cut < 64 ? 1 : 97) {
            /* refused, as Pillow refuses it ("image file is truncated"); a PNG cut
             * after its last IDAT opens (test_png_without_iend_and_tall_images) */
            vlp_err rc = image_decode(buf, cut, files[k], &DROP, &im, &err);
            if (rc == VLP_OK && k == 0 && cut + 12 >= n) image_free(&im);
            else assert_int_not_equal(rc, VLP_OK), assert_non_null(strstr(err.message, files[k]));
        }
        /* flipped bytes in the middle */
        for (int trial = 0; trial < 50; trial++) {
            static uint8_t mut[1 << 16];
            memcpy(mut, buf, n);
            rng r = {(uint64_t)trial + 100};
            for (int j = 0; j < 8; j++) mut[16 + rng_u64(&r) % (n - 16)] ^= (uint8_t)(1 + rng_u64(&r) % 255);
            if (image_decode(mut, n, files[k], &DROP, &im, &err) == VLP_OK) image_free(&im);
        }
    }
    /* a PNG header claiming 100000 x 100000 pixels */
    static const uint8_t huge[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                   0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0, 0, 0, 0, 0};
    assert_int_not_equal(image_decode(huge, sizeof huge, "huge.png", &DROP, &im, &err), VLP_OK);
    assert_int_equal(image_load("/nonexistent.png", &DROP, &im, &err), VLP_ERR_IO);
}

/* review findings (issue 32): a PNG cut after its last IDAT (no IEND) opens,
 * as in Pillow, with the same pixels; a very tall image's eval transform
 * resizes to an intermediate longer than 32768 rows, as torchvision does */
static void test_png_without_iend_and_tall_images(void **state) {
    FILE *fp = fopen(ref_path("img_src.png"), "rb");
    assert_non_null(fp);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 12 && !memcmp(buf + n - 8, "IEND", 4));
    vlp_error err = {0};
    image_u8 whole, cut;
    check(image_decode(buf, n, "whole.png", &DROP, &whole, &err), &err);
    check(image_decode(buf, n - 12, "no-iend.png", &DROP, &cut, &err), &err);
    assert_memory_equal(whole.px, cut.px, (size_t)whole.w * whole.h * 3);
    image_free(&whole), image_free(&cut);
    image_u8 tall, out;
    vlp_error e2 = {0};
    check(image_alloc_for_test(&tall, 150, 32768, &e2), &e2);
    check(image_eval_rgb(&tall, 224, &out, &e2), &e2); /* 224 x 48933 before the crop */
    assert_int_equal(out.w, 224);
    image_free(&tall), image_free(&out);
}

/* BMP: what Pillow 9.4 reads and stb_image does not, or neither, is refused
 * by name (test_image_modes checks the pixels of what is read); no cut of a
 * file crashes, and a cut into the rows' pixels is refused as Pillow refuses
 * it (the last row's padding alone may be missing, as in Pillow) */
static void test_bmp_refusals(void **state) {
    static uint8_t buf[1 << 15];
    const char *files[] = {"modes/bmp_palette8.bmp", "modes/bmp_rgb565.bmp", "modes/bmp_os2_palette8.bmp",
                           "modes/bmp_rgba32_v5.bmp"};
    vlp_error err = {0};
    image_u8 im;
    for (int k = 0; k < 4; k++) {
        FILE *fp = fopen(ref_path(files[k]), "rb");
        assert_non_null(fp);
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        check(image_decode(buf, n, files[k], &DROP, &im, &err), &err);
        image_free(&im);
        for (size_t cut = 0; cut + 3 < n; cut++) { /* the last row's padding (< 4 bytes) may be missing */
            assert_int_not_equal(image_decode(buf, cut, files[k], &DROP, &im, &err), VLP_OK);
            assert_non_null(strstr(err.message, files[k]));
        }
        if (k == 1) { /* 37 pixels of 16 bits: 74 bytes a row, 2 of padding */
            check(image_decode(buf, n - 2, "nopad.bmp", &DROP, &im, &err), &err);
            image_free(&im);
            assert_int_not_equal(image_decode(buf, n - 3, "cut.bmp", &DROP, &im, &err), VLP_OK);
            assert_non_null(strstr(err.message, "cut.bmp: BMP: the pixels are cut short"));
        }
    }
    FILE *fp = fopen(ref_path("modes/bmp_palette8.bmp"), "rb");
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    buf[30] = 1; /* RLE8 */
    assert_int_equal(image_decode(buf, n, "rle.bmp", &DROP, &im, &err), VLP_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "rle.bmp: RLE-compressed BMP: not read"));
    buf[30] = 0, buf[28] = 2; /* 2 bits a pixel */
    assert_int_equal(image_decode(buf, n, "2bit.bmp", &DROP, &im, &err), VLP_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "2bit.bmp: BMP of 2 bits a pixel: not read"));
    assert_int_not_equal(image_decode("BMW 3 series, 1998, low mileage", 31, "car.txt", &DROP, &im, &err), VLP_OK);
    assert_non_null(strstr(err.message, "car.txt: BMP header of"));
    assert_int_equal(image_decode("not an image", 12, "x.txt", &DROP, &im, &err), VLP_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "x.txt: not a JPEG, PNG, WebP, GIF, TIFF or BMP image (12 bytes)"));
    assert_true(image_ext_known("bmp") && image_ext_known("JPG") && image_ext_known("tiff"));
    assert_false(image_ext_known("txt") || image_ext_known("") || image_ext_known(NULL));
}

/* a GIF cut after its first frame's last data block opens as in Pillow (which
 * needs neither the block terminator nor the trailer); one byte fewer is
 * refused, as Pillow refuses it ("image file is truncated") */
static void test_gif_without_terminator(void **state) {
    static uint8_t buf[1 << 15];
    FILE *fp = fopen(ref_path("modes/palette.gif"), "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 3 && buf[n - 1] == 0x3B && buf[n - 2] == 0);
    vlp_error err = {0};
    image_u8 whole, cut;
    check(image_decode(buf, n, "whole.gif", &DROP, &whole, &err), &err);
    for (size_t k = 1; k <= 2; k++) {
        check(image_decode(buf, n - k, "cut.gif", &DROP, &cut, &err), &err);
        assert_memory_equal(whole.px, cut.px, (size_t)whole.w * whole.h);
        image_free(&cut);
    }
    assert_int_not_equal(image_decode(buf, n - 3, "cut3.gif", &DROP, &cut, &err), VLP_OK);
    assert_non_null(strstr(err.message, "cut3.gif: GIF"));
    image_free(&whole);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_pil),
        cmocka_unit_test(test_resize_matches_pil),
        cmocka_unit_test(test_eval_transform_matches_torchvision),
        cmocka_unit_test(test_train_transform),
        cmocka_unit_test(test_scaled_jpeg_decode),
        cmocka_unit_test(test_webp),
        cmocka_unit_test(test_bad_images),
        cmocka_unit_test(test_png_without_iend_and_tall_images),
        cmocka_unit_test(test_bmp_refusals),
        cmocka_unit_test(test_gif_without_terminator),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
