/* A training state's options (the JSON the state's metadata holds), the
 * resume check against the defaults, and the round trip a checkpoint makes:
 * options that parse are written and read back to the same JSON, or the
 * target aborts */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "train/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    train_opts o, back, d = train_opts_defaults();
    if (text && train_opts_from_json(text, "fuzz.state", &o, NULL) == VLP_OK) {
        train_opts_check(&o, NULL);
        train_opts_resume(&o, &d, NULL, 0, "fuzz", NULL);
        char *json = train_opts_to_json(&o);
        if (!json || train_opts_from_json(json, "written.state", &back, NULL) != VLP_OK) abort();
        char *again = train_opts_to_json(&back);
        if (!again || strcmp(json, again)) abort();
        free(json), free(again);
    }
    free(text);
    return 0;
}
