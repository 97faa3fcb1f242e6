/* Every image mode against Pillow 9.4 + torchvision (tests/ref/make_modes_ref.py):
 * for each committed image (RGBA and LA with transparent and half-transparent
 * pixels, palettes with and without a transparent index, bilevel, grey,
 * 16-bit grey, CMYK and grey JPEG, WebP lossless and lossy with alpha,
 * animated, GIF with and without a transparent index, grey, animated, TIFF
 * RGB, RGBA, grey, bilevel, palette, CMYK, grey + alpha, JPEG-compressed, in
 * strips and in tiles, BMP of every bit depth and header Pillow reads), the
 * mode it opens in, its convert('RGB'), open_clip's eval
 * transform at a size that resizes and at one that does not, and a fixed
 * resized crop (the train transform's), all equal to Pillow's pixels
 * exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "data/image.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* the number of values that differ from the reference (h, w, 3), and the worst difference */
static int differ(const image_u8 *im, const vlpt_file *f, const char *name, int *worst) {
    const vlpt_tensor *t = vlpt_find(f, name);
    if (!t) fail_msg("%s: not in the reference", name);
    if (t->ndim != 3 || t->dims[0] != im->h || t->dims[1] != im->w || im->mode != IMAGE_RGB)
        fail_msg("%s: %dx%d %s, Pillow %lldx%lld", name, im->w, im->h, image_mode_name(im->mode),
                 (long long)t->dims[1], (long long)t->dims[0]);
    const int32_t *want = t->data;
    int bad = 0;
    *worst = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) {
        int d = abs((int)im->px[i] - want[i]);
        bad += d != 0;
        if (d > *worst) *worst = d;
    }
    return bad;
}

static void test_modes_match_pillow(void **state) {
    const char *dir = "tests/ref/modes";
    char path[512];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *m = fopen(path, "r");
    if (!m) fail_msg("cannot open %s", path);
    vlpt_file *f = ref_open("modes/modes");
    char line[512];
    int files = 0, failures = 0;
    while (fgets(line, sizeof line, m)) {
        char file[128], mode[16];
        int S1, S2, cx, cy, cw, ch, cS;
        if (line[0] == '#' || sscanf(line, "%127s %15s %d %d %d %d %d %d %d", file, mode, &S1, &S2, &cx, &cy, &cw, &ch, &cS) != 9)
            continue;
        files++;
        snprintf(path, sizeof path, "%s/%s", dir, file);
        image_u8 im, out;
        vlp_error err = {0};
        image_decode_opts drop = {0};
        check(image_load(path, &drop, &im, &err), &err);
        if (strcmp(image_mode_name(im.mode), mode)) {
            print_message("%s: opens as %s, Pillow %s\n", file, image_mode_name(im.mode), mode);
            failures++;
        }
        struct { const char *what; int S; } cases[] = {{"decode", 0}, {"eval", S1}, {"eval", S2}, {"crop", cS}};
        for (int k = 0; k < 4; k++) {
            char name[200];
            if (k == 0) check(image_to_rgb(&im, &out, &err), &err), snprintf(name, sizeof name, "%s:decode", file);
            else if (k < 3) check(image_eval_rgb(&im, cases[k].S, &out, &err), &err),
                            snprintf(name, sizeof name, "%s:eval_%d", file, cases[k].S);
            else check(image_crop_rgb(&im, (crop_box){cx, cy, cw, ch}, cS, &out, &err), &err),
                 snprintf(name, sizeof name, "%s:crop", file);
            int worst, bad = differ(&out, f, name, &worst);
            if (bad) print_message("%s: %d values differ from Pillow, by up to %d\n", name, bad, worst), failures++;
            image_free(&out);
        }
        image_free(&im);
    }
    fclose(m);
    vlpt_free(f);
    assert_true(files >= 51);
    if (failures) fail_msg("%d of %d cases differ from Pillow", failures, files * 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes_match_pillow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
