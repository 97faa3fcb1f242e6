#ifndef VLP_TOOLS_BLAS_ENV_H
#define VLP_TOOLS_BLAS_ENV_H
/* Call first in main(). OpenBLAS picks its kernels when it is loaded, before
 * main, honouring OPENBLAS_CORETYPE. When that variable forces kernels weaker
 * than this CPU supports (the shell here exports Haswell on an AVX-512 CPU,
 * halving sgemm speed), the program re-executes itself without it.
 * VLP_KEEP_OPENBLAS_CORETYPE=1 keeps the user's choice. When VLP_CPU lowers
 * the kernels' level and OPENBLAS_CORETYPE is unset, it re-executes with
 * the level's OpenBLAS core (avx2: Haswell), so the sgemm is that level's
 * too. When OMP_WAIT_POLICY and GOMP_SPINCOUNT are unset and other
 * processes are running at start, it re-executes with OMP_WAIT_POLICY=passive
 * (spinning OpenMP workers take the other processes' cores).
 * Returns only when no re-exec is needed or it failed. */
void tool_fix_blas_env(char **argv);

/* the level the kernels run at ("avx2", ...), for the benches' RESULT lines */
const char *tool_isa(void);

/* 0, or 2 having printed why VLP_CPU is refused ("prog: ..."). */
int tool_check_cpu(const char *prog);

/* The system_info line, with a note when the environment was corrected. */
void tool_print_sysinfo(FILE *fp);
#endif
