/* vlp tokenize: the ids of texts, as open_clip.tokenize returns them. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vlp.h"
#include "args.h"
#include "opts.h"
#include "commands.h"
#include "core/datadir.h"
#include "data/bpe.h"

typedef struct tokenize_args {
    const char *vocab, *file;
    long ctx, merges;
} tokenize_args;

static const opt_desc tokenize_opts[] = {
    {NULL, "-v", "--vocab", "FILE", &opt_string, offsetof(tokenize_args, vocab), 0, 0, 0,
     "BPE merges file, gzip'd or plain (default: OpenAI's, shipped with vlp as " VLP_DEFAULT_VOCAB ")", NULL},
    {NULL, NULL, "--merges", "N", &opt_long, offsetof(tokenize_args, merges), 0, 1 << 24, 0,
     "merges to use at most (0 = 48894, as open_clip)", NULL},
    {NULL, NULL, "--context-length", "N", &opt_long, offsetof(tokenize_args, ctx), 2, 1 << 20, 0,
     "ids per text", NULL},
    {NULL, "-f", "--file", "FILE", &opt_string, offsetof(tokenize_args, file), 0, 0, 0,
     "read texts from FILE, one a line ('-' reads stdin)", NULL},
};

static void print_ids(const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

int cmd_tokenize(int argc, char **argv) {
    tokenize_args t = {.ctx = 77};
    const opt_group groups[] = {{tokenize_opts, (int)(sizeof tokenize_opts / sizeof *tokenize_opts), &t}};
    const cmd_spec spec = {
        .name = "tokenize",
        .usage = "vlp tokenize [options] TEXT...\n       vlp tokenize [options] --file FILE",
        .about = "Prints the token ids of each text on one line, space-separated, padded with 0 to\n"
                 "the context length exactly as open_clip.tokenize does ([start, ids..., end, 0...];\n"
                 "an over-long text keeps context-length ids, the last one the end token). A text\n"
                 "that starts with '-' goes after '--'.",
        .groups = groups, .ngroups = 1, .positional = true};
    char **texts = calloc((size_t)argc + 1, sizeof(char *));
    int ntexts = 0;
    if (!texts) return 1;
    int prc = opts_parse(&spec, argc, argv, texts, &ntexts);
    if (prc) return free(texts), prc == 1 ? 0 : 2;
    const char *vocab = t.vocab, *file = t.file;
    long ctx = t.ctx, merges = t.merges;
    if (!file && !ntexts) {
        fprintf(stderr, "vlp tokenize: give texts or --file (try --help)\n");
        free(texts);
        return 2;
    }
    text_tokenizer tok;
    vlp_error err = {0};
    char msg[1024], shipped[4200];
    if ((!vocab && vlp_data_file(VLP_DEFAULT_VOCAB, shipped, sizeof shipped, &err) != VLP_OK) ||
        bpe_load(vocab ? vocab : shipped, (int)merges, &tok, &err) != VLP_OK) {
        fprintf(stderr, "vlp tokenize: %s\n", tool_error_text(&err, msg, sizeof msg));
        free(texts);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)ctx);
    int rc = ids ? 0 : 1;
    for (int i = 0; rc == 0 && i < ntexts; i++) {
        tok.encode(tok.impl, texts[i], ids, (int)ctx);
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
    free(ids), free(texts);
    tokenizer_free(&tok);
    return rc;
}
