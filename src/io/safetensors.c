#include "io/safetensors.h"
#include "io/json_text.h"
#include "core/error.h"
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} DTYPES[] = {[ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
              [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8}, [ST_I32] = {"I32", 4},
              [ST_I8] = {"I8", 1}};
#define NDTYPES (int)(sizeof DTYPES / sizeof DTYPES[0])

size_t st_dtype_size(st_dtype t) { return DTYPES[t].size; }
const char *st_dtype_name(st_dtype t) { return DTYPES[t].name; }

/* ---- writer ---------------------------------------------------------------------------- */

vlp_err st_write(const char *path, const st_tensor *ts, int count, const st_meta *meta, int nmeta,
                 vlp_error *err) {
    json_doc doc = json_doc_new();
    json_t *hdr = doc.root;
    if (nmeta > 0) {
        json_t *m = jd_object(&doc);
        for (int i = 0; i < nmeta; i++) jd_exact(&doc, m, meta[i].key, meta[i].value);
        jd_put(&doc, hdr, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < count; i++) {
        const st_tensor *t = &ts[i];
        if (!t->name || !*t->name || t->ndim < 0 || t->ndim > ST_MAX_NDIM || json_object_get(hdr, t->name)) {
            json_doc_free(&doc);
            VLP_FAIL(err, VLP_ERR_ARG, "%s: tensor %d ('%s') has no name, a bad rank or a duplicate name",
                     path, i, t->name ? t->name : "");
        }
        json_t *shape = jd_array(&doc);
        size_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            jd_append(&doc, shape, json_integer(t->shape[k]));
            numel *= (size_t)t->shape[k];
        }
        uint64_t bytes = numel * DTYPES[t->dtype].size;
        /* a name that is not UTF-8 is refused (jd_put): its bytes would be written under no name */
        jd_put(&doc, hdr, t->name,
               shape ? json_pack("{s:s, s:o, s:[I,I]}", "dtype", DTYPES[t->dtype].name, "shape", shape,
                                 "data_offsets", (json_int_t)off, (json_int_t)(off + bytes))
                     : NULL);
        off += bytes;
    }
    char *text = json_doc_dumps(&doc, JSON_PRESERVE_ORDER | JSON_COMPACT, path, err);
    json_doc_free(&doc);
    if (!text) return doc.rc;
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8; /* data starts 8-byte aligned */
    uint64_t hlen = padded;
    atomic_file af;
    vlp_err rc = atomic_open(&af, path, err);
    if (rc != VLP_OK) {
        free(text);
        return rc;
    }
    atomic_write(&af, &hlen, 8);
    atomic_write(&af, text, tl);
    atomic_write(&af, "        ", padded - tl);
    free(text);
    for (int i = 0; i < count; i++) {
        size_t numel = 1;
        for (int k = 0; k < ts[i].ndim; k++) numel *= (size_t)ts[i].shape[k];
        atomic_write(&af, ts[i].data, numel * DTYPES[ts[i].dtype].size);
    }
    return atomic_commit(&af, err);
}

/* ---- reader ---------------------------------------------------------------------------- */

struct st_file {
    char *path;
    void *map;
    size_t map_len;
    const uint8_t *data; // start of the data section
    int count;
    st_tensor *tensors;
    json_t *meta; // the __metadata__ object (owned)
};

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_len);
    json_decref(f->meta);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }
int st_count(const st_file *f) { return f->count; }
const st_tensor *st_at(const st_file *f, int i) { return i >= 0 && i < f->count ? &f->tensors[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    json_t *v = f->meta ? json_object_get(f->meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int by_begin(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* One header entry → tensor i; every number checked against the data section. */
static vlp_err parse_entry(st_file *f, int i, const char *name, json_t *e, uint64_t data_len,
                           span *sp, vlp_error *err) {
    st_tensor *t = &f->tensors[i];
    t->name = strdup(name);
    VLP_CHECK_ALLOC(t->name, err, strlen(name) + 1);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    VLP_CHECK_FORMAT(json_is_object(e) && json_is_string(dt) && json_is_array(shape) &&
                         json_is_array(offs) && json_array_size(offs) == 2,
                     err, "%s: tensor '%s': header entry needs dtype, shape and data_offsets[2]",
                     f->path, name);
    int d = 0;
    while (d < NDTYPES && strcmp(DTYPES[d].name, json_string_value(dt))) d++;
    VLP_CHECK(d < NDTYPES, err, VLP_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported",
              f->path, name, json_string_value(dt));
    t->dtype = (st_dtype)d;
    size_t nd = json_array_size(shape);
    VLP_CHECK_FORMAT(nd <= ST_MAX_NDIM, err, "%s: tensor '%s': %zu dims, at most %d", f->path,
                     name, nd, ST_MAX_NDIM);
    t->ndim = (int)nd;
    uint64_t numel = 1, esz = DTYPES[d].size;
    for (size_t k = 0; k < nd; k++) {
        json_t *v = json_array_get(shape, k);
        VLP_CHECK_FORMAT(json_is_integer(v) && json_integer_value(v) >= 0, err,
                         "%s: tensor '%s': dim %zu is not a non-negative integer", f->path, name, k);
        uint64_t dim = (uint64_t)json_integer_value(v);
        /* every dim on its own: after a zero dim the product bounds nothing,
         * and readers multiply dims in int */
        VLP_CHECK_FORMAT(dim <= INT32_MAX, err, "%s: tensor '%s': dim %zu is %llu, above 2^31 - 1",
                         f->path, name, k, (unsigned long long)dim);
        /* bounded by the data section, so the products cannot overflow */
        VLP_CHECK_FORMAT(dim == 0 || numel <= data_len / esz / dim, err,
                         "%s: tensor '%s': shape does not fit in the file's %llu data bytes",
                         f->path, name, (unsigned long long)data_len);
        t->shape[k] = (int64_t)dim;
        numel *= dim;
    }
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    VLP_CHECK_FORMAT(json_is_integer(b) && json_is_integer(en) && json_integer_value(b) >= 0 &&
                         json_integer_value(en) >= json_integer_value(b),
                     err, "%s: tensor '%s': bad data_offsets", f->path, name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
    VLP_CHECK_FORMAT(end <= data_len, err,
                     "%s: tensor '%s': data_offsets [%llu, %llu) run past the %llu data bytes",
                     f->path, name, (unsigned long long)begin, (unsigned long long)end,
                     (unsigned long long)data_len);
    VLP_CHECK_FORMAT(end - begin == numel * esz, err,
                     "%s: tensor '%s': %llu bytes at data_offsets, shape and dtype say %llu",
                     f->path, name, (unsigned long long)(end - begin),
                     (unsigned long long)(numel * esz));
    t->numel = (size_t)numel;
    t->data = f->data + begin;
    *sp = (span){begin, end, i};
    return VLP_OK;
}

static vlp_err parse_header(st_file *f, const char *text, size_t len, uint64_t data_len,
                            vlp_error *err) {
    json_error_t je;
    json_t *hdr = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    VLP_CHECK_FORMAT(hdr, err, "%s: header JSON, line %d column %d: %s", f->path, je.line,
                     je.column, je.text);
    vlp_err rc = VLP_OK;
    span *spans = NULL;
    if (!json_is_object(hdr)) {
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: header is not a JSON object", f->path);
        goto done;
    }
    size_t n = json_object_size(hdr);
    f->tensors = calloc(n ? n : 1, sizeof(st_tensor));
    spans = calloc(n ? n : 1, sizeof(span));
    if (!f->tensors || !spans) {
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "header of %zu entries", n);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                                   "%s: __metadata__ is not an object", f->path);
                goto done;
            }
            f->meta = json_incref(val);
            continue;
        }
        rc = parse_entry(f, f->count, key, val, data_len, &spans[f->count], err);
        f->count++; /* counted even on failure, so st_close frees the name */
        if (rc != VLP_OK) goto done;
    }
    qsort(spans, (size_t)f->count, sizeof(span), by_begin);
    int reach = -1; /* the non-empty span reaching furthest so far */
    for (int i = 0; i < f->count; i++) {
        if (spans[i].end == spans[i].begin) continue;
        if (reach >= 0 && spans[i].begin < spans[reach].end) {
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                               f->tensors[spans[reach].index].name, f->tensors[spans[i].index].name);
            goto done;
        }
        if (reach < 0 || spans[i].end > spans[reach].end) reach = i;
    }
done:
    free(spans);
    json_decref(hdr);
    return rc;
}

vlp_err st_open(const char *path, st_file **out, vlp_error *err) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    VLP_CHECK_ALLOC(f, err, sizeof *f);
    f->path = strdup(path);
    vlp_err rc = VLP_OK;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (!f->path) {
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "path");
        goto fail;
    }
    if (fd < 0 || fstat(fd, &sb) != 0) {
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__,
                           "%s is a directory, not a .safetensors file (a run's model is RUN/latest.safetensors)", path);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "%s is not a regular file", path);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s: %zu bytes, too short for a safetensors file", path, size);
        goto fail;
    }
    f->map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    f->map_len = size;
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    /* a safetensors file: 8 bytes of header length, then the JSON header "{...";
     * a length that does not fit is told apart: another kind of file, a cut
     * one, or a header above the limit */
    bool fits = hlen <= size - 8 && hlen <= ST_MAX_HEADER;
    if (!fits && (size == 8 || ((const char *)f->map)[8] != '{')) {
        char head[17];
        size_t k = 0;
        for (; k < 16 && k < size; k++) {
            unsigned char c = ((const unsigned char *)f->map)[k];
            head[k] = c >= 0x20 && c < 0x7f ? (char)c : '.';
        }
        head[k] = '\0';
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s is not a safetensors file: it does not begin with a header length and a JSON "
                           "header '{...' (its first bytes: \"%s\")", path, head);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s: header length %llu exceeds vlp's limit of %u bytes", path, (unsigned long long)hlen,
                           ST_MAX_HEADER);
        goto fail;
    }
    if (!fits) {
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s is cut short: its header takes %llu bytes, the file has %zu after the length", path,
                           (unsigned long long)hlen, size - 8);
        goto fail;
    }
    f->data = (const uint8_t *)f->map + 8 + hlen;
    rc = parse_header(f, (const char *)f->map + 8, (size_t)hlen, size - 8 - hlen, err);
    if (rc != VLP_OK) goto fail;
    close(fd);
    *out = f;
    return VLP_OK;
fail:
    if (fd >= 0) close(fd);
    st_close(f);
    return rc;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else { /* subnormal: value = man · 2^-24 */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

vlp_err st_read_f32(const st_file *f, const st_tensor *t, float *dst, vlp_error *err) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, p, t->numel * 4); return VLP_OK;
    case ST_F16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return VLP_OK;
    case ST_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return VLP_OK;
    default:
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: tensor '%s' is %s, not a floating type", f->path,
                 t->name, DTYPES[t->dtype].name);
    }
}
