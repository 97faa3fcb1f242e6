/* Which instruction-set level the kernels run at, chosen once per process.
 *
 * vlp is built for a baseline (x86-64, or armv8-a) and each hot kernel
 * exists at several levels; a kernel family lists its implementations best
 * first, each with the features it needs, and runs the first one the
 * active features allow (vlp_cpu_pick). The active features are the CPU's
 * own, or fewer when the environment variable VLP_CPU names a lower level
 * (so one machine tests every path it can run); a level above the CPU's,
 * or a name that is no level, is refused (vlp_cpu_check) and the kernels
 * then run their portable paths. */
#ifndef VLP_CORE_CPU_H
#define VLP_CORE_CPU_H
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* features, as the kernels need them (one bit may stand for several CPUID
 * flags that always come together on the CPUs that matter) */
enum {
    VLP_FEAT_AVX2 = 1u << 0,        /* AVX2 + FMA + F16C (x86-64-v3) */
    VLP_FEAT_AVX_VNNI = 1u << 1,    /* VEX VPDPBUSD on ymm (Alder Lake, Zen 5) */
    VLP_FEAT_AVX512 = 1u << 2,      /* AVX-512 F, BW, VL, DQ, CD (x86-64-v4) */
    VLP_FEAT_AVX512_VNNI = 1u << 3, /* VPDPBUSD on zmm */
    VLP_FEAT_AVX512_BF16 = 1u << 4, /* VDPBF16PS, VCVTNE2PS2BF16 */
    VLP_FEAT_NEON = 1u << 8,        /* aarch64 Advanced SIMD */
    VLP_FEAT_DOTPROD = 1u << 9,     /* SDOT/UDOT (armv8.2) */
    VLP_FEAT_I8MM = 1u << 10,       /* SMMLA/USDOT (armv8.6) */
    VLP_FEAT_ARM_BF16 = 1u << 11,   /* BFDOT/BFMMLA (armv8.6) */
};

/* A level: a name VLP_CPU takes and the features it stands for. */
typedef struct vlp_cpu_level {
    const char *name;
    unsigned features;
    const char *cpus; /* CPUs at this level, for the help */
} vlp_cpu_level;

/* This architecture's levels, lowest first (portable is always the first). */
const vlp_cpu_level *vlp_cpu_levels(size_t *n);

typedef struct vlp_cpu_state {
    unsigned cpu;        /* the CPU's features */
    unsigned active;     /* those the kernels may use */
    const char *level;   /* the highest level within active */
    const char *cpu_level; /* the highest level within cpu (differs when VLP_CPU lowered it) */
    const char *forced;  /* VLP_CPU's value when it took features away, else NULL */
    vlp_err status;      /* VLP_OK, or why VLP_CPU was refused */
    char message[256];
} vlp_cpu_state;

/* Resolved at the first call, from the CPU and VLP_CPU; the same after. */
const vlp_cpu_state *vlp_cpu(void);

static inline bool vlp_cpu_has(unsigned features) {
    return (vlp_cpu()->active & features) == features;
}

/* The CPU's features as flag names ("avx2 avx512 ...") into buf. */
void vlp_cpu_feature_names(unsigned features, char *buf, size_t n);

/* A kernel family's implementation: the level it is written for and what
 * it needs. Tables of them start each entry with this tag, best first,
 * and end with a portable entry (needs 0). */
typedef struct vlp_impl_tag {
    const char *level;
    unsigned needs;
} vlp_impl_tag;

/* The index of the first entry of table (n entries of `stride` bytes, each
 * starting with a vlp_impl_tag) whose needs the active features meet. */
size_t vlp_cpu_pick(const void *table, size_t n, size_t stride);
#define VLP_CPU_PICK(table) \
    (&(table)[vlp_cpu_pick((table), sizeof(table) / sizeof *(table), sizeof *(table))])

#endif
