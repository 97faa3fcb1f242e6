/* MetaCLIP matching, differentially: entries (lines before the first NUL)
 * against a caption (the bytes after it) through the Aho-Corasick
 * automaton and MetaCLIP's spacing must find exactly the entries a plain
 * substring search of " entry " in the spaced caption finds; aborts if not */
#include <stdlib.h>
#include <string.h>

#include "curate/balance.h"
#include "curate/matcher.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    char *meta = fuzz_text(data, (size_t)(nul - data)), *caption = fuzz_text(nul + 1, size - (size_t)(nul - data) - 1);
    char *entries[64];
    int n = 0;
    for (char *line = meta, *next; line && n < 64; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (*line) entries[n++] = line;
    }
    balance *b = NULL;
    if (n > 0 && balance_create(&b, (const char *const *)entries, n, NULL, NULL) == VLP_OK) {
        int got;
        const int32_t *ids = balance_match(b, caption, &got);
        size_t len;
        char *spaced = metaclip_spacing(caption, &len);
        int k = 0;
        for (int e = 0; ids && spaced && e < n; e++) {
            char *want = metaclip_entry(entries[e]);
            if (want && strstr(spaced, want)) {
                if (k >= got || ids[k] != e) abort(); /* the automaton missed or misordered an entry */
                k++;
            }
            free(want);
        }
        if (ids && spaced && k != got) abort(); /* it found one that is not there */
        balance_count(b, caption);
        balance_keep(b, caption, 0, 1.5, 7, false, NULL);
        free(spaced);
        balance_free(b);
    }
    free(meta), free(caption);
    return 0;
}
