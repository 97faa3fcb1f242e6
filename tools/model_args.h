/* The options of every command that loads a model (embed, search, classify,
 * caption, eval): --model, --model-config, --vocab, the activation, batch,
 * threads and precision; one parser, one help text, one loader. */
#ifndef VLP_TOOLS_MODEL_ARGS_H
#define VLP_TOOLS_MODEL_ARGS_H
#include <stdbool.h>

#include "vlp.h"

#define MODEL_HELP                                                                              \
    "  -m, --model FILE      weights (.safetensors: open_clip/OpenAI or HF CLIPModel naming)\n"  \
    "      --model-config C  the architecture: an open_clip name (ViT-B-16, ViT-H-14, ...;\n"     \
    "                        'vlp models' lists them) or a JSON file (default: the file's\n"     \
    "                        config, else inferred from the shapes with head width 64)\n"        \
    "  -v, --vocab FILE      BPE merges (default: tokenizer.merges next to the model, else\n"   \
    "                        $VLP_BPE_MERGES, else OpenAI's, shipped with vlp)\n"               \
    "      --quick-gelu, --gelu   the activation, over the config's (default: the config's;\n" \
    "                        QuickGELU when inferred from the shapes)\n"                         \
    "  -b, --batch N         encoder batch (default 32)\n"                                       \
    "  -t, --threads N       threads, 0 = one per core (default 0)\n"                           \
    "  -p, --precision P     fp32, or bf16: matmuls in bfloat16 (AVX512-BF16; faster, embeddings\n" \
    "                        within bf16 rounding of fp32's) (default fp32)\n"

typedef struct model_args {
    const char *model;
    vlp_model_opts o;
    long threads;
    bool trainable; // the towers can run their backward (vlp adapt)
} model_args;

/* true when argv[*i] was one of the shared options (consumed, *bad set on a bad value) */
bool model_arg(int argc, char **argv, int *i, model_args *a, const char *cmd, int *bad);
/* sets the threads, prints the system line, loads the model and says what it
 * is (and any warning); NULL after a message naming the fault */
vlp_model *open_model(const model_args *a, const char *cmd);
#endif
