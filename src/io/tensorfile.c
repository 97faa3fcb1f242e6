#include "io/tensorfile.h"
#include "core/error.h"
#include "io/file.h"
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vlpt_file {
    char *path;
    int count;
    vlpt_tensor *tensors;
};

static const char *dtype_name(vlpt_dtype t) { return t == VLPT_F32 ? "f32" : "i32"; }

/* A cursor over untrusted bytes: every take is checked against what is left. */
typedef struct cursor {
    const uint8_t *p;
    size_t left, pos;
} cursor;

static int take(cursor *c, void *dst, size_t n) {
    if (n > c->left) return 0;
    if (dst) memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    c->pos += n;
    return 1;
}

void vlpt_free(vlpt_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    free(f->path);
    free(f);
}

static vlp_err parse_records(vlpt_file *f, cursor *c, const char *what, vlp_error *err) {
    for (int i = 0; i < f->count; i++) {
        vlpt_tensor *t = &f->tensors[i];
        uint16_t name_len;
        uint8_t dtype, ndim;
        VLP_CHECK_FORMAT(take(c, &name_len, 2), err, "%s: truncated at byte %zu (record %d name length)",
                         what, c->pos, i);
        VLP_CHECK_FORMAT(name_len > 0 && name_len <= c->left, err,
                         "%s: record %d at byte %zu: name length %u runs past the end of the file",
                         what, i, c->pos, name_len);
        t->name = malloc((size_t)name_len + 1);
        VLP_CHECK_ALLOC(t->name, err, (size_t)name_len + 1);
        take(c, t->name, name_len);
        t->name[name_len] = '\0';
        VLP_CHECK_FORMAT(memchr(t->name, '\0', name_len) == NULL, err,
                         "%s: record %d: name holds a NUL byte", what, i);
        VLP_CHECK_FORMAT(take(c, &dtype, 1) && take(c, &ndim, 1), err,
                         "%s: tensor '%s': truncated at byte %zu", what, t->name, c->pos);
        VLP_CHECK_FORMAT(dtype == VLPT_F32 || dtype == VLPT_I32, err,
                         "%s: tensor '%s': unknown dtype %u", what, t->name, dtype);
        VLP_CHECK_FORMAT(ndim <= VLPT_MAX_NDIM, err, "%s: tensor '%s': %u dims, at most %d",
                         what, t->name, ndim, VLPT_MAX_NDIM);
        t->dtype = (vlpt_dtype)dtype;
        t->ndim = ndim;
        size_t numel = 1;
        for (int k = 0; k < ndim; k++) {
            uint64_t dim;
            VLP_CHECK_FORMAT(take(c, &dim, 8), err, "%s: tensor '%s': truncated in its shape",
                             what, t->name);
            /* the tensor must fit in the file: this bounds every product below */
            VLP_CHECK_FORMAT(dim <= c->left / 4 && (dim == 0 || numel <= (c->left / 4) / dim),
                             err, "%s: tensor '%s': dim %d = %llu does not fit in the file", what,
                             t->name, k, (unsigned long long)dim);
            t->dims[k] = (int64_t)dim;
            numel *= (size_t)dim;
        }
        uint64_t nbytes;
        VLP_CHECK_FORMAT(take(c, &nbytes, 8), err, "%s: tensor '%s': truncated before its data",
                         what, t->name);
        VLP_CHECK_FORMAT(nbytes == (uint64_t)numel * 4, err,
                         "%s: tensor '%s': header says %llu data bytes, shape needs %zu", what,
                         t->name, (unsigned long long)nbytes, numel * 4);
        VLP_CHECK_FORMAT(nbytes <= c->left, err,
                         "%s: tensor '%s': %llu data bytes at byte %zu, file has %zu left", what,
                         t->name, (unsigned long long)nbytes, c->pos, c->left);
        t->numel = numel;
        size_t alloc = (numel * 4 + 63) / 64 * 64;
        t->data = aligned_alloc(64, alloc ? alloc : 64);
        VLP_CHECK_ALLOC(t->data, err, alloc);
        take(c, t->data, nbytes);
    }
    VLP_CHECK_FORMAT(c->left == 0, err, "%s: %zu unexpected bytes after the last tensor", what,
                     c->left);
    return VLP_OK;
}

vlp_err vlpt_parse(const void *bytes, size_t n, const char *what, vlpt_file **out,
                   vlp_error *err) {
    *out = NULL;
    cursor c = {bytes, n, 0};
    char magic[8];
    uint32_t version, count;
    VLP_CHECK_FORMAT(take(&c, magic, 8) && memcmp(magic, VLPT_MAGIC, 8) == 0, err,
                     "%s: not a vlpt tensor file (bad magic)", what);
    VLP_CHECK_FORMAT(take(&c, &version, 4) && take(&c, &count, 4), err,
                     "%s: truncated header", what);
    VLP_CHECK_FORMAT(version == VLPT_VERSION, err, "%s: version %u, this build reads %u", what,
                     version, VLPT_VERSION);
    /* a record takes at least 2+1+1+1+8 bytes: a count the file cannot hold is a lie */
    VLP_CHECK_FORMAT(count <= c.left / 13, err, "%s: header claims %u tensors in %zu bytes",
                     what, count, c.left);
    vlpt_file *f = calloc(1, sizeof *f);
    VLP_CHECK_ALLOC(f, err, sizeof *f);
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    f->path = strdup(what);
    if (!f->tensors || !f->path) {
        vlpt_free(f);
        VLP_FAIL(err, VLP_ERR_NOMEM, "could not allocate the index of %u tensors", count);
    }
    f->count = (int)count;
    vlp_err e = parse_records(f, &c, what, err);
    if (e != VLP_OK) {
        vlpt_free(f);
        return e;
    }
    *out = f;
    return VLP_OK;
}

vlp_err vlpt_read(const char *path, vlpt_file **out, vlp_error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    vlp_err e = VLP_OK;
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        e = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot seek in %s", path);
    } else if (!(buf = malloc(size ? (size_t)size : 1))) {
        e = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__,
                          "could not allocate %ld bytes to read %s", size, path);
    } else if (fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        e = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "short read of %s", path);
    } else {
        e = vlpt_parse(buf, (size_t)size, path, out, err);
    }
    free(buf);
    fclose(fp);
    return e;
}

int vlpt_count(const vlpt_file *f) { return f->count; }
const vlpt_tensor *vlpt_at(const vlpt_file *f, int i) { return &f->tensors[i]; }

const vlpt_tensor *vlpt_find(const vlpt_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

vlp_err vlpt_get(const vlpt_file *f, const char *name, vlpt_dtype dtype, int ndim,
                 const int64_t *dims, const vlpt_tensor **out, vlp_error *err) {
    const vlpt_tensor *t = vlpt_find(f, name);
    VLP_CHECK_FORMAT(t, err, "%s: no tensor named '%s'", f->path, name);
    VLP_CHECK_FORMAT(t->dtype == dtype, err, "%s: tensor '%s' is %s, expected %s", f->path, name,
                     dtype_name(t->dtype), dtype_name(dtype));
    if (ndim >= 0) {
        int same = t->ndim == ndim;
        for (int k = 0; same && k < ndim; k++) same = t->dims[k] == dims[k];
        if (!same) {
            char have[96], want[96];
            shape_str(have, sizeof have, t->ndim, t->dims);
            shape_str(want, sizeof want, ndim, dims);
            VLP_FAIL(err, VLP_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path,
                     name, have, want);
        }
    }
    *out = t;
    return VLP_OK;
}

vlp_err vlpt_write(const char *path, const vlpt_tensor *ts, int count, vlp_error *err) {
    VLP_CHECK_ARG(count >= 0, err, "negative tensor count %d", count);
    /* check every record before creating anything, so a bad one is named as such */
    for (int i = 0; i < count; i++) {
        size_t nl = ts[i].name ? strlen(ts[i].name) : 0;
        VLP_CHECK_ARG(nl > 0 && nl <= UINT16_MAX, err, "%s: tensor %d has a name of %zu bytes",
                      path, i, nl);
        VLP_CHECK_ARG(ts[i].ndim >= 0 && ts[i].ndim <= VLPT_MAX_NDIM, err,
                      "%s: tensor '%s' has %d dims, at most %d", path, ts[i].name, ts[i].ndim,
                      VLPT_MAX_NDIM);
    }
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    uint32_t version = VLPT_VERSION, n = (uint32_t)count;
    atomic_write(&af, VLPT_MAGIC, 8), atomic_write(&af, &version, 4), atomic_write(&af, &n, 4);
    for (int i = 0; i < count; i++) {
        const vlpt_tensor *t = &ts[i];
        size_t nl = strlen(t->name);
        uint16_t name_len = (uint16_t)nl;
        uint8_t dtype = (uint8_t)t->dtype, ndim = (uint8_t)t->ndim;
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= (uint64_t)t->dims[k];
        uint64_t nbytes = numel * 4;
        atomic_write(&af, &name_len, 2), atomic_write(&af, t->name, nl);
        atomic_write(&af, &dtype, 1), atomic_write(&af, &ndim, 1);
        for (int k = 0; k < t->ndim; k++) {
            uint64_t d = (uint64_t)t->dims[k];
            atomic_write(&af, &d, 8);
        }
        atomic_write(&af, &nbytes, 8), atomic_write(&af, t->data, (size_t)nbytes);
    }
    return atomic_commit(&af, err);
}
