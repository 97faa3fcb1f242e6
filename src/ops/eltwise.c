/* Which level's elementwise kernels run (ops/eltwise.h). The tables are
 * those the Makefile built: portable everywhere, AVX2 and AVX-512 on
 * x86-64 (the Makefile's LEVELS). */
#include "ops/eltwise.h"
#include "core/cpu.h"

extern const eltwise_kernels eltwise_portable;
#ifdef __x86_64__
extern const eltwise_kernels eltwise_avx2, eltwise_avx512;
#endif

static const struct {
    vlp_impl_tag tag;
    const eltwise_kernels *k;
} ELTWISE[] = {
#ifdef __x86_64__
    {{"avx512", VLP_FEAT_AVX512}, &eltwise_avx512},
    {{"avx2", VLP_FEAT_AVX2}, &eltwise_avx2},
#endif
    {{"portable", 0}, &eltwise_portable},
};

const eltwise_kernels *eltwise(void) { return VLP_CPU_PICK(ELTWISE)->k; }
const eltwise_kernels *eltwise_portable_kernels(void) { return &eltwise_portable; }
const char *eltwise_level(void) { return VLP_CPU_PICK(ELTWISE)->tag.level; }
