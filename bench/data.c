/*
 * bench/data: single-thread image throughput of the data pipeline, next to
 * the usual Python peer (PIL decode + PIL bicubic resize + center crop +
 * numpy normalisation, bench/peer/data.py) on the same encoded bytes:
 *   - JPEG 256x256 → the CLIP eval transform at 224 (decode, resize, crop, normalise);
 *   - PNG 64x64 RGBA → the train transform at 64 (decode, random resized crop, normalise).
 * The trainer's data-wait fraction is printed by `vlp train` in its summary.
 *   build/release/bench/data [--reps N] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>
#include <png.h>

#include "bench_util.h"
#include "blas_env.h"
#include "data/image.h"

/* a natural-looking test picture: gradients, noise, edges */
static void picture(uint8_t *px, int w, int h, int ch) {
    rng64 r = {42};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                int v = (c == 0 ? x * 255 / w : c == 1 ? y * 255 / h : (x ^ y) & 255) + (int)(rng64_u64(&r) % 32) - 16;
                if (c == 3) v = (x - w / 2) * (x - w / 2) + (y - h / 2) * (y - h / 2) < w * w / 5 ? 255 : 0;
                px[((size_t)y * w + x) * ch + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static unsigned char *make_jpeg(int w, int h, unsigned long *n) {
    uint8_t *px = malloc((size_t)w * h * 3);
    picture(px, w, h, 3);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    jpeg_mem_dest(&c, &out, n);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + (size_t)c.next_scanline * w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(px);
    return out;
}

static void *make_png(int w, int h, size_t *n) {
    uint8_t *px = malloc((size_t)w * h * 4);
    picture(px, w, h, 4);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION, img.width = (png_uint_32)w, img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGBA;
    png_image_write_to_memory(&img, NULL, n, 0, px, 0, NULL);
    void *out = malloc(*n);
    png_image_write_to_memory(&img, out, n, 0, px, 0, NULL);
    free(px);
    return out;
}

static double run(const void *bytes, size_t n, const image_transform *t, int reps, const char *what) {
    float *out = malloc(sizeof(float) * 3 * (size_t)t->size * t->size);
    image_decode_opts o = {0};
    rng64 r = {1};
    vlp_error err = {0};
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = bench_now();
        for (int i = 0; i < reps; i++) {
            image_u8 im;
            if (image_decode(bytes, n, what, &o, &im, &err) != VLP_OK ||
                image_transform_apply(t, &im, &r, out, &err) != VLP_OK) {
                fprintf(stderr, "bench/data: %s\n", err.message);
                exit(1);
            }
            image_free(&im);
        }
        double dt = (bench_now() - t0) / reps;
        if (dt < best) best = dt;
    }
    free(out);
    return 1.0 / best;
}

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/data")) return 2;
    int reps = 300, peer = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else {
            fprintf(stderr, "usage: bench/data [--reps N] [--no-peer]\n");
            return 2;
        }
    }
    unsigned long nj;
    size_t np;
    unsigned char *jpg = make_jpeg(256, 256, &nj);
    void *png = make_png(64, 64, &np);
    FILE *fp = fopen("/tmp/vlp-bench-data.jpg", "wb");
    fwrite(jpg, 1, nj, fp), fclose(fp);
    fp = fopen("/tmp/vlp-bench-data.png", "wb");
    fwrite(png, 1, np, fp), fclose(fp);
    image_transform eval224 = image_transform_default(224, false), train64 = image_transform_default(64, true);
    double vj = run(jpg, nj, &eval224, reps, "bench.jpg"), vp = run(png, np, &train64, 4 * reps, "bench.png");
    double pj = 0, pp = 0;
    if (peer) {
        FILE *p = popen("sh bench/peer/run.sh bench/peer/data.py /tmp/vlp-bench-data.jpg /tmp/vlp-bench-data.png 2>&1", "r");
        char line[256];
        while (p && fgets(line, sizeof line, p)) {
            sscanf(line, "peer jpeg %lf", &pj);
            sscanf(line, "peer png %lf", &pp);
        }
        if (p) pclose(p);
    }
    printf("| pipeline (1 thread) | vlp images/s | PIL+numpy images/s | ratio |\n|---|--:|--:|--:|\n");
    printf("| JPEG 256x256 -> eval 224 | %.0f | %.0f | %.2f |\n", vj, pj, pj > 0 ? vj / pj : 0);
    printf("| PNG 64x64 RGBA -> train 64 | %.0f | %.0f | %.2f |\n", vp, pp, pp > 0 ? vp / pp : 0);
    printf("RESULT name=data-jpeg256-eval224 isa=%s vlp=%.0f peer=%.0f ratio=%.2f\n", tool_isa(), vj, pj, pj > 0 ? vj / pj : 0);
    printf("RESULT name=data-png64-train64 isa=%s vlp=%.0f peer=%.0f ratio=%.2f\n", tool_isa(), vp, pp, pp > 0 ? vp / pp : 0);
    free(jpg), free(png);
    return 0;
}
