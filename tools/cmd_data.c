/* vlp data: tools for datasets. `vlp data tokenizer` learns BPE merges. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "interrupt.h"
#include "opts.h"
#include "commands.h"
#include "progress.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/dataset.h"
#include "data/emoji.h"
#include "data/image.h"
#include "data/shard_writer.h"
#include "io/atomic.h"

/* ---- vlp data tokenizer: BPE merges from captions ------------------------------------------ */

typedef struct tokenizer_args {
    const char *in, *out;
    long merges, min_count;
} tokenizer_args;

static const opt_desc tokenizer_opts[] = {
    {NULL, NULL, "--captions", "FILE", &opt_string, offsetof(tokenizer_args, in), 0, 0, OPT_REQUIRED,
     "captions, one a line", NULL},
    {NULL, "-o", "--out", "FILE", &opt_string, offsetof(tokenizer_args, out), 0, 0, OPT_REQUIRED,
     "the merges file to write", NULL},
    {NULL, NULL, "--merges", "N", &opt_long, offsetof(tokenizer_args, merges), 1, 1 << 22, 0,
     "merges to learn at most", NULL},
    {NULL, NULL, "--min-count", "N", &opt_long, offsetof(tokenizer_args, min_count), 1, 2147483647.0, 0,
     "stop when no pair occurs N times", NULL},
};

/* a subcommand's options: one table over its struct */
#define ONE_GROUP(table, base) {{table, (int)(sizeof table / sizeof *table), base}}

static int data_tokenizer(int argc, char **argv) {
    tokenizer_args t = {.merges = 2000, .min_count = 2};
    const opt_group groups[] = ONE_GROUP(tokenizer_opts, &t);
    const cmd_spec spec = {
        .name = "data tokenizer", .usage = "vlp data tokenizer --captions FILE --out MERGES [options]",
        .about = "Learns byte-level BPE merges from captions (one a line) with CLIP's normalisation\n"
                 "and pre-tokenizer; writes them in the layout of OpenAI's merges file, so\n"
                 "`vlp tokenize --vocab MERGES`, `vlp train` and open_clip can use them.\n"
                 "Vocabulary size = 512 + merges + 2.",
        .groups = groups, .ngroups = 1};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *in = t.in, *out = t.out;
    long merges = t.merges, min_count = t.min_count;
    int n = 0, rc = 0;
    char **texts = read_lines(in, true, &n); /* every caption, empty ones too */
    if (!texts) return 1;
    vlp_error err = {0};
    int learnt = 0;
    if (!rc && bpe_train((const char *const *)texts, n, (int)merges, (int)min_count, out, &learnt, &err) != VLP_OK) {
        char msg[1024];
        fprintf(stderr, "vlp data tokenizer: %s\n", tool_error_text(&err, msg, sizeof msg));
        rc = 1;
    }
    if (!rc) fprintf(stderr, "learnt %d merges from %d captions into %s (vocabulary %d)\n", learnt, n, out, 512 + learnt + 2);
    free_lines(texts, n);
    return rc;
}

static int fail(const char *tool, const vlp_error *e) {
    char msg[1024];
    fprintf(stderr, "vlp data %s: %s\n", tool, tool_error_text(e, msg, sizeof msg));
    return 1;
}

/* ---- vlp data emoji: the emoji corpus as TSV ------------------------------------------------ */

typedef struct emoji_args {
    const char *dir, *vendors, *out;
} emoji_args;

static const opt_desc emoji_opts[] = {
    {NULL, NULL, "--emoji-dir", "DIR", &opt_string, offsetof(emoji_args, dir), 0, 0, 0, "the corpus (scripts/get-data.sh fetches it)", NULL},
    {NULL, NULL, "--vendors", "LIST", &opt_string, offsetof(emoji_args, vendors), 0, 0, 0,
     "comma-separated vendors", NULL},
    {NULL, "-o", "--out", "FILE", &opt_string, offsetof(emoji_args, out), 0, 0, OPT_REQUIRED,
     "the TSV to write", NULL},
};

static int data_emoji(int argc, char **argv) {
    emoji_args e = {.dir = "data/emoji", .vendors = "google,apple,facebook"};
    const opt_group groups[] = ONE_GROUP(emoji_opts, &e);
    const cmd_spec spec = {
        .name = "data emoji", .usage = "vlp data emoji --out FILE.tsv [--data DIR] [--vendors LIST]",
        .about = "Writes the emoji corpus of scripts/get-data.sh as a TSV: filepath (absolute),\n"
                 "title (the caption), coarse (the subcategory-level caption), category (one of\n"
                 "the 9 real categories; empty for the skin-tone swatches of 'Component').",
        .groups = groups, .ngroups = 1};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *dir = e.dir, *vendors = e.vendors, *out = e.out;
    emoji_set es;
    vlp_error err = {0};
    if (emoji_load(dir, vendors, &es, &err) != VLP_OK) return fail("emoji", &err);
    atomic_file af;
    if (atomic_open(&af, out, &err) != VLP_OK) {
        emoji_free(&es);
        return fail("emoji", &err);
    }
    const char *hdr = "filepath\ttitle\tcoarse\tcategory\n";
    atomic_write(&af, hdr, strlen(hdr));
    for (int i = 0; i < es.n; i++) {
        char *abs = realpath(es.path[i], NULL), line[8192];
        int n = snprintf(line, sizeof line, "%s\t%s\t%s\t%s\n", abs ? abs : es.path[i], es.caption[i],
                         emoji_coarse_caption(es.caption[i]),
                         es.category[i] >= 0 ? emoji_categories[es.category[i]] : ""); /* Component: no class */
        free(abs);
        atomic_write(&af, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    int rc = atomic_commit(&af, &err) == VLP_OK ? 0 : fail("emoji", &err);
    if (!rc) fprintf(stderr, "wrote %d pairs of %s to %s\n", es.n, vendors, out);
    emoji_free(&es);
    return rc;
}

/* ---- vlp data shards: TSV/CSV → WebDataset tar shards --------------------------------------- */

typedef struct shards_args {
    const char *in, *prefix, *caption_key, *alt_key;
    long per, seed;
    bool keep_order;
} shards_args;

static const opt_desc shards_opts[] = {
    {NULL, "-d", "--data", "SPEC", &opt_string, offsetof(shards_args, in), 0, 0, OPT_REQUIRED,
     "pairs (columns filepath and --caption-key)", NULL},
    {NULL, "-o", "--out", "PREFIX", &opt_string, offsetof(shards_args, prefix), 0, 0, OPT_REQUIRED,
     "shard path prefix", NULL},
    {NULL, NULL, "--samples-per-shard", "N", &opt_long, offsetof(shards_args, per), 1, 1073741824.0, 0,
     "samples a shard", NULL},
    {NULL, NULL, "--caption-key", "K", &opt_string, offsetof(shards_args, caption_key), 0, 0, 0,
     HELP_CAPTION_KEY, NULL},
    {NULL, NULL, "--alt-caption-key", "K", &opt_string, offsetof(shards_args, alt_key), 0, 0, 0,
     "a second caption column to keep (default none)", NULL},
    {NULL, "-s", "--seed", "N", &opt_long, offsetof(shards_args, seed), 0, 9223372036854775807.0, 0,
     "the order samples are packed in", NULL},
    {NULL, NULL, "--keep-order", NULL, &opt_switch, offsetof(shards_args, keep_order), 0, 0, 0,
     "pack in file order instead", NULL},
};

static int data_shards(int argc, char **argv) {
    shards_args a = {.caption_key = "title", .per = 1000};
    const opt_group groups[] = ONE_GROUP(shards_opts, &a);
    const cmd_spec spec = {
        .name = "data shards", .usage = "vlp data shards --data FILE.tsv --out PREFIX [options]",
        .about = "Packs the pairs of a TSV/CSV into WebDataset shards PREFIX-00000.tar, ...: per\n"
                 "sample KEY.<jpg|png|webp> (the file's bytes) and KEY.json {\"<caption-key>\": ...}.",
        .groups = groups, .ngroups = 1,
        .extra_help = "Rows are shuffled before packing (by default): the loader's shuffle buffer only\n"
                      "mixes nearby samples, and files are often sorted (here: the same emoji from\n"
                      "three vendors side by side, near-duplicates in one batch).\n"};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *in = a.in, *prefix = a.prefix, *caption_key = a.caption_key, *alt_key = a.alt_key;
    long per = a.per, seed = a.seed;
    bool keep_order = a.keep_order;
    dataset_opts o = dataset_opts_default();
    o.shuffle = !keep_order, o.seed = (uint64_t)seed, o.caption_key = caption_key, o.alt_caption_key = alt_key;
    o.warn = cli_warn;
    sample_stream *s;
    vlp_error err = {0};
    if (stream_open(&s, in, &o, &err) != VLP_OK || stream_begin(s, 0, &err) != VLP_OK) return fail("shards", &err);
    shard_writer *w;
    if (shard_writer_open(&w, prefix, per, &err) != VLP_OK) {
        stream_free(s);
        return fail("shards", &err);
    }
    long not_images = 0;
    char first_not_image[512] = "";
    int rc = 0;
    bool done = false;
    progress pr;
    progress_begin(&pr, stderr, "samples", 0);
    interrupt_catch(); /* shards are written as they fill: Ctrl-C takes them all away */
    while (!rc) {
        raw_sample r;
        if (interrupted()) {
            fprintf(stderr, "vlp data shards: interrupted; nothing written (the shards so far removed)\n");
            rc = INTERRUPT_EXIT;
            break;
        }
        if (stream_next(s, &r, &done, &err) != VLP_OK) { rc = fail("shards", &err); break; }
        if (done) break;
        if (!image_format_ext(r.image, r.image_len)) { /* a shard's reader would not know it: not written */
            char msg[512];
            image_unknown_why(r.what, r.image_len, msg, sizeof msg);
            if (!not_images++) snprintf(first_not_image, sizeof first_not_image, "%s", msg);
            cli_warn(NULL, msg);
            raw_sample_free(&r);
            continue;
        }
        /* captions are free text: bytes that are not UTF-8 become U+FFFD, as
         * the tokenizer reads them (jansson would drop the field) */
        const char *keys[2] = {caption_key, alt_key}, *values[2] = {r.caption, r.alt_caption};
        int nfields = alt_key && r.alt_caption ? 2 : 1;
        if (shard_writer_add_pair(w, r.image, r.image_len, keys, values, nfields, r.what, &err) != VLP_OK)
            rc = fail("shards", &err);
        raw_sample_free(&r);
        if (!rc) progress_update(&pr, shard_writer_count(w));
    }
    int64_t n = 0;
    long shards = 0;
    if (!rc && shard_writer_finish(w, &n, &shards, &err) != VLP_OK) rc = fail("shards", &err);
    shard_writer_free(w); /* a failed run leaves no part of its output */
    if (rc) progress_break(&pr);
    else progress_end(&pr, n);
    const char *why;
    int64_t skipped = stream_skipped(s, &why);
    stream_free(s);
    if (!rc) {
        fprintf(stderr, "wrote %lld samples into %ld shards: %s-{00000..%05ld}.tar\n", (long long)n, shards, prefix,
                shards - 1);
        if (skipped) fprintf(stderr, "skipped %lld rows; the first: %s\n", (long long)skipped, why);
        if (not_images) fprintf(stderr, "skipped %ld samples that are not images; the first: %s\n",
                                not_images, first_not_image);
    }
    return rc;
}

/* ---- vlp data stats ------------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

typedef struct stats_args {
    const char *spec, *caption_key, *vocab;
} stats_args;

static const opt_desc stats_opts[] = {
    {NULL, "-d", "--data", "SPEC", &opt_string, offsetof(stats_args, spec), 0, 0, OPT_REQUIRED,
     "the set: a .tsv/.csv or WebDataset shards", NULL},
    {NULL, NULL, "--caption-key", "K", &opt_string, offsetof(stats_args, caption_key), 0, 0, 0,
     HELP_CAPTION_KEY, NULL},
    {NULL, "-v", "--vocab", "FILE", &opt_string, offsetof(stats_args, vocab), 0, 0, 0,
     "count caption lengths in this tokenizer's tokens (default: in words)", NULL},
};

static int data_stats(int argc, char **argv) {
    stats_args a = {.caption_key = "title"};
    const opt_group groups[] = ONE_GROUP(stats_opts, &a);
    const cmd_spec spec = {
        .name = "data stats", .usage = "vlp data stats --data SPEC [--caption-key K] [--vocab FILE]",
        .about = "Counts samples (and those that cannot be used), caption lengths (in tokens with\n"
                 "--vocab, else in words: min/median/p99/max and a histogram) and image sizes.",
        .groups = groups, .ngroups = 1, .help_more = opts_help_data_kinds};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    const char *spec_path = a.spec, *caption_key = a.caption_key, *vocab = a.vocab;
    vlp_error err = {0};
    text_tokenizer tok = {0};
    if (vocab && bpe_load(vocab, 0, &tok, &err) != VLP_OK) return fail("stats", &err);
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.caption_key = caption_key;
    o.warn = cli_warn;
    sample_stream *s;
    if (stream_open(&s, spec_path, &o, &err) != VLP_OK || stream_begin(s, 0, &err) != VLP_OK) {
        tokenizer_free(&tok);
        return fail("stats", &err);
    }
    int *lens = NULL, n = 0, cap = 0, bad_img = 0;
    enum { NSIZES = 8 };
    int sizes[NSIZES][3] = {{0}}, nsizes = 0, other_sizes = 0;
    bool done = false;
    int32_t *ids = malloc(sizeof(int32_t) * 4096);
    int rc = 0;
    progress pr;
    progress_begin(&pr, stderr, "samples", 0);
    while (!rc) {
        raw_sample r;
        if (stream_next(s, &r, &done, &err) != VLP_OK) { rc = fail("stats", &err); break; }
        if (done) break;
        int len = 0;
        if (vocab) len = bpe_encode_ids(&tok, r.caption, ids, 4096);
        else
            for (const char *p = r.caption; *p;) {
                while (*p == ' ') p++;
                if (*p) len++;
                while (*p && *p != ' ') p++;
            }
        image_u8 im;
        image_decode_opts dopts = {0};
        if (image_decode(r.image, r.image_len, r.what, &dopts, &im, &err) == VLP_OK) {
            int k = 0;
            while (k < nsizes && (sizes[k][0] != im.w || sizes[k][1] != im.h)) k++;
            if (k < nsizes) sizes[k][2]++;
            else if (nsizes < NSIZES) sizes[nsizes][0] = im.w, sizes[nsizes][1] = im.h, sizes[nsizes++][2] = 1;
            else other_sizes++;
            image_free(&im);
        } else bad_img++;
        raw_sample_free(&r);
        if (n == cap) {
            int *g = realloc(lens, sizeof(int) * (size_t)(cap = cap ? 2 * cap : 1024));
            if (!g) { rc = 1; break; }
            lens = g;
        }
        lens[n++] = len;
        progress_update(&pr, n);
    }
    if (rc) progress_break(&pr);
    else progress_end(&pr, n);
    if (!rc) {
        const char *why;
        int64_t skipped = stream_skipped(s, &why);
        printf("%s: %d samples, %lld rows/members skipped, %d images that do not decode\n", spec_path, n,
               (long long)skipped, bad_img);
        if (skipped) printf("  first skipped: %s\n", why);
        if (n) {
            qsort(lens, (size_t)n, sizeof(int), cmp_int);
            printf("caption length (%s): min %d, median %d, p99 %d, max %d\n", vocab ? "tokens" : "words",
                   lens[0], lens[n / 2], lens[(int)(n * 0.99)], lens[n - 1]);
            int edges[] = {0, 8, 16, 32, 64, 77, 128, 1 << 30};
            for (int b = 0; b + 1 < (int)(sizeof edges / sizeof *edges); b++) {
                int c = 0;
                for (int i = 0; i < n; i++) c += lens[i] >= edges[b] && lens[i] < edges[b + 1];
                if (!c) continue;
                if (edges[b + 1] == (1 << 30)) printf("  [%d, inf) %d\n", edges[b], c);
                else printf("  [%d, %d) %d\n", edges[b], edges[b + 1], c);
            }
        }
        printf("image sizes:");
        for (int k = 0; k < nsizes; k++) printf(" %dx%d: %d;", sizes[k][0], sizes[k][1], sizes[k][2]);
        if (other_sizes) printf(" other sizes: %d", other_sizes);
        printf("\n");
    }
    free(lens), free(ids);
    stream_free(s);
    tokenizer_free(&tok);
    return rc;
}

/* the tools of vlp data: a name, what it does, its entry point */
static const struct data_tool {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} tools[] = {
    {"tokenizer", "learn BPE merges from captions", data_tokenizer},
    {"emoji", "write the emoji corpus as a TSV", data_emoji},
    {"shards", "pack a TSV/CSV into WebDataset tar shards", data_shards},
    {"stats", "count samples, caption lengths, image sizes", data_stats},
    {"filter", "remove samples by rules and by CLIP score (DataComp)", data_filter},
    {"balance", "balance a pool over metadata entries (MetaCLIP)", data_balance},
    {"dedup", "remove exact and semantic near-duplicates (SemDeDup)", data_dedup},
    {"concepts", "concept frequencies in captions, against zero-shot accuracy", data_concepts},
};
#define NTOOLS ((int)(sizeof tools / sizeof tools[0]))

int cmd_data(int argc, char **argv) {
    for (int k = 0; argc >= 2 && k < NTOOLS; k++)
        if (!strcmp(argv[1], tools[k].name)) return tools[k].run(argc - 1, argv + 1);
    bool help = argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
    FILE *fp = help ? stdout : stderr;
    if (help) fprintf(fp, "usage: vlp data <tool> [options]\n");
    else if (argc >= 2) fprintf(fp, "vlp data: unknown tool '%s'; the tools:\n", argv[1]);
    else fprintf(fp, "vlp data: give a tool:\n");
    for (int k = 0; k < NTOOLS; k++) fprintf(fp, "  %-11s %s\n", tools[k].name, tools[k].help);
    fprintf(fp, "Run 'vlp data <tool> --help' for a tool's options.\n");
    return help ? 0 : 2;
}
