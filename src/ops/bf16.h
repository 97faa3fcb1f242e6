/* fp32 → bfloat16 rounding, inline for the kernels' inner loops. */
#ifndef VLP_OPS_BF16_H
#define VLP_OPS_BF16_H
#include <stdint.h>
#include <string.h>

/* the upper 16 bits of f rounded to nearest even; NaN stays a (quiet) NaN */
static inline uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f rounded to the nearest bfloat16, as an fp32 */
static inline float bf16_rounded(float f) {
    uint32_t u = (uint32_t)bf16_bits(f) << 16;
    float r;
    memcpy(&r, &u, 4);
    return r;
}
#endif
