/* The AVX512-BF16 conversions the bf16 kernels share (gemm_bf16.c,
 * attention_fused_bf16.c): fp32 rounded to bf16 (nearest even, as
 * bf16_bits) into the pairs VDPBF16PS reads, the lower k in the low half.
 * Internal to src/ops. */
#ifndef VLP_OPS_BF16_X86_H
#define VLP_OPS_BF16_X86_H
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define VLP_BF16_X86 1
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* The 16 pairs (X[k][r+i], X[k+1][r+i]), i < 16 where m has lane i, of an X
 * stored (K, R) with rows ld apart: rows k and k+1 interleaved (without
 * has_hi, row k alone and a zero high half). With sum: *sum += row k, then
 * row k+1, lane by lane. */
TARGET_BF16 static inline __m512i bf16_pairs_of_rows(const float *X, int ld, int r, int k,
                                                     bool has_hi, __mmask16 m, __m512 *sum) {
    __m512 lo = _mm512_maskz_loadu_ps(m, X + (size_t)k * ld + r);
    __m512 hi =
        has_hi ? _mm512_maskz_loadu_ps(m, X + (size_t)(k + 1) * ld + r) : _mm512_setzero_ps();
    if (sum) /* (sum + lo) + hi, as the portable packer adds */
        *sum = _mm512_add_ps(_mm512_add_ps(*sum, lo), hi);
    /* cvtne2ps: upper 16 from the first operand; then interleave lo/hi */
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, both);
}

/* x[0..K) rounded to bf16 in order into d: (K + 1) / 2 pairs of adjacent
 * k, an odd K's last pair with a zero high half */
TARGET_BF16 static inline void bf16_convert_row(uint16_t *d, const float *x, int K) {
    for (int k = 0; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + k));
        _mm256_mask_storeu_epi16(d + k, m, (__m256i)h);
    }
    if (K & 1) d[K] = 0;
}
#endif
#endif
