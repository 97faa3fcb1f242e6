#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlp.h"
#include "blas_env.h"
#include "core/cpu.h"

#define DROPPED_VAR "VLP_DROPPED_OPENBLAS_CORETYPE"
#define WAIT_VAR "VLP_WAIT_POLICY_SET" /* the other processes seen at start, after the re-exec */

/* OpenBLAS's core for a level VLP_CPU lowered to, so that its sgemm is
 * that level's too (it reads OPENBLAS_CORETYPE when it is loaded) */
static const struct {
    const char *level, *core;
} LEVEL_CORES[] = {
    {"portable", "Nehalem"}, {"avx2", "Haswell"}, {"avx2-vnni", "Haswell"},
    {"avx512", "SkylakeX"},  {"avx512-vnni", "SkylakeX"}, {"avx512-bf16", "Cooperlake"},
};

/* VLP_CPU lowered the level and OPENBLAS_CORETYPE is not set: re-exec with
 * the level's core (VLP_BLAS_CORE_SET marks the second run) */
static void blas_core_for_level(char **argv) {
    const vlp_cpu_state *c = vlp_cpu();
    const char *core_env = getenv("OPENBLAS_CORETYPE");
    if (!c->forced || (core_env && *core_env) || getenv("VLP_BLAS_CORE_SET")) return;
    for (size_t i = 0; i < sizeof LEVEL_CORES / sizeof *LEVEL_CORES; i++)
        if (!strcmp(c->level, LEVEL_CORES[i].level)) {
            setenv("OPENBLAS_CORETYPE", LEVEL_CORES[i].core, 1);
            setenv("VLP_BLAS_CORE_SET", LEVEL_CORES[i].core, 1);
            execv("/proc/self/exe", argv);
            unsetenv("OPENBLAS_CORETYPE"); /* exec failed: the CPU's own sgemm */
            return;
        }
}

/* Processes running now besides this one: /proc/stat's procs_running, the
 * least of a few reads 2 ms apart (a process that only passes by is not
 * load); -1 when it cannot be read. */
static int others_running(void) {
    int least = -1;
    for (int k = 0; k < 5; k++) {
        FILE *fp = fopen("/proc/stat", "r");
        if (!fp) return -1;
        char line[256];
        int n = -1;
        while (fgets(line, sizeof line, fp))
            if (sscanf(line, "procs_running %d", &n) == 1) break;
        fclose(fp);
        if (n < 0) return -1;
        if (least < 0 || n - 1 < least) least = n - 1;
        if (k < 4) usleep(2000);
    }
    return least;
}

/* OpenMP's workers spin while they wait for the next parallel region
 * (libgomp: up to 300,000 spins). On an idle machine that is the fastest;
 * where other processes run, the spinning takes their cores: training tiny
 * on 2 cores beside one busy process ran at 35 samples/s spinning and 59
 * waiting passively (docs/performance.md). libgomp reads OMP_WAIT_POLICY when
 * it is loaded, so the choice is made before, by re-executing: passive when
 * other processes are running at start, unless the user chose
 * (OMP_WAIT_POLICY or GOMP_SPINCOUNT set). Returns whether it set it. */
static bool wait_policy_for_load(void) {
    const char *p = getenv("OMP_WAIT_POLICY"), *s = getenv("GOMP_SPINCOUNT");
    if ((p && *p) || (s && *s) || getenv(WAIT_VAR)) return false;
    int others = others_running();
    if (others < 1) return false;
    char n[16];
    snprintf(n, sizeof n, "%d", others);
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv(WAIT_VAR, n, 1);
    return true;
}

const char *tool_isa(void) { return vlp_cpu()->level; }

int tool_check_cpu(const char *prog) {
    vlp_error e = {0};
    if (vlp_cpu_check(&e) == VLP_OK) return 0;
    fprintf(stderr, "%s: %s\n", prog, e.message);
    return 2;
}

void tool_fix_blas_env(char **argv) {
    if (wait_policy_for_load()) {
        execv("/proc/self/exe", argv);
        unsetenv("OMP_WAIT_POLICY"), unsetenv(WAIT_VAR); /* exec failed: the default */
    }
    const char *keep = getenv("VLP_KEEP_OPENBLAS_CORETYPE");
    if ((keep && *keep && strcmp(keep, "0") != 0) || getenv(DROPPED_VAR)) return;
    blas_core_for_level(argv);
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
    const char *others = getenv(WAIT_VAR);
    if (others)
        fprintf(fp,
                "system_info: %s other process%s running at start: idle threads wait passively "
                "(OMP_WAIT_POLICY=passive; set OMP_WAIT_POLICY=active to spin)\n",
                others, strcmp(others, "1") ? "es were" : " was");
    const char *dropped = getenv(DROPPED_VAR);
    if (dropped)
        fprintf(fp,
                "system_info: ignored OPENBLAS_CORETYPE=%s from the environment: it forces "
                "kernels weaker than this CPU's (set VLP_KEEP_OPENBLAS_CORETYPE=1 to keep it)\n",
                dropped);
}
