/* The curation tools' pool: a shard (or, by the first byte, a TSV table)
 * read sample by sample with every member or column, and written back as
 * shards (and a table from a table) */
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "curate/pool.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool table = size > 0 && data[0] == 'f'; /* "filepath\t..." */
    const char *path = fuzz_file(data, size, table ? ".tsv" : ".tar");
    pool_opts o = pool_opts_default();
    o.read_images = false;
    pool *p;
    if (!path || pool_open(&p, path, &o, NULL) != VLP_OK) return 0;
    char out[64];
    snprintf(out, sizeof out, "/tmp/vlp-fuzz-pool-%d%s", (int)getpid(), table ? ".tsv" : "");
    pool_writer *w = NULL;
    pool_writer_open(&w, out, p, 4, NULL);
    pool_sample s = {0};
    for (int k = 0; k < 64; k++) {
        bool done;
        if (pool_next(p, &s, &done, NULL) != VLP_OK || done) break;
        if (w && pool_writer_add(w, &s, NULL) != VLP_OK) break;
    }
    pool_sample_free(&s);
    if (w) pool_writer_finish(w, NULL, NULL, NULL);
    pool_writer_free(w);
    pool_free(p);
    char shard[96];
    for (int k = 0; k < 20; k++) { /* what the writer left */
        snprintf(shard, sizeof shard, "%s-%05d.tar", out, k);
        unlink(shard);
    }
    unlink(out);
    return 0;
}
