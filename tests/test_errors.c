/* The error contract: a failing call returns a code, names the file:line of
 * the check and explains itself; passing NULL for the record is allowed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/error.h"
#include "ops/ops.h"
#include "loss/loss.h"
#include "model/block.h"

static vlp_err checked_shape(int C, int NH, vlp_error *err) {
    VLP_CHECK_SHAPE(C % NH == 0, err, "width %d, heads %d", C, NH);
    return VLP_OK;
}

static vlp_err propagates(vlp_error *err) {
    VLP_TRY(checked_shape(10, 3, err));
    fail_msg("VLP_TRY did not return");
    return VLP_OK;
}

static void test_macros(void **state) {
    vlp_error err = {0};
    assert_int_equal(checked_shape(12, 3, &err), VLP_OK);
    assert_int_equal(propagates(&err), VLP_ERR_SHAPE);
    assert_int_equal(err.code, VLP_ERR_SHAPE);
    assert_string_equal(err.message, "width 10, heads 3");
    assert_non_null(strstr(err.where, "test_errors.c:"));
    char buf[600];
    /* the user's line is the message alone; the developer's has where and the kind */
    assert_string_equal(vlp_error_format(&err, buf, sizeof buf), "width 10, heads 3");
    vlp_error_format_debug(&err, buf, sizeof buf);
    assert_non_null(strstr(buf, "test_errors.c:"));
    assert_non_null(strstr(buf, ": bad shape: width 10, heads 3"));
    assert_int_equal(checked_shape(10, 3, NULL), VLP_ERR_SHAPE); /* NULL record is fine */
    assert_string_equal(vlp_strerror(VLP_ERR_NOMEM), "out of memory");
    assert_string_equal(vlp_strerror((vlp_err)999), "unknown error");
    assert_non_null(strstr(vlp_error_hint(VLP_ERR_IO), "path"));
}

static vlp_err alloc_huge(void **out, vlp_error *err) {
    size_t huge = (size_t)1 << 62;
    void *p = malloc(huge); /* refused by glibc, and by ASan with allocator_may_return_null */
    VLP_CHECK_ALLOC(p, err, huge);
    *out = p;
    return VLP_OK;
}

static void test_alloc_check(void **state) {
    vlp_error err = {0};
    void *p = NULL;
    assert_int_equal(alloc_huge(&p, &err), VLP_ERR_NOMEM);
    assert_null(p);
    assert_string_equal(err.message, "could not allocate 4611686018427387904 bytes");
    char buf[600];
    assert_string_equal(vlp_error_format(&err, buf, sizeof buf),
                        "out of memory: could not allocate 4611686018427387904 bytes (hint: reduce the batch size "
                        "or the model size, or free memory)");
}

static void test_op_preconditions(void **state) {
    vlp_error err = {0};
    float x[64] = {0};
    assert_int_equal(attention_forward(NULL, x, x, x, 1, 2, 10, 3, false, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "width 10 is not divisible by 3 heads"));
    assert_non_null(strstr(err.where, "src/ops/attention.c:"));

    int32_t ids[4] = {0, 5, 2, -1};
    float wte[5 * 2] = {0}, out[8];
    assert_int_equal(embedding_forward(out, ids, wte, NULL, 2, 2, 2, 5, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "token id 5 at sequence 0 position 1"));
    /* one more row past the vocabulary ([MASK]): id 5 reads it, id 6 is still refused, and its gradient lands there */
    float extra[2] = {7, 8}, dextra[2] = {0}, dwte[5 * 2] = {0}, dout[8] = {1, 1, 2, 2, 3, 3, 4, 4};
    int32_t ids2[4] = {0, 5, 2, 5};
    assert_int_equal(embedding_forward_extra(out, ids2, wte, NULL, extra, 2, 2, 2, 5, &err), VLP_OK);
    assert_true(out[2] == 7 && out[3] == 8 && out[6] == 7);
    embedding_backward_extra(dwte, NULL, dextra, dout, ids2, 2, 2, 2, 5);
    assert_true(dextra[0] == 6 && dextra[1] == 6 && dwte[0] == 1 && dwte[4] == 3);
    ids2[1] = 6;
    assert_int_equal(embedding_forward_extra(out, ids2, wte, NULL, extra, 2, 2, 2, 5, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "token id 6 at sequence 0 position 1 is outside the vocabulary [0, 6)"));

    assert_int_equal(patch_embed_forward(x, x, x, x, 1, 1, 10, 8, 4, 2, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "10x8 is not a whole number of 4x4 patches"));

    float loss, p[4], f2[4] = {1, 0, 0, 1};
    assert_int_equal(clip_loss_forward(&loss, p, p + 2, f2, f2, NAN, 2, 2, &err), VLP_ERR_NUMERIC);
    assert_int_equal(clip_loss_forward(&loss, p, p + 2, f2, f2, 200.0f, 2, 2, &err), VLP_ERR_NUMERIC);
    float bad[4] = {NAN, 0, 0, 1};
    float probs[8];
    assert_int_equal(clip_loss_forward(&loss, probs, probs + 4, bad, f2, 1.0f, 2, 2, &err),
                     VLP_ERR_NUMERIC);
    assert_non_null(strstr(err.message, "not finite"));

    block_dims d = {.B = 1, .T = 1, .C = 4, .NH = 2, .hidden = 0};
    block_params w = {0};
    block_acts a = {0};
    assert_int_equal(block_forward(x, &a, x, &w, &d, &err), VLP_ERR_SHAPE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_alloc_check),
        cmocka_unit_test(test_op_preconditions),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
