#include "plot.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { W = 640, H = 420, LEFT = 60, RIGHT = 20, TOP = 20, BOTTOM = 50 };

/* 5x7 glyphs of "0123456789.", each row 5 bits, high bit leftmost */
static const unsigned char font[11][7] = {
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C},
};

typedef struct canvas {
    unsigned char px[H][W][3];
} canvas;

static void dot(canvas *c, int x, int y, const unsigned char rgb[3]) {
    if (x >= 0 && x < W && y >= 0 && y < H) memcpy(c->px[y][x], rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int n = abs(x1 - x0) > abs(y1 - y0) ? abs(x1 - x0) : abs(y1 - y0);
    for (int i = 0; i <= n; i++)
        dot(c, x0 + (n ? (x1 - x0) * i / n : 0), y0 + (n ? (y1 - y0) * i / n : 0), rgb);
}

/* text of digits and dots, 2x scaled, its top-left at (x, y) */
static void text(canvas *c, int x, int y, const char *s, const unsigned char rgb[3]) {
    for (; *s; s++, x += 12) {
        int g = *s == '.' ? 10 : *s - '0';
        if (g < 0 || g > 10) continue;
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (font[g][r] >> (4 - b) & 1)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) dot(c, x + 2 * b + dx, y + 2 * r + dy, rgb);
    }
}

bool plot_logx_scatter(const char *path, const double *x, const double *y, int n, double slope, double intercept) {
    static const unsigned char black[3] = {0, 0, 0}, grey[3] = {200, 200, 200}, blue[3] = {30, 90, 200},
                               red[3] = {210, 40, 40};
    canvas *c = malloc(sizeof *c);
    if (!c) return fprintf(stderr, "plot: out of memory\n"), false;
    memset(c->px, 255, sizeof c->px);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > 0) lo = fmin(lo, log10(x[i])), hi = fmax(hi, log10(x[i]));
    if (!(lo <= hi)) lo = 0, hi = 1;
    lo = floor(lo), hi = ceil(hi);
    if (hi == lo) hi = lo + 1;
    int pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
#define PX(lx) (LEFT + (int)lround(((lx) - lo) / (hi - lo) * pw))
#define PY(v) (TOP + ph - (int)lround((v) * ph))
    for (int d = (int)lo; d <= (int)hi; d++) { /* decades: grid, tick, label */
        line(c, PX(d), TOP, PX(d), TOP + ph, grey);
        char lab[32];
        snprintf(lab, sizeof lab, "%.0f", pow(10, d));
        int lx = PX(d) - 6 * (int)strlen(lab), room = W - 12 * (int)strlen(lab) - 2;
        if (d >= 0) text(c, lx < room ? lx : room, TOP + ph + 10, lab, black);
    }
    const char *ylab[] = {"0", "0.5", "1"};
    for (int k = 0; k < 3; k++) {
        line(c, LEFT, PY(k * 0.5), LEFT + pw, PY(k * 0.5), grey);
        text(c, LEFT - 12 * (int)strlen(ylab[k]) - 8, PY(k * 0.5) - 7, ylab[k], black);
    }
    line(c, LEFT, TOP, LEFT, TOP + ph, black);
    line(c, LEFT, TOP + ph, LEFT + pw, TOP + ph, black);
    if (isfinite(slope) && isfinite(intercept)) { /* the fit, clipped to [0, 1] */
        int prev_x = -1, prev_y = -1;
        for (int px = 0; px <= pw; px++) {
            double v = intercept + slope * (lo + (hi - lo) * px / pw);
            if (v < 0 || v > 1) { prev_x = -1; continue; }
            int X = LEFT + px, Y = PY(v);
            if (prev_x >= 0) line(c, prev_x, prev_y, X, Y, red);
            prev_x = X, prev_y = Y;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!(x[i] > 0) || !(y[i] >= 0 && y[i] <= 1)) continue;
        int X = PX(log10(x[i])), Y = PY(y[i]);
        for (int dy = -3; dy <= 3; dy++)
            for (int dx = -3; dx <= 3; dx++)
                if (dx * dx + dy * dy <= 9) dot(c, X + dx, Y + dy, blue);
    }
#undef PX
#undef PY
    FILE *fp = fopen(path, "wb");
    png_structp png = fp ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    bool ok = info != NULL;
    if (ok && setjmp(png_jmpbuf(png))) ok = false;
    else if (ok) {
        png_init_io(png, fp);
        png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                     PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int r = 0; r < H; r++) png_write_row(png, c->px[r][0]);
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    if (fp && fclose(fp) != 0) ok = false;
    if (!ok) fprintf(stderr, "plot: cannot write %s\n", path);
    free(c);
    return ok;
}
