/* vlp — the command-line tool, thin over the library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlp.h"
#include "blas_env.h"
#include "commands.h"
#include "core/datadir.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "vlp %s — vision-language pre-training in C\n"
            "\n"
            "usage: vlp [-h|--help] [-V|--version] <command> [options]\n"
            "\n"
            "commands:\n"
            "  info      print what this machine and build offer (threads, SIMD, BLAS kernel)\n"
            "  train     pre-train a CLIP model (checkpoints, resume, in-training eval)\n"
            "  tokenize  print the CLIP BPE token ids of texts\n"
            "  data      dataset tools: tokenizer, emoji, shards, stats\n"
            "  embed     embed images or texts into a .npy\n"
            "  search    the rows of an embedding index nearest to a text or an image\n"
            "  classify  zero-shot labels of an image\n"
            "  caption   captions of images (CoCa models: greedy or beam search)\n"
            "  eval      zero-shot, retrieval and linear probe on a labelled set\n"
            "  models    the architectures vlp knows by name (ViT-B-32, ViT-H-14, tiny, ...)\n"
            "\n"
            "Run 'vlp <command> --help' for a command's options.\n",
            VLP_VERSION_STRING);
}

static int cmd_info(int argc, char **argv) {
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: vlp info [-t|--threads N]\n"
                   "The system line (threads, SIMD, BLAS and its kernel) and the folder vlp reads\n"
                   "its configs, vocabulary and templates from.\n"
                   "  -t, --threads N   threads to use (default: 0 = one per core)\n");
            return 0;
        } else if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 4096) {
                fprintf(stderr, "vlp info: --threads wants a whole number 0..4096, got '%s'\n",
                        argv[i]);
                return 2;
            }
            threads = (int)v;
        } else {
            fprintf(stderr, "vlp info: unknown option '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
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
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("vlp %s\n", VLP_VERSION_STRING);
        return 0;
    }
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(argv[1], "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(argv[1], "caption")) return cmd_caption(argc - 1, argv + 1);
    if (!strcmp(argv[1], "search")) return cmd_search(argc - 1, argv + 1);
    if (!strcmp(argv[1], "classify")) return cmd_classify(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "models")) return cmd_models(argc - 1, argv + 1);
    fprintf(stderr, "vlp: unknown command '%s' (try 'vlp --help')\n", argv[1]);
    return 2;
}
