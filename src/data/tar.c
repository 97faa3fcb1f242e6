#include "data/tar.h"
#include "core/error.h"
#include "data/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 512

/* octal (NUL/space terminated) or GNU base-256 number; false when malformed */
static bool parse_num(const uint8_t *f, size_t n, uint64_t *out) {
    uint64_t v = 0;
    if (f[0] & 0x80) { /* base-256 */
        for (size_t i = 1; i < n; i++) {
            if (v >> 56) return false;
            v = v << 8 | f[i];
        }
        *out = v;
        return true;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ') i++;
    bool any = false;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, any = true) {
        if (v >> 60) return false;
        v = v * 8 + (f[i] - '0');
    }
    if (i < n && f[i] != ' ' && f[i] != '\0') return false;
    *out = v;
    return any;
}

static bool checksum_ok(const uint8_t *h) {
    uint64_t want;
    if (!parse_num(h + 148, 8, &want)) return false;
    uint64_t sum = 0;
    for (int i = 0; i < BLOCK; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum == want;
}

vlp_err tar_open(tar_reader *t, const char *path, vlp_error *err) {
    memset(t, 0, sizeof *t);
    t->fp = fopen(path, "rb");
    VLP_CHECK_IO(t->fp, err, "cannot open %s: %s", path, strerror(errno));
    t->path = strdup(path);
    if (!t->path) {
        fclose(t->fp);
        VLP_FAIL(err, VLP_ERR_NOMEM, "path");
    }
    return VLP_OK;
}

void tar_close(tar_reader *t) {
    if (t->fp) fclose(t->fp);
    free(t->path), free(t->data);
    memset(t, 0, sizeof *t);
}

/* reads a member's body (size bytes, then padding to the block) into t->data */
static vlp_err read_body(tar_reader *t, uint64_t size, vlp_error *err) {
    VLP_CHECK_FORMAT(size <= TAR_MAX_MEMBER, err, "%s: member '%s' at byte %llu is %llu bytes (limit %zu)",
                     t->path, t->name, (unsigned long long)t->offset, (unsigned long long)size, TAR_MAX_MEMBER);
    if (size + 1 > t->cap) {
        uint8_t *g = realloc(t->data, (size_t)size + 1);
        VLP_CHECK_ALLOC(g, err, size + 1);
        t->data = g, t->cap = (size_t)size + 1;
    }
    VLP_CHECK_FORMAT(fread(t->data, 1, (size_t)size, t->fp) == size, err,
                     "%s: truncated in member '%s' (header at byte %llu)", t->path, t->name,
                     (unsigned long long)t->offset);
    t->data[size] = '\0';
    t->size = (size_t)size;
    uint64_t pad = (BLOCK - size % BLOCK) % BLOCK;
    if (pad) VLP_CHECK_FORMAT(fseeko(t->fp, (off_t)pad, SEEK_CUR) == 0, err, "%s: seek failed", t->path);
    t->offset += BLOCK + size + pad;
    return VLP_OK;
}

/* a pax extended header's "path" record, if any */
static void pax_path(const char *d, size_t n, char *out, size_t cap) {
    size_t i = 0;
    while (i < n) {
        char *end;
        errno = 0;
        unsigned long len = strtoul(d + i, &end, 10);
        /* len > n - i, not i + len > n: a length near 2^64 wrapped the sum and walked back */
        if (errno || len == 0 || len > n - i || *end != ' ' || !(d[i] >= '0' && d[i] <= '9')) return;
        const char *kv = end + 1;
        if (!strncmp(kv, "path=", 5)) {
            size_t vl = (size_t)(d + i + len - 1 - (kv + 5)); /* without the newline */
            if (vl < cap) memcpy(out, kv + 5, vl), out[vl] = '\0';
        }
        i += len;
    }
}

vlp_err tar_next(tar_reader *t, bool *done, vlp_error *err) {
    char long_name[4096] = "";
    *done = false;
    for (;;) {
        uint8_t h[BLOCK];
        size_t got = fread(h, 1, BLOCK, t->fp);
        if (got == 0 && feof(t->fp)) { /* no end-of-archive blocks: tolerated, as tar does */
            *done = true;
            return VLP_OK;
        }
        VLP_CHECK_FORMAT(got == BLOCK, err, "%s: truncated header at byte %llu", t->path,
                         (unsigned long long)t->offset);
        bool zero = true;
        for (int i = 0; i < BLOCK && zero; i++) zero = h[i] == 0;
        if (zero) {
            *done = true;
            return VLP_OK;
        }
        VLP_CHECK_FORMAT(checksum_ok(h), err, "%s: bad header checksum at byte %llu (not a tar file?)",
                         t->path, (unsigned long long)t->offset);
        uint64_t size;
        VLP_CHECK_FORMAT(parse_num(h + 124, 12, &size), err, "%s: bad size field at byte %llu", t->path,
                         (unsigned long long)t->offset);
        char type = (char)h[156];
        if (long_name[0]) snprintf(t->name, sizeof t->name, "%s", long_name);
        else if (!memcmp(h + 257, "ustar", 5) && h[345])
            snprintf(t->name, sizeof t->name, "%.155s/%.100s", (const char *)h + 345, (const char *)h);
        else snprintf(t->name, sizeof t->name, "%.100s", (const char *)h);
        VLP_TRY(read_body(t, size, err));
        if (type == 'L') { /* GNU long name for the next member */
            snprintf(long_name, sizeof long_name, "%.*s", (int)(t->size < sizeof long_name ? t->size : sizeof long_name - 1), (char *)t->data);
            continue;
        }
        if (type == 'x') {
            pax_path((const char *)t->data, t->size, long_name, sizeof long_name);
            continue;
        }
        if (type == '0' || type == '\0' || type == '7') return VLP_OK;
        long_name[0] = '\0'; /* directories, links, global headers: skipped */
    }
}

/* ---- writer ------------------------------------------------------------------------------- */

vlp_err tar_create(tar_writer *w, const char *path, vlp_error *err) {
    return atomic_open(&w->af, path, err);
}

vlp_err tar_add(tar_writer *w, const char *name, const void *data, size_t n, vlp_error *err) {
    VLP_CHECK_ARG(strlen(name) > 0 && strlen(name) < TAR_NAME_MAX, err, "tar member name '%s' must be 1..%d bytes",
                  name, TAR_NAME_MAX - 1);
    VLP_CHECK_ARG(n < ((size_t)1 << 33), err, "tar member '%s' of %zu bytes exceeds 8 GiB", name, n);
    uint8_t h[BLOCK] = {0};
    memcpy(h, name, strlen(name));
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6), memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < BLOCK; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    static const uint8_t zeros[BLOCK] = {0};
    size_t pad = (BLOCK - n % BLOCK) % BLOCK;
    atomic_write(&w->af, h, BLOCK), atomic_write(&w->af, data, n);
    VLP_CHECK_IO(atomic_write(&w->af, zeros, pad), err, "cannot write %s: %s", w->af.tmp,
                 strerror(w->af.saved_errno));
    return VLP_OK;
}

vlp_err tar_finish(tar_writer *w, vlp_error *err) {
    static const uint8_t zeros[2 * BLOCK] = {0}; /* the end-of-archive marker */
    atomic_write(&w->af, zeros, sizeof zeros);
    return atomic_commit(&w->af, err);
}

void tar_abort(tar_writer *w) { atomic_abort(&w->af); }

/* ---- WebDataset naming ---- */

void wds_split_key(const char *name, char *key, size_t kcap, const char **ext) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    size_t kl = dot ? (size_t)(dot - name) : strlen(name);
    if (kl >= kcap) kl = kcap - 1;
    memcpy(key, name, kl), key[kl] = '\0';
    *ext = dot ? dot + 1 : "";
}

bool wds_is_image_ext(const char *e) { return image_ext_known(e); }

