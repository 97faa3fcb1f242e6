/* vlp data dedup: exact duplicates by the image's content hash (XXH3, 128
 * bits, of the encoded bytes: the first occurrence is kept), then, with
 * --model, pixel-identical images (the same hash of the decoded pixels,
 * which the model decodes anyway: the first kept) and SemDeDup
 * (src/curate/semdedup.h) over the image embeddings of the rest. Pixel
 * duplicates are settled by the hash, not by SemDeDup: identical images at
 * two places of a batch can embed a few ulp apart (the BLAS's edge tiles
 * sum in another order on some CPUs), which would make the one SemDeDup
 * keeps depend on the CPU. Pass 1 hashes, embeds (batched) and writes one
 * status byte a sample and the embeddings to files beside the output; the embeddings are then
 * mapped, clustered and deduplicated cluster by cluster; pass 2 writes what
 * is kept. Memory: 24 bytes a sample (hash set, cluster, order) and the
 * largest cluster's embeddings; the embeddings themselves stay on disk. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "args.h"
#include "commands.h"
#include "data_curate.h"
#include "interrupt.h"
#include "model_args.h"
#include "core/hashmap.h"
#include "curate/semdedup.h"
#include "data/image.h"

enum { UNIQUE = 0, EXACT_DUP = 1, UNDECODABLE = 2, PIXEL_DUP = 3 };
#define MAX_EPS 16

typedef struct dedup_run {
    curate_model m;      // the embedding model and its batch of images
    bool stop_on_bad;    // --on-error stop: an undecodable image ends the run
    u64_map seen;        // hash low 64 bits -> high 64 bits (as two halves)
    u64_map seen_pixels; // the same for the decoded pixels (with --model)
    FILE *status, *embeddings;
    char status_path[4200], emb_path[4200];
    int64_t samples, rows, exact, pixel_dups, undecodable, collisions, kept;
    char first_undecodable[512];
    /* after clustering */
    uint8_t *removed;    // (rows) at the eps used
    int64_t next_row;
} dedup_run;

static bool flush(dedup_run *r) {
    embed_batch *b = &r->m.batch;
    if (!b->n) return true;
    if (!curate_batch_encode(&r->m, "dedup")) return false;
    if (fwrite(b->emb, sizeof(float) * (size_t)b->E, (size_t)b->n, r->embeddings) != (size_t)b->n) {
        fprintf(stderr, "vlp data dedup: %s: write failed: %s\n", r->emb_path, strerror(errno));
        return false;
    }
    r->rows += b->n;
    b->n = 0;
    return true;
}

/* 1 when h is in the set, 0 when it was not (now it is), -1 out of memory */
static int seen_before(dedup_run *r, u64_map *set, XXH128_hash_t h) {
    int32_t a, b;
    if (u64_map_get(set, h.low64, &a, &b)) {
        if ((uint32_t)a == (uint32_t)h.high64 && (uint32_t)b == (uint32_t)(h.high64 >> 32)) return 1;
        r->collisions++; /* same low half, another image: kept (2^-64 a pair) */
        return 0;
    }
    if (!u64_map_put(set, h.low64, (int32_t)(uint32_t)h.high64, (int32_t)(uint32_t)(h.high64 >> 32))) {
        fprintf(stderr, "vlp data dedup: out of memory (hash set of %lld)\n", (long long)r->samples);
        return -1;
    }
    return 0;
}

/* XXH3-128 of the decoded image's pixels (in the mode it was stored in, and
 * its palette), seeded with its size and mode */
static XXH128_hash_t pixel_hash(const image_u8 *im) {
    uint64_t seed = (uint64_t)(uint32_t)im->w << 32 | (uint64_t)(uint32_t)im->h << 4 | (uint32_t)im->mode;
    XXH128_hash_t h = XXH3_128bits_withSeed(im->px, (size_t)im->w * im->h * (size_t)image_mode_bytes(im->mode), seed);
    if (im->palette) { /* the same indices under another palette are other pixels */
        XXH128_hash_t p = XXH3_128bits_withSeed(im->palette, 256 * 4, h.low64);
        h.low64 ^= p.low64, h.high64 ^= p.high64;
    }
    return h;
}

static bool hash_visit(void *ctx, const pool_sample *s, bool *keep) {
    dedup_run *r = ctx;
    (void)keep;
    uint8_t status = UNIQUE;
    int seen = seen_before(r, &r->seen, XXH3_128bits(s->image, s->image_len));
    if (seen < 0) return false;
    if (seen) status = EXACT_DUP;
    if (status == UNIQUE && r->m.model) {
        image_u8 im;
        char why[512];
        if (!curate_decode(&r->m, s, &im, why, sizeof why)) {
            if (r->stop_on_bad) return fprintf(stderr, "vlp data dedup: %s (--on-error stop)\n", why), false;
            status = UNDECODABLE;
        } else if ((seen = seen_before(r, &r->seen_pixels, pixel_hash(&im))) != 0) {
            if (seen < 0) return image_free(&im), false;
            status = PIXEL_DUP;
        } else if (!curate_batch_add(&r->m, &im, why, sizeof why)) {
            status = UNDECODABLE;
        }
        if (status == UNDECODABLE && !r->first_undecodable[0])
            snprintf(r->first_undecodable, sizeof r->first_undecodable, "%s", why);
        image_free(&im);
    }
    r->exact += status == EXACT_DUP, r->pixel_dups += status == PIXEL_DUP, r->undecodable += status == UNDECODABLE;
    r->samples++;
    if (fwrite(&status, 1, 1, r->status) != 1) {
        fprintf(stderr, "vlp data dedup: %s: write failed: %s\n", r->status_path, strerror(errno));
        return false;
    }
    return !r->m.model || !embed_batch_full(&r->m.batch) || flush(r);
}

static bool hash_done(void *ctx) { return flush(ctx); }

static bool keep_visit(void *ctx, const pool_sample *s, bool *keep) {
    dedup_run *r = ctx;
    uint8_t status;
    if (fread(&status, 1, 1, r->status) != 1) {
        fprintf(stderr, "vlp data dedup: %s: the pool has more samples than pass 1 saw (did it change?)\n", s->what);
        return false;
    }
    *keep = status == UNIQUE;
    if (*keep && r->m.model) *keep = !r->removed[r->next_row++];
    r->kept += *keep;
    return true;
}


/* "0.01,0.05" -> eps[], sorted as given; false after a message */
static bool parse_eps(const char *list, double *eps, int *n) {
    *n = 0;
    for (const char *p = list; *p;) {
        char *end;
        double e = strtod(p, &end);
        if (end == p || !(e >= 0 && e < 2) || *n == MAX_EPS) {
            fprintf(stderr, "vlp data dedup: --report-eps wants up to %d numbers in [0, 2) joined by commas, got '%s'\n",
                    MAX_EPS, list);
            return false;
        }
        eps[(*n)++] = e;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return fprintf(stderr, "vlp data dedup: --report-eps: '%s'\n", list), false;
    }
    return true;
}

/* k-means and SemDeDup over the mapped embeddings: r->removed at eps[0],
 * removed counts per eps into by_eps */
static int semantic(dedup_run *r, long clusters, long iters, uint64_t seed, const double *eps, int neps,
                    int64_t *by_eps, int *k_used, int *iters_run, int64_t *largest) {
    int64_t n = r->rows;
    if (n == 0) return 0;
    const int E = r->m.batch.E;
    const float *x = mmap(NULL, sizeof(float) * (size_t)n * E, PROT_READ, MAP_SHARED, fileno(r->embeddings), 0);
    if (x == MAP_FAILED) return fprintf(stderr, "vlp data dedup: cannot map %s: %s\n", r->emb_path, strerror(errno)), 1;
    int k = clusters ? (int)(clusters < n ? clusters : n) : (int)((n + 999) / 1000);
    *k_used = k;
    float *centroids = malloc(sizeof(float) * (size_t)k * E);
    int32_t *assign = malloc(sizeof(int32_t) * (size_t)n);
    int64_t *start = calloc((size_t)k + 1, sizeof(int64_t)), *members = malloc(sizeof(int64_t) * (size_t)n);
    r->removed = calloc((size_t)n, 1);
    uint8_t *rm = NULL;
    int rc = 0;
    vlp_error err = {0};
    if (!centroids || !assign || !start || !members || !r->removed)
        rc = 1, fprintf(stderr, "vlp data dedup: out of memory (%lld embeddings)\n", (long long)n);
    if (!rc && kmeans_spherical(x, n, E, k, (int)iters, seed, centroids, assign, iters_run, &err) != VLP_OK)
        rc = curate_fail("dedup", &err);
    if (!rc) { /* members grouped by cluster, in pool order within each */
        for (int64_t i = 0; i < n; i++) start[assign[i] + 1]++;
        for (int c = 0; c < k; c++) start[c + 1] += start[c];
        int64_t *fill = malloc(sizeof(int64_t) * (size_t)k);
        if (!fill) rc = 1, fprintf(stderr, "vlp data dedup: out of memory\n");
        for (int c = 0; fill && c < k; c++) fill[c] = start[c];
        for (int64_t i = 0; fill && i < n; i++) members[fill[assign[i]]++] = i;
        free(fill);
        *largest = 0;
        for (int c = 0; c < k; c++) *largest = start[c + 1] - start[c] > *largest ? start[c + 1] - start[c] : *largest;
        rm = malloc((size_t)neps * (size_t)(*largest ? *largest : 1));
        if (!rm) rc = 1, fprintf(stderr, "vlp data dedup: out of memory (a cluster of %lld)\n", (long long)*largest);
    }
    for (int c = 0; !rc && c < k; c++) {
        if (interrupted()) { rc = curate_interrupted("dedup"); break; }
        int m = (int)(start[c + 1] - start[c]);
        if (semdedup_cluster(x, E, members + start[c], m, centroids + (size_t)c * E, eps, neps, rm, &err) != VLP_OK) {
            rc = curate_fail("dedup", &err);
            break;
        }
        for (int e = 0; e < neps; e++)
            for (int i = 0; i < m; i++) by_eps[e] += rm[(size_t)e * m + i];
        for (int i = 0; i < m; i++) r->removed[members[start[c] + i]] = rm[i];
    }
    free(rm), free(centroids), free(assign), free(start), free(members);
    munmap((void *)x, sizeof(float) * (size_t)n * E);
    return rc;
}

typedef struct dedup_args {
    curate_io io;
    model_args m;
    long clusters, iters;
    double eps_used;
    const char *report_eps, *on_error;
} dedup_args;

#define D(flag, arg, type, member, lo, hi, help)                                                   \
    {NULL, NULL, flag, arg, &type, offsetof(dedup_args, member), lo, hi, 0, help, NULL}
static const opt_desc dedup_opts[] = {
    D("--dedup-eps", "E", opt_double, eps_used, 0, 1.999,
      "SemDeDup: a sample whose cosine to one kept before it in its cluster exceeds 1 - E is removed"),
    D("--clusters", "K", opt_long, clusters, 0, 1 << 24, "k-means clusters (0: one per 1,000 embedded samples)"),
    D("--iters", "N", opt_long, iters, 1, 10000, "k-means iterations at most"),
    D("--report-eps", "LIST", opt_string, report_eps, 0, 0,
      "other eps values whose removals the report counts (the output uses --dedup-eps)"),
    ON_ERROR_OPT(dedup_args, on_error),
};
#undef D

int data_dedup(int argc, char **argv) {
    dedup_args da = {.io = curate_io_default(), .m = model_args_default(), .iters = 20, .eps_used = 0.01,
                     .report_eps = "0.001,0.005,0.01,0.02,0.05,0.1"};
    const opt_group groups[] = {CURATE_IO_GROUP(&da.io),
                                {dedup_opts, (int)(sizeof dedup_opts / sizeof *dedup_opts), &da},
                                MODEL_GROUP(&da.m)};
    const cmd_spec spec = {
        .name = "data dedup", .usage = "vlp data dedup --data SPEC --out OUT [--model M [options]]",
        .about = "Removes exact duplicates (the same image bytes: the first is kept), and with --model\n"
                 "semantic near-duplicates as SemDeDup does: image embeddings clustered by spherical\n"
                 "k-means; within a cluster, from the member least similar to the centroid to the most,\n"
                 "a member is removed when its cosine to a kept one exceeds 1 - eps, so of a group of\n"
                 "near-duplicates the one least like the centroid survives.",
        .groups = groups, .ngroups = 3};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL);
    curate_io io = da.io;
    model_args a = da.m;
    long clusters = da.clusters, iters = da.iters;
    double eps_used = da.eps_used;
    const char *report_eps = da.report_eps;
    if (rc) return rc == 1 ? 0 : 2;
    double eps[MAX_EPS + 1];
    int neps;
    eps[0] = eps_used;
    if (!parse_eps(report_eps, eps + 1, &neps)) return 2;
    neps++;
    dedup_run r = {0};
    int stop = on_error_stop(da.on_error, "data dedup");
    if (stop < 0) return 2;
    r.stop_on_bad = stop;
    if (!u64_map_init(&r.seen, 1024) || !u64_map_init(&r.seen_pixels, 1024)) {
        u64_map_free(&r.seen);
    u64_map_free(&r.seen_pixels);
        return fprintf(stderr, "vlp data dedup: out of memory\n"), 1;
    }
    if (!curate_model_open(&r.m, &a, "dedup")) rc = 1;
    snprintf(r.status_path, sizeof r.status_path, "%s.dedup-status.%d", io.out, (int)getpid());
    snprintf(r.emb_path, sizeof r.emb_path, "%s.dedup-embeddings.%d", io.out, (int)getpid());
    pool *p = rc ? NULL : curate_open("dedup", &io, true);
    pool_writer *w = p ? curate_writer("dedup", &io, p) : NULL;
    if (w) {
        r.status = fopen(r.status_path, "w+b");
        r.embeddings = fopen(r.emb_path, "w+b");
        if (!r.status || !r.embeddings) rc = 1, fprintf(stderr, "vlp data dedup: cannot create %s\n", r.status_path);
    } else rc = 1;
    uint64_t pass1 = 0, pass2 = 1;
    int64_t skipped = 0, written = 0, by_eps[MAX_EPS + 1] = {0}, largest = 0;
    int k_used = 0, iters_run = 0;
    long shards = 0;
    char why[512] = ""; /* pass 1's first skip, kept past the pool */
    if (!rc) rc = curate_pass("dedup", p, "samples hashed", 0, hash_visit, hash_done, &r, NULL, &pass1);
    if (!rc) {
        const char *first;
        skipped = pool_skipped(p, &first);
        snprintf(why, sizeof why, "%s", first);
        fprintf(stderr, "pass 1: %lld samples, %lld exact duplicates%s\n", (long long)r.samples, (long long)r.exact,
                r.m.model ? ", the rest embedded" : "");
        if (r.m.model) {
            if (fflush(r.embeddings) != 0) rc = 1, fprintf(stderr, "vlp data dedup: %s: write failed\n", r.emb_path);
            if (!rc) rc = semantic(&r, clusters, iters, (uint64_t)io.seed, eps, neps, by_eps, &k_used, &iters_run, &largest);
            if (!rc) fprintf(stderr, "SemDeDup: %lld embeddings in %d clusters (%d k-means iterations, the largest %lld), "
                             "%lld near-duplicates at eps %g\n", (long long)r.rows, k_used, iters_run, (long long)largest,
                             (long long)by_eps[0], eps_used);
        }
    }
    if (!rc) {
        rewind(r.status);
        rc = curate_pass("dedup", p, "samples written", (long)r.samples, keep_visit, NULL, &r, w, &pass2);
    }
    if (!rc) rc = curate_same_pool("dedup", pass1, pass2);
    vlp_error err = {0};
    if (!rc && pool_writer_finish(w, &written, &shards, &err) != VLP_OK) rc = curate_fail("dedup", &err);
    if (!rc) {
        json_doc doc = json_doc_new();
        json_t *rep = doc.root;
        jd_put(&doc, rep, "exact_duplicates", json_integer(r.exact));
        jd_text(&doc, rep, "hash", "XXH3-128 of the encoded image");
        if (r.collisions) jd_put(&doc, rep, "hash_low_half_collisions", json_integer(r.collisions));
        if (r.m.model) {
            json_t *sd = jd_object(&doc), *per = jd_array(&doc);
            jd_text(&doc, sd, "model", a.model);
            jd_put(&doc, sd, "pixel_duplicates", json_integer(r.pixel_dups));
            jd_text(&doc, sd, "pixel_hash", "XXH3-128 of the decoded pixels as stored (mode, palette), seeded with the size");
            jd_put(&doc, sd, "undecodable", json_integer(r.undecodable));
            if (r.first_undecodable[0]) jd_text(&doc, sd, "first_undecodable", r.first_undecodable);
            jd_put(&doc, sd, "embedded", json_integer(r.rows));
            jd_put(&doc, sd, "clusters", json_integer(k_used));
            jd_put(&doc, sd, "kmeans_iterations", json_integer(iters_run));
            jd_put(&doc, sd, "largest_cluster", json_integer(largest));
            jd_put(&doc, sd, "eps", json_real(eps_used));
            jd_put(&doc, sd, "removed", json_integer(by_eps[0]));
            for (int e = 1; e < neps; e++) {
                json_t *row = jd_object(&doc);
                jd_put(&doc, row, "eps", json_real(eps[e]));
                jd_put(&doc, row, "removed", json_integer(by_eps[e]));
                jd_append(&doc, per, row);
            }
            jd_put(&doc, sd, "removed_per_eps", per);
            jd_put(&doc, rep, "semdedup", sd);
        }
        rc = curate_report("dedup", &io, &doc, r.samples, skipped, why, written, shards);
        json_doc_free(&doc);
    }
    if (r.status) fclose(r.status), remove(r.status_path);
    if (r.embeddings) fclose(r.embeddings), remove(r.emb_path);
    free(r.removed);
    u64_map_free(&r.seen);
    u64_map_free(&r.seen_pixels);
    pool_writer_free(w);
    pool_free(p);
    curate_model_free(&r.m);
    return rc;
}
