/* vlp data: tools for datasets. `vlp data tokenizer` learns BPE merges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "data/bpe_train.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: vlp data tokenizer --captions FILE --out MERGES [options]\n"
            "Learns byte-level BPE merges from captions (one a line) with CLIP's normalisation\n"
            "and pre-tokenizer; writes them in the layout of OpenAI's merges file, so\n"
            "`vlp tokenize --vocab MERGES`, `vlp train` and open_clip can use them.\n"
            "Vocabulary size = 512 + merges + 2.\n"
            "\n"
            "  -i, --captions FILE   captions, one a line\n"
            "  -o, --out FILE        the merges file to write\n"
            "  -n, --merges N        merges to learn at most (default 2000)\n"
            "      --min-count N     stop when no pair occurs N times (default 2)\n"
            "  -h, --help            this text\n");
}

static int data_tokenizer(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    long merges = 2000, min_count = 2;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "data tokenizer", &bad)) {
            usage(stdout);
            return 0;
        } else if (arg_is(argc, argv, &i, "-i", "--captions", true, "data tokenizer", &bad)) in = argv[++i];
        else if (arg_is(argc, argv, &i, "-o", "--out", true, "data tokenizer", &bad)) out = argv[++i];
        else if (arg_is(argc, argv, &i, "-n", "--merges", true, "data tokenizer", &bad))
            bad = !arg_long("data tokenizer", "--merges", argv[++i], 1, 1 << 22, &merges);
        else if (arg_is(argc, argv, &i, NULL, "--min-count", true, "data tokenizer", &bad))
            bad = !arg_long("data tokenizer", "--min-count", argv[++i], 1, 1L << 40, &min_count);
        else if (!bad) {
            fprintf(stderr, "vlp data tokenizer: unknown option '%s' (try --help)\n", argv[i]);
            bad = 1;
        }
    }
    if (bad) return 2;
    if (!in || !out) {
        fprintf(stderr, "vlp data tokenizer: --captions and --out are required (try --help)\n");
        return 2;
    }
    FILE *fp = fopen(in, "r");
    if (!fp) {
        perror(in);
        return 1;
    }
    char **texts = NULL, *line = NULL;
    size_t cap = 0, lcap = 0;
    int n = 0, rc = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if ((size_t)n == cap) {
            char **g = realloc(texts, sizeof(char *) * (cap = cap ? 2 * cap : 1024));
            if (!g) { rc = 1; break; }
            texts = g;
        }
        if (!(texts[n] = strdup(line))) { rc = 1; break; }
        n++;
    }
    free(line);
    fclose(fp);
    if (rc) fprintf(stderr, "vlp data tokenizer: out of memory reading %s\n", in);
    vlp_error err = {0};
    int learnt = 0;
    if (!rc && bpe_train((const char *const *)texts, n, (int)merges, (int)min_count, out, &learnt, &err) != VLP_OK) {
        char msg[1024];
        fprintf(stderr, "vlp data tokenizer: %s\n", vlp_error_format(&err, msg, sizeof msg));
        rc = 1;
    }
    if (!rc) fprintf(stderr, "learnt %d merges from %d captions into %s (vocabulary %d)\n", learnt, n, out, 512 + learnt + 2);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    return rc;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "tokenizer")) return data_tokenizer(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: vlp data <tool> [options]\n"
               "  tokenizer   learn BPE merges from captions\n"
               "Run 'vlp data <tool> --help' for a tool's options.\n");
        return 0;
    }
    fprintf(stderr, "vlp data: give a tool: tokenizer (try 'vlp data --help')\n");
    return 2;
}
