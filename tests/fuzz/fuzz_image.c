/* Image decoding (JPEG, PNG, WebP; full and DCT-scaled) and the eval and
 * train transforms on what decodes */
#include <stdlib.h>

#include "core/rng.h"
#include "data/image.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_decode_opts o = {.composite = size & 1, .background = {255, 255, 255}, .min_side = size & 2 ? 32 : 0};
    image_u8 im;
    if (image_decode(data, size, "fuzz", &o, &im, NULL) != VLP_OK) return 0;
    float *out = malloc(sizeof(float) * 3 * 32 * 32);
    rng64 r = {size};
    image_transform ev = image_transform_default(32, false), tr = image_transform_default(32, true);
    tr.hflip = true;
    if (out) image_transform_apply(&ev, &im, NULL, out, NULL), image_transform_apply(&tr, &im, &r, out, NULL);
    free(out);
    image_free(&im);
    return 0;
}
