/* vlp data filter: basic rules (caption words and characters, image side
 * and aspect, undecodable images) and CLIP-score filtering (DataComp's
 * baselines) over a pool, in two passes: pass 1 decodes, applies the rules
 * and scores the samples that pass them (batched through the model), writing
 * one byte (the rule that removed it) a sample and a float a scored sample to
 * two files beside the output; a --keep-fraction threshold is then selected
 * exactly from the scores file; pass 2 re-reads the pool and writes what is
 * kept. Memory: a batch of images and the model, whatever the pool size. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "data_curate.h"
#include "model_args.h"
#include "curate/select.h"
#include "data/image.h"
#include "io/atomic.h"
#include "io/npy.h"

typedef struct filter_opts {
    long min_words, max_words, min_chars, max_chars, min_side;
    double max_aspect, min_score, keep_fraction;
} filter_opts;

typedef struct sample_facts {
    const char *caption;
    int w, h; // the decoded image's
} sample_facts;

/* The basic rules, in the order they are tried; a sample removed by one is
 * counted against it alone. Rule 0 means kept; undecodable is checked first. */
typedef struct filter_rule {
    const char *name;
    bool (*on)(const filter_opts *o);
    bool (*removes)(const filter_opts *o, const sample_facts *f);
} filter_rule;

static long words(const char *s) {
    long n = 0;
    for (bool in = false; *s; s++) {
        bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static long chars(const char *s) { /* UTF-8 code points */
    long n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool min_words_on(const filter_opts *o) { return o->min_words > 0; }
static bool min_words_rm(const filter_opts *o, const sample_facts *f) { return words(f->caption) < o->min_words; }
static bool max_words_on(const filter_opts *o) { return o->max_words > 0; }
static bool max_words_rm(const filter_opts *o, const sample_facts *f) { return words(f->caption) > o->max_words; }
static bool min_chars_on(const filter_opts *o) { return o->min_chars > 0; }
static bool min_chars_rm(const filter_opts *o, const sample_facts *f) { return chars(f->caption) < o->min_chars; }
static bool max_chars_on(const filter_opts *o) { return o->max_chars > 0; }
static bool max_chars_rm(const filter_opts *o, const sample_facts *f) { return chars(f->caption) > o->max_chars; }
static bool min_side_on(const filter_opts *o) { return o->min_side > 0; }
static bool min_side_rm(const filter_opts *o, const sample_facts *f) {
    return (f->w < f->h ? f->w : f->h) < o->min_side;
}
static bool aspect_on(const filter_opts *o) { return o->max_aspect > 0; }
static bool aspect_rm(const filter_opts *o, const sample_facts *f) {
    double a = f->w > f->h ? (double)f->w / f->h : (double)f->h / f->w;
    return a > o->max_aspect;
}

enum { KEPT = 0, UNDECODABLE = 1, FIRST_RULE = 2 };
static const filter_rule rules[] = {
    {"min_words", min_words_on, min_words_rm}, {"max_words", max_words_on, max_words_rm},
    {"min_chars", min_chars_on, min_chars_rm}, {"max_chars", max_chars_on, max_chars_rm},
    {"min_side", min_side_on, min_side_rm},    {"max_aspect", aspect_on, aspect_rm},
};
#define NRULES ((int)(sizeof rules / sizeof rules[0]))
#define SCORE_BELOW (FIRST_RULE + NRULES) /* removed by the score, in pass 2 */

#define HIST_BINS 40 /* over [-1, 1]: 0.05 a bin */

typedef struct filter_run {
    filter_opts o;
    bool stop_on_bad;                  // --on-error stop: an undecodable image ends the run
    curate_model m;                    // the score model and its batch of images
    float *txt_emb;                    // (B, E) the captions'; the images' are the batch's
    char **captions;                   // (B) the batch's captions, copies
    /* the files of pass 1 */
    FILE *reasons, *scores;
    atomic_file keys;           // --scores: FILE.npy.keys.txt, a line a sample, written by pass 1
    bool keys_open;
    char keys_path[4200];
    char reasons_path[4200], scores_path[4200];
    int64_t samples, scored, removed[SCORE_BELOW + 1];
    int64_t hist[HIST_BINS];
    double score_sum;
    /* pass 2 */
    bool thresholded;
    float threshold;
    int64_t ties_left; // scores equal to the threshold still to keep (keep-fraction)
    int64_t kept;
    char first_undecodable[512];
} filter_run;

static bool scoring(const filter_run *r) { return r->m.model != NULL; }

/* the batch through the model: cosine of each image with its caption */
static bool flush(filter_run *r) {
    embed_batch *b = &r->m.batch;
    if (!b->n) return true;
    vlp_error err = {0};
    if (!curate_batch_encode(&r->m, "filter")) return false;
    if (vlp_encode_texts(r->m.model, (const char *const *)r->captions, b->n, r->txt_emb, &err) != VLP_OK)
        return curate_fail("filter", &err), false;
    for (int i = 0; i < b->n; i++) {
        double d = 0;
        for (int k = 0; k < b->E; k++) d += (double)b->emb[(size_t)i * b->E + k] * r->txt_emb[(size_t)i * b->E + k];
        float s = (float)d;
        if (fwrite(&s, sizeof s, 1, r->scores) != 1) {
            fprintf(stderr, "vlp data filter: %s: write failed\n", r->scores_path);
            return false;
        }
        int bin = (int)floor((d + 1) / 2 * HIST_BINS);
        r->hist[bin < 0 ? 0 : bin >= HIST_BINS ? HIST_BINS - 1 : bin]++;
        r->score_sum += d;
        r->scored++;
        free(r->captions[i]), r->captions[i] = NULL;
    }
    b->n = 0;
    return true;
}

static bool rules_visit(void *ctx, const pool_sample *s, bool *keep) {
    filter_run *r = ctx;
    (void)keep;
    image_u8 im;
    char why[512];
    uint8_t reason = KEPT;
    if (!curate_decode(&r->m, s, &im, why, sizeof why)) {
        if (r->stop_on_bad) return fprintf(stderr, "vlp data filter: %s (--on-error stop)\n", why), false;
        reason = UNDECODABLE;
        if (!r->first_undecodable[0]) snprintf(r->first_undecodable, sizeof r->first_undecodable, "%s", why);
    } else {
        sample_facts f = {s->caption, im.w, im.h};
        for (int k = 0; k < NRULES && reason == KEPT; k++)
            if (rules[k].on(&r->o) && rules[k].removes(&r->o, &f)) reason = (uint8_t)(FIRST_RULE + k);
    }
    if (reason == KEPT && scoring(r)) {
        if (!curate_batch_add(&r->m, &im, why, sizeof why)) {
            reason = UNDECODABLE; /* a decoded image the transform refuses: said with the others */
            if (!r->first_undecodable[0]) snprintf(r->first_undecodable, sizeof r->first_undecodable, "%s", why);
        } else if (!(r->captions[r->m.batch.n - 1] = strdup(s->caption))) {
            image_free(&im);
            return fprintf(stderr, "vlp data filter: out of memory\n"), false;
        }
    }
    image_free(&im);
    r->removed[reason]++;
    r->samples++;
    if (r->keys_open) fprintf(r->keys.fp, "%s\n", s->what); /* a write error fails the commit */
    if (fwrite(&reason, 1, 1, r->reasons) != 1) {
        fprintf(stderr, "vlp data filter: %s: write failed\n", r->reasons_path);
        return false;
    }
    return !scoring(r) || !embed_batch_full(&r->m.batch) || flush(r);
}

static bool rules_done(void *ctx) { return flush(ctx); }

static bool keep_visit(void *ctx, const pool_sample *s, bool *keep) {
    filter_run *r = ctx;
    uint8_t reason;
    if (fread(&reason, 1, 1, r->reasons) != 1) {
        fprintf(stderr, "vlp data filter: %s: the pool has more samples than pass 1 saw (did it change?)\n",
                s->what);
        return false;
    }
    if (reason == KEPT && scoring(r)) {
        float x;
        if (fread(&x, sizeof x, 1, r->scores) != 1) {
            fprintf(stderr, "vlp data filter: %s: scores file short\n", r->scores_path);
            return false;
        }
        bool pass = true;
        if (r->o.min_score > -2) pass = x >= r->threshold;
        else if (r->thresholded) { /* the top k exactly: compared as select_top_k ranks them */
            uint32_t kx = select_key(x), kt = select_key(r->threshold);
            pass = kx > kt || (kx == kt && r->ties_left > 0);
            if (kx == kt && pass) r->ties_left--;
        }
        if (!pass) reason = SCORE_BELOW, r->removed[SCORE_BELOW]++;
    }
    *keep = reason == KEPT;
    r->kept += *keep;
    return true;
}


/* every sample's score in pool order (NaN where a rule removed it), from
 * pass 1's files; its keys were written by pass 1 as it went */
static int write_scores(filter_run *r, const char *path) {
    char raw_path[4200];
    snprintf(raw_path, sizeof raw_path, "%s.values.%d", path, (int)getpid()); /* not atomic_open's name */
    FILE *raw = fopen(raw_path, "w+b");
    int rc = raw ? 0 : (fprintf(stderr, "vlp data filter: cannot write %s\n", raw_path), 1);
    rewind(r->reasons), rewind(r->scores);
    for (int64_t i = 0; !rc && i < r->samples; i++) {
        uint8_t reason;
        float x = NAN;
        if (fread(&reason, 1, 1, r->reasons) != 1 || (reason == KEPT && fread(&x, sizeof x, 1, r->scores) != 1) ||
            fwrite(&x, sizeof x, 1, raw) != 1) {
            fprintf(stderr, "vlp data filter: %s: pass 1's files are short or cannot be copied\n", raw_path);
            rc = 1;
        }
    }
    vlp_error err = {0};
    if (!rc && (fflush(raw) != 0 || npy_write_f32_stream(path, raw, r->samples, 1, &err) != VLP_OK))
        rc = curate_fail("filter", &err);
    if (raw) fclose(raw), remove(raw_path);
    r->keys_open = false;
    if (rc) atomic_abort(&r->keys);
    else if (atomic_commit(&r->keys, &err) != VLP_OK) rc = curate_fail("filter", &err);
    if (!rc) fprintf(stderr, "scores: %s (%lld x 1, NaN where a rule removed the sample), keys %s\n", path,
                     (long long)r->samples, r->keys_path);
    return rc;
}

typedef struct filter_args {
    curate_io io;
    filter_opts o;
    model_args m;
    const char *scores_out, *on_error;
} filter_args;

#define F(flag, arg, type, member, lo, hi, help)                                                   \
    {NULL, NULL, flag, arg, &type, offsetof(filter_args, member), lo, hi, 0, help, NULL}
static const opt_desc filter_table[] = {
    F("--min-words", "N", opt_long, o.min_words, 0, 1 << 20, "remove captions of fewer words (0: off)"),
    F("--max-words", "N", opt_long, o.max_words, 0, 1 << 20, "remove captions of more words (0: off)"),
    F("--min-chars", "N", opt_long, o.min_chars, 0, 1 << 20,
      "remove captions of fewer characters (UTF-8 code points; 0: off)"),
    F("--max-chars", "N", opt_long, o.max_chars, 0, 1 << 20, "remove captions of more characters (0: off)"),
    F("--min-side", "PX", opt_long, o.min_side, 0, 1 << 20, "remove images whose shorter side is smaller (0: off)"),
    F("--max-aspect", "R", opt_double, o.max_aspect, 0, 1e6,
      "remove images whose longer side is more than R times the shorter (0: off)"),
    F("--min-score", "S", opt_double, o.min_score, -1, 1,
      "keep samples scoring at least S (DataComp, OpenAI ViT-B/32: 0.28; -2: off)"),
    F("--keep-fraction", "F", opt_double, o.keep_fraction, 0, 1,
      "keep the top fraction F of the scored samples, exactly (DataComp: 0.3; 0: off)"),
    F("--scores", "FILE.npy", opt_string, scores_out, 0, 0,
      "write every sample's score (NaN where a rule removed it) and FILE.npy.keys.txt, one sample a line"),
    ON_ERROR_OPT(filter_args, on_error),
};
#undef F

int data_filter(int argc, char **argv) {
    filter_args fa = {.io = curate_io_default(), .o = {.min_score = -2, .keep_fraction = 0},
                      .m = model_args_default()};
    const opt_group groups[] = {CURATE_IO_GROUP(&fa.io),
                                {filter_table, (int)(sizeof filter_table / sizeof *filter_table), &fa},
                                MODEL_GROUP(&fa.m)};
    const cmd_spec spec = {
        .name = "data filter", .usage = "vlp data filter --data SPEC --out OUT [rules] [--model M ...]",
        .about = "Removes samples by simple rules (undecodable images always), and with --model\n"
                 "by their CLIP score, the cosine of the image's and the caption's embeddings (DataComp's\n"
                 "CLIP-score baselines). Two passes: scores are kept on disk beside the output, so\n"
                 "memory is one batch of images and the model whatever the pool's size. The report\n"
                 "counts what each rule removed and the scores' histogram.",
        .groups = groups, .ngroups = 3};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL);
    curate_io io = fa.io;
    filter_run r = {.o = fa.o};
    model_args a = fa.m;
    const char *scores_out = fa.scores_out;
    int stop = on_error_stop(fa.on_error, "data filter");
    if (stop < 0) return 2;
    r.stop_on_bad = stop;
    if (rc) return rc == 1 ? 0 : 2;
    bool by_score = r.o.min_score > -2 || r.o.keep_fraction > 0;
    if (by_score && !a.model) return fprintf(stderr, "vlp data filter: --min-score and --keep-fraction need --model\n"), 2;
    if (r.o.min_score > -2 && r.o.keep_fraction > 0)
        return fprintf(stderr, "vlp data filter: give --min-score or --keep-fraction, not both\n"), 2;
    if (scores_out && !a.model) return fprintf(stderr, "vlp data filter: --scores needs --model\n"), 2;
    if (!curate_model_open(&r.m, &a, "filter")) return curate_model_free(&r.m), 1;
    if (r.m.model) {
        r.txt_emb = malloc(sizeof(float) * (size_t)r.m.batch.B * r.m.batch.E);
        r.captions = calloc((size_t)r.m.batch.B, sizeof(char *));
        if (!r.txt_emb || !r.captions) rc = 1, fprintf(stderr, "vlp data filter: out of memory\n");
    }
    snprintf(r.reasons_path, sizeof r.reasons_path, "%s.reasons.tmp.%d", io.out, (int)getpid());
    snprintf(r.scores_path, sizeof r.scores_path, "%s.scores.tmp.%d", io.out, (int)getpid());
    pool *p = rc ? NULL : curate_open("filter", &io, true);
    pool_writer *w = p ? curate_writer("filter", &io, p) : NULL; /* makes OUT's directory */
    if (w) {
        r.reasons = fopen(r.reasons_path, "w+b");
        r.scores = fopen(r.scores_path, "w+b");
        if (!r.reasons || !r.scores) rc = 1, fprintf(stderr, "vlp data filter: cannot create %s\n", r.reasons_path);
    } else rc = 1;
    if (!rc && scores_out) {
        vlp_error err = {0};
        snprintf(r.keys_path, sizeof r.keys_path, "%s.keys.txt", scores_out);
        if (atomic_open(&r.keys, r.keys_path, &err) != VLP_OK) rc = curate_fail("filter", &err);
        else r.keys_open = true;
    }
    uint64_t pass1 = 0, pass2 = 1;
    int64_t skipped = 0, written = 0;
    long shards = 0;
    char why[512] = ""; /* pass 1's first skip, kept past the pool */
    if (!rc) rc = curate_pass("filter", p, "samples checked", 0, rules_visit, rules_done, &r, NULL, &pass1);
    if (!rc) {
        const char *first;
        skipped = pool_skipped(p, &first);
        snprintf(why, sizeof why, "%s", first);
        int64_t passed = r.removed[KEPT];
        fprintf(stderr, "pass 1: %lld samples, %lld pass the rules%s\n", (long long)r.samples, (long long)passed,
                scoring(&r) ? ", scored" : "");
        vlp_error err = {0};
        if (r.o.min_score > -2) r.thresholded = true, r.threshold = (float)r.o.min_score, r.ties_left = INT64_MAX;
        if (r.o.keep_fraction > 0 && r.scored > 0) {
            int64_t k = (int64_t)llround(r.o.keep_fraction * (double)r.scored);
            if (k < 1) k = 1;
            fflush(r.scores);
            if (select_top_k(r.scores, r.scored, k, &r.threshold, &r.ties_left, &err) != VLP_OK) rc = curate_fail("filter", &err);
            else {
                r.thresholded = true;
                fprintf(stderr, "keep-fraction %g: the top %lld of %lld scored samples, score >= %.6f\n",
                        r.o.keep_fraction, (long long)k, (long long)r.scored, r.threshold);
            }
        }
        if (scores_out && !rc) rc = write_scores(&r, scores_out);
    }
    if (!rc) {
        fflush(r.reasons), fflush(r.scores);
        rewind(r.reasons), rewind(r.scores);
        rc = curate_pass("filter", p, "samples written", (long)r.samples, keep_visit, NULL, &r, w, &pass2);
    }
    if (!rc) rc = curate_same_pool("filter", pass1, pass2);
    vlp_error err = {0};
    if (!rc && pool_writer_finish(w, &written, &shards, &err) != VLP_OK) rc = curate_fail("filter", &err);
    if (!rc) {
        json_doc doc = json_doc_new();
        json_t *rep = doc.root, *rm = jd_object(&doc);
        jd_put(&doc, rm, "undecodable", json_integer(r.removed[UNDECODABLE]));
        for (int k = 0; k < NRULES; k++)
            if (rules[k].on(&r.o)) jd_put(&doc, rm, rules[k].name, json_integer(r.removed[FIRST_RULE + k]));
        if (by_score) jd_put(&doc, rm, "score", json_integer(r.removed[SCORE_BELOW]));
        jd_put(&doc, rep, "removed_by", rm);
        if (r.first_undecodable[0]) jd_text(&doc, rep, "first_undecodable", r.first_undecodable);
        json_t *rules_j = jd_object(&doc);
        jd_put(&doc, rules_j, "min_words", json_integer(r.o.min_words));
        jd_put(&doc, rules_j, "max_words", json_integer(r.o.max_words));
        jd_put(&doc, rules_j, "min_chars", json_integer(r.o.min_chars));
        jd_put(&doc, rules_j, "max_chars", json_integer(r.o.max_chars));
        jd_put(&doc, rules_j, "min_side", json_integer(r.o.min_side));
        jd_put(&doc, rules_j, "max_aspect", json_real(r.o.max_aspect));
        jd_put(&doc, rep, "rules", rules_j);
        if (scoring(&r)) {
            json_t *sc = jd_object(&doc), *h = jd_array(&doc);
            jd_text(&doc, sc, "model", a.model);
            jd_put(&doc, sc, "scored", json_integer(r.scored));
            jd_put(&doc, sc, "mean", json_real(r.scored ? r.score_sum / (double)r.scored : 0));
            if (r.o.min_score > -2) jd_put(&doc, sc, "min_score", json_real(r.o.min_score));
            if (r.o.keep_fraction > 0) jd_put(&doc, sc, "keep_fraction", json_real(r.o.keep_fraction));
            if (r.thresholded) jd_put(&doc, sc, "threshold", json_real(r.threshold));
            for (int b = 0; b < HIST_BINS; b++)
                if (r.hist[b]) {
                    json_t *bin = jd_object(&doc);
                    jd_put(&doc, bin, "from", json_real(round(100 * (-1 + 2.0 * b / HIST_BINS)) / 100));
                    jd_put(&doc, bin, "to", json_real(round(100 * (-1 + 2.0 * (b + 1) / HIST_BINS)) / 100));
                    jd_put(&doc, bin, "count", json_integer(r.hist[b]));
                    jd_append(&doc, h, bin);
                }
            jd_put(&doc, sc, "histogram", h);
            jd_put(&doc, rep, "score", sc);
        }
        rc = curate_report("filter", &io, &doc, r.samples, skipped, why, written, shards);
        json_doc_free(&doc);
        for (int k = 0; k < NRULES; k++)
            if (rules[k].on(&r.o) && r.removed[FIRST_RULE + k])
                fprintf(stderr, "  %-11s removed %lld\n", rules[k].name, (long long)r.removed[FIRST_RULE + k]);
        if (r.removed[UNDECODABLE]) fprintf(stderr, "  undecodable removed %lld; the first: %s\n",
                                            (long long)r.removed[UNDECODABLE], r.first_undecodable);
        if (by_score) fprintf(stderr, "  score       removed %lld\n", (long long)r.removed[SCORE_BELOW]);
    }
    if (r.keys_open) atomic_abort(&r.keys);
    if (r.reasons) fclose(r.reasons), remove(r.reasons_path);
    if (r.scores) fclose(r.scores), remove(r.scores_path);
    for (int i = 0; r.captions && i < r.m.batch.B; i++) free(r.captions[i]);
    free(r.captions), free(r.txt_emb);
    pool_writer_free(w);
    pool_free(p);
    curate_model_free(&r.m);
    return rc;
}
