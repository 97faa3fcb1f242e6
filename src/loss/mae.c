/* MAE's reconstruction loss on the masked patches (norm_pix_loss). */
#include "loss/loss.h"
#include "core/error.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

/* One patch's standardisation, MAE's norm_pix_loss: target = (x − mean)·inv
 * with inv = 1/√(var + 1e-6), var unbiased as torch.var; in double. */
static void patch_stats(const float *px, int K, double *mean, double *inv) {
    double m = 0.0, var = 0.0;
    for (int k = 0; k < K; k++) m += px[k];
    m /= K;
    for (int k = 0; k < K; k++) var += (px[k] - m) * (px[k] - m);
    var /= K - 1;
    *mean = m;
    *inv = 1.0 / sqrt(var + 1e-6);
}

/* The masked patches of a sample are those its ascending keep list skips:
 * `next` walks the list alongside p. */
static bool next_masked(const int32_t *keep, int NK, int *next, int p) {
    if (*next < NK && keep[*next] == p) {
        ++*next;
        return false;
    }
    return true;
}

vlp_err mae_loss_forward(float *loss, const float *pred, const float *pixels, const int32_t *keep,
                         int B, int NP, int NK, int K, double denom, vlp_error *err) {
    VLP_CHECK_ARG(K > 1 && NK >= 0 && NK < NP && denom > 0, err,
                  "MAE loss: %d of %d patches kept, %d pixels a patch, divisor %g", NK, NP, K,
                  denom);
    double total = 0.0; /* serial: the sum's order does not depend on the threads */
    for (int b = 0; b < B; b++) {
        int next = 0;
        for (int p = 0; p < NP; p++) {
            if (!next_masked(keep + (size_t)b * NK, NK, &next, p)) continue;
            const float *px = pixels + ((size_t)b * NP + p) * K;
            const float *y = pred + ((size_t)b * (NP + 1) + 1 + p) * K;
            double mean, inv, se = 0.0;
            patch_stats(px, K, &mean, &inv);
            for (int k = 0; k < K; k++) {
                double e = (double)y[k] - (float)((px[k] - mean) * inv);
                se += e * e;
            }
            total += se / K;
        }
    }
    *loss = (float)(total / denom);
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC, "MAE loss is %g", *loss);
    return VLP_OK;
}

void mae_loss_backward(float *dpred, const float *pred, const float *pixels, const int32_t *keep,
                       float dloss, int B, int NP, int NK, int K, double denom) {
    float scale = (float)(2.0 * dloss / ((double)K * denom));
    VLP_OMP_FOR
    for (int b = 0; b < B; b++) {
        memset(dpred + (size_t)b * (NP + 1) * K, 0, sizeof(float) * K); /* the class token */
        int next = 0;
        for (int p = 0; p < NP; p++) {
            float *d = dpred + ((size_t)b * (NP + 1) + 1 + p) * K;
            if (!next_masked(keep + (size_t)b * NK, NK, &next, p)) {
                memset(d, 0, sizeof(float) * K);
                continue;
            }
            const float *px = pixels + ((size_t)b * NP + p) * K;
            const float *y = pred + ((size_t)b * (NP + 1) + 1 + p) * K;
            double mean, inv;
            patch_stats(px, K, &mean, &inv);
            for (int k = 0; k < K; k++) d[k] = scale * (y[k] - (float)((px[k] - mean) * inv));
        }
    }
}
