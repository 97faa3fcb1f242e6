#include "curate/balance.h"
#include "core/error.h"
#include "curate/matcher.h"

#include <stdlib.h>
#include <string.h>

struct balance {
    matcher *m;
    int n;
    int64_t *count, *kept; // (n) pass 1's matches, pass 2's kept samples, per entry
    uint32_t *stamps, stamp;
    int32_t *ids;          // (n) the last caption's entries
};

vlp_err balance_create(balance **out, const char *const *entries, int n, const int *entry_lines, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(n > 0, err, "the metadata has no entries");
    balance *b = calloc(1, sizeof *b);
    VLP_CHECK_ALLOC(b, err, sizeof *b);
    b->n = n;
    char **spaced = calloc((size_t)n, sizeof(char *));
    b->count = calloc((size_t)n, sizeof(int64_t));
    b->kept = calloc((size_t)n, sizeof(int64_t));
    b->stamps = calloc((size_t)n, sizeof(uint32_t));
    b->ids = malloc(sizeof(int32_t) * (size_t)n);
    vlp_err rc = spaced && b->count && b->kept && b->stamps && b->ids
                     ? VLP_OK
                     : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "balance of %d entries", n);
    for (int i = 0; rc == VLP_OK && i < n; i++) {
        if (!entries[i][0] || !entries[i][strspn(entries[i], " \t\r\n")]) { /* blank: it would match any run of spaces */
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "metadata %s %d: a blank entry",
                               entry_lines ? "line" : "entry", entry_lines ? entry_lines[i] : i + 1);
            break;
        }
        if (!(spaced[i] = metaclip_entry(entries[i])))
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "metadata entry %d", i + 1);
    }
    if (rc == VLP_OK) rc = matcher_create(&b->m, (const char *const *)spaced, n, err);
    for (int i = 0; spaced && i < n; i++) free(spaced[i]);
    free(spaced);
    if (rc != VLP_OK) {
        balance_free(b);
        return rc;
    }
    *out = b;
    return VLP_OK;
}

void balance_free(balance *b) {
    if (!b) return;
    matcher_free(b->m);
    free(b->count), free(b->kept), free(b->stamps), free(b->ids);
    free(b);
}

int balance_entries(const balance *b) { return b->n; }

const int32_t *balance_match(balance *b, const char *caption, int *n) {
    size_t len;
    char *spaced = metaclip_spacing(caption, &len);
    *n = 0;
    if (!spaced) return NULL;
    matcher_find(b->m, spaced, len, b->ids, b->n, n, b->stamps, &b->stamp); /* room for every entry */
    free(spaced);
    return b->ids;
}

int balance_count(balance *b, const char *caption) {
    int n;
    const int32_t *ids = balance_match(b, caption, &n);
    for (int k = 0; ids && k < n; k++) b->count[ids[k]]++;
    return n;
}

int64_t balance_count_of(const balance *b, int e) { return b->count[e]; }
int64_t balance_kept_of(const balance *b, int e) { return b->kept[e]; }

/* splitmix64's finaliser: a well-mixed 64-bit hash */
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double balance_draw(uint64_t seed, int64_t index, int entry) {
    uint64_t h = mix(mix(seed ^ 0x9E3779B97F4A7C15ull) ^ (uint64_t)index);
    h = mix(h ^ ((uint64_t)(uint32_t)entry * 0xD6E8FEB86659FD93ull));
    return (double)(h >> 11) * 0x1.0p-53;
}

bool balance_keep(balance *b, const char *caption, int64_t index, double t, uint64_t seed, bool keep_unmatched,
                  bool *matched) {
    int n;
    const int32_t *ids = balance_match(b, caption, &n);
    if (matched) *matched = n > 0;
    if (!ids || n == 0) return keep_unmatched;
    bool keep = false;
    /* every entry is drawn (not only up to the first pass), so a sample's
     * fate for one entry does not depend on its others */
    for (int k = 0; k < n; k++) {
        int64_t c = b->count[ids[k]];
        double p = c <= t ? 1.0 : t / (double)c;
        if (balance_draw(seed, index, ids[k]) < p) keep = true;
    }
    if (keep)
        for (int k = 0; k < n; k++) b->kept[ids[k]]++;
    return keep;
}
