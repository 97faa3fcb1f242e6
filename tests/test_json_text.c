/* Text into the JSON vlp writes (io/json_text.h): UTF-8 checked and
 * repaired, and a document's first failure kept and reported when it is
 * written, never a field that vanishes (issue 31: jansson's json_string()
 * gives NULL for bytes that are not UTF-8, and the unchecked setters dropped
 * the field). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "io/json_text.h"
#include "io/safetensors.h"

static void test_utf8(void **state) {
    assert_true(utf8_valid("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80"));
    static const char *const bad[] = {"caf\xe9", "\xc0\xaf" /* overlong */, "\xed\xa0\x80" /* surrogate */,
                                      "\xf4\x90\x80\x80" /* above U+10FFFF */, "\xe6\x97" /* cut */};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) assert_false(utf8_valid(bad[k]));
    char *r = utf8_repaired("caf\xe9!");
    assert_string_equal(r, "caf\xef\xbf\xbd!");
    free(r);
}

static void test_doc_writes_every_field(void **state) {
    json_doc d = json_doc_new();
    json_t *arr = jd_array(&d);
    jd_text(&d, d.root, "caption", "caf\xe9");
    jd_exact(&d, d.root, "path", "/a/b.tsv");
    jd_put(&d, d.root, "n", json_integer(3));
    jd_append(&d, arr, json_integer(1));
    jd_put(&d, d.root, "list", arr);
    vlp_error err = {0};
    char *text = json_doc_dumps(&d, JSON_PRESERVE_ORDER | JSON_COMPACT, "r.json", &err);
    assert_non_null(text);
    assert_string_equal(text, "{\"caption\":\"caf\xef\xbf\xbd\",\"path\":\"/a/b.tsv\",\"n\":3,\"list\":[1]}");
    free(text);
    json_doc_free(&d);
}

/* the first failure is kept, later calls do nothing, and the dump says which field */
static void test_doc_keeps_first_failure(void **state) {
    json_doc d = json_doc_new();
    jd_put(&d, d.root, "a", json_integer(1));
    jd_exact(&d, d.root, "class", "caf\xe9");
    jd_put(&d, d.root, "caf\xe9", json_integer(2)); /* a second failure: not the one reported */
    jd_put(&d, d.root, "b", json_integer(3));
    vlp_error err = {0};
    assert_null(json_doc_dumps(&d, 0, "r.json", &err));
    assert_int_equal(err.code, VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "r.json: the field \"class\" would hold 'caf\xe9', which is not UTF-8"));
    json_doc_free(&d);
    d = json_doc_new();
    jd_put(&d, d.root, "caf\xe9", json_integer(2));
    assert_null(json_doc_dumps(&d, 0, "r.json", &err));
    assert_non_null(strstr(err.message, "has a name 'caf\xe9', which is not UTF-8"));
    json_doc_free(&d);
    d = json_doc_new();
    jd_put(&d, d.root, "x", NULL); /* what json_string gives for such text */
    assert_null(json_doc_dumps(&d, 0, "r.json", &err));
    assert_int_equal(err.code, VLP_ERR_NOMEM);
    json_doc_free(&d);
}

/* a tensor named with bytes that are not UTF-8 was written with no header
 * entry (its bytes under no name); it is refused, named */
static void test_safetensors_name_not_utf8(void **state) {
    char path[] = "/tmp/vlp-json-text-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    float x[2] = {1, 2};
    st_tensor t[2] = {{.name = "ok", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = x},
                      {.name = "w\xe9", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = x}};
    vlp_error err = {0};
    assert_int_equal(st_write(path, t, 2, NULL, 0, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "has a name 'w\xe9', which is not UTF-8"));
    st_meta m = {"init", "a caf\xe9"};
    assert_int_equal(st_write(path, t, 1, &m, 1, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "the field \"init\" would hold 'a caf\xe9'"));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_doc_writes_every_field),
        cmocka_unit_test(test_doc_keeps_first_failure),
        cmocka_unit_test(test_safetensors_name_not_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
