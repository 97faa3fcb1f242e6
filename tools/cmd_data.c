/* vlp data: tools for datasets. `vlp data tokenizer` learns BPE merges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "args.h"
#include "commands.h"
#include "progress.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/dataset.h"
#include "data/emoji.h"
#include "data/image.h"
#include "data/tar.h"
#include "io/atomic.h"

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
    int n = 0, rc = 0;
    char **texts = read_lines(in, true, &n); /* every caption, empty ones too */
    if (!texts) return 1;
    vlp_error err = {0};
    int learnt = 0;
    if (!rc && bpe_train((const char *const *)texts, n, (int)merges, (int)min_count, out, &learnt, &err) != VLP_OK) {
        char msg[1024];
        fprintf(stderr, "vlp data tokenizer: %s\n", vlp_error_format(&err, msg, sizeof msg));
        rc = 1;
    }
    if (!rc) fprintf(stderr, "learnt %d merges from %d captions into %s (vocabulary %d)\n", learnt, n, out, 512 + learnt + 2);
    free_lines(texts, n);
    return rc;
}

static int fail(const char *tool, const vlp_error *e) {
    char msg[1024];
    fprintf(stderr, "vlp data %s: %s\n", tool, vlp_error_format(e, msg, sizeof msg));
    return 1;
}

/* ---- vlp data emoji: the emoji corpus as TSV ------------------------------------------------ */

static int data_emoji(int argc, char **argv) {
    const char *dir = "data/emoji", *vendors = "google,apple,facebook", *out = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "data emoji", &bad)) {
            printf("usage: vlp data emoji --out FILE.tsv [--data DIR] [--vendors LIST]\n"
                   "Writes the emoji corpus of scripts/get-data.sh as a TSV: filepath (absolute),\n"
                   "title (the caption), coarse (the subcategory-level caption), category (one of\n"
                   "the 9 real categories; empty for the skin-tone swatches of 'Component').\n"
                   "  -d, --data DIR      the corpus (default data/emoji)\n"
                   "      --vendors LIST  comma-separated vendors (default google,apple,facebook)\n"
                   "  -o, --out FILE      the TSV to write\n");
            return 0;
        } else if (arg_is(argc, argv, &i, "-d", "--data", true, "data emoji", &bad)) dir = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--vendors", true, "data emoji", &bad)) vendors = argv[++i];
        else if (arg_is(argc, argv, &i, "-o", "--out", true, "data emoji", &bad)) out = argv[++i];
        else if (!bad) fprintf(stderr, "vlp data emoji: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !out) {
        if (!bad) fprintf(stderr, "vlp data emoji: --out is required (try --help)\n");
        return 2;
    }
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

static int data_shards(int argc, char **argv) {
    const char *in = NULL, *prefix = NULL, *caption_key = "title", *alt_key = NULL;
    long per = 1000, seed = 0;
    bool keep_order = false;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "data shards", &bad)) {
            printf("usage: vlp data shards --data FILE.tsv --out PREFIX [options]\n"
                   "Packs the pairs of a TSV/CSV into WebDataset shards PREFIX-00000.tar, ...: per\n"
                   "sample KEY.<jpg|png|webp> (the file's bytes) and KEY.json {\"<caption-key>\": ...}.\n"
                   "  -i, --data FILE           pairs (columns filepath and --caption-key)\n"
                   "  -o, --out PREFIX          shard path prefix\n"
                   "  -n, --samples-per-shard N (default 1000)\n"
                   "      --caption-key K       (default title)\n"
                   "      --alt-caption-key K   a second caption column to keep (default none)\n"
                   "      --seed N              the order samples are packed in (default 0)\n"
                   "      --keep-order          pack in file order instead\n"
                   "Rows are shuffled before packing (by default): the loader's shuffle buffer only\n"
                   "mixes nearby samples, and files are often sorted (here: the same emoji from\n"
                   "three vendors side by side, near-duplicates in one batch).\n");
            return 0;
        } else if (arg_is(argc, argv, &i, "-i", "--data", true, "data shards", &bad)) in = argv[++i];
        else if (arg_is(argc, argv, &i, "-o", "--out", true, "data shards", &bad)) prefix = argv[++i];
        else if (arg_is(argc, argv, &i, "-n", "--samples-per-shard", true, "data shards", &bad))
            bad = !arg_long("data shards", "--samples-per-shard", argv[++i], 1, 1L << 30, &per);
        else if (arg_is(argc, argv, &i, NULL, "--caption-key", true, "data shards", &bad)) caption_key = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--alt-caption-key", true, "data shards", &bad)) alt_key = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--seed", true, "data shards", &bad))
            bad = !arg_long("data shards", "--seed", argv[++i], 0, (long)(~0UL >> 1), &seed);
        else if (arg_is(argc, argv, &i, NULL, "--keep-order", false, "data shards", &bad)) keep_order = true;
        else if (!bad) fprintf(stderr, "vlp data shards: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !in || !prefix) {
        if (!bad) fprintf(stderr, "vlp data shards: --data and --out are required (try --help)\n");
        return 2;
    }
    dataset_opts o = dataset_opts_default();
    o.shuffle = !keep_order, o.seed = (uint64_t)seed, o.caption_key = caption_key, o.alt_caption_key = alt_key;
    o.warn = cli_warn;
    sample_stream *s;
    vlp_error err = {0};
    char *dir = strdup(prefix), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = '\0';
    vlp_err mk = slash && *dir ? make_dirs(dir, &err) : VLP_OK;
    free(dir);
    if (mk != VLP_OK) return fail("shards", &err);
    if (stream_open(&s, in, &o, &err) != VLP_OK || stream_begin(s, 0, &err) != VLP_OK) return fail("shards", &err);
    tar_writer w;
    long n = 0, shard = 0, not_images = 0;
    char first_not_image[512] = "";
    int rc = 0;
    bool open = false, done = false;
    progress pr;
    progress_begin(&pr, stderr, "samples", 0);
    while (!rc) {
        raw_sample r;
        if (stream_next(s, &r, &done, &err) != VLP_OK) { rc = fail("shards", &err); break; }
        if (done) break;
        if (!open) {
            char path[4096];
            snprintf(path, sizeof path, "%s-%05ld.tar", prefix, shard);
            if (tar_create(&w, path, &err) != VLP_OK) { raw_sample_free(&r); rc = fail("shards", &err); break; }
            open = true;
        }
        const char *ext = image_format_ext(r.image, r.image_len);
        if (!ext) { /* a shard's reader would not know it: not written */
            char msg[512];
            snprintf(msg, sizeof msg, "%s: not a JPEG, PNG or WebP image (%zu bytes)", r.what, r.image_len);
            if (!not_images++) snprintf(first_not_image, sizeof first_not_image, "%s", msg);
            cli_warn(NULL, msg);
            raw_sample_free(&r);
            continue;
        }
        json_t *j = json_object();
        json_object_set_new(j, caption_key, json_string(r.caption));
        if (alt_key && r.alt_caption) json_object_set_new(j, alt_key, json_string(r.alt_caption));
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        char name[64];
        snprintf(name, sizeof name, "%09ld.%s", n, ext);
        vlp_err e = text ? tar_add(&w, name, r.image, r.image_len, &err) : VLP_ERR_NOMEM;
        snprintf(name, sizeof name, "%09ld.json", n);
        if (e == VLP_OK) e = tar_add(&w, name, text, strlen(text), &err);
        free(text);
        raw_sample_free(&r);
        if (e != VLP_OK) { rc = fail("shards", &err); break; }
        progress_update(&pr, ++n);
        if (n % per == 0) {
            open = false, shard++;
            if (tar_finish(&w, &err) != VLP_OK) rc = fail("shards", &err);
        }
    }
    if (open) {
        if (rc) tar_abort(&w);
        else if (tar_finish(&w, &err) != VLP_OK) rc = fail("shards", &err);
        else shard++;
    }
    if (rc) progress_break(&pr);
    else progress_end(&pr, n);
    const char *why;
    int64_t skipped = stream_skipped(s, &why);
    stream_free(s);
    if (!rc) {
        fprintf(stderr, "wrote %ld samples into %ld shards: %s-{00000..%05ld}.tar\n", n, shard, prefix, shard - 1);
        if (skipped) fprintf(stderr, "skipped %lld rows; the first: %s\n", (long long)skipped, why);
        if (not_images) fprintf(stderr, "skipped %ld samples that are not images; the first: %s\n",
                                not_images, first_not_image);
    }
    return rc;
}

/* ---- vlp data stats ------------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int data_stats(int argc, char **argv) {
    const char *spec = NULL, *caption_key = "title", *vocab = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (arg_is(argc, argv, &i, "-h", "--help", false, "data stats", &bad)) {
            printf("usage: vlp data stats --data SPEC [--caption-key K] [--vocab MERGES]\n"
                   "Counts samples (and those that cannot be used), caption lengths (in tokens with\n"
                   "--vocab, else in words: min/median/p99/max and a histogram) and image sizes.\n");
            return 0;
        } else if (arg_is(argc, argv, &i, "-i", "--data", true, "data stats", &bad)) spec = argv[++i];
        else if (arg_is(argc, argv, &i, NULL, "--caption-key", true, "data stats", &bad)) caption_key = argv[++i];
        else if (arg_is(argc, argv, &i, "-v", "--vocab", true, "data stats", &bad)) vocab = argv[++i];
        else if (!bad) fprintf(stderr, "vlp data stats: unknown option '%s' (try --help)\n", argv[i]), bad = 1;
    }
    if (bad || !spec) {
        if (!bad) fprintf(stderr, "vlp data stats: --data is required (try --help)\n");
        return 2;
    }
    vlp_error err = {0};
    vlp_tokenizer tok = {0};
    if (vocab && bpe_load(vocab, 0, &tok, &err) != VLP_OK) return fail("stats", &err);
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.caption_key = caption_key;
    o.warn = cli_warn;
    sample_stream *s;
    if (stream_open(&s, spec, &o, &err) != VLP_OK || stream_begin(s, 0, &err) != VLP_OK) {
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
        printf("%s: %d samples, %lld rows/members skipped, %d images that do not decode\n", spec, n,
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
