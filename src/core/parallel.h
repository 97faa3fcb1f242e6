/* OpenMP glue: the library builds with or without OpenMP. */
#ifndef VLP_CORE_PARALLEL_H
#define VLP_CORE_PARALLEL_H

#ifdef _OPENMP
#include <omp.h>
#define VLP_PRAGMA(x) _Pragma(#x)
#define VLP_OMP_FOR VLP_PRAGMA(omp parallel for schedule(static))
/* the same, and each thread's share vectorised (the body must be branch-free) */
#define VLP_OMP_FOR_SIMD VLP_PRAGMA(omp parallel for simd schedule(static))
#else
#define VLP_OMP_FOR
#define VLP_OMP_FOR_SIMD
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline void omp_set_num_threads(int n) { (void)n; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

#endif
