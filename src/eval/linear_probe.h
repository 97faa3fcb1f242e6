/* Linear probe: multinomial logistic regression on frozen features,
 *   min_W,b  mean_i CE(softmax(W x_i + b), y_i) + (l2 / 2) ||W||^2,
 * solved with L-BFGS (10 pairs of history, backtracking line search on the
 * Armijo condition), the standard way to read out CLIP features. */
#ifndef VLP_EVAL_LINEAR_PROBE_H
#define VLP_EVAL_LINEAR_PROBE_H
#include "core/error.h"

typedef struct probe_result {
    double train_acc, test_acc;
    int iterations;
    double final_loss;
} probe_result;

/* x (n, D) features, y (n) labels in 0..C-1; rows with is_test[i] are held out. */
vlp_err linear_probe(const float *x, const int *y, const bool *is_test, int n, int D, int C, double l2,
                     int max_iter, probe_result *out, vlp_error *err);
/* The same, and the fitted classifier in wb (C·(D+1): W (C, D), then b (C))
 * when not NULL. */
vlp_err linear_probe_fit(const float *x, const int *y, const bool *is_test, int n, int D, int C, double l2,
                         int max_iter, float *wb, probe_result *out, vlp_error *err);
#endif
