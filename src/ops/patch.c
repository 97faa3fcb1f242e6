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

void cls_pos_forward(float *out, const float *inp, const float *cls, const float *pos, int B,
                     int NP, int W) {
    int T = NP + 1;
    VLP_OMP_FOR
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        float *o = out + (size_t)bt * W;
        const float *src = t == 0 ? cls : inp + ((size_t)b * NP + t - 1) * W;
        const float *p = pos + (size_t)t * W;
        for (int c = 0; c < W; c++) o[c] = src[c] + p[c];
    }
}

void cls_pos_backward(float *dinp, float *dcls, float *dpos, const float *dout, int B, int NP,
                      int W) {
    int T = NP + 1;
    if (dinp) {
        VLP_OMP_FOR
        for (int bp = 0; bp < B * NP; bp++) {
            int b = bp / NP, p = bp % NP;
            float *d = dinp + (size_t)bp * W;
            const float *g = dout + ((size_t)b * T + p + 1) * W;
            for (int c = 0; c < W; c++) d[c] += g[c];
        }
    }
    /* row t of dpos sums over the batch; row 0 of dout also feeds dcls */
    VLP_OMP_FOR
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            const float *g = dout + ((size_t)b * T + t) * W;
            if (dpos)
                for (int c = 0; c < W; c++) dpos[(size_t)t * W + c] += g[c];
            if (dcls && t == 0)
                for (int c = 0; c < W; c++) dcls[c] += g[c];
        }
    }
}
