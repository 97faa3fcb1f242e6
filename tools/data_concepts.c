/* vlp data concepts: how often each concept (class names, metadata entries)
 * occurs in a pool's captions, whole words as MetaCLIP matches them, and,
 * joined with `vlp eval --per-class-json`, zero-shot accuracy against the log
 * of that frequency ("No Zero-Shot Without Exponential Data", Udandarao et
 * al. 2024): a table, the least-squares slope (accuracy per tenfold more
 * captions) with its correlation, and a PNG plot. */
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "data_curate.h"
#include "plot.h"
#include "curate/balance.h"
#include "io/atomic.h"

typedef struct concept_row {
    char *name;
    int64_t freq;
    int images, correct; // from the per-class file (images < 0: not there)
} concept_row;

typedef struct concepts_run {
    balance *b;
    bool case_sensitive;
    char *lower;
    size_t cap;
    int64_t samples;
} concepts_run;

static void ascii_lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static bool count_visit(void *ctx, const pool_sample *s, bool *keep) {
    concepts_run *r = ctx;
    (void)keep;
    const char *cap = s->caption;
    if (!r->case_sensitive) {
        size_t n = strlen(cap) + 1;
        if (n > r->cap) {
            char *g = realloc(r->lower, n);
            if (!g) return fprintf(stderr, "vlp data concepts: out of memory\n"), false;
            r->lower = g, r->cap = n;
        }
        memcpy(r->lower, cap, n);
        ascii_lower(r->lower);
        cap = r->lower;
    }
    balance_count(r->b, cap);
    r->samples++;
    return true;
}

/* the classes of a per-class file into rows (names, images, correct) */
static concept_row *read_per_class(const char *path, int *n) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je), *arr = j ? json_object_get(j, "classes") : NULL;
    *n = 0;
    if (!json_is_array(arr)) {
        fprintf(stderr, "vlp data concepts: %s:%d: %s\n", path, j ? 0 : je.line,
                j ? "no \"classes\" array (write it with vlp eval --per-class-json)" : je.text);
        json_decref(j);
        return NULL;
    }
    size_t m = json_array_size(arr);
    concept_row *rows = calloc(m ? m : 1, sizeof *rows);
    for (size_t i = 0; rows && i < m; i++) {
        json_t *c = json_array_get(arr, i);
        const char *name = json_string_value(json_object_get(c, "class"));
        json_t *im = json_object_get(c, "images"), *co = json_object_get(c, "correct");
        if (!name || !json_is_integer(im) || !json_is_integer(co) || !name[0]) {
            fprintf(stderr, "vlp data concepts: %s: classes[%zu] needs \"class\", \"images\" and \"correct\"\n", path, i);
            for (int k = 0; k < *n; k++) free(rows[k].name);
            free(rows), rows = NULL;
            break;
        }
        rows[*n] = (concept_row){strdup(name), 0, (int)json_integer_value(im), (int)json_integer_value(co)};
        (*n)++;
    }
    json_decref(j);
    return rows;
}

static int by_freq_desc(const void *a, const void *b) {
    const concept_row *x = a, *y = b;
    return x->freq != y->freq ? (x->freq < y->freq) - (x->freq > y->freq) : strcmp(x->name, y->name);
}

typedef struct concepts_args {
    const char *data, *concepts, *per_class, *out, *plot, *image_key, *caption_key;
    bool case_sensitive;
} concepts_args;

#define C(shrt, flag, arg, type, member, flags, help)                                             \
    {NULL, shrt, flag, arg, &type, offsetof(concepts_args, member), 0, 0, flags, help, NULL}
static const opt_desc concepts_opts[] = {
    C("-d", "--data", "SPEC", opt_string, data, OPT_REQUIRED,
      "the pool whose captions are counted (as vlp data filter's)"),
    C(NULL, "--concepts", "FILE", opt_string, concepts, 0,
      "the concepts, one a line (default: the classes of --class-accuracy)"),
    C(NULL, "--class-accuracy", "FILE", opt_string, per_class, 0,
      "vlp eval --per-class-json's output: each class's zero-shot accuracy, joined by name"),
    C("-o", "--out", "FILE.tsv", opt_string, out, OPT_REQUIRED, "the table: concept, frequency, images, accuracy"),
    C(NULL, "--plot", "FILE.png", opt_string, plot, 0,
      "accuracy against log10 frequency, with the least-squares line (needs --class-accuracy)"),
    C(NULL, "--case-sensitive", NULL, opt_switch, case_sensitive, 0,
      "match case (default: captions and concepts lower-cased, ASCII)"),
    C(NULL, "--image-key", "K", opt_string, image_key, 0, HELP_IMAGE_KEY),
    C(NULL, "--caption-key", "K", opt_string, caption_key, 0, HELP_CAPTION_KEY),
};
#undef C

int data_concepts(int argc, char **argv) {
    concepts_args ca = {.image_key = "filepath", .caption_key = "title"};
    const opt_group groups[] = {{concepts_opts, (int)(sizeof concepts_opts / sizeof *concepts_opts), &ca}};
    const cmd_spec spec = {
        .name = "data concepts",
        .usage = "vlp data concepts --data SPEC (--concepts FILE | --class-accuracy F) --out T.tsv",
        .about = "Counts, for each concept, the samples whose caption holds it as whole words (MetaCLIP's\n"
                 "matching). With vlp eval's per-class accuracy it fits accuracy = a + b log10(frequency)\n"
                 "over the concepts seen at least once and reports b (accuracy per tenfold frequency) and\n"
                 "the correlation: zero-shot accuracy follows the log of a concept's frequency in the\n"
                 "pre-training captions (Udandarao et al. 2024).",
        .groups = groups, .ngroups = 1};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL);
    const char *data = ca.data, *concepts = ca.concepts, *per_class = ca.per_class, *out = ca.out;
    const char *plot = ca.plot, *image_key = ca.image_key, *caption_key = ca.caption_key;
    bool case_sensitive = ca.case_sensitive;
    if (rc) return rc == 1 ? 0 : 2;
    if (!output_writable(ca.out, "data concepts")) return 1; /* before the work */
    if (!concepts && !per_class) return fprintf(stderr, "vlp data concepts: give --concepts or --class-accuracy\n"), 2;
    if (plot && !per_class) return fprintf(stderr, "vlp data concepts: --plot needs --class-accuracy\n"), 2;
    int n = 0, nacc = 0;
    concept_row *rows = NULL, *acc = per_class ? read_per_class(per_class, &nacc) : NULL;
    if (per_class && !acc) return 1;
    if (concepts) {
        char **lines = read_lines(concepts, false, &n);
        if (!lines) return free(acc), 1;
        if (n == 0) {
            for (int k = 0; k < nacc; k++) free(acc[k].name);
            return free(acc), free_lines(lines, n), fprintf(stderr, "vlp data concepts: %s: no concepts\n", concepts), 1;
        }
        rows = calloc((size_t)n + 1, sizeof *rows);
        if (!rows) {
            for (int k = 0; k < nacc; k++) free(acc[k].name);
            return free(acc), free_lines(lines, n), fprintf(stderr, "vlp data concepts: out of memory\n"), 1;
        }
        for (int i = 0; i < n; i++) rows[i] = (concept_row){lines[i], 0, -1, 0};
        free(lines); /* the strings now belong to rows */
        for (int i = 0; i < n; i++) /* the accuracy of the class of the same name */
            for (int k = 0; k < nacc; k++)
                if (!strcmp(acc[k].name, rows[i].name)) rows[i].images = acc[k].images, rows[i].correct = acc[k].correct;
        for (int k = 0; k < nacc; k++) free(acc[k].name);
        free(acc);
    } else {
        if (nacc == 0) return free(acc), fprintf(stderr, "vlp data concepts: %s: no classes\n", per_class), 1;
        rows = acc, n = nacc;
    }
    char **names = calloc((size_t)n, sizeof(char *));
    bool named = names != NULL;
    for (int i = 0; names && i < n; i++) {
        names[i] = strdup(rows[i].name);
        named = named && names[i];
        if (names[i] && !case_sensitive) ascii_lower(names[i]);
    }
    concepts_run r = {.case_sensitive = case_sensitive};
    vlp_error err = {0};
    curate_io io = curate_io_default();
    io.data = data, io.image_key = image_key, io.caption_key = caption_key;
    if (!named) rc = 1, fprintf(stderr, "vlp data concepts: out of memory\n");
    else if (balance_create(&r.b, (const char *const *)names, n, NULL, &err) != VLP_OK) rc = curate_fail("concepts", &err);
    pool *p = rc ? NULL : curate_open("concepts", &io, false);
    if (!rc) rc = p ? curate_pass("concepts", p, "captions", 0, count_visit, NULL, &r, NULL, NULL) : 1;
    const char *why = "";
    int64_t skipped = p ? pool_skipped(p, &why) : 0;
    if (!rc) {
        for (int i = 0; i < n; i++) rows[i].freq = balance_count_of(r.b, i);
        qsort(rows, (size_t)n, sizeof *rows, by_freq_desc);
        /* accuracy = a + b log10(freq) over the concepts seen and evaluated */
        double sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
        int m = 0, unseen = 0;
        double *xs = malloc(sizeof(double) * (size_t)(n ? n : 1)), *ys = malloc(sizeof(double) * (size_t)(n ? n : 1));
        for (int i = 0; xs && ys && i < n; i++) {
            if (rows[i].images <= 0) continue;
            double y = (double)rows[i].correct / rows[i].images;
            if (rows[i].freq == 0) { unseen++; continue; }
            double x = log10((double)rows[i].freq);
            xs[m] = (double)rows[i].freq, ys[m] = y;
            sx += x, sy += y, sxx += x * x, sxy += x * y, syy += y * y, m++;
        }
        double vx = m * sxx - sx * sx, vy = m * syy - sy * sy;
        double slope = m >= 2 && vx > 0 ? (m * sxy - sx * sy) / vx : NAN;
        double intercept = isfinite(slope) ? (sy - slope * sx) / m : NAN;
        double corr = m >= 2 && vx > 0 && vy > 0 ? (m * sxy - sx * sy) / sqrt(vx * vy) : NAN;
        atomic_file af;
        if (atomic_open(&af, out, &err) != VLP_OK) rc = curate_fail("concepts", &err);
        else {
            fprintf(af.fp, "concept\tfrequency\timages\taccuracy\n");
            for (int i = 0; i < n; i++) {
                if (rows[i].images > 0)
                    fprintf(af.fp, "%s\t%lld\t%d\t%.4f\n", rows[i].name, (long long)rows[i].freq, rows[i].images,
                            (double)rows[i].correct / rows[i].images);
                else fprintf(af.fp, "%s\t%lld\t\t\n", rows[i].name, (long long)rows[i].freq);
            }
            if (atomic_commit(&af, &err) != VLP_OK) rc = curate_fail("concepts", &err);
        }
        if (!rc) {
            int seen = 0;
            for (int i = 0; i < n; i++) seen += rows[i].freq > 0;
            fprintf(stderr, "%d concepts over %lld captions: %d occur, %d never; table %s\n", n, (long long)r.samples,
                    seen, n - seen, out);
            if (skipped) fprintf(stderr, "skipped %lld unusable samples; the first: %s\n", (long long)skipped, why);
            if (per_class)
                printf("accuracy = %.4f + %.4f log10(frequency) over %d evaluated concepts seen in the captions "
                       "(correlation %.3f; %d evaluated concepts never seen)\n"
                       "RESULT name=concepts concepts=%d fitted=%d slope=%.4f intercept=%.4f corr=%.4f unseen=%d\n",
                       intercept, slope, m, corr, unseen, n, m, slope, intercept, corr, unseen);
        }
        if (!rc && plot) rc = plot_logx_scatter(plot, xs, ys, m, slope, intercept) ? 0 : 1;
        if (!rc && plot) fprintf(stderr, "plot: %s\n", plot);
        free(xs), free(ys);
    }
    for (int i = 0; i < n; i++) free(rows[i].name);
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(rows), free(names), free(r.lower);
    balance_free(r.b);
    pool_free(p);
    return rc;
}
