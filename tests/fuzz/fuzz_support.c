#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* a test tool's own scratch name, not library state */
static char path[256];

static void remove_scratch(void) {
    if (path[0]) unlink(path);
}

const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
    if (!path[0]) atexit(remove_scratch);
    if (path[0] && !strstr(path, suffix)) unlink(path); /* another suffix: another name */
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/vlp-fuzz-%d%s", dir && *dir ? dir : "/tmp", (int)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return path;
}

char *fuzz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return NULL;
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}
