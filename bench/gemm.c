/*
 * bench/gemm: vlp's bf16 GEMM (src/ops/gemm_bf16.c: AVX512-BF16, or the
 * portable kernel on a level without it) next to OpenBLAS sgemm on the GEMM shapes of a `tiny` training step at batch 128
 * (8320 image tokens, width 256, MLP 1024; per-head attention 65x65x64),
 * best of N repetitions each, 2 threads; GFLOP/s and the ratio.
 *   build/release/bench/gemm [--threads T] [--reps N]
 * Ends with
 *   RESULT name=gemm-bf16 isa=<level> kernel=<..> mean_ratio=<geometric mean of bf16/sgemm> min=<..> max=<..>
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_env.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/gemm.h"
#include "peak.h"
#include "vlp.h"

typedef struct shape {
    const char *what;
    int M, N, K;
    bool ta, tb;
} shape;

static const shape shapes[] = {
    {"qkv forward", 8320, 768, 256, false, true},
    {"out_proj forward", 8320, 256, 256, false, true},
    {"c_fc forward", 8320, 1024, 256, false, true},
    {"c_proj forward", 8320, 256, 1024, false, true},
    {"c_proj dinp", 8320, 1024, 256, false, false},
    {"c_fc dinp", 8320, 256, 1024, false, false},
    {"c_fc dweight", 1024, 256, 8320, true, false},
    {"c_proj dweight", 256, 1024, 8320, true, false},
    {"attention q.k (1 head, 1 thread)", 65, 65, 64, false, true},
    {"attention p.v (1 head, 1 thread)", 65, 64, 65, false, false},
};

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/gemm")) return 2;
    int threads = 2, reps = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench/gemm [--threads T] [--reps N]\n");
            return 2;
        }
    }
    /* without AVX512-BF16 the portable kernel runs: the measurement behind
     * keeping such CPUs' --precision bf16 on fp32 sgemm (docs/performance.md) */
    const char *kernel = gemm_bf16_hw() ? "AVX512-BF16" : "portable";
    vlp_set_threads(threads);
    tool_print_sysinfo(stdout);
    printf("bf16 GEMM (%s kernel; fp32 in/out, bf16 products, fp32 accumulation) vs sgemm, best of %d, "
           "%d threads; bf16 dot-product peak %.0f GFLOP/s, fp32 FMA peak %.0f\n",
           kernel, reps, threads, measure_bf16_peak(threads), measure_fma_peak(threads, &(const char *){0}));
    printf("| GEMM | M | N | K | sgemm GFLOP/s | bf16 GFLOP/s | bf16/sgemm |\n");
    printf("|---|--:|--:|--:|--:|--:|--:|\n");
    void *ws = malloc(gemm_bf16_workspace_bytes(threads));
    double log_sum = 0, lo = 1e9, hi = 0;
    int n = (int)(sizeof shapes / sizeof *shapes);
    rng64 r = {7};
    for (int s = 0; s < n; s++) {
        const shape *h = &shapes[s];
        size_t na = (size_t)h->M * h->K, nb = (size_t)h->K * h->N, nc = (size_t)h->M * h->N;
        float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
        for (size_t i = 0; i < na; i++) A[i] = rng64_normal(&r);
        for (size_t i = 0; i < nb; i++) B[i] = rng64_normal(&r);
        int lda = h->ta ? h->M : h->K, ldb = h->tb ? h->K : h->N;
        bool single = h->M * (double)h->N * h->K < 1e6; /* per-head: one thread, many reps */
        int nrep = single ? reps * 200 : reps;
        if (single) omp_set_num_threads(1);
        double best[2] = {1e30, 1e30};
        for (int k = 0; k < nrep + 1; k++)
            for (int v = 0; v < 2; v++) {
                double t0 = bench_now();
                if (v == 0)
                    vlp_sgemm(h->ta, h->tb, h->M, h->N, h->K, 1.0f, A, lda, B, ldb, 0.0f, C, h->N);
                else
                    gemm_bf16(h->ta, h->tb, h->M, h->N, h->K, 1.0f, A, lda, B, ldb, 0.0f, C, h->N,
                              NULL, ws, threads);
                double dt = bench_now() - t0;
                if (k > 0 && dt < best[v]) best[v] = dt;
            }
        if (single) omp_set_num_threads(threads);
        double fl = 2.0 * h->M * h->N * h->K * 1e-9;
        double ratio = best[0] / best[1];
        printf("| %s | %d | %d | %d | %.0f | %.0f | %.2f |\n", h->what, h->M, h->N, h->K,
               fl / best[0], fl / best[1], ratio);
        log_sum += log(ratio);
        lo = ratio < lo ? ratio : lo, hi = ratio > hi ? ratio : hi;
        free(A), free(B), free(C);
    }
    printf("RESULT name=gemm-bf16 isa=%s kernel=%s mean_ratio=%.2f min=%.2f max=%.2f\n", tool_isa(), kernel,
           exp(log_sum / n), lo, hi);
    free(ws);
    return 0;
}
