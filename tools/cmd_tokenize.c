/* vlp tokenize: the ids of texts, as open_clip.tokenize returns them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/datadir.h"
#include "data/bpe.h"

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: vlp tokenize [options] TEXT...\n"
            "       vlp tokenize [options] --file FILE     (one text a line; '-' reads stdin)\n"
            "Prints the token ids of each text on one line, space-separated, padded with 0 to\n"
            "the context length exactly as open_clip.tokenize does ([start, ids..., end, 0...];\n"
            "an over-long text keeps context-length ids, the last one the end token).\n"
            "\n"
            "  -v, --vocab FILE          BPE merges file, gzip'd or plain (default: OpenAI's,\n"
            "                            shipped with vlp as %s)\n"
            "  -m, --merges N            merges to use at most (default 0 = 48894, as open_clip)\n"
            "  -c, --context-length N    ids per text (default 77)\n"
            "  -f, --file FILE           read texts from FILE, one a line\n"
            "  -h, --help                this text\n",
            VLP_DEFAULT_VOCAB);
}

static void print_ids(const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *vocab = NULL, *file = NULL;
    long ctx = 77, merges = 0;
    int bad = 0, first_text = argc;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "tokenize", &bad)) {
            usage(stdout);
            return 0;
        } else if (arg_is(argc, argv, &i, "-v", "--vocab", true, "tokenize", &bad)) vocab = argv[++i];
        else if (arg_is(argc, argv, &i, "-f", "--file", true, "tokenize", &bad)) file = argv[++i];
        else if (arg_is(argc, argv, &i, "-c", "--context-length", true, "tokenize", &bad))
            bad = !arg_long("tokenize", "--context-length", argv[++i], 2, 1 << 20, &ctx);
        else if (arg_is(argc, argv, &i, "-m", "--merges", true, "tokenize", &bad))
            bad = !arg_long("tokenize", "--merges", argv[++i], 0, 1 << 24, &merges);
        else if (!bad && !strcmp(argv[i], "--")) { first_text = i + 1; break; }
        else if (!bad && argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vlp tokenize: unknown option '%s' (try --help)\n", argv[i]);
            bad = 1;
        } else if (!bad) { first_text = i; break; }
    }
    if (bad) return 2;
    if (!file && first_text >= argc) {
        fprintf(stderr, "vlp tokenize: give texts or --file (try --help)\n");
        return 2;
    }
    vlp_tokenizer tok;
    vlp_error err = {0};
    char msg[1024], shipped[4200];
    if ((!vocab && vlp_data_file(VLP_DEFAULT_VOCAB, shipped, sizeof shipped, &err) != VLP_OK) ||
        bpe_load(vocab ? vocab : shipped, (int)merges, &tok, &err) != VLP_OK) {
        fprintf(stderr, "vlp tokenize: %s\n", vlp_error_format(&err, msg, sizeof msg));
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)ctx);
    int rc = ids ? 0 : 1;
    for (int i = first_text; rc == 0 && i < argc; i++) {
        tok.encode(tok.impl, argv[i], ids, (int)ctx);
        print_ids(ids, (int)ctx);
    }
    if (rc == 0 && file) {
        FILE *fp = strcmp(file, "-") ? fopen(file, "r") : stdin;
        if (!fp) {
            perror(file);
            rc = 1;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (rc == 0 && (len = getline(&line, &cap, fp)) >= 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
            tok.encode(tok.impl, line, ids, (int)ctx);
            print_ids(ids, (int)ctx);
        }
        free(line);
        if (fp && fp != stdin) fclose(fp);
    }
    free(ids);
    tokenizer_free(&tok);
    return rc;
}
