#include "core/error.h"
#include "core/parallel.h"
#include "eval/eval.h"
#include "ops/gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 256 /* queries per similarity block */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

const char **distinct_strings(const char *const *v, int n, int *nd, int *idx) {
    const char **d = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (!d) return NULL;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (v[i] && v[i][0]) d[m++] = v[i];
    qsort(d, (size_t)m, sizeof(char *), cmp_str);
    int k = 0;
    for (int i = 0; i < m; i++)
        if (!k || strcmp(d[k - 1], d[i])) d[k++] = d[i];
    *nd = k;
    for (int i = 0; idx && i < n; i++) {
        const char **hit = v[i] && v[i][0] ? bsearch(&v[i], d, (size_t)k, sizeof(char *), cmp_str) : NULL;
        idx[i] = hit ? (int)(hit - d) : -1;
    }
    return d;
}

static void summarise(int *rank, int nq, retrieval_result *out) {
    double sum = 0;
    int h1 = 0, h5 = 0, h10 = 0;
    for (int i = 0; i < nq; i++) {
        sum += rank[i];
        h1 += rank[i] <= 1, h5 += rank[i] <= 5, h10 += rank[i] <= 10;
    }
    qsort(rank, (size_t)nq, sizeof(int), cmp_int);
    *out = (retrieval_result){.n = nq, .r1 = (double)h1 / nq, .r5 = (double)h5 / nq,
                              .r10 = (double)h10 / nq, .mean_rank = sum / nq,
                              .median_rank = nq % 2 ? rank[nq / 2] : 0.5 * (rank[nq / 2 - 1] + rank[nq / 2])};
}

/* The rank of each query from its row of similarities; the rows are
 * computed ROWS at a time, so memory stays ROWS x ng. */
typedef int (*rank_fn)(const float *sims, int ng, int query, const void *ctx);

static vlp_err rank_queries(const float *q, const float *g, int nq, int ng, int E, rank_fn fn,
                            const void *ctx, retrieval_result *out, vlp_error *err) {
    float *sim = malloc(sizeof(float) * ROWS * (size_t)ng);
    int *rank = malloc(sizeof(int) * (size_t)nq);
    if (!sim || !rank) {
        free(sim), free(rank);
        VLP_FAIL(err, VLP_ERR_NOMEM, "similarity block of %d x %d", ROWS, ng);
    }
    for (int r0 = 0; r0 < nq; r0 += ROWS) {
        int rows = nq - r0 < ROWS ? nq - r0 : ROWS;
        vlp_sgemm(false, true, rows, ng, E, 1.0f, q + (size_t)r0 * E, E, g, E, 0.0f, sim, ng);
        VLP_OMP_FOR
        for (int i = 0; i < rows; i++) rank[r0 + i] = fn(sim + (size_t)i * ng, ng, r0 + i, ctx);
    }
    summarise(rank, nq, out);
    free(sim), free(rank);
    return VLP_OK;
}

static int rank_single(const float *s, int ng, int query, const void *ctx) {
    int target = ((const int *)ctx)[query], better = 0;
    float t = s[target];
    for (int j = 0; j < ng; j++) better += (s[j] > t) || (s[j] == t && j != target); /* ties count against */
    return better + 1;
}

vlp_err retrieval_eval(const float *q, const float *g, const int *target, int nq, int ng, int E,
                       retrieval_result *out, vlp_error *err) {
    VLP_CHECK_ARG(nq > 0 && ng > 0 && E > 0, err, "empty retrieval (%d queries, %d items)", nq, ng);
    for (int i = 0; i < nq; i++)
        VLP_CHECK_ARG(target[i] >= 0 && target[i] < ng, err, "query %d: target %d outside 0..%d",
                      i, target[i], ng - 1);
    return rank_queries(q, g, nq, ng, E, rank_single, target, out, err);
}

static int rank_multi(const float *s, int ng, int query, const void *ctx) {
    const int *owner = ctx;
    float best = -INFINITY;
    for (int j = 0; j < ng; j++)
        if (owner[j] == query && s[j] > best) best = s[j];
    if (best == -INFINITY) return ng; /* a query without items ranks last */
    int better = 0;
    for (int j = 0; j < ng; j++) better += owner[j] != query && s[j] >= best;
    return better + 1;
}

vlp_err retrieval_eval_multi(const float *q, const float *g, const int *owner, int nq, int ng, int E,
                             retrieval_result *out, vlp_error *err) {
    VLP_CHECK_ARG(nq > 0 && ng > 0 && E > 0, err, "empty retrieval (%d queries, %d items)", nq, ng);
    for (int i = 0; i < ng; i++)
        VLP_CHECK_ARG(owner[i] >= 0 && owner[i] < nq, err, "item %d: owner %d outside 0..%d", i, owner[i], nq - 1);
    return rank_queries(q, g, nq, ng, E, rank_multi, owner, out, err);
}
