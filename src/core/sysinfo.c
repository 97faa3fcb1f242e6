/* What the machine and the BLAS offer, for the system_info line and for
 * deciding whether the caller's environment forced slow BLAS kernels. */
#include "vlp.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef VLP_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* the active level (VLP_CPU can lower the CPU's) and each kernel family's */
static void cpu_features(vlp_sysinfo *s) {
    const vlp_cpu_state *c = vlp_cpu();
    s->avx2 = s->fma = (c->active & VLP_FEAT_AVX2) != 0;
    s->avx512f = (c->active & VLP_FEAT_AVX512) != 0;
    s->avx512bf16 = (c->active & VLP_FEAT_AVX512_BF16) != 0;
    snprintf(s->isa, sizeof s->isa, "%s", c->level);
    snprintf(s->cpu_isa, sizeof s->cpu_isa, "%s", c->cpu_level);
    ops_kernel_levels(s->kernels, sizeof s->kernels);
}

/* OpenBLAS core names whose sgemm uses AVX-512. */
static bool kernel_uses_avx512(const char *core) {
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids",
                                               "Zen4", "Zen5"};
    for (size_t i = 0; i < sizeof avx512_cores / sizeof *avx512_cores; i++)
        if (strcasecmp(core, avx512_cores[i]) == 0) return true;
    return false;
}

const char *vlp_version(void) { return VLP_VERSION_STRING; }

void vlp_sysinfo_get(vlp_sysinfo *s) {
    memset(s, 0, sizeof *s);
    s->threads = omp_get_max_threads();
    cpu_features(s);
#ifdef VLP_HAVE_OPENBLAS
    /* openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    const char *cfg = openblas_get_config();
    int major = 0, minor = 0, patch = 0;
    if (sscanf(cfg, "OpenBLAS %d.%d.%d", &major, &minor, &patch) == 3)
        snprintf(s->blas_name, sizeof s->blas_name, "OpenBLAS %d.%d.%d", major, minor, patch);
    else
        snprintf(s->blas_name, sizeof s->blas_name, "OpenBLAS");
    snprintf(s->blas_kernel, sizeof s->blas_kernel, "%s", openblas_get_corename());
    int par = openblas_get_parallel();
    snprintf(s->blas_threading, sizeof s->blas_threading, "%s",
             par == 2 ? "openmp" : par == 1 ? "pthreads" : "sequential");
    s->blas_threads = openblas_get_num_threads();
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced && s->avx512f && !kernel_uses_avx512(s->blas_kernel)) {
        s->blas_kernel_forced_weaker = true;
        snprintf(s->forced_coretype, sizeof s->forced_coretype, "%s", forced);
    }
#else
    snprintf(s->blas_name, sizeof s->blas_name, "cblas");
    snprintf(s->blas_kernel, sizeof s->blas_kernel, "unknown");
    snprintf(s->blas_threading, sizeof s->blas_threading, "unknown");
    s->blas_threads = 1;
#endif
}

const char *vlp_sysinfo_format(const vlp_sysinfo *s, char *buf, size_t n) {
    bool lowered = strcmp(s->isa, s->cpu_isa) != 0;
    snprintf(buf, n,
             "vlp %s | threads = %d | isa = %s%s%s%s | kernels: %s | "
             "BLAS = %s (%s, %d threads) kernel = %s%s%s%s",
             VLP_VERSION_STRING, s->threads, s->isa, lowered ? " (VLP_CPU; the CPU has " : "",
             lowered ? s->cpu_isa : "", lowered ? ")" : "", s->kernels,
             s->blas_name, s->blas_threading, s->blas_threads, s->blas_kernel,
             s->blas_kernel_forced_weaker ? " (WEAKER than this CPU allows: OPENBLAS_CORETYPE=" : "",
             s->blas_kernel_forced_weaker ? s->forced_coretype : "",
             s->blas_kernel_forced_weaker ? ")" : "");
    return buf;
}

void vlp_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#ifdef VLP_HAVE_OPENBLAS
    openblas_set_num_threads(n);
#endif
}
