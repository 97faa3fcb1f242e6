/* Measured fp32 FMA peak of this machine: independent FMA chains on every
 * thread, enough of them to hide the FMA latency. */
#ifndef VLP_BENCH_PEAK_H
#define VLP_BENCH_PEAK_H
#include <omp.h>
#include <time.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "ops/gemm.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* 12 independent FMA chains of `iters` lane-steps on one thread */
__attribute__((target("avx512f"))) static float fma_chains_avx512(long iters) {
    __m512 a[12], m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < 12; k++) a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters / 16; i++)
        for (int k = 0; k < 12; k++) a[k] = _mm512_fmadd_ps(a[k], m, c);
    for (int k = 1; k < 12; k++) a[0] = _mm512_add_ps(a[0], a[k]);
    return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2,fma"))) static float fma_chains_avx2(long iters) {
    __m256 a[12], m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < 12; k++) a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters / 8; i++)
        for (int k = 0; k < 12; k++) a[k] = _mm256_fmadd_ps(a[k], m, c);
    float out[8], sink = 0.0f;
    for (int k = 1; k < 12; k++) a[0] = _mm256_add_ps(a[0], a[k]);
    _mm256_storeu_ps(out, a[0]);
    for (int k = 0; k < 8; k++) sink += out[k];
    return sink;
}
#endif

static float fma_chains_scalar(long iters) {
    float a[12], sink = 0.0f;
    for (int k = 0; k < 12; k++) a[k] = (float)k;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < 12; k++) a[k] = a[k] * 0.9999999f + 1e-7f;
    for (int k = 0; k < 12; k++) sink += a[k];
    return sink;
}

/* the active level's (VLP_CPU) widest FMA: the peak its kernels can reach */
static const struct {
    vlp_impl_tag tag;
    float (*chains)(long iters);
    int lanes;
    const char *simd;
} FMA_PEAKS[] = {
#if defined(__x86_64__) && defined(__GNUC__)
    {{"avx512", VLP_FEAT_AVX512}, fma_chains_avx512, 16, "AVX-512 FMA"},
    {{"avx2", VLP_FEAT_AVX2}, fma_chains_avx2, 8, "AVX2 FMA"},
#endif
    {{"portable", 0}, fma_chains_scalar, 1, "scalar"},
};

/* GFLOP/s of a pure FMA loop on `threads` threads; also the SIMD used. */
static double measure_fma_peak(int threads, const char **simd) {
    /* ~0.3 s a repetition: short runs measure thread start-up, not the FPU */
    const long iters = 4000000000L;
    double best = 0.0;
    float (*chains)(long) = VLP_CPU_PICK(FMA_PEAKS)->chains;
    long lanes = VLP_CPU_PICK(FMA_PEAKS)->lanes;
    long steps = lanes == 1 ? iters / 16 : iters; /* scalar: fewer, or it runs for minutes */
#pragma omp parallel num_threads(threads)
    { (void)0; } /* start the thread pool before timing */
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        float sink = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += chains(steps);
        double dt = bench_now() - t0;
        volatile float keep = sink;
        (void)keep;
        /* each thread: (steps/lanes) · 12 FMAs of `lanes` lanes, 2 flops each */
        double flops = (double)threads * (steps / lanes) * 12 * lanes * 2;
        if (flops / dt > best) best = flops / dt;
    }
    *simd = VLP_CPU_PICK(FMA_PEAKS)->simd;
    return best * 1e-9;
}

/* GFLOP/s of a pure AVX512-BF16 dot-product loop (VDPBF16PS: 32 bf16
 * products summed into 16 fp32 lanes, 64 flops); 0 without it. 16 chains:
 * fewer leave it latency-bound on Zen 4. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bf16"))) static float bf16_chains(long iters) {
    __m512 a[16];
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80); /* 1.0 */
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) a[k] = _mm512_dpbf16_ps(a[k], x, x);
    for (int k = 1; k < 16; k++) a[0] = _mm512_add_ps(a[0], a[k]);
    return _mm512_reduce_add_ps(a[0]);
}
#endif

static inline double measure_bf16_peak(int threads) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!gemm_bf16_hw()) return 0.0;
    const long iters = 20000000L;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        float sink = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += bf16_chains(iters);
        double dt = bench_now() - t0;
        volatile float keep = sink;
        (void)keep;
        double flops = (double)threads * iters * 16 * 64;
        if (flops / dt > best) best = flops / dt;
    }
    return best * 1e-9;
#else
    (void)threads;
    return 0.0;
#endif
}
#endif
