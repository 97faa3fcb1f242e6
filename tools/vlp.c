/* vlp — the command-line tool, thin over the library. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlp.h"
#include "blas_env.h"
#include "commands.h"
#include "opts.h"
#include "core/cpu.h"
#include "core/datadir.h"

static int cmd_info(int argc, char **argv);

/* the commands: each one file (tools/cmd_*.c), its line in the help */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} COMMANDS[] = {
    {"info", cmd_info, "print what this machine and build offer (threads, SIMD, BLAS kernel)"},
    {"train", cmd_train, "pre-train a CLIP model (checkpoints, resume, in-training eval)"},
    {"tokenize", cmd_tokenize, "print the CLIP BPE token ids of texts"},
    {"data", cmd_data, "dataset tools: tokenizer, emoji, shards, stats, curation"},
    {"embed", cmd_embed, "embed images or texts into a .npy"},
    {"search", cmd_search, "the rows of an embedding index nearest to a text or an image"},
    {"classify", cmd_classify, "zero-shot labels of an image (templates or learnt prompts)"},
    {"match", cmd_match, "image-text matching probabilities by a fusion encoder (ITM, ALBEF/BLIP)"},
    {"caption", cmd_caption, "captions of images (CoCa models: greedy or beam search)"},
    {"eval", cmd_eval, "zero-shot, retrieval and linear probe on a labelled set"},
    {"adapt", cmd_adapt, "learn prompts (CoOp, CoCoOp, MaPLe) or a probe from a few labelled images"},
    {"quantize", cmd_quantize, "write an int8 model for embedding (per-channel weights, int8 kernels)"},
    {"models", cmd_models, "the architectures vlp knows by name (ViT-B-32, ViT-H-14, tiny, ...)"},
};

static void usage(FILE *fp) {
    fprintf(fp, "vlp %s — vision-language pre-training in C\n\nusage: vlp [-h|--help] [-V|--version] <command> [options]\n\ncommands:\n",
            VLP_VERSION_STRING);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(fp, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(fp, "\nRun 'vlp <command> --help' for a command's options.\n");
}

typedef struct info_args {
    int threads;
    bool levels;
} info_args;

static const opt_desc info_opts[] = {
    {NULL, "-t", "--threads", "N", &opt_int, offsetof(info_args, threads), 0, 4096, 0,
     "threads, 0 = one per core", NULL},
    {NULL, NULL, "--levels", NULL, &opt_switch, offsetof(info_args, levels), 0, 0, 0,
     "the levels VLP_CPU takes, one a line: name, whether this CPU runs it (yes/no), the CPUs at "
     "that level", NULL},
};

static int cmd_info(int argc, char **argv) {
    info_args a = {0};
    const opt_group groups[] = {{info_opts, (int)(sizeof info_opts / sizeof *info_opts), &a}};
    const cmd_spec spec = {
        .name = "info", .usage = "vlp info [-t|--threads N] [--levels]",
        .about = "The system line (threads, instruction-set level and each kernel family's,\n"
                 "BLAS and its kernel) and the folder vlp reads its configs, vocabulary and\n"
                 "templates from.",
        .groups = groups, .ngroups = 1};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    if (a.levels) {
        size_t n;
        const vlp_cpu_level *levels = vlp_cpu_levels(&n);
        unsigned cpu = vlp_cpu()->cpu;
        for (size_t l = 0; l < n; l++)
            printf("%s\t%s\t%s\n", levels[l].name,
                   (levels[l].features & cpu) == levels[l].features ? "yes" : "no", levels[l].cpus);
        return 0;
    }
    int threads = a.threads;
    vlp_set_threads(threads);
    tool_print_sysinfo(stdout);
    char dirs[4][4096];
    int nd = vlp_data_dirs(dirs, 4);
    printf("data: %s%s\n", nd ? dirs[0] : "none found (make install, or set VLP_DATA_DIR)",
           nd && getenv("VLP_DATA_DIR") && *getenv("VLP_DATA_DIR") ? " (VLP_DATA_DIR)" : "");
    return 0;
}

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("vlp")) return 2;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("vlp %s\n", VLP_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vlp: unknown command '%s' (try 'vlp --help')\n", argv[1]);
    return 2;
}
