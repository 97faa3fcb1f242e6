#include "api/model_access.h"
#include "data_curate.h"
#include "interrupt.h"

#include <stddef.h>
#include "args.h"
#include "progress.h"
#include "data/table.h"
#include "io/atomic.h"
#include "core/rng.h"

#include <stdlib.h>
#include <xxhash.h>

#include <stdio.h>
#include <string.h>

#define IO(shrt, flag, arg, type, member, lo, hi, flags, help)                                   \
    {NULL, shrt, flag, arg, &type, offsetof(curate_io, member), lo, hi, flags, help, NULL}
const opt_desc curate_io_table[] = {
    IO("-d", "--data", "SPEC", opt_string, data, 0, 0, OPT_REQUIRED,
       "the pool: a .tsv/.csv (image paths relative to it) or WebDataset shards (a-{00000..00009}.tar, "
       "patterns joined with ::)"),
    IO("-o", "--out", "OUT", opt_string, out, 0, 0, OPT_REQUIRED,
       "what is kept: FILE.tsv or FILE.csv (a table pool: its columns) or a shard PREFIX (PREFIX-00000.tar, "
       "...: a shard pool's members as they were)"),
    IO(NULL, "--report", "FILE", opt_string, report, 0, 0, 0, "the JSON report (default OUT.report.json)"),
    IO(NULL, "--samples-per-shard", "N", opt_long, per_shard, 1, 1 << 30, 0, "samples a shard out"),
    IO(NULL, "--image-key", "K", opt_string, image_key, 0, 0, 0, HELP_IMAGE_KEY),
    IO(NULL, "--caption-key", "K", opt_string, caption_key, 0, 0, 0,
       HELP_CAPTION_KEY),
    IO("-s", "--seed", "N", opt_long, seed, 0, 2147483647, 0, "the seed of every random draw"),
};
#undef IO
const int curate_io_count = (int)(sizeof curate_io_table / sizeof *curate_io_table);

curate_io curate_io_default(void) {
    return (curate_io){.image_key = "filepath", .caption_key = "title", .per_shard = 1000, .seed = 0};
}

static vlp_err encode_with_model(void *ctx, const float *pixels, int n, float *out, vlp_error *err) {
    return vlp_encode_images(ctx, pixels, n, out, err);
}

bool curate_model_open(curate_model *m, const model_args *a, const char *cmd) {
    memset(m, 0, sizeof *m);
    vlp_error err = {0};
    image_preprocess given = {.white_background = a->o.alpha == VLP_ALPHA_WHITE};
    embed_batch_init(&m->batch, 0, 0, 0, &given, NULL, NULL, &err); /* decoding only, until a model */
    if (!a->model) return true;
    char name[64];
    snprintf(name, sizeof name, "data %s", cmd);
    if (!(m->model = open_model(a, name))) return false;
    if (embed_batch_init(&m->batch, vlp_model_image_size(m->model), vlp_model_embed_dim(m->model), a->o.batch,
                         &model_clip(m->model)->cfg.vision.pre, encode_with_model, m->model, &err) != VLP_OK)
        return curate_fail(cmd, &err), false;
    return true;
}

void curate_model_free(curate_model *m) {
    embed_batch_free(&m->batch);
    vlp_model_free(m->model);
    memset(m, 0, sizeof *m);
}

bool curate_decode(const curate_model *m, const pool_sample *s, image_u8 *im, char *why, size_t n) {
    vlp_error err = {0};
    if (embed_batch_decode(&m->batch, s->image, s->image_len, s->what, im, &err) == VLP_OK) return true;
    snprintf(why, n, "%s", err.message);
    return false;
}

bool curate_batch_add(curate_model *m, const image_u8 *im, char *why, size_t n) {
    vlp_error err = {0};
    if (embed_batch_add(&m->batch, im, &err) == VLP_OK) return true;
    snprintf(why, n, "%s", err.message);
    return false;
}

bool curate_batch_encode(curate_model *m, const char *cmd) {
    vlp_error err = {0};
    return embed_batch_encode(&m->batch, &err) == VLP_OK || (curate_fail(cmd, &err), false);
}

bool curate_out_is_table(const curate_io *io) { return table_spec(io->out, NULL); }

int curate_fail(const char *cmd, const vlp_error *err) {
    char buf[800];
    fprintf(stderr, "vlp data %s: %s\n", cmd, tool_error_text(err, buf, sizeof buf));
    return 1;
}

pool *curate_open(const char *cmd, const curate_io *io, bool read_images) {
    pool_opts o = pool_opts_default();
    o.image_key = io->image_key, o.caption_key = io->caption_key, o.read_images = read_images;
    o.warn = cli_warn;
    pool *p;
    vlp_error err = {0};
    if (pool_open(&p, io->data, &o, &err) != VLP_OK) return curate_fail(cmd, &err), NULL;
    return p;
}

pool_writer *curate_writer(const char *cmd, const curate_io *io, const pool *p) {
    pool_writer *w;
    interrupt_catch(); /* from here on the command's files are being written: Ctrl-C takes them away */
    vlp_error err = {0};
    if (pool_writer_open(&w, io->out, p, io->per_shard, &err) != VLP_OK) return curate_fail(cmd, &err), NULL;
    return w;
}

int curate_pass(const char *cmd, pool *p, const char *what, long total, curate_visit visit, curate_done done,
                void *ctx, pool_writer *out, uint64_t *digest) {
    uint64_t d = 0x5EEDull;
    vlp_error err = {0};
    if (pool_rewind(p, &err) != VLP_OK) return curate_fail(cmd, &err);
    progress pr;
    progress_begin(&pr, stderr, what, total);
    pool_sample s = {0};
    long n = 0;
    int rc = 0;
    for (;;) {
        bool end, keep = false;
        if (interrupted()) { rc = curate_interrupted(cmd); break; }
        if (pool_next(p, &s, &end, &err) != VLP_OK) { rc = curate_fail(cmd, &err); break; }
        if (end) break;
        d = XXH3_64bits_withSeed(s.what, strlen(s.what), d);
        d = XXH3_64bits_withSeed(s.caption, strlen(s.caption), d);
        if (!visit(ctx, &s, &keep)) { rc = 1; break; }
        if (keep && out && pool_writer_add(out, &s, &err) != VLP_OK) { rc = curate_fail(cmd, &err); break; }
        progress_update(&pr, ++n);
    }
    pool_sample_free(&s);
    if (!rc && done && !done(ctx)) rc = 1;
    if (rc) progress_break(&pr);
    else progress_end(&pr, n);
    if (digest) *digest = d;
    return rc;
}

int curate_interrupted(const char *cmd) {
    fprintf(stderr, "vlp data %s: interrupted; nothing written (the temporary files removed)\n", cmd);
    return INTERRUPT_EXIT;
}

int curate_same_pool(const char *cmd, uint64_t pass1, uint64_t pass2) {
    if (pass1 == pass2) return 0;
    fprintf(stderr, "vlp data %s: the pool changed between the two passes (samples or captions differ); "
                    "nothing written\n", cmd);
    return 1;
}

int curate_report(const char *cmd, const curate_io *io, json_doc *doc, int64_t samples, int64_t skipped,
                  const char *first_skip, int64_t kept, long shards) {
    json_t *report = doc->root;
    jd_text(doc, report, "command", cmd);
    jd_text(doc, report, "data", io->data);
    jd_text(doc, report, "out", io->out);
    jd_put(doc, report, "seed", json_integer(io->seed));
    jd_put(doc, report, "samples", json_integer(samples));
    jd_put(doc, report, "skipped", json_integer(skipped));
    if (skipped) jd_text(doc, report, "first_skipped", first_skip);
    jd_put(doc, report, "kept", json_integer(kept));
    jd_put(doc, report, "removed", json_integer(samples - kept));
    if (shards) jd_put(doc, report, "shards", json_integer(shards));
    char path[4200];
    if (io->report) snprintf(path, sizeof path, "%s", io->report);
    else snprintf(path, sizeof path, "%s.report.json", io->out);
    vlp_error err = {0};
    char *text = json_doc_dumps(doc, JSON_PRESERVE_ORDER | JSON_INDENT(2), path, &err);
    if (!text) return curate_fail(cmd, &err);
    atomic_file af;
    vlp_err e = atomic_open(&af, path, &err);
    if (e == VLP_OK) {
        atomic_write(&af, text, strlen(text));
        atomic_write(&af, "\n", 1);
        e = atomic_commit(&af, &err);
    }
    free(text);
    if (e != VLP_OK) {
        return curate_fail(cmd, &err);
    }
    fprintf(stderr, "kept %lld of %lld samples (%.2f%%) into %s; report %s\n", (long long)kept, (long long)samples,
            samples ? 100.0 * (double)kept / (double)samples : 0.0, io->out, path);
    if (skipped) fprintf(stderr, "skipped %lld unusable samples; the first: %s\n", (long long)skipped, first_skip);
    return 0;
}
