/* WebDataset shards: the tar reader and the grouping of members into
 * samples (image + json caption or txt) */
#include <stdbool.h>

#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".tar");
    dataset_opts o = dataset_opts_default();
    o.shuffle = false, o.alt_caption_key = "coarse";
    sample_stream *s;
    if (!path || stream_open(&s, path, &o, NULL) != VLP_OK) return 0;
    bool done = stream_begin(s, 0, NULL) != VLP_OK;
    for (int k = 0; k < 64 && !done; k++) {
        raw_sample r;
        if (stream_next(s, &r, &done, NULL) != VLP_OK) break;
        if (!done) raw_sample_free(&r);
    }
    stream_free(s);
    return 0;
}
