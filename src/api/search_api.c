/* vlp_search (include/vlp.h): exact cosine top-k of an index, the rule of
 * `vlp search` and of the Python package's Index. The index is read in
 * blocks of rows: their norms, one GEMM of the block against a block of
 * queries, then each query's k best kept in a min-heap. */
#include "core/error.h"
#include "ops/gemm.h"
#include "vlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SEARCH_BLOCK = 4096, QUERY_BLOCK = 1024 }; /* index rows and queries a GEMM: 16 MB of scores */

typedef struct hit {
    float score;
    long id;
} hit;

/* a before b in the answer: higher score, then lower row */
static bool better(hit a, hit b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

/* heap[0] the worst of the k kept */
static void sift_down(hit *h, int n, int i) {
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(h[w], h[l])) w = l;
        if (r < n && better(h[w], h[r])) w = r;
        if (w == i) return;
        hit t = h[i];
        h[i] = h[w], h[w] = t, i = w;
    }
}

static void sift_up(hit *h, int i) {
    while (i > 0 && better(h[(i - 1) / 2], h[i])) {
        hit t = h[i];
        h[i] = h[(i - 1) / 2], h[(i - 1) / 2] = t, i = (i - 1) / 2;
    }
}

static int by_rank(const void *a, const void *b) {
    hit x = *(const hit *)a, y = *(const hit *)b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

vlp_err vlp_search(const float *index, long rows, int dim, const float *queries, int nq, int k, long *ids,
                   float *scores, vlp_error *err) {
    VLP_CHECK_ARG(rows >= 0 && dim > 0 && nq >= 0 && k > 0 && (index || rows == 0) && (queries || nq == 0) &&
                      (ids || nq == 0) && (scores || nq == 0),
                  err, "vlp_search: %ld rows of %d, %d queries, k %d: bad arguments", rows, dim, nq, k);
    VLP_CHECK_ARG((size_t)nq * (size_t)k <= (size_t)1 << 28, err, "vlp_search: %d queries x k %d: more than 2^28 "
                  "results; search in parts", nq, k);
    long blk = rows < SEARCH_BLOCK ? (rows ? rows : 1) : SEARCH_BLOCK;
    float *q = malloc(sizeof(float) * (size_t)(nq ? nq : 1) * (size_t)dim);
    int qb = nq < QUERY_BLOCK ? (nq ? nq : 1) : QUERY_BLOCK;
    float *s = malloc(sizeof(float) * (size_t)qb * (size_t)blk);
    float *inv = malloc(sizeof(float) * (size_t)blk);
    hit *heap = malloc(sizeof(hit) * (size_t)(nq ? nq : 1) * (size_t)k);
    int *kept = calloc((size_t)(nq ? nq : 1), sizeof(int));
    if (!q || !s || !inv || !heap || !kept) {
        free(q), free(s), free(inv), free(heap), free(kept);
        VLP_FAIL(err, VLP_ERR_NOMEM, "vlp_search: %d queries, k %d, blocks of %ld rows", nq, k, blk);
    }
    for (int i = 0; i < nq; i++) { /* each query normalised */
        double n2 = 0;
        for (int c = 0; c < dim; c++) n2 += (double)queries[(size_t)i * dim + c] * queries[(size_t)i * dim + c];
        float f = n2 > 0 ? (float)(1 / sqrt(n2)) : 0.f;
        for (int c = 0; c < dim; c++) q[(size_t)i * dim + c] = queries[(size_t)i * dim + c] * f;
    }
    for (int q0 = 0; q0 < nq; q0 += qb) {
        int m = nq - q0 < qb ? nq - q0 : qb;
        for (long r0 = 0; r0 < rows; r0 += blk) {
            int b = (int)(rows - r0 < blk ? rows - r0 : blk);
            const float *x = index + (size_t)r0 * dim;
            for (int r = 0; r < b; r++) {
                double n2 = 0;
                for (int c = 0; c < dim; c++) n2 += (double)x[(size_t)r * dim + c] * x[(size_t)r * dim + c];
                inv[r] = n2 > 0 ? (float)(1 / sqrt(n2)) : 0.f;
            }
            /* s (m, b) = q (m, dim) · x (b, dim)ᵀ */
            vlp_sgemm(false, true, m, b, dim, 1.f, q + (size_t)q0 * dim, dim, x, dim, 0.f, s, b);
            for (int i = 0; i < m; i++) {
                hit *h = heap + (size_t)(q0 + i) * k;
                int *n = &kept[q0 + i];
                for (int r = 0; r < b; r++) {
                    hit c = {s[(size_t)i * b + r] * inv[r], r0 + r};
                    if (c.score != c.score) c.score = -INFINITY; /* a row of NaN ranks last */
                    if (*n < k) h[*n] = c, sift_up(h, (*n)++);
                    else if (better(c, h[0])) h[0] = c, sift_down(h, k, 0);
                }
            }
        }
    }
    for (int i = 0; i < nq; i++) {
        hit *h = heap + (size_t)i * k;
        qsort(h, (size_t)kept[i], sizeof(hit), by_rank);
        for (int j = 0; j < k; j++) {
            ids[(size_t)i * k + j] = j < kept[i] ? h[j].id : -1;
            scores[(size_t)i * k + j] = j < kept[i] ? h[j].score : -INFINITY;
        }
    }
    free(q), free(s), free(inv), free(heap), free(kept);
    return VLP_OK;
}
