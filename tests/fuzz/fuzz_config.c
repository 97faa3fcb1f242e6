/* Model configs: open_clip's JSON fields (and the model_cfg wrapper) */
#include <stdlib.h>

#include "fuzz.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    clip_config c;
    if (text) clip_config_parse(text, "fuzz.json", &c, NULL);
    free(text);
    return 0;
}
