/* The vlpt reader is fed untrusted files: every malformed input must give a
 * clear VLP_ERR_FORMAT naming the file, never a crash or a huge allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include "testutil.h"
#include "io/tensorfile.h"

static char tmpdir[] = "/tmp/vlp_test_tensorfile_XXXXXX";

static int setup(void **state) { return mkdtemp(tmpdir) ? 0 : -1; }
static int teardown(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* A valid file in memory: two tensors, written by vlpt_write and read back. */
static unsigned char *valid_file(size_t *n) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[3] = {7, -8, 9};
    vlpt_tensor ts[2] = {
        {.name = "alpha", .dtype = VLPT_F32, .ndim = 2, .dims = {2, 3}, .data = a},
        {.name = "beta.ids", .dtype = VLPT_I32, .ndim = 1, .dims = {3}, .data = b},
    };
    char path[256];
    snprintf(path, sizeof path, "%s/valid.vlpt", tmpdir);
    vlp_error err = {0};
    assert_int_equal(vlpt_write(path, ts, 2, &err), VLP_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(*n);
    assert_int_equal(fread(buf, 1, *n, fp), *n);
    fclose(fp);
    return buf;
}

static void test_roundtrip(void **state) {
    size_t n;
    free(valid_file(&n));
    char path[256];
    snprintf(path, sizeof path, "%s/valid.vlpt", tmpdir);
    vlpt_file *f = NULL;
    vlp_error err = {0};
    assert_int_equal(vlpt_read(path, &f, &err), VLP_OK);
    assert_int_equal(vlpt_count(f), 2);
    const vlpt_tensor *t = NULL;
    int64_t dims[2] = {2, 3};
    assert_int_equal(vlpt_get(f, "alpha", VLPT_F32, 2, dims, &t, &err), VLP_OK);
    assert_int_equal(t->numel, 6);
    assert_true(((const float *)t->data)[5] == 6.0f);
    assert_int_equal(vlpt_get(f, "beta.ids", VLPT_I32, -1, NULL, &t, &err), VLP_OK);
    assert_int_equal(((const int32_t *)t->data)[1], -8);
    /* asking for the wrong shape or dtype names the tensor */
    int64_t wrong[2] = {3, 2};
    assert_int_equal(vlpt_get(f, "alpha", VLPT_F32, 2, wrong, &t, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'alpha' has shape [2, 3], expected [3, 2]"));
    assert_int_equal(vlpt_get(f, "alpha", VLPT_I32, -1, NULL, &t, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "is f32, expected i32"));
    assert_int_equal(vlpt_get(f, "gamma", VLPT_F32, -1, NULL, &t, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "no tensor named 'gamma'"));
    vlpt_free(f);
}

static void test_every_truncation_fails_cleanly(void **state) {
    size_t n;
    unsigned char *buf = valid_file(&n);
    for (size_t len = 0; len < n; len++) {
        vlpt_file *f = (vlpt_file *)0x1;
        vlp_error err = {0};
        vlp_err e = vlpt_parse(buf, len, "cut.vlpt", &f, &err);
        if (e != VLP_ERR_FORMAT) fail_msg("prefix of %zu/%zu bytes: got %s", len, n, vlp_strerror(e));
        assert_null(f);
        assert_non_null(strstr(err.message, "cut.vlpt"));
    }
    free(buf);
}

static void test_every_byte_flip_is_safe(void **state) {
    /* flipping any one byte may leave a valid file (data bytes) or give an
     * error, never a crash or sanitizer report */
    size_t n;
    unsigned char *buf = valid_file(&n);
    int rejected = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *bad = malloc(n);
        memcpy(bad, buf, n);
        bad[i] ^= 0xA5;
        vlpt_file *f = NULL;
        vlp_err e = vlpt_parse(bad, n, "flip.vlpt", &f, NULL);
        if (e == VLP_OK) vlpt_free(f);
        else rejected++;
        free(bad);
    }
    assert_true(rejected >= 16 + 8); /* at least every header byte */
    free(buf);
}

static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static void test_lying_headers(void **state) {
    size_t n;
    unsigned char *buf = valid_file(&n);
    vlp_error err = {0};
    vlpt_file *f = NULL;
    /* layout of the first record: 16 header, u16 name_len(5), "alpha", dtype, ndim, 2×u64 dims */
    const size_t dim0 = 16 + 2 + 5 + 2, nbytes = dim0 + 16;
    unsigned char *bad = malloc(n);

    memcpy(bad, buf, n);
    memcpy(bad, "NOTVLPT", 8);
    assert_int_equal(vlpt_parse(bad, n, "m.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "bad magic"));

    memcpy(bad, buf, n);
    bad[8] = 2; /* version */
    assert_int_equal(vlpt_parse(bad, n, "v.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "version 2"));

    memcpy(bad, buf, n);
    memset(bad + 12, 0xff, 4); /* 4 billion tensors */
    assert_int_equal(vlpt_parse(bad, n, "c.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "claims 4294967295 tensors"));

    memcpy(bad, buf, n);
    put_u64(bad + dim0, 1ull << 63); /* a dim of 2^63 */
    assert_int_equal(vlpt_parse(bad, n, "d.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'alpha': dim 0"));

    memcpy(bad, buf, n);
    put_u64(bad + dim0, 1ull << 31); /* dims whose product overflows nothing but the file */
    put_u64(bad + dim0 + 8, 1ull << 33);
    assert_int_equal(vlpt_parse(bad, n, "p.vlpt", &f, &err), VLP_ERR_FORMAT);

    memcpy(bad, buf, n);
    put_u64(bad + nbytes, (1ull << 63) + 24); /* data size disagreeing with the shape */
    assert_int_equal(vlpt_parse(bad, n, "n.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "shape needs 24"));

    unsigned char *longer = malloc(n + 3);
    memcpy(longer, buf, n);
    memset(longer + n, 0, 3);
    assert_int_equal(vlpt_parse(longer, n + 3, "t.vlpt", &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "3 unexpected bytes"));
    free(longer);
    free(bad);
    free(buf);
}

static void test_io_errors(void **state) {
    vlpt_file *f = NULL;
    vlp_error err = {0};
    assert_int_equal(vlpt_read("/nonexistent/dir/x.vlpt", &f, &err), VLP_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/dir/x.vlpt"));
    assert_non_null(strstr(err.where, "src/io/tensorfile.c:"));
    float a = 1;
    vlpt_tensor t = {.name = "a", .dtype = VLPT_F32, .ndim = 1, .dims = {1}, .data = &a};
    assert_int_equal(vlpt_write("/nonexistent/dir/x.vlpt", &t, 1, &err), VLP_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/dir/x.vlpt"));
    vlpt_tensor unnamed = t;
    unnamed.name = "";
    assert_int_equal(vlpt_write("/tmp/never.vlpt", &unnamed, 1, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "tensor 0 has a name of 0 bytes"));
    /* writing over an existing file replaces it and leaves no temp file */
    char path[256];
    snprintf(path, sizeof path, "%s/twice.vlpt", tmpdir);
    assert_int_equal(vlpt_write(path, &t, 1, &err), VLP_OK);
    a = 2;
    assert_int_equal(vlpt_write(path, &t, 1, &err), VLP_OK);
    assert_int_equal(vlpt_read(path, &f, &err), VLP_OK);
    assert_true(((const float *)vlpt_at(f, 0)->data)[0] == 2.0f);
    vlpt_free(f);
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) fail_msg("temp file %s left behind", e->d_name);
    closedir(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_every_truncation_fails_cleanly),
        cmocka_unit_test(test_every_byte_flip_is_safe),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_io_errors),
    };
    return cmocka_run_group_tests_name("tensorfile", tests, setup, teardown);
}
