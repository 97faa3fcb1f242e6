/* Model architectures by name, as open_clip names them: the JSON files under
 * configs/ of vlp's data directory (core/datadir.h), "ViT-B-16" for
 * configs/ViT-B-16.json. */
#ifndef VLP_MODEL_CONFIG_REGISTRY_H
#define VLP_MODEL_CONFIG_REGISTRY_H
#include <stdbool.h>
#include <stddef.h>

#include "model/config.h"

/* The config a --model-config argument names: a known name (no '/', no
 * ".json" ending: vlp_data_is_name) or a JSON file.
 * An unknown name is an error listing the known ones. `source` (may be NULL)
 * receives the file read. */
vlp_err clip_config_resolve(const char *name_or_file, clip_config *out, char *source, size_t n,
                            vlp_error *err);

/* The known names, sorted (malloc'd array of malloc'd strings; free with
 * clip_config_names_free). NULL with *count 0 when the data directory has
 * none. */
char **clip_config_names(int *count);
void clip_config_names_free(char **names, int count);
#endif
