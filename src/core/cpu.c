/* The CPU's features, the levels VLP_CPU names, and the choice of a kernel
 * family's implementation. The state is written once (pthread_once), at
 * the first kernel call, and read-only after: the dispatch is fixed for the
 * life of the process, as OpenBLAS's DYNAMIC_ARCH fixes its core. */
#include "vlp.h"
#include "core/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static const vlp_cpu_level LEVELS[] = {
    {"portable", 0, "any x86-64 (SSE2)"},
    {"avx2", VLP_FEAT_AVX2, "Haswell and later, Zen 1-4"},
    {"avx2-vnni", VLP_FEAT_AVX2 | VLP_FEAT_AVX_VNNI, "Alder Lake and later client CPUs"},
    {"avx512", VLP_FEAT_AVX2 | VLP_FEAT_AVX512, "Skylake-SP/X"},
    {"avx512-vnni", VLP_FEAT_AVX2 | VLP_FEAT_AVX512 | VLP_FEAT_AVX512_VNNI,
     "Cascade Lake, Ice Lake, Zen 4"},
    {"avx512-bf16", VLP_FEAT_AVX2 | VLP_FEAT_AVX512 | VLP_FEAT_AVX512_VNNI | VLP_FEAT_AVX512_BF16,
     "Cooper Lake, Sapphire Rapids, Zen 4"},
};

static unsigned detect(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return 0;
    unsigned xlo, xhi; /* XCR0: which register state the OS saves */
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6) != 0x6) return 0; /* no ymm state: no AVX at all */
    bool zmm_os = (xlo & 0xe0) == 0xe0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    unsigned b7, c7, d7, a71 = 0, x;
    __cpuid_count(7, 0, a, b7, c7, d7);
    unsigned max7 = a;
    if (max7 >= 1) __cpuid_count(7, 1, a71, x, x, x);
    if ((b7 & (1u << 5)) && fma && f16c) f |= VLP_FEAT_AVX2;
    if ((f & VLP_FEAT_AVX2) && (a71 & (1u << 4))) f |= VLP_FEAT_AVX_VNNI;
    const unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31); /* F DQ CD BW VL */
    if ((f & VLP_FEAT_AVX2) && zmm_os && (b7 & avx512) == avx512) {
        f |= VLP_FEAT_AVX512;
        if (c7 & (1u << 11)) f |= VLP_FEAT_AVX512_VNNI;
        if (a71 & (1u << 5)) f |= VLP_FEAT_AVX512_BF16;
    }
    return f;
}
#elif defined(__aarch64__)
#include <sys/auxv.h>

static const vlp_cpu_level LEVELS[] = {
    {"portable", 0, "any arm64 (no intrinsics)"},
    {"neon", VLP_FEAT_NEON, "any arm64"},
    {"dotprod", VLP_FEAT_NEON | VLP_FEAT_DOTPROD, "Cortex-A76, Neoverse N1 (Graviton 2), Apple M1"},
    {"i8mm", VLP_FEAT_NEON | VLP_FEAT_DOTPROD | VLP_FEAT_I8MM | VLP_FEAT_ARM_BF16,
     "Neoverse V1/N2 (Graviton 3/4), Apple M2"},
};

static unsigned detect(void) {
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    unsigned f = 0;
    if (hw & (1ul << 1)) f |= VLP_FEAT_NEON;                      /* HWCAP_ASIMD */
    if ((f & VLP_FEAT_NEON) && (hw & (1ul << 20))) f |= VLP_FEAT_DOTPROD; /* HWCAP_ASIMDDP */
    if ((f & VLP_FEAT_DOTPROD) && (hw2 & (1ul << 13))) f |= VLP_FEAT_I8MM; /* HWCAP2_I8MM */
    if ((f & VLP_FEAT_DOTPROD) && (hw2 & (1ul << 14))) f |= VLP_FEAT_ARM_BF16; /* HWCAP2_BF16 */
    return f;
}
#else
static const vlp_cpu_level LEVELS[] = {{"portable", 0, "any CPU"}};
static unsigned detect(void) { return 0; }
#endif

#define NLEVELS (sizeof LEVELS / sizeof *LEVELS)

const vlp_cpu_level *vlp_cpu_levels(size_t *n) {
    *n = NLEVELS;
    return LEVELS;
}

static const char *const FEATURE_NAMES[] = {
    [0] = "avx2", [1] = "avx-vnni", [2] = "avx512", [3] = "avx512-vnni", [4] = "avx512-bf16",
    [8] = "neon", [9] = "dotprod", [10] = "i8mm", [11] = "bf16",
};

void vlp_cpu_feature_names(unsigned features, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof FEATURE_NAMES / sizeof *FEATURE_NAMES; i++)
        if ((features & (1u << i)) && FEATURE_NAMES[i] && used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? " " : "", FEATURE_NAMES[i]);
    if (!used) snprintf(buf, n, "none beyond the baseline");
}

static const char *level_of(unsigned features) {
    const char *name = LEVELS[0].name;
    for (size_t i = 0; i < NLEVELS; i++)
        if ((LEVELS[i].features & features) == LEVELS[i].features) name = LEVELS[i].name;
    return name;
}

static vlp_cpu_state STATE;
static pthread_once_t ONCE = PTHREAD_ONCE_INIT;

static void resolve(void) {
    vlp_cpu_state *s = &STATE;
    s->cpu = s->active = detect();
    s->level = s->cpu_level = level_of(s->cpu);
    const char *want = getenv("VLP_CPU");
    if (!want || !*want || !strcasecmp(want, "native")) return;
    const vlp_cpu_level *l = NULL;
    for (size_t i = 0; i < NLEVELS; i++)
        if (!strcasecmp(want, LEVELS[i].name)) l = &LEVELS[i];
    /* refused: the kernels run their portable paths (nothing the user did not ask for) */
    if (!l) {
        char names[160] = "";
        for (size_t i = 0, u = 0; i < NLEVELS; i++)
            u += (size_t)snprintf(names + u, sizeof names - u, "%s%s", i ? ", " : "", LEVELS[i].name);
        s->status = VLP_ERR_ARG;
        snprintf(s->message, sizeof s->message, "VLP_CPU=%s is no level of this build; the levels: %s, or native",
                 want, names);
    } else if ((l->features & s->cpu) != l->features) {
        char lacks[96];
        vlp_cpu_feature_names(l->features & ~s->cpu, lacks, sizeof lacks);
        s->status = VLP_ERR_UNSUPPORTED;
        snprintf(s->message, sizeof s->message,
                 "VLP_CPU=%s is above this CPU (%s): it lacks %s; VLP_CPU can only lower the level", want,
                 s->cpu_level, lacks);
    } else {
        s->active = l->features;
        s->level = l->name;
        s->forced = s->active != s->cpu ? want : NULL; /* the CPU's own level is no lowering */
        return;
    }
    s->active = 0;
    s->level = LEVELS[0].name;
}

const vlp_cpu_state *vlp_cpu(void) {
    pthread_once(&ONCE, resolve);
    return &STATE;
}

size_t vlp_cpu_pick(const void *table, size_t n, size_t stride) {
    unsigned active = vlp_cpu()->active;
    for (size_t i = 0; i < n; i++) {
        const vlp_impl_tag *t = (const vlp_impl_tag *)((const char *)table + i * stride);
        if ((t->needs & active) == t->needs) return i;
    }
    return n - 1; /* the portable entry (needs 0) is last */
}

vlp_err vlp_cpu_check(vlp_error *err) {
    const vlp_cpu_state *s = vlp_cpu();
    if (s->status != VLP_OK && err) {
        err->code = s->status;
        snprintf(err->where, sizeof err->where, "VLP_CPU");
        snprintf(err->message, sizeof err->message, "%s", s->message);
    }
    return s->status;
}
