/* A small deterministic RNG (splitmix64): the same stream on every machine,
 * so a seed fixes an initialisation or a data order everywhere. State is a
 * plain value the caller owns (saved in training state for resume). */
#ifndef VLP_CORE_RNG_H
#define VLP_CORE_RNG_H
#include <math.h>
#include <stdint.h>

typedef struct rng64 { uint64_t s; } rng64;

static inline uint64_t rng64_u64(rng64 *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 24 random bits */
static inline float rng64_uniform(rng64 *r) {
    return (float)((rng64_u64(r) >> 40) * (1.0 / 16777216.0));
}

/* N(0, 1) by Box–Muller in double */
static inline float rng64_normal(rng64 *r) {
    double u1 = ((rng64_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rng64_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
#endif
