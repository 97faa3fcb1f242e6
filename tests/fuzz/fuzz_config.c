/* Model configs: open_clip's JSON fields (and the model_cfg wrapper), and
 * the round trip a checkpoint makes: a config that parses is written
 * (clip_config_to_json) and read back to the same shapes and preprocessing,
 * or the target aborts (issue 31: an MLP width came back one smaller) */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    clip_config c, back;
    if (text && clip_config_parse(text, "fuzz.json", &c, NULL) == VLP_OK) {
        char *json = clip_config_to_json(&c);
        if (!json || clip_config_parse(json, "written.json", &back, NULL) != VLP_OK) abort();
        free(json);
        if (memcmp(&c.text, &back.text, sizeof c.text) || memcmp(&c.multimodal, &back.multimodal, sizeof c.multimodal) ||
            memcmp(&c.mae, &back.mae, sizeof c.mae) || c.vision.width != back.vision.width ||
            c.vision.mlp_width != back.vision.mlp_width || c.vision.heads != back.vision.heads ||
            c.vision.pre.white_background != back.vision.pre.white_background ||
            c.vision.pre.own_norm != back.vision.pre.own_norm || c.embed_dim != back.embed_dim)
            abort();
    }
    free(text);
    return 0;
}
