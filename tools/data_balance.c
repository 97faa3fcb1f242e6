/* vlp data balance: MetaCLIP's balancing of a pool over metadata entries
 * (src/curate/balance.h): pass 1 counts each entry's matching samples, pass
 * 2 keeps a sample with probability min(1, t/c) per matched entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "data_curate.h"
#include <stddef.h>
#include "curate/balance.h"
#include "io/atomic.h"

typedef struct balance_run {
    balance *b;
    double t;
    bool keep_unmatched;
    uint64_t seed;
    int64_t samples, unmatched, kept;
} balance_run;

static bool count_visit(void *ctx, const pool_sample *s, bool *keep) {
    balance_run *r = ctx;
    if (balance_count(r->b, s->caption) == 0) r->unmatched++;
    r->samples++;
    (void)keep;
    return true;
}

static bool keep_visit(void *ctx, const pool_sample *s, bool *keep) {
    balance_run *r = ctx;
    *keep = balance_keep(r->b, s->caption, s->index, r->t, r->seed, r->keep_unmatched, NULL);
    r->kept += *keep;
    return true;
}

typedef struct by_count {
    int64_t c;
    int e;
} by_count;

static int cmp_count_desc(const void *a, const void *b) {
    const by_count *x = a, *y = b;
    return x->c != y->c ? (x->c < y->c) - (x->c > y->c) : x->e - y->e;
}

static json_t *entry_row(json_doc *doc, const balance_run *r, char **entries, int e) {
    json_t *j = jd_object(doc);
    jd_text(doc, j, "entry", entries[e]);
    jd_put(doc, j, "before", json_integer(balance_count_of(r->b, e)));
    jd_put(doc, j, "after", json_integer(balance_kept_of(r->b, e)));
    return j;
}

/* per entry: before, after (all of them), for --counts */
static int write_counts(const char *path, const balance_run *r, char **entries, int n) {
    atomic_file af;
    vlp_error err = {0};
    if (atomic_open(&af, path, &err) != VLP_OK) return curate_fail("balance", &err);
    fprintf(af.fp, "entry\tbefore\tafter\n");
    for (int e = 0; e < n; e++)
        fprintf(af.fp, "%s\t%lld\t%lld\n", entries[e], (long long)balance_count_of(r->b, e),
                (long long)balance_kept_of(r->b, e));
    return atomic_commit(&af, &err) == VLP_OK ? 0 : curate_fail("balance", &err);
}

typedef struct balance_args {
    curate_io io;
    const char *metadata, *counts;
    double t;
    bool keep_unmatched;
    long head;
} balance_args;

#define B(shrt, flag, arg, type, member, lo, hi, flags, help)                                    \
    {NULL, shrt, flag, arg, &type, offsetof(balance_args, member), lo, hi, flags, help, NULL}
static const opt_desc balance_opts[] = {
    B(NULL, "--metadata", "FILE", opt_string, metadata, 0, 0, OPT_REQUIRED,
      "the metadata: one entry a line (MetaCLIP's 500,000: WordNet synsets, Wikipedia titles and n-grams; "
      "or your classes)"),
    B(NULL, "--t", "T", opt_double, t, 1, 1e15, 0,
      "an entry matched by c samples keeps each with probability min(1, t/c) (MetaCLIP: 20,000 at 400M "
      "pairs; scale it with the pool)"),
    B(NULL, "--keep-unmatched", NULL, opt_switch, keep_unmatched, 0, 0, 0,
      "keep samples matching no entry (MetaCLIP drops them)"),
    B(NULL, "--counts", "FILE", opt_string, counts, 0, 0, 0, "every entry's counts before and after, a TSV"),
    B(NULL, "--report-entries", "N", opt_long, head, 0, 100000, 0,
      "entries of the head and of the tail in the report"),
};
#undef B

int data_balance(int argc, char **argv) {
    balance_args ba = {.io = curate_io_default(), .t = 20000, .head = 10};
    const opt_group groups[] = {CURATE_IO_GROUP(&ba.io),
                                {balance_opts, (int)(sizeof balance_opts / sizeof *balance_opts), &ba}};
    const cmd_spec spec = {
        .name = "data balance", .usage = "vlp data balance --data SPEC --metadata FILE --out OUT [options]",
        .about = "Balances a pool over metadata entries as MetaCLIP does: an entry matches a caption when\n"
                 "it occurs in it as whole words (after MetaCLIP's spacing of , . ; : ? ! `; case\n"
                 "kept); pass 1 counts each entry's samples, pass 2 keeps a sample when one of its\n"
                 "entries passes a draw of min(1, t/count). Each draw is a hash of (seed, sample,\n"
                 "entry): the same seed keeps the same samples. Memory: the entries' automaton and\n"
                 "counts, one sample at a time.",
        .groups = groups, .ngroups = 2};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL);
    curate_io io = ba.io;
    const char *metadata = ba.metadata, *counts = ba.counts;
    double t = ba.t;
    bool keep_unmatched = ba.keep_unmatched;
    long head = ba.head;
    if (rc) return rc == 1 ? 0 : 2;
    int n;
    char **entries = read_lines(metadata, false, &n);
    if (!entries) return 1;
    if (n == 0) return free_lines(entries, n), fprintf(stderr, "vlp data balance: %s: no entries\n", metadata), 1;
    balance_run r = {.t = t, .keep_unmatched = keep_unmatched, .seed = (uint64_t)io.seed};
    vlp_error err = {0};
    if (balance_create(&r.b, (const char *const *)entries, n, NULL, &err) != VLP_OK) {
        free_lines(entries, n);
        return curate_fail("balance", &err);
    }
    fprintf(stderr, "metadata: %d entries from %s\n", n, metadata);
    pool *p = curate_open("balance", &io, false);
    pool_writer *w = NULL;
    int64_t skipped = 0, written = 0;
    uint64_t pass1 = 0, pass2 = 1;
    long shards = 0;
    char why[512] = ""; /* pass 1's first skip, kept past the pool */
    rc = p ? curate_pass("balance", p, "samples counted", 0, count_visit, NULL, &r, NULL, &pass1) : 1;
    if (!rc) {
        const char *first;
        skipped = pool_skipped(p, &first);
        snprintf(why, sizeof why, "%s", first);
        fprintf(stderr, "pass 1: %lld samples, %lld (%.1f%%) match no entry\n", (long long)r.samples,
                (long long)r.unmatched, r.samples ? 100.0 * (double)r.unmatched / (double)r.samples : 0.0);
        pool_free(p);
        /* the images are read only when a table's samples go into shards */
        p = curate_open("balance", &io, !curate_out_is_table(&io));
        w = p ? curate_writer("balance", &io, p) : NULL;
        rc = w ? curate_pass("balance", p, "samples balanced", (long)r.samples, keep_visit, NULL, &r, w, &pass2) : 1;
    }
    if (!rc) rc = curate_same_pool("balance", pass1, pass2);
    if (!rc && pool_writer_finish(w, &written, &shards, &err) != VLP_OK) rc = curate_fail("balance", &err);
    if (!rc && counts) rc = write_counts(counts, &r, entries, n);
    if (!rc) {
        json_doc doc = json_doc_new();
        json_t *rep = doc.root;
        jd_text(&doc, rep, "metadata", metadata);
        jd_put(&doc, rep, "entries", json_integer(n));
        jd_put(&doc, rep, "t", json_real(t));
        jd_put(&doc, rep, "keep_unmatched", json_boolean(keep_unmatched));
        jd_put(&doc, rep, "unmatched", json_integer(r.unmatched));
        jd_put(&doc, rep, "unmatched_share", json_real(r.samples ? (double)r.unmatched / (double)r.samples : 0));
        by_count *order = malloc(sizeof(by_count) * (size_t)n);
        int matched = 0, over = 0;
        for (int e = 0; order && e < n; e++) {
            int64_t c = balance_count_of(r.b, e);
            order[e] = (by_count){c, e};
            matched += c > 0, over += c > t;
        }
        jd_put(&doc, rep, "entries_matched", json_integer(matched));
        jd_put(&doc, rep, "entries_over_t", json_integer(over));
        json_t *jh = jd_array(&doc), *jt = jd_array(&doc);
        if (order) {
            qsort(order, (size_t)n, sizeof *order, cmp_count_desc);
            for (int k = 0; k < n && k < head && order[k].c > 0; k++)
                jd_append(&doc, jh, entry_row(&doc, &r, entries, order[k].e));
            for (int k = matched - 1, m = 0; k >= 0 && m < head; k--, m++) /* the rarest matched entries */
                jd_append(&doc, jt, entry_row(&doc, &r, entries, order[k].e));
        }
        free(order);
        jd_put(&doc, rep, "head", jh);
        jd_put(&doc, rep, "tail", jt);
        rc = curate_report("balance", &io, &doc, r.samples, skipped, why, written, shards);
        json_doc_free(&doc);
    }
    pool_writer_free(w);
    pool_free(p);
    balance_free(r.b);
    free_lines(entries, n);
    return rc;
}
