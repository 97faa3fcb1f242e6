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

/* ---- the top K of each query, re-ordered by a second scorer (ITM) ------------------------------ */

typedef struct rerank_ctx {
    const int *target, *owner; // one of them: retrieval_eval's or retrieval_eval_multi's
    const int *top, *sorted;   // (nq, K): the top K, best first; the same ascending
    const float *score;        // (nq, K) the second scorer's, for top
    int K;
} rerank_ctx;

static bool own(const rerank_ctx *c, int q, int j) { return c->owner ? c->owner[j] == q : c->target[q] == j; }

static int cmp_int_asc(const void *a, const void *b) { return cmp_int(a, b); }

/* An own item in the top K: 1 + the others there scoring at least its best
 * score. None: behind the top K, where the cosine order holds (ties against). */
static int rank_reranked(const float *s, int ng, int q, const void *ctx) {
    const rerank_ctx *c = ctx;
    int K = c->K;
    const int *top = c->top + (size_t)q * K, *sorted = c->sorted + (size_t)q * K;
    const float *sc = c->score + (size_t)q * K;
    bool found = false;
    float best = -INFINITY;
    for (int k = 0; k < K; k++)
        if (own(c, q, top[k]) && (!found || sc[k] > best)) best = sc[k], found = true;
    int better = 0;
    if (found) {
        for (int k = 0; k < K; k++) better += !own(c, q, top[k]) && sc[k] >= best;
        return better + 1;
    }
    float bc = -INFINITY;
    for (int j = 0; j < ng; j++)
        if (own(c, q, j) && s[j] > bc) bc = s[j];
    if (bc == -INFINITY) return ng; /* a query without items ranks last */
    better = K;
    for (int j = 0; j < ng; j++)
        better += !own(c, q, j) && s[j] >= bc && !bsearch(&j, sorted, (size_t)K, sizeof(int), cmp_int_asc);
    return better + 1;
}

vlp_err retrieval_eval_reranked(const float *q, const float *g, const int *target, const int *owner, int nq, int ng,
                                int E, const int *top, const float *score, int K, retrieval_result *out,
                                vlp_error *err) {
    VLP_CHECK_ARG(nq > 0 && ng > 0 && E > 0 && K > 0 && K <= ng && (!target != !owner), err,
                  "re-ranked retrieval: %d queries, %d items, top %d", nq, ng, K);
    for (int i = 0; target && i < nq; i++)
        VLP_CHECK_ARG(target[i] >= 0 && target[i] < ng, err, "query %d: target %d outside 0..%d", i, target[i], ng - 1);
    for (int i = 0; owner && i < ng; i++)
        VLP_CHECK_ARG(owner[i] >= 0 && owner[i] < nq, err, "item %d: owner %d outside 0..%d", i, owner[i], nq - 1);
    int *sorted = malloc(sizeof(int) * (size_t)nq * K);
    VLP_CHECK_ALLOC(sorted, err, sizeof(int) * (size_t)nq * K);
    memcpy(sorted, top, sizeof(int) * (size_t)nq * K);
    for (int i = 0; i < nq; i++) qsort(sorted + (size_t)i * K, (size_t)K, sizeof(int), cmp_int_asc);
    rerank_ctx c = {.target = target, .owner = owner, .top = top, .sorted = sorted, .score = score, .K = K};
    vlp_err rc = rank_queries(q, g, nq, ng, E, rank_reranked, &c, out, err);
    free(sorted);
    return rc;
}
