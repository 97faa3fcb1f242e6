#include "io/npy.h"
#include "core/error.h"
#include "io/atomic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the header of a (rows, cols) float32 matrix, data 64-byte aligned */
static void write_header(atomic_file *af, int64_t rows, int64_t cols) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)rows, (long long)cols);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64; /* data 64-byte aligned, header ends in \n */
    memset(hdr + n, ' ', (size_t)pad);
    hdr[n + pad] = '\n';
    uint16_t hlen = (uint16_t)(n + pad + 1);
    atomic_write(af, "\x93NUMPY\x01\x00", 8);
    atomic_write(af, &hlen, 2);
    atomic_write(af, hdr, hlen);
}

vlp_err npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, vlp_error *err) {
    VLP_CHECK_ARG(rows >= 0 && cols >= 0, err, "npy: shape (%lld, %lld)", (long long)rows, (long long)cols);
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    write_header(&af, rows, cols);
    atomic_write(&af, data, sizeof(float) * (size_t)rows * (size_t)cols);
    return atomic_commit(&af, err);
}

vlp_err npy_write_f32_stream(const char *path, FILE *raw, int64_t rows, int64_t cols, vlp_error *err) {
    VLP_CHECK_ARG(rows >= 0 && cols >= 0, err, "npy: shape (%lld, %lld)", (long long)rows, (long long)cols);
    VLP_CHECK_IO(fseeko(raw, 0, SEEK_SET) == 0, err, "%s: cannot read back its values: %s", path, strerror(errno));
    atomic_file af;
    VLP_TRY(atomic_open(&af, path, err));
    write_header(&af, rows, cols);
    char buf[65536];
    uint64_t left = sizeof(float) * (uint64_t)rows * (uint64_t)cols;
    while (left) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, want, raw) != want) {
            atomic_abort(&af);
            VLP_FAIL(err, VLP_ERR_IO, "%s: its values could not be read back (%llu bytes short)", path,
                     (unsigned long long)left);
        }
        atomic_write(&af, buf, want);
        left -= want;
    }
    return atomic_commit(&af, err);
}

vlp_err npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols, vlp_error *err) {
    *data = NULL;
    FILE *fp = fopen(path, "rb");
    VLP_CHECK_IO(fp, err, "cannot open %s: %s", path, strerror(errno));
    uint8_t pre[10];
    char hdr[4096];
    vlp_err rc = VLP_OK;
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) {
        fclose(fp);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: not a version-1 .npy file", path);
    }
    uint16_t hlen = (uint16_t)(pre[8] | pre[9] << 8);
    if (hlen >= sizeof hdr || fread(hdr, 1, hlen, fp) != hlen) {
        fclose(fp);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: header of %u bytes truncated or too long", path, hlen);
    }
    hdr[hlen] = '\0';
    long long r = -1, c = -1;
    const char *shape = strstr(hdr, "'shape': (");
    if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False") || !shape ||
        sscanf(shape, "'shape': (%lld, %lld)", &r, &c) != 2 || r < 0 || c <= 0 || r > (1LL << 40) / c) {
        fclose(fp);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: expected a C-order float32 matrix, header %s", path, hdr);
    }
    size_t n = (size_t)(r * c);
    /* the file must hold what the header claims before anything is allocated
     * for it: a 128-byte file may claim billions of rows */
    long at = ftell(fp);
    long long have = -1;
    if (at >= 0 && fseek(fp, 0, SEEK_END) == 0) have = (long long)ftell(fp) - at;
    if (have != (long long)(sizeof(float) * n) || fseek(fp, at, SEEK_SET) != 0) {
        fclose(fp);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: the header claims %lld x %lld floats (%lld bytes), the "
                 "file holds %lld bytes of data", path, r, c, (long long)(sizeof(float) * n), have);
    }
    float *d = malloc(sizeof(float) * (n ? n : 1));
    if (!d) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: %lld x %lld floats", path, r, c);
    else if (fread(d, sizeof(float), n, fp) != n || fgetc(fp) != EOF)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: data is not %lld x %lld floats", path, r, c);
    fclose(fp);
    if (rc != VLP_OK) {
        free(d);
        return rc;
    }
    *data = d, *rows = r, *cols = c;
    return VLP_OK;
}
