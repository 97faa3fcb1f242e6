#include "model_args.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "blas_env.h"

/* --precision fp32|bf16 into vlp_model_opts.bf16 */
static vlp_err bf16_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    bool bf16 = text && !strcmp(text, "bf16");
    VLP_CHECK_ARG(bf16 || (text && !strcmp(text, "fp32")), err, "%s must be fp32 or bf16, not '%s'",
                  d->flag, text ? text : "");
    *(bool *)dst = bf16;
    return VLP_OK;
}
static void bf16_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", *(const bool *)src ? "bf16" : "fp32");
}
static const opt_type opt_bf16 = {"fp32 or bf16", false, bf16_parse, bf16_format, NULL, NULL, sizeof(bool)};

/* --quick-gelu / --gelu: vlp_model_opts.quick_gelu 1 / 0 (-1: the config's) */
static vlp_err act_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    *(int *)dst = d->hi != 0;
    return VLP_OK;
}
static void act_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    int q = *(const int *)src;
    snprintf(buf, cap, "%s", q < 0 ? "the config's" : q ? "QuickGELU" : "GELU");
}
static const opt_type opt_act = {"a switch", true, act_parse, act_format, NULL, NULL, sizeof(int)};

/* --white-background / --drop-alpha: vlp_model_opts.alpha (VLP_ALPHA_MODEL: the model's) */
static vlp_err alpha_parse(const opt_desc *d, void *dst, const char *text, vlp_error *err) {
    *(int *)dst = (int)d->hi;
    return VLP_OK;
}
static void alpha_format(const opt_desc *d, const void *src, char *buf, size_t cap) {
    int a = *(const int *)src;
    snprintf(buf, cap, "%s", a == VLP_ALPHA_WHITE ? "on white" : a == VLP_ALPHA_DROP ? "dropped" : "the model's");
}
static const opt_type opt_alpha = {"a switch", true, alpha_parse, alpha_format, NULL, NULL, sizeof(int)};

#define M(shrt, flag, arg, type, member, lo, hi, help)                                            \
    {NULL, shrt, flag, arg, &type, offsetof(model_args, member), lo, hi, 0, help, NULL}
const opt_desc model_opt_table[] = {
    M("-m", "--model", "FILE", opt_string, model, 0, 0,
      "weights (.safetensors: open_clip/OpenAI or HF CLIPModel naming)"),
    M("-c", "--model-config", "C", opt_string, o.model_config, 0, 0,
      "the architecture: an open_clip name (ViT-B-16, ViT-H-14, ...; 'vlp models' lists them) or a "
      "JSON file (default: the file's config, else inferred from the shapes with head width 64)"),
    M("-v", "--vocab", "FILE", opt_string, o.vocab, 0, 0,
      "BPE merges (default: tokenizer.merges next to the model, else $VLP_BPE_MERGES, else OpenAI's, "
      "shipped with vlp)"),
    M(NULL, "--quick-gelu", NULL, opt_act, o.quick_gelu, 0, 1,
      "QuickGELU, over the config's activation (default: the config's; QuickGELU when inferred from "
      "the shapes)"),
    M(NULL, "--gelu", NULL, opt_act, o.quick_gelu, 0, 0, "GELU, over the config's activation"),
    M(NULL, "--white-background", NULL, opt_alpha, o.alpha, 0, VLP_ALPHA_WHITE,
      "composite transparent pixels on white, over the model's rule (default: the model's: on white "
      "when trained with --white-background, else alpha dropped)"),
    M(NULL, "--drop-alpha", NULL, opt_alpha, o.alpha, 0, VLP_ALPHA_DROP,
      "drop transparency (PIL's convert('RGB'), open_clip's), over the model's rule"),
    M(NULL, "--encode-batch", "N", opt_int, o.batch, 1, 4096, "images or texts an encoder call"),
    M("-t", "--threads", "N", opt_long, threads, 0, 4096, "threads, 0 = one per core"),
    M("-p", "--precision", "P", opt_bf16, o.bf16, 0, 0,
      "fp32, or bf16: matmuls in bfloat16 (AVX512-BF16; faster, embeddings within bf16 rounding of "
      "fp32's)"),
};
#undef M
const int model_opt_count = (int)(sizeof model_opt_table / sizeof model_opt_table[0]);

model_args model_args_default(void) { return (model_args){.o = vlp_model_opts_default()}; }

vlp_model *open_model(const model_args *a, const char *cmd) {
    if (!a->model) {
        fprintf(stderr, "vlp %s: --model is required (try --help)\n", cmd);
        return NULL;
    }
    vlp_set_threads((int)a->threads);
    tool_print_sysinfo(stderr);
    vlp_model *m;
    vlp_error err = {0};
    char buf[1024];
    vlp_model_opts o = a->o;
    o.trainable = a->trainable;
    if (vlp_model_load(&m, a->model, &o, &err) != VLP_OK) {
        fprintf(stderr, "vlp %s: %s\n", cmd, tool_error_text(&err, buf, sizeof buf));
        return NULL;
    }
    if (vlp_model_warning(m)) fprintf(stderr, "warning: %s\n", vlp_model_warning(m));
    fprintf(stderr, "%s: %s\n", a->model, vlp_model_describe(m, buf, sizeof buf));
    return m;
}

