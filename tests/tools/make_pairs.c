/* Writes N small PNGs into DIR and their pairs as a TSV on stdout, for the
 * command-line tests: image i is a square of colour i % 8 on a grey field at
 * corner (i / 8) % 4, its caption says both, its label is the colour.
 *   make_pairs DIR N [SIZE]        (SIZE default 32) */
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const colours[8] = {"red", "green", "blue", "yellow",
                                       "purple", "cyan", "white", "black"};
static const unsigned char rgb[8][3] = {{220, 30, 30},  {30, 200, 40},   {40, 60, 220},
                                        {230, 220, 40}, {150, 40, 170},  {40, 210, 210},
                                        {250, 250, 250}, {10, 10, 10}};
static const char *const corners[4] = {"top left", "top right", "bottom left", "bottom right"};

static int write_png(const char *path, int size, int colour, int corner) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return 1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *row = malloc((size_t)size * 3);
    if (!png || !info || !row || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(row);
        fclose(fp);
        return 1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)size, (png_uint_32)size, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    int h = size / 2, x0 = corner % 2 ? h : 0, y0 = corner / 2 ? h : 0;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            bool in = x >= x0 && x < x0 + h && y >= y0 && y < y0 + h;
            for (int c = 0; c < 3; c++) row[3 * x + c] = in ? rgb[colour][c] : 128;
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return fclose(fp) != 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: make_pairs DIR N [SIZE]\n");
        return 2;
    }
    int n = atoi(argv[2]), size = argc > 3 ? atoi(argv[3]) : 32;
    printf("filepath\ttitle\tcolour\n");
    for (int i = 0; i < n; i++) {
        char path[4096];
        int colour = i % 8, corner = (i / 8) % 4;
        snprintf(path, sizeof path, "%s/img%03d.png", argv[1], i);
        if (write_png(path, size, colour, corner)) {
            fprintf(stderr, "make_pairs: cannot write %s\n", path);
            return 1;
        }
        printf("%s\ta %s square at the %s\t%s\n", path, colours[colour], corners[corner], colours[colour]);
    }
    return 0;
}
