/* Vision stem: patch embedding (conv1) and class token + positions. */
#include "ops/ops.h"
#include "ops/gemm.h"
#include "core/error.h"
#include "core/parallel.h"

#include <string.h>

vlp_err patch_embed_forward(float *out, float *cols, const float *img, const float *weight,
                            int B, int Cin, int H, int Wd, int P, int W, vlp_error *err) {
    VLP_CHECK_SHAPE(B > 0 && Cin > 0 && P > 0 && W > 0, err,
                    "patch embed dims must be positive: B=%d channels=%d patch=%d width=%d", B,
                    Cin, P, W);
    VLP_CHECK_SHAPE(H > 0 && Wd > 0 && H % P == 0 && Wd % P == 0, err,
                    "image %dx%d is not a whole number of %dx%d patches", H, Wd, P, P);
    int gh = H / P, gw = Wd / P, NP = gh * gw, K = Cin * P * P;
    VLP_OMP_FOR
    for (int bp = 0; bp < B * NP; bp++) {
        int b = bp / NP, p = bp % NP, py = p / gw, px = p % gw;
        float *col = cols + (size_t)bp * K;
        for (int ch = 0; ch < Cin; ch++)
            for (int y = 0; y < P; y++) {
                const float *src =
                    img + (((size_t)b * Cin + ch) * H + (size_t)py * P + y) * Wd + (size_t)px * P;
                memcpy(col + ((size_t)ch * P + y) * P, src, sizeof(float) * P);
            }
    }
    (void)gh;
    vlp_sgemm(false, true, B * NP, W, K, 1.0f, cols, K, weight, K, 0.0f, out, W);
    return VLP_OK;
}

size_t patch_embed_scratch_floats(int B, int Cin, int H, int Wd, int P) {
    return (size_t)B * (H / P) * (Wd / P) * Cin * P * P;
}

void patch_embed_backward(float *dimg, float *dweight, const float *dout, const float *cols,
                          const float *weight, float *scratch, int B, int Cin, int H, int Wd,
                          int P, int W) {
    int gw = Wd / P, NP = (H / P) * gw, K = Cin * P * P;
    if (dweight) vlp_sgemm(true, false, W, K, B * NP, 1.0f, dout, W, cols, K, 1.0f, dweight, K);
    if (!dimg) return;
    float *dcols = scratch; // (B·NP, K)
    vlp_sgemm(false, false, B * NP, K, W, 1.0f, dout, W, weight, K, 0.0f, dcols, K);
    /* patches do not overlap (stride = kernel), so folding back is a scatter */
    VLP_OMP_FOR
    for (int bp = 0; bp < B * NP; bp++) {
        int b = bp / NP, p = bp % NP, py = p / gw, px = p % gw;
        const float *col = dcols + (size_t)bp * K;
        for (int ch = 0; ch < Cin; ch++)
            for (int y = 0; y < P; y++) {
                float *dst =
                    dimg + (((size_t)b * Cin + ch) * H + (size_t)py * P + y) * Wd + (size_t)px * P;
                const float *g = col + ((size_t)ch * P + y) * P;
                for (int x = 0; x < P; x++) dst[x] += g[x];
            }
    }
}

/* the token row of patch p in a sample's ascending keep list, −1: masked */
static int kept_row(const int32_t *keep, int NK, int p) {
    int lo = 0, hi = NK - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (keep[mid] == p) return mid;
        if (keep[mid] < p) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

void cls_pos_forward(float *out, const float *inp, const float *cls, const float *pos,
                     const int32_t *keep, int B, int NP, int NK, int W) {
    if (!keep) NK = NP;
    int T = NK + 1;
    VLP_OMP_FOR
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        int p = t == 0 ? -1 : keep ? keep[(size_t)b * NK + t - 1] : t - 1; /* the patch */
        float *o = out + (size_t)bt * W;
        const float *src = t == 0 ? cls : inp + ((size_t)b * NP + p) * W;
        const float *ps = pos + (size_t)(p + 1) * W;
        for (int c = 0; c < W; c++) o[c] = src[c] + ps[c];
    }
}

void cls_pos_backward(float *dinp, float *dcls, float *dpos, const float *dout,
                      const int32_t *keep, int B, int NP, int NK, int W) {
    if (!keep) NK = NP;
    int T = NK + 1;
    if (dinp) {
        VLP_OMP_FOR
        for (int bj = 0; bj < B * NK; bj++) {
            int b = bj / NK, j = bj % NK, p = keep ? keep[bj] : j;
            float *d = dinp + ((size_t)b * NP + p) * W;
            const float *g = dout + ((size_t)b * T + j + 1) * W;
            for (int c = 0; c < W; c++) d[c] += g[c];
        }
    }
    /* position row p+1 sums over the samples that kept patch p; row 0 of
     * dout (the class token) also feeds dcls */
    VLP_OMP_FOR
    for (int r = 0; r <= NP; r++) {
        for (int b = 0; b < B; b++) {
            int t = r == 0 ? 0 : keep ? 1 + kept_row(keep + (size_t)b * NK, NK, r - 1) : r;
            if (t < 0 || (r > 0 && t == 0)) continue;
            const float *g = dout + ((size_t)b * T + t) * W;
            if (dpos)
                for (int c = 0; c < W; c++) dpos[(size_t)r * W + c] += g[c];
            if (dcls && r == 0)
                for (int c = 0; c < W; c++) dcls[c] += g[c];
        }
    }
}
