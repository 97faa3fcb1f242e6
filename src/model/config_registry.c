#include "model/config_registry.h"
#include "core/datadir.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char **clip_config_names(int *count) { return vlp_data_names("configs", ".json", count); }

void clip_config_names_free(char **names, int count) { vlp_data_names_free(names, count); }

vlp_err clip_config_resolve(const char *arg, clip_config *out, char *source, size_t n,
                            vlp_error *err) {
    char path[4200];
    vlp_error lookup = {0};
    if (vlp_data_resolve("configs", ".json", arg, path, sizeof path, &lookup) != VLP_OK) {
        if (err) *err = lookup;
        if (!vlp_data_is_name(arg, ".json")) return lookup.code; /* a path: its own message */
        char known[2048];
        if (!vlp_data_names_text("configs", ".json", known, sizeof known)) return lookup.code;
        VLP_FAIL(err, VLP_ERR_ARG,
                 "unknown model config '%s' (a name without '/' or .json is one of vlp's "
                 "configs; 'vlp models' lists them): known are %s", arg, known);
    }
    if (source) snprintf(source, n, "%s", path);
    return clip_config_load(path, out, err);
}
