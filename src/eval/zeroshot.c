#include "core/error.h"
#include "eval/eval.h"
#include "core/datadir.h"
#include "io/file.h"
#include "ops/gemm.h"

#include <stdlib.h>

vlp_err zeroshot_eval(const float *img, const float *classes, const int *label, int n, int C,
                      int E, zeroshot_result *out, vlp_error *err) {
    return zeroshot_eval_per_class(img, classes, label, n, C, E, out, NULL, NULL, err);
}

vlp_err zeroshot_eval_per_class(const float *img, const float *classes, const int *label, int n, int C, int E,
                                zeroshot_result *out, int *images, int *correct_of, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && C > 0 && E > 0, err, "empty zero-shot eval (%d images, %d classes)", n, C);
    float *logits = malloc(sizeof(float) * (size_t)n * C);
    VLP_CHECK_ALLOC(logits, err, sizeof(float) * (size_t)n * C);
    vlp_sgemm(false, true, n, C, E, 1.0f, img, E, classes, E, 0.0f, logits, C);
    vlp_err rc = zeroshot_eval_scores(logits, label, n, C, out, images, correct_of, err);
    free(logits);
    return rc;
}

vlp_err zeroshot_eval_scores(const float *logits, const int *label, int n, int C, zeroshot_result *out, int *images,
                             int *correct_of, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && C > 0, err, "empty zero-shot eval (%d images, %d classes)", n, C);
    int *count = calloc((size_t)C, sizeof(int)), *hit = calloc((size_t)C, sizeof(int));
    if (!count || !hit) {
        free(count), free(hit);
        VLP_FAIL(err, VLP_ERR_NOMEM, "zero-shot counts of %d classes", C);
    }
    int used = 0, correct = 0, in5 = 0;
    for (int i = 0; i < n; i++) {
        if (label[i] < 0) continue;
        if (label[i] >= C) {
            free(count), free(hit);
            VLP_FAIL(err, VLP_ERR_ARG, "image %d: label %d outside 0..%d", i, label[i], C - 1);
        }
        const float *l = logits + (size_t)i * C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (l[c] > l[best]) best = c;
        used++, count[label[i]]++;
        if (best == label[i]) correct++, hit[label[i]]++;
        int above = 0; /* classes scoring above the label */
        for (int c = 0; c < C; c++) above += l[c] > l[label[i]];
        in5 += above < 5;
    }
    double bal = 0;
    int present = 0, most = 0;
    for (int c = 0; c < C; c++) {
        if (count[c]) bal += (double)hit[c] / count[c], present++;
        if (count[c] > most) most = count[c];
    }
    *out = (zeroshot_result){.n = used, .classes = C, .top1 = used ? (double)correct / used : 0,
                             .balanced = present ? bal / present : 0,
                             .majority = used ? (double)most / used : 0,
                             .top5 = used ? (double)in5 / used : 0};
    for (int c = 0; images && c < C; c++) images[c] = count[c], correct_of[c] = hit[c];
    free(count), free(hit);
    return VLP_OK;
}

vlp_err templates_load(const char *arg, char ***out, int *n, vlp_error *err) {
    char path[4200];
    vlp_error why = {0};
    *out = NULL, *n = 0;
    if (vlp_data_resolve("templates", ".txt", arg, path, sizeof path, &why) != VLP_OK)
        VLP_FAIL(err, why.code, "templates '%s': %s", arg, why.message);
    VLP_TRY(read_text_lines(path, false, out, n, err));
    if (*n == 0) {
        free(*out), *out = NULL;
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s holds no template", path);
    }
    return VLP_OK;
}
