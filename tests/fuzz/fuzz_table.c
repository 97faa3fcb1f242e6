/* TSV/CSV: header, quoting, fields, rows (the first byte picks the format;
 * the image files the rows name are not read) */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = fuzz_file(data + 1, size - 1, data[0] & 1 ? ".csv" : ".tsv");
    dataset_opts o = dataset_opts_default();
    o.alt_caption_key = data[0] & 2 ? "label" : NULL;
    sample_stream *s;
    if (!path || stream_open(&s, path, &o, NULL) != VLP_OK) return 0;
    stream_begin(s, 1, NULL);
    stream_free(s);
    return 0;
}
