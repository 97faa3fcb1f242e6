#include "curate/select.h"
#include "core/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

uint32_t select_key(float x) {
    if (isnan(x)) return 0;
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* negatives reversed below positives */
    return u ? u : 1; /* 0 is NaN's: -inf's key (0x007FFFFF) is above it anyway */
}

static float key_value(uint32_t u) {
    u = (u & 0x80000000u) ? u & 0x7FFFFFFFu : ~u;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* counts of the keys' high halves, or (prefix given) of the low halves of keys with that high half */
static vlp_err histogram(FILE *fp, int64_t n, int64_t *count, int64_t prefix, vlp_error *err) {
    memset(count, 0, sizeof(int64_t) * 65536);
    VLP_CHECK_IO(fseeko(fp, 0, SEEK_SET) == 0, err, "scores: cannot seek: %s", strerror(errno));
    float buf[4096];
    for (int64_t done = 0; done < n;) {
        size_t want = (size_t)(n - done < 4096 ? n - done : 4096);
        VLP_CHECK_IO(fread(buf, sizeof(float), want, fp) == want, err, "scores: %lld of %lld read",
                     (long long)done, (long long)n);
        for (size_t i = 0; i < want; i++) {
            uint32_t key = select_key(buf[i]);
            if (prefix < 0) count[key >> 16]++;
            else if ((int64_t)(key >> 16) == prefix) count[key & 0xFFFF]++;
        }
        done += (int64_t)want;
    }
    return VLP_OK;
}

vlp_err select_top_k(FILE *fp, int64_t n, int64_t k, float *threshold, int64_t *ties, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && k >= 1 && k <= n, err, "top %lld of %lld scores", (long long)k, (long long)n);
    int64_t *count = malloc(sizeof(int64_t) * 65536);
    VLP_CHECK_ALLOC(count, err, sizeof(int64_t) * 65536);
    vlp_err rc = histogram(fp, n, count, -1, err);
    int64_t above = 0; /* scores in higher buckets than the one holding the k-th */
    int hi = 65535;
    for (; rc == VLP_OK && hi >= 0 && above + count[hi] < k; hi--) above += count[hi];
    if (rc == VLP_OK) rc = histogram(fp, n, count, hi, err);
    int lo = 65535;
    for (; rc == VLP_OK && lo >= 0 && above + count[lo] < k; lo--) above += count[lo];
    if (rc == VLP_OK) {
        *threshold = key_value((uint32_t)hi << 16 | (uint32_t)lo);
        *ties = k - above;
    }
    free(count);
    return rc;
}
