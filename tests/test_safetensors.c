/* safetensors: round trip of every dtype and the metadata, byte layout as
 * the spec says (u64 header length, 8-aligned data), and hostile files —
 * truncated, lying header lengths, offsets out of range or overlapping,
 * shapes that overflow, unknown dtypes — rejected with the tensor named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "io/safetensors.h"

static char g_dir[64];

static const char *tmp_path(const char *name) {
    static char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vlp-st-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_round_trip(void **state) {
    float f[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    uint16_t bf[3] = {0x3f80, 0xc000, 0x4049}; /* 1, -2, 3.140625 */
    uint16_t hf[4] = {0x3c00, 0xc000, 0x0001, 0x7bff}; /* 1, -2, 2^-24, 65504 */
    int64_t i64[2] = {-5, 1LL << 40};
    st_tensor ts[] = {
        {.name = "a.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = f},
        {.name = "b", .dtype = ST_BF16, .ndim = 1, .shape = {3}, .data = bf},
        {.name = "h", .dtype = ST_F16, .ndim = 1, .shape = {4}, .data = hf},
        {.name = "scalar", .dtype = ST_F32, .ndim = 0, .data = f},
        {.name = "count", .dtype = ST_I64, .ndim = 1, .shape = {2}, .data = i64},
    };
    st_meta meta[] = {{"format", "pt"}, {"note", "a \"quoted\" value"}};
    vlp_error err = {0};
    const char *path = tmp_path("rt.safetensors");
    assert_int_equal(st_write(path, ts, 5, meta, 2, &err), VLP_OK);

    FILE *fp = fopen(path, "rb");
    uint64_t hlen;
    assert_int_equal(fread(&hlen, 8, 1, fp), 1);
    fclose(fp);
    assert_int_equal(hlen % 8, 0);

    st_file *sf;
    assert_int_equal(st_open(path, &sf, &err), VLP_OK);
    assert_int_equal(st_count(sf), 5);
    assert_string_equal(st_meta_get(sf, "note"), "a \"quoted\" value");
    assert_null(st_meta_get(sf, "absent"));
    const st_tensor *a = st_find(sf, "a.weight");
    assert_non_null(a);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    float got[6];
    assert_int_equal(st_read_f32(sf, a, got, &err), VLP_OK);
    assert_memory_equal(got, f, sizeof f);
    assert_int_equal(st_read_f32(sf, st_find(sf, "b"), got, &err), VLP_OK);
    assert_true(got[0] == 1.0f && got[1] == -2.0f && got[2] == 3.140625f);
    assert_int_equal(st_read_f32(sf, st_find(sf, "h"), got, &err), VLP_OK);
    assert_true(got[0] == 1.0f && got[1] == -2.0f && got[2] == 0x1p-24f && got[3] == 65504.0f);
    assert_int_equal(st_find(sf, "scalar")->numel, 1);
    const st_tensor *c = st_find(sf, "count");
    assert_int_equal(c->dtype, ST_I64);
    assert_memory_equal(c->data, i64, sizeof i64);
    assert_int_equal(st_read_f32(sf, c, got, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "count"));
    st_close(sf);
}

/* Writes an 8-byte length then the header text then `data` bytes of zeros. */
static const char *hostile(const char *name, uint64_t hlen_override, const char *header,
                           size_t data) {
    const char *path = tmp_path(name);
    FILE *fp = fopen(path, "wb");
    uint64_t hlen = hlen_override ? hlen_override : strlen(header);
    fwrite(&hlen, 8, 1, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < data; i++) fputc(0, fp);
    fclose(fp);
    return path;
}

static void expect_reject(const char *path, vlp_err code, const char *needle) {
    st_file *sf = NULL;
    vlp_error err = {0};
    vlp_err rc = st_open(path, &sf, &err);
    if (rc != code || !strstr(err.message, needle))
        fail_msg("%s: got code %d '%s', wanted %d mentioning '%s'", path, rc, err.message, code, needle);
    assert_null(sf);
}

static void test_hostile_files(void **state) {
    expect_reject(hostile("short", 0, "", 0), VLP_ERR_FORMAT, "{"); /* 8 bytes, empty header */
    FILE *fp = fopen(tmp_path("tiny"), "wb");
    fputs("abc", fp);
    fclose(fp);
    expect_reject(tmp_path("tiny"), VLP_ERR_FORMAT, "too short");
    expect_reject(hostile("huge", 1ull << 63, "{}", 0), VLP_ERR_FORMAT, "header length");
    expect_reject(hostile("json", 0, "{\"a\": [1,", 0), VLP_ERR_FORMAT, "header JSON");
    expect_reject(hostile("notobj", 0, "[1, 2]", 0), VLP_ERR_FORMAT, "not a JSON object");
    expect_reject(hostile("dtype", 0, "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
                  VLP_ERR_UNSUPPORTED, "'w'");
    expect_reject(hostile("past", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8),
                  VLP_ERR_FORMAT, "'w'");
    expect_reject(hostile("mismatch", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16),
                  VLP_ERR_FORMAT, "shape and dtype say");
    expect_reject(hostile("overflow", 0,
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,16],\"data_offsets\":[0,0]}}", 0),
                  VLP_ERR_FORMAT, "does not fit");
    /* every dim is bounded on its own, after a zero dim too */
    expect_reject(hostile("wide", 0,
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0),
                  VLP_ERR_FORMAT, "dim 0 is 4294967296, above 2^31 - 1");
    expect_reject(hostile("zero-then-wide", 0,
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,3,9223372036854775807],\"data_offsets\":[0,0]}}", 0),
                  VLP_ERR_FORMAT, "dim 2 is 9223372036854775807");
    expect_reject(hostile("negative", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                  VLP_ERR_FORMAT, "dim 0");
    expect_reject(hostile("overlap", 0,
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
                  VLP_ERR_FORMAT, "overlap");
    expect_reject(hostile("dup", 0,
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                  VLP_ERR_FORMAT, "header JSON");
    expect_reject(hostile("offsets", 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8),
                  VLP_ERR_FORMAT, "bad data_offsets");
    expect_reject(tmp_path("does-not-exist"), VLP_ERR_IO, "cannot open");
}

/* Every truncation of a valid file is rejected (or, cut in the data, caught
 * by the offsets check) without a crash. */
static void test_truncations(void **state) {
    float f[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    st_tensor ts[] = {{.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {8}, .data = f}};
    vlp_error err;
    const char *path = tmp_path("full.safetensors");
    assert_int_equal(st_write(path, ts, 1, NULL, 0, &err), VLP_OK);
    FILE *fp = fopen(path, "rb");
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    for (size_t cut = 0; cut < n; cut++) {
        const char *p = tmp_path("cut.safetensors");
        fp = fopen(p, "wb");
        fwrite(buf, 1, cut, fp);
        fclose(fp);
        st_file *sf = NULL;
        vlp_err rc = st_open(p, &sf, &err);
        if (rc == VLP_OK) fail_msg("a file cut to %zu of %zu bytes was accepted", cut, n);
        assert_null(sf);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup, teardown);
}
