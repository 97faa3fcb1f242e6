#include "eval/linear_probe.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY 10

typedef struct problem {
    const float *x;
    const int *y;
    const int *rows; // the training rows
    int n, D, C;
    double l2;
    double *logits;  // (n, C) scratch
} problem;

/* loss and gradient at w = [W (C, D) | b (C)] */
static double loss_grad(const problem *p, const double *w, double *g) {
    int D = p->D, C = p->C;
    const double *W = w, *b = w + (size_t)C * D;
    size_t nw = (size_t)C * (D + 1);
    memset(g, 0, sizeof(double) * nw);
    double loss = 0;
    for (int r = 0; r < p->n; r++) {
        const float *xi = p->x + (size_t)p->rows[r] * D;
        double *z = p->logits;
        double mx = -1e300;
        for (int c = 0; c < C; c++) {
            double s = b[c];
            for (int d = 0; d < D; d++) s += W[(size_t)c * D + d] * xi[d];
            z[c] = s;
            if (s > mx) mx = s;
        }
        double sum = 0;
        for (int c = 0; c < C; c++) sum += exp(z[c] - mx);
        int yi = p->y[p->rows[r]];
        loss += log(sum) + mx - z[yi];
        for (int c = 0; c < C; c++) {
            double pc = exp(z[c] - mx) / sum - (c == yi);
            for (int d = 0; d < D; d++) g[(size_t)c * D + d] += pc * xi[d];
            g[(size_t)C * D + c] += pc;
        }
    }
    double reg = 0;
    for (size_t i = 0; i < nw; i++) g[i] /= p->n;
    for (size_t i = 0; i < (size_t)C * D; i++) reg += w[i] * w[i], g[i] += p->l2 * w[i];
    return loss / p->n + 0.5 * p->l2 * reg;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double accuracy(const float *x, const int *y, const double *w, const int *rows, int n, int D, int C) {
    if (n == 0) return 0;
    int ok = 0;
    for (int r = 0; r < n; r++) {
        const float *xi = x + (size_t)rows[r] * D;
        int best = 0;
        double bs = -1e300;
        for (int c = 0; c < C; c++) {
            double s = w[(size_t)C * D + c];
            for (int d = 0; d < D; d++) s += w[(size_t)c * D + d] * xi[d];
            if (s > bs) bs = s, best = c;
        }
        ok += best == y[rows[r]];
    }
    return (double)ok / n;
}

vlp_err linear_probe(const float *x, const int *y, const bool *is_test, int n, int D, int C, double l2,
                     int max_iter, probe_result *out, vlp_error *err) {
    return linear_probe_fit(x, y, is_test, n, D, C, l2, max_iter, NULL, out, err);
}

vlp_err linear_probe_fit(const float *x, const int *y, const bool *is_test, int n, int D, int C, double l2,
                         int max_iter, float *wb, probe_result *out, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && D > 0 && C > 1 && l2 >= 0 && max_iter > 0, err,
                  "linear probe: %d rows, %d features, %d classes, l2 %g", n, D, C, l2);
    for (int i = 0; i < n; i++) VLP_CHECK_ARG(y[i] >= 0 && y[i] < C, err, "row %d: label %d outside 0..%d", i, y[i], C - 1);
    size_t nw = (size_t)C * (D + 1);
    int *train = malloc(sizeof(int) * (size_t)n), *test = malloc(sizeof(int) * (size_t)n), ntr = 0, nte = 0;
    double *mem = calloc(nw * (5 + 2 * HISTORY) + (size_t)C, sizeof(double));
    if (!train || !test || !mem) {
        free(train), free(test), free(mem);
        VLP_FAIL(err, VLP_ERR_NOMEM, "linear probe of %zu weights", nw);
    }
    for (int i = 0; i < n; i++) {
        if (is_test[i]) test[nte++] = i;
        else train[ntr++] = i;
    }
    double *w = mem, *g = w + nw, *d = g + nw, *wn = d + nw, *gn = wn + nw, *S = gn + nw, *Y = S + nw * HISTORY,
           *logits = Y + nw * HISTORY;
    double rho[HISTORY], alpha[HISTORY];
    problem p = {x, y, train, ntr, D, C, l2, logits};
    vlp_err rc = VLP_OK;
    if (ntr == 0) rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "linear probe: no training rows");
    double f = rc == VLP_OK ? loss_grad(&p, w, g) : 0;
    int k = 0, it = 0;
    for (; rc == VLP_OK && it < max_iter; it++) {
        /* two-loop recursion: d = -H g */
        for (size_t i = 0; i < nw; i++) d[i] = -g[i];
        int m = k < HISTORY ? k : HISTORY;
        for (int j = 0; j < m; j++) {
            int s = (k - 1 - j) % HISTORY;
            alpha[s] = rho[s] * dot(S + (size_t)s * nw, d, nw);
            for (size_t i = 0; i < nw; i++) d[i] -= alpha[s] * Y[(size_t)s * nw + i];
        }
        if (m > 0) {
            int s = (k - 1) % HISTORY;
            double gamma = dot(S + (size_t)s * nw, Y + (size_t)s * nw, nw) / dot(Y + (size_t)s * nw, Y + (size_t)s * nw, nw);
            for (size_t i = 0; i < nw; i++) d[i] *= gamma;
        }
        for (int j = m - 1; j >= 0; j--) {
            int s = (k - 1 - j) % HISTORY;
            double beta = rho[s] * dot(Y + (size_t)s * nw, d, nw);
            for (size_t i = 0; i < nw; i++) d[i] += S[(size_t)s * nw + i] * (alpha[s] - beta);
        }
        double gd = dot(g, d, nw);
        if (gd >= 0) { /* not a descent direction: restart from steepest descent */
            for (size_t i = 0; i < nw; i++) d[i] = -g[i];
            gd = dot(g, d, nw), k = 0;
        }
        double step = 1, fn = 0;
        int ls = 0;
        for (; ls < 40; ls++, step *= 0.5) { /* Armijo backtracking */
            for (size_t i = 0; i < nw; i++) wn[i] = w[i] + step * d[i];
            fn = loss_grad(&p, wn, gn);
            if (fn <= f + 1e-4 * step * gd) break;
        }
        if (ls == 40) break; /* no progress possible */
        int s = k % HISTORY;
        for (size_t i = 0; i < nw; i++) S[(size_t)s * nw + i] = wn[i] - w[i], Y[(size_t)s * nw + i] = gn[i] - g[i];
        double sy = dot(S + (size_t)s * nw, Y + (size_t)s * nw, nw);
        bool converged = fabs(f - fn) <= 1e-10 * fmax(1, fabs(f));
        memcpy(w, wn, sizeof(double) * nw), memcpy(g, gn, sizeof(double) * nw);
        f = fn;
        if (sy > 1e-12) rho[s] = 1 / sy, k++;
        if (converged || sqrt(dot(g, g, nw)) < 1e-6) {
            it++;
            break;
        }
    }
    if (rc == VLP_OK)
        *out = (probe_result){.train_acc = accuracy(x, y, w, train, ntr, D, C),
                              .test_acc = accuracy(x, y, w, test, nte, D, C), .iterations = it, .final_loss = f};
    for (size_t i = 0; rc == VLP_OK && wb && i < nw; i++) wb[i] = (float)w[i];
    free(train), free(test), free(mem);
    return rc;
}
