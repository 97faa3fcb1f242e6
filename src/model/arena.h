/* Carving aligned views out of one float buffer: the activation arenas of
 * the model and its decoder are laid out by a counting pass (base NULL)
 * and then a binding pass over the allocated buffer. */
#ifndef VLP_MODEL_ARENA_H
#define VLP_MODEL_ARENA_H
#include <stddef.h>

#define ARENA_ALIGN_FLOATS 16 /* 64-byte alignment for every view */

static inline size_t arena_round_up(size_t n) {
    return (n + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS;
}

typedef struct arena {
    float *base; // NULL: only count
    size_t off;  // floats taken so far
} arena;

/* The next n floats (NULL when counting), aligned. */
static inline float *arena_take(arena *a, size_t n) {
    float *p = a->base ? a->base + a->off : NULL;
    a->off += arena_round_up(n);
    return p;
}
#endif
