/* The level each kernel family runs at, for the system_info line: every
 * family with more than one implementation has its line here. */
#include "ops/eltwise.h"
#include "ops/gemm.h"
#include "ops/gemm_int8.h"
#include "ops/ops.h"

#include <stdio.h>

static const char *bf16_level(void) { return gemm_bf16_hw() ? "avx512-bf16" : "off (fp32 matmuls)"; }

static const struct {
    const char *family;
    const char *(*level)(void);
} FAMILIES[] = {
    {"eltwise", eltwise_level},           /* GELU, LayerNorm, softmax, AdamW (ops/eltwise_*.c) */
    {"attention", attention_fused_level}, /* the fused short-sequence attention */
    {"int8", q8_level},                   /* vlp quantize's models */
    {"bf16", bf16_level},                 /* --precision bf16 */
};

void ops_kernel_levels(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof *FAMILIES && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%s", i ? " " : "", FAMILIES[i].family,
                                 FAMILIES[i].level());
}
