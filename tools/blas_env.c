#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlp.h"
#include "blas_env.h"

#define DROPPED_VAR "VLP_DROPPED_OPENBLAS_CORETYPE"

void tool_fix_blas_env(char **argv) {
    const char *keep = getenv("VLP_KEEP_OPENBLAS_CORETYPE");
    if ((keep && *keep && strcmp(keep, "0") != 0) || getenv(DROPPED_VAR)) return;
    vlp_sysinfo s;
    vlp_sysinfo_get(&s);
    if (!s.blas_kernel_forced_weaker) return;
    setenv(DROPPED_VAR, s.forced_coretype, 1);
    unsetenv("OPENBLAS_CORETYPE");
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the weak kernels; the info line says so */
    setenv("OPENBLAS_CORETYPE", s.forced_coretype, 1);
    unsetenv(DROPPED_VAR);
}

void tool_print_sysinfo(FILE *fp) {
    vlp_sysinfo s;
    vlp_sysinfo_get(&s);
    char line[512];
    fprintf(fp, "system_info: %s\n", vlp_sysinfo_format(&s, line, sizeof line));
    const char *dropped = getenv(DROPPED_VAR);
    if (dropped)
        fprintf(fp,
                "system_info: ignored OPENBLAS_CORETYPE=%s from the environment: it forces "
                "kernels weaker than this CPU's (set VLP_KEEP_OPENBLAS_CORETYPE=1 to keep it)\n",
                dropped);
}
