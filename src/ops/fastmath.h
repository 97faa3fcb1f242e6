/* Branch-free float exp and erf that the compiler vectorises (glibc's expf
 * and erff are scalar calls, which made GELU ~14% of a `tiny` training step).
 * exp: Cody–Waite reduction x = n ln2 + r, a degree-6 polynomial for e^r
 * (Cephes' coefficients), 2^n through the exponent bits; ~1 ulp, saturating
 * at 2.4e38 instead of overflowing.
 * erf: a rational approximation, odd degree-13 over even degree-8 on
 * [-4, 4] (erf is ±1 to float precision outside); a few ulp. */
#ifndef VLP_OPS_FASTMATH_H
#define VLP_OPS_FASTMATH_H
#include <stdint.h>
#include <string.h>

static inline float vlp_expf(float in) {
    /* keeps 2^n a normal float: e^x saturates at 2.4e38 above 88.376 (glibc: inf above 88.72).
     * NaN is computed as 0 (so the int conversion below is always defined) and given back
     * at the end; selects, not fminf/fmaxf, which are library calls the loop would not
     * vectorise around */
    float x = in == in ? in : 0.0f;
    x = x < -87.33654f ? -87.33654f : x > 88.37626f ? 88.37626f : x;
    /* round to nearest by adding and removing 1.5 * 2^23 (|x log2 e| < 2^22): no libm call */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return in == in ? p * scale : in;
}

static inline float vlp_erff(float x) {
    x = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}
#endif
