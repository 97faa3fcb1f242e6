/* A training state's options (the JSON the state's metadata holds) and the
 * resume check against the defaults */
#include <stdlib.h>

#include "fuzz.h"
#include "train/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    train_opts o, d = train_opts_defaults();
    if (text && train_opts_from_json(text, "fuzz.state", &o, NULL) == VLP_OK) {
        train_opts_check(&o, NULL);
        train_opts_resume(&o, &d, NULL, 0, "fuzz", NULL);
        char *back = train_opts_to_json(&o);
        free(back);
    }
    free(text);
    return 0;
}
