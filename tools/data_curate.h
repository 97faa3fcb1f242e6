/* What vlp data filter, balance and dedup share: the pool's and the
 * output's options (one table), a pass over the pool with progress lines,
 * the pass that writes what is kept, and the JSON report. */
#ifndef VLP_TOOLS_DATA_CURATE_H
#define VLP_TOOLS_DATA_CURATE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "curate/pool.h"
#include "data/image.h"
#include "eval/embed_set.h"
#include "io/json_text.h"
#include "model_args.h"
#include "opts.h"

typedef struct curate_io {
    const char *data, *out, *report, *image_key, *caption_key;
    long per_shard, seed;
    char report_path[4096]; // the report's path: --report, else OUT.report.json
} curate_io;

curate_io curate_io_default(void);

/* the pool's and the output's options: a group of the command's parse */
extern const opt_desc curate_io_table[];
extern const int curate_io_count;
#define CURATE_IO_GROUP(io) {curate_io_table, curate_io_count, (io)}

/* The model filter and dedup embed with, and its batch of images
 * (src/eval/embed_set.h: decoded, alpha dropped or composited on white,
 * CLIP's eval transform; without a model it only decodes). */
typedef struct curate_model {
    vlp_model *model;         // NULL: none given
    embed_batch batch;
} curate_model;

/* opens a->model when given, and the batch; false after a message */
bool curate_model_open(curate_model *m, const model_args *a, const char *cmd);
void curate_model_free(curate_model *m);
/* the sample's image decoded into *im (freed by the caller); false with why */
bool curate_decode(const curate_model *m, const pool_sample *s, image_u8 *im, char *why, size_t n);
/* a decoded image into the batch; false with why */
bool curate_batch_add(curate_model *m, const image_u8 *im, char *why, size_t n);
/* the batch's images encoded into m->batch.emb; false after a message */
bool curate_batch_encode(curate_model *m, const char *cmd);

/* --out is a table (FILE.tsv/.csv), not shards */
bool curate_out_is_table(const curate_io *io);

/* opens the pool (images read or not); NULL after a message */
pool *curate_open(const char *cmd, const curate_io *io, bool read_images);

/* One pass over the pool: visit(ctx, sample) for each usable sample (false
 * stops the pass: it has printed why); then done(ctx) (may be NULL). With
 * out != NULL the samples visit keeps (*keep) are written there. Progress
 * lines name `what`. *digest (may be NULL) receives a fingerprint of the
 * samples seen, in order (where each came from and its caption): two passes
 * over an unchanged pool give the same. Returns 0, or 1 after a message. */
typedef bool (*curate_visit)(void *ctx, const pool_sample *s, bool *keep);
typedef bool (*curate_done)(void *ctx);
int curate_pass(const char *cmd, pool *p, const char *what, long total, curate_visit visit, curate_done done,
                void *ctx, pool_writer *out, uint64_t *digest);
/* 0 when the two passes' fingerprints agree, else 1 after a message (the
 * pool changed between them: what pass 2 would write is not trusted) */
int curate_same_pool(const char *cmd, uint64_t pass1, uint64_t pass2);

/* the writer of --out; NULL after a message. From here on SIGINT/SIGTERM
 * stop the command through its error path (tools/interrupt.h). */
pool_writer *curate_writer(const char *cmd, const curate_io *io, const pool *p);

/* adds the pool's counts, the output's and the options to the report and
 * writes it atomically; prints where. Returns 0 or 1. */
int curate_report(const char *cmd, const curate_io *io, json_doc *report, int64_t samples, int64_t skipped,
                  const char *first_skip, int64_t kept, long shards);
int curate_fail(const char *cmd, const vlp_error *err);
/* says the command was interrupted; returns INTERRUPT_EXIT (tools/interrupt.h):
 * the caller takes its error path, which removes its temporary files */
int curate_interrupted(const char *cmd);
#endif
