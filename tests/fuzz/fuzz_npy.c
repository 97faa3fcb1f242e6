/* .npy: the header (magic, version, dict) and the data's length */
#include <stdlib.h>

#include "fuzz.h"
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".npy");
    float *x = NULL;
    int64_t r, c;
    if (path && npy_read_f32(path, &x, &r, &c, NULL) == VLP_OK) free(x);
    return 0;
}
