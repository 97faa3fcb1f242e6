/* WebDataset shards written by the shard writer (data/shard_writer.h: `vlp
 * data shards` and the curation tools' output) and read back by the
 * training reader, a round trip: every sample comes back, in order, with its
 * image bytes and its caption (repaired to UTF-8 where it was not), and none
 * is skipped, or the target aborts (issue 31: a caption that was not UTF-8
 * became {} and every reader skipped the sample). The input: a byte of
 * samples a shard, then samples, each a byte of caption length, the caption,
 * two bytes (little-endian) of image length and the image's bytes (a sample
 * whose bytes are no image, or whose caption is blank, is not written, as
 * `vlp data shards` writes neither). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/shard_writer.h"
#include "data/table.h"
#include "fuzz.h"
#include "io/json_text.h"

#define MAX_SAMPLES 64

typedef struct { const uint8_t *image; size_t len; char *caption; } sample;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long per = 1 + data[0] % 8;
    sample in[MAX_SAMPLES];
    int n = 0;
    for (size_t at = 1; n < MAX_SAMPLES && at < size;) {
        size_t cl = data[at++];
        if (at + cl + 2 > size) break;
        char *caption = fuzz_text(data + at, cl);
        at += cl;
        size_t il = data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (il > size - at) il = size - at;
        if (caption && strlen(caption) == cl && !table_blank(caption) && image_format_ext(data + at, il))
            in[n++] = (sample){data + at, il, caption};
        else free(caption);
        at += il;
    }
    char prefix[96];
    snprintf(prefix, sizeof prefix, "/tmp/vlp-fuzz-shards-%d/s", (int)getpid());
    shard_writer *w;
    if (shard_writer_open(&w, prefix, per, NULL) != VLP_OK) abort();
    const char *key = "caption";
    for (int i = 0; i < n; i++)
        if (shard_writer_add_pair(w, in[i].image, in[i].len, &key, (const char *const *)&in[i].caption, 1, "fuzz",
                                  NULL) != VLP_OK)
            abort();
    int64_t written;
    long shards;
    if (shard_writer_finish(w, &written, &shards, NULL) != VLP_OK || written != n) abort();
    shard_writer_free(w);
    /* the shards as one list, read in order */
    char spec[96 * 8 + 32] = "";
    for (long k = 0; k < shards; k++)
        snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s%s-%05ld.tar", k ? "::" : "", prefix, k);
    int got = 0;
    if (shards) {
        dataset_opts o = dataset_opts_default();
        o.shuffle = false, o.caption_key = key;
        sample_stream *s;
        vlp_error err = {0};
        if (stream_open(&s, spec, &o, &err) != VLP_OK || stream_begin(s, 0, &err) != VLP_OK) {
            fprintf(stderr, "%s\n", err.message);
            abort();
        }
        for (;;) {
            raw_sample r;
            bool done;
            if (stream_next(s, &r, &done, &err) != VLP_OK) abort();
            if (done) break;
            char *want = got < n ? utf8_repaired(in[got].caption) : NULL;
            if (!want || r.image_len != in[got].len || memcmp(r.image, in[got].image, r.image_len) ||
                strcmp(r.caption, want))
                abort();
            free(want);
            raw_sample_free(&r);
            got++;
        }
        if (stream_skipped(s, NULL)) abort();
        stream_free(s);
    }
    if (got != n) abort();
    for (long k = 0; k < shards; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s-%05ld.tar", prefix, k);
        unlink(path);
    }
    *strrchr(prefix, '/') = '\0';
    rmdir(prefix);
    for (int i = 0; i < n; i++) free(in[i].caption);
    return 0;
}
