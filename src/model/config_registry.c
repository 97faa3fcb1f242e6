#include "model/config_registry.h"
#include "core/datadir.h"
#include "core/error.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **clip_config_names(int *count) {
    *count = 0;
    char dirs[4][4096];
    int nd = vlp_data_dirs(dirs, 4), n = 0, cap = 0;
    char **names = NULL;
    for (int d = 0; d < nd; d++) {
        char path[4200];
        if (snprintf(path, sizeof path, "%s/configs", dirs[d]) >= (int)sizeof path) continue;
        DIR *dir = opendir(path);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t len = strlen(e->d_name);
            if (len <= 5 || strcmp(e->d_name + len - 5, ".json") || e->d_name[0] == '.') continue;
            bool seen = false; /* an earlier directory's file of the same name wins */
            for (int i = 0; i < n && !seen; i++)
                seen = strlen(names[i]) == len - 5 && !strncmp(names[i], e->d_name, len - 5);
            if (seen) continue;
            if (n == cap) {
                char **grown = realloc(names, sizeof *names * (size_t)(cap = cap ? 2 * cap : 32));
                if (!grown) break;
                names = grown;
            }
            if (!(names[n] = strndup(e->d_name, len - 5))) break;
            n++;
        }
        closedir(dir);
    }
    if (n) qsort(names, (size_t)n, sizeof *names, by_name);
    *count = n;
    return names;
}

void clip_config_names_free(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

vlp_err clip_config_resolve(const char *arg, clip_config *out, char *source, size_t n,
                            vlp_error *err) {
    char path[4200];
    vlp_error lookup = {0};
    if (vlp_data_resolve("configs", ".json", arg, path, sizeof path, &lookup) != VLP_OK) {
        if (err) *err = lookup;
        if (!vlp_data_is_name(arg, ".json")) return lookup.code; /* a path: its own message */
        int count;
        char **names = clip_config_names(&count);
        if (!count) {
            clip_config_names_free(names, count);
            return lookup.code;
        }
        char known[2048] = "";
        size_t k = 0;
        for (int i = 0; i < count && k < sizeof known; i++)
            k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", names[i]);
        clip_config_names_free(names, count);
        VLP_FAIL(err, VLP_ERR_ARG,
                 "unknown model config '%s' (a name without '/' or .json is one of vlp's "
                 "configs; 'vlp models' lists them): known are %s", arg, known);
    }
    if (source) snprintf(source, n, "%s", path);
    return clip_config_load(path, out, err);
}
