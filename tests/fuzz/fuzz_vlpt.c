/* vlpt: vlp's named-tensor files (reference vectors) */
#include "fuzz.h"
#include "io/tensorfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vlpt_file *f;
    if (vlpt_parse(data, size, "fuzz.vlpt", &f, NULL) == VLP_OK) {
        for (int i = 0; i < vlpt_count(f); i++) vlpt_at(f, i);
        vlpt_free(f);
    }
    return 0;
}
