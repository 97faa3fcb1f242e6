#include "curate/semdedup.h"
#include "ops/gemm.h"
#include "core/error.h"
#include "core/hashmap.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 1024, CAND = 256 };

static void normalize_rows(float *c, int k, int d) {
    for (int j = 0; j < k; j++) {
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)c[(size_t)j * d + t] * c[(size_t)j * d + t];
        if (s > 0) {
            float inv = (float)(1 / sqrt(s));
            for (int t = 0; t < d; t++) c[(size_t)j * d + t] *= inv;
        }
    }
}

#define KMEANS_PP_MAX 1024
#define KMEANS_PP_POOL 65536 /* rows k-means++ chooses from at most */

/* k-means++ over a candidate pool (the first KMEANS_PP_POOL rows of a random
 * stride, or all of them): replaces pick[] */
static void kmeans_pp(const float *x, int64_t n, int d, int k, rng64 *draw, int64_t *pick) {
    int64_t m = n < KMEANS_PP_POOL ? n : KMEANS_PP_POOL, stride = n / m, off = (int64_t)(rng64_u64(draw) % (uint64_t)stride);
    double *dist = malloc(sizeof(double) * (size_t)m);
    if (!dist) return; /* keep the random rows */
    pick[0] = off + (int64_t)(rng64_u64(draw) % (uint64_t)m) * stride;
    for (int64_t i = 0; i < m; i++) dist[i] = INFINITY;
    for (int c = 1; c < k; c++) {
        const float *last = x + (size_t)pick[c - 1] * d;
        double total = 0;
        for (int64_t i = 0; i < m; i++) {
            const float *row = x + (size_t)(off + i * stride) * d;
            double dot = 0;
            for (int t = 0; t < d; t++) dot += (double)row[t] * last[t];
            double d2 = 2 - 2 * dot; /* squared distance of unit vectors */
            if (d2 < dist[i]) dist[i] = d2 > 0 ? d2 : 0;
            total += dist[i];
        }
        if (total <= 0) break; /* every candidate is a centroid already: the rest stay random rows */
        double u = ((double)(rng64_u64(draw) >> 11) * 0x1.0p-53) * total;
        int64_t i = 0;
        for (; i < m - 1 && (u -= dist[i]) > 0; i++) {}
        pick[c] = off + i * stride;
    }
    free(dist);
}

vlp_err kmeans_spherical(const float *x, int64_t n, int d, int k, int iters, uint64_t seed, float *centroids,
                         int32_t *assign, int *iters_run, vlp_error *err) {
    VLP_CHECK_ARG(n >= 1 && d >= 1 && k >= 1 && k <= n && iters >= 1, err,
                  "k-means: %lld rows of %d, %d clusters (1..rows), %d iterations", (long long)n, d, k, iters);
    float *sims = malloc(sizeof(float) * BLOCK * (size_t)k);
    double *sums = malloc(sizeof(double) * (size_t)k * d);
    int64_t *pick = malloc(sizeof(int64_t) * (size_t)k);
    if (!sims || !sums || !pick) {
        free(sims), free(sums), free(pick);
        VLP_FAIL(err, VLP_ERR_NOMEM, "k-means of %d clusters", k);
    }
    /* k distinct rows by Floyd's algorithm: for top = n-k .. n-1 draw t in
     * 0..top, take t unless taken already, else top */
    u64_map taken;
    if (!u64_map_init(&taken, (size_t)k)) {
        free(sims), free(sums), free(pick);
        VLP_FAIL(err, VLP_ERR_NOMEM, "k-means of %d clusters", k);
    }
    rng64 draw = {seed ^ 0x632BE59BD9B4E019ull};
    for (int c = 0; c < k; c++) {
        int64_t top = n - k + c, t = (int64_t)(rng64_u64(&draw) % (uint64_t)(top + 1));
        int32_t a, b;
        if (u64_map_get(&taken, (uint64_t)t, &a, &b)) t = top;
        pick[c] = t;
        u64_map_put(&taken, (uint64_t)t, 0, 0);
    }
    u64_map_free(&taken);
    /* up to 1,024 clusters: k-means++ seeding (each next centroid drawn with
     * probability ~ its squared distance to the nearest chosen) over the
     * random rows above when there are many of them, else over all rows */
    if (k > 1 && k <= KMEANS_PP_MAX) kmeans_pp(x, n, d, k, &draw, pick);
    for (int c = 0; c < k; c++) memcpy(centroids + (size_t)c * d, x + (size_t)pick[c] * d, sizeof(float) * (size_t)d);
    normalize_rows(centroids, k, d);
    for (int64_t i = 0; i < n; i++) assign[i] = -1;
    int it = 0;
    for (; it < iters; it++) {
        int64_t changed = 0;
        memset(sums, 0, sizeof(double) * (size_t)k * d);
        for (int64_t b = 0; b < n; b += BLOCK) {
            int rows = (int)(n - b < BLOCK ? n - b : BLOCK);
            /* sims (rows, k) = x[b..] (rows, d) · centroidsᵀ (d, k) */
            vlp_sgemm(false, true, rows, k, d, 1.0f, x + (size_t)b * d, d, centroids, d, 0.0f, sims, k);
            for (int r = 0; r < rows; r++) {
                int best = 0;
                for (int c = 1; c < k; c++)
                    if (sims[(size_t)r * k + c] > sims[(size_t)r * k + best]) best = c;
                if (assign[b + r] != best) changed++, assign[b + r] = best;
                const float *row = x + (size_t)(b + r) * d;
                double *acc = sums + (size_t)best * d;
                for (int t = 0; t < d; t++) acc[t] += row[t];
            }
        }
        if (changed == 0) break;
        for (int c = 0; c < k; c++) {
            double norm = 0;
            for (int t = 0; t < d; t++) norm += sums[(size_t)c * d + t] * sums[(size_t)c * d + t];
            if (norm == 0) continue; /* an empty cluster keeps its centroid */
            for (int t = 0; t < d; t++) centroids[(size_t)c * d + t] = (float)(sums[(size_t)c * d + t] / sqrt(norm));
        }
    }
    *iters_run = it < iters ? it + 1 : iters;
    free(sims), free(sums), free(pick);
    return VLP_OK;
}

typedef struct ranked {
    float sim; // to the centroid
    int i;     // the member
} ranked;

static int by_sim_ascending(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->sim != y->sim) return x->sim < y->sim ? -1 : 1;
    return x->i - y->i; /* ties by position: deterministic */
}

vlp_err semdedup_cluster(const float *x, int d, const int64_t *rows, int m, const float *centroid,
                         const double *eps, int neps, uint8_t *removed, vlp_error *err) {
    memset(removed, 0, (size_t)neps * (size_t)m);
    if (m <= 1) return VLP_OK;
    float *g = malloc(sizeof(float) * (size_t)m * d);
    float *s = malloc(sizeof(float) * (size_t)CAND * m);
    ranked *order = malloc(sizeof(ranked) * (size_t)m);
    int32_t *kept = malloc(sizeof(int32_t) * (size_t)m * neps); /* per eps, the kept members' ranks */
    int *nkept = calloc((size_t)neps, sizeof(int));
    if (!g || !s || !order || !kept || !nkept) {
        free(g), free(s), free(order), free(kept), free(nkept);
        VLP_FAIL(err, VLP_ERR_NOMEM, "a cluster of %d members", m);
    }
    for (int i = 0; i < m; i++) {
        const float *row = x + (size_t)rows[i] * d;
        double dot = 0;
        for (int t = 0; t < d; t++) dot += (double)row[t] * centroid[t];
        order[i] = (ranked){(float)dot, i};
    }
    qsort(order, (size_t)m, sizeof *order, by_sim_ascending);
    for (int r = 0; r < m; r++) memcpy(g + (size_t)r * d, x + (size_t)rows[order[r].i] * d, sizeof(float) * (size_t)d);
    for (int b = 0; b < m; b += CAND) {
        int nb = m - b < CAND ? m - b : CAND;
        /* s (nb, b + nb) = g[b..] · g[0 .. b + nb)ᵀ: each candidate against every member ranked before it */
        vlp_sgemm(false, true, nb, b + nb, d, 1.0f, g + (size_t)b * d, d, g, d, 0.0f, s, b + nb);
        for (int j = 0; j < nb; j++) {
            int r = b + j;
            for (int e = 0; e < neps; e++) {
                float limit = (float)(1 - eps[e]);
                bool dup = false;
                for (int q = 0; q < nkept[e] && !dup; q++) dup = s[(size_t)j * (b + nb) + kept[(size_t)e * m + q]] > limit;
                if (dup) removed[(size_t)e * m + order[r].i] = 1;
                else kept[(size_t)e * m + nkept[e]++] = r;
            }
        }
    }
    free(g), free(s), free(order), free(kept), free(nkept);
    return VLP_OK;
}
