/* SigLIP's loss against open_clip's SigLipLoss (tests/ref/make_objectives_ref.py):
 * loss and gradients to 1e-5 relative (+1e-6 absolute); and sharded: W
 * shards with dloss = 1/W sum to the whole batch's gradients.
 *
 * The sharded CLIP loss (open_clip local_loss + gather_with_grad), W shards
 * simulated in one process: the mean of the shards' losses equals the full
 * batch's loss, and with dloss = 1/W, each shard's local gradient plus the
 * sum over shards of the gathered-feature gradients (the reduce-scatter MPI
 * does) equals the full batch's gradient, and so does the summed
 * logit_scale gradient. Tolerance 1e-6 relative to the largest gradient:
 * only the summation order differs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "loss/loss.h"

static void normalize_rows(float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < d; k++) s += (double)x[i * d + k] * x[i * d + k];
        for (int k = 0; k < d; k++) x[i * d + k] /= (float)sqrt(s);
    }
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static void check_shards(int B, int W, int D, float logit_scale) {
    int b = B / W;
    rng r = {(uint64_t)(B * 31 + W)};
    float *img = falloc((size_t)B * D), *txt = falloc((size_t)B * D);
    fill_normal(&r, img, (size_t)B * D, 1.0f, 0.0f);
    fill_normal(&r, txt, (size_t)B * D, 1.0f, 0.0f);
    /* pairs somewhat aligned, as in training */
    for (size_t k = 0; k < (size_t)B * D; k++) txt[k] += 0.5f * img[k];
    normalize_rows(img, B, D);
    normalize_rows(txt, B, D);

    /* the full batch, one process */
    float *pi = falloc((size_t)B * B), *pt = falloc((size_t)B * B), *scratch = falloc((size_t)B * D);
    float *dimg = falloc((size_t)B * D), *dtxt = falloc((size_t)B * D), dls = 0.0f, loss;
    assert_int_equal(clip_loss_forward(&loss, pi, pt, img, txt, logit_scale, B, D, NULL), VLP_OK);
    clip_loss_backward(dimg, dtxt, &dls, 1.0f, pi, pt, img, txt, logit_scale, scratch, B, D);

    /* W shards */
    float *simg = falloc((size_t)B * D), *stxt = falloc((size_t)B * D); // gathered into place
    float *gimg = falloc((size_t)B * D), *gtxt = falloc((size_t)B * D); // per-shard dimg_g/dtxt_g
    float *sum_gimg = falloc((size_t)B * D), *sum_gtxt = falloc((size_t)B * D);
    float *lpi = falloc((size_t)b * B), *lpt = falloc((size_t)b * B);
    double loss_sum = 0.0;
    float sdls = 0.0f;
    for (int w = 0; w < W; w++) {
        const float *il = img + (size_t)w * b * D, *tl = txt + (size_t)w * b * D;
        float l;
        assert_int_equal(clip_loss_local_forward(&l, lpi, lpt, il, tl, img, txt, logit_scale, b, B,
                                                 w * b, D, NULL),
                         VLP_OK);
        loss_sum += l;
        clip_loss_local_backward(simg + (size_t)w * b * D, stxt + (size_t)w * b * D, gimg, gtxt,
                                 &sdls, 1.0f / W, lpi, lpt, il, tl, img, txt, logit_scale, b, B,
                                 w * b, D);
        for (size_t k = 0; k < (size_t)B * D; k++) sum_gimg[k] += gimg[k], sum_gtxt[k] += gtxt[k];
    }
    /* reduce-scatter: each shard adds the summed gradient of the rows it owns */
    for (size_t k = 0; k < (size_t)B * D; k++) simg[k] += sum_gimg[k], stxt[k] += sum_gtxt[k];

    float mean_loss = (float)(loss_sum / W);
    assert_close("mean of shard losses", &mean_loss, &loss, 1, 0.0, 1e-6);
    double gi = max_abs(dimg, (size_t)B * D), gt = max_abs(dtxt, (size_t)B * D);
    assert_close("dimg", simg, dimg, (size_t)B * D, 1e-6 * gi, 0.0);
    assert_close("dtxt", stxt, dtxt, (size_t)B * D, 1e-6 * gt, 0.0);
    assert_close("dlogit_scale", &sdls, &dls, 1, 1e-6, 1e-5);
    free(img), free(txt), free(pi), free(pt), free(scratch), free(dimg), free(dtxt);
    free(simg), free(stxt), free(gimg), free(gtxt), free(sum_gimg), free(sum_gtxt), free(lpi),
        free(lpt);
}

static void test_shards_equal_full_batch(void **state) {
    check_shards(8, 1, 16, 2.6592f); /* one shard: the loss itself */
    check_shards(8, 2, 16, 2.6592f);
    check_shards(24, 4, 32, 1.0f);
    check_shards(36, 3, 8, 4.6052f);
}

static void check_siglip_ref(const char *name, int B, int D) {
    vlpt_file *f = ref_open(name);
    const float *img = ref_f32(f, "img", (size_t)B * D), *txt = ref_f32(f, "txt", (size_t)B * D);
    float ls = *ref_f32(f, "logit_scale", 1), lb = *ref_f32(f, "logit_bias", 1);
    float dloss = *ref_f32(f, "dloss", 1), loss, dls = 0.25f, dlb = 0.25f;
    float *z = falloc((size_t)B * B), *scratch = falloc((size_t)B * D);
    float *dimg = falloc((size_t)B * D), *dtxt = falloc((size_t)B * D);
    assert_int_equal(siglip_loss_forward(&loss, z, img, txt, ls, lb, B, B, 0, D, NULL), VLP_OK);
    assert_close("siglip loss", &loss, ref_f32(f, "loss", 1), 1, 1e-6, 1e-5);
    siglip_loss_backward(dimg, dtxt, &dls, &dlb, dloss, z, img, txt, ls, lb, scratch, B, B, 0, D);
    dls -= 0.25f, dlb -= 0.25f; /* they accumulate */
    assert_close("siglip dimg", dimg, ref_f32(f, "dimg", (size_t)B * D), (size_t)B * D, 1e-6, 1e-5);
    assert_close("siglip dtxt", dtxt, ref_f32(f, "dtxt", (size_t)B * D), (size_t)B * D, 1e-6, 1e-5);
    assert_close("siglip dlogit_scale", &dls, ref_f32(f, "dlogit_scale", 1), 1, 1e-6, 1e-5);
    assert_close("siglip dlogit_bias", &dlb, ref_f32(f, "dlogit_bias", 1), 1, 1e-6, 1e-5);
    free(z), free(scratch), free(dimg), free(dtxt);
    vlpt_free(f);
}

static void test_siglip_matches_pytorch(void **state) {
    check_siglip_ref("siglip_loss", 8, 16);
    check_siglip_ref("siglip_loss_b13", 13, 7);
}

static void test_siglip_shards_equal_full_batch(void **state) {
    int B = 12, W = 3, b = B / W, D = 8;
    rng r = {77};
    float *img = falloc((size_t)B * D), *txt = falloc((size_t)B * D);
    fill_normal(&r, img, (size_t)B * D, 1.0f, 0.0f);
    fill_normal(&r, txt, (size_t)B * D, 1.0f, 0.0f);
    for (size_t k = 0; k < (size_t)B * D; k++) txt[k] += img[k];
    normalize_rows(img, B, D);
    normalize_rows(txt, B, D);
    float ls = 2.3f, lb = -4.0f, loss, dls = 0, dlb = 0;
    float *z = falloc((size_t)B * B), *scratch = falloc((size_t)B * D);
    float *dimg = falloc((size_t)B * D), *dtxt = falloc((size_t)B * D);
    assert_int_equal(siglip_loss_forward(&loss, z, img, txt, ls, lb, B, B, 0, D, NULL), VLP_OK);
    siglip_loss_backward(dimg, dtxt, &dls, &dlb, 1.0f, z, img, txt, ls, lb, scratch, B, B, 0, D);
    float *simg = falloc((size_t)B * D), *stxt = falloc((size_t)B * D), *g = falloc((size_t)B * D);
    double sum = 0;
    float sdls = 0, sdlb = 0;
    for (int w = 0; w < W; w++) {
        float l;
        assert_int_equal(siglip_loss_forward(&l, z, img + (size_t)w * b * D, txt, ls, lb, b, B,
                                             w * b, D, NULL),
                         VLP_OK);
        sum += l;
        siglip_loss_backward(simg + (size_t)w * b * D, g, &sdls, &sdlb, 1.0f / W, z,
                             img + (size_t)w * b * D, txt, ls, lb, scratch, b, B, w * b, D);
        for (size_t k = 0; k < (size_t)B * D; k++) stxt[k] += g[k];
    }
    float mean = (float)(sum / W);
    assert_close("siglip: mean of shard losses", &mean, &loss, 1, 0.0, 1e-6);
    assert_close("siglip dimg", simg, dimg, (size_t)B * D, 1e-6 * max_abs(dimg, (size_t)B * D), 0);
    assert_close("siglip dtxt", stxt, dtxt, (size_t)B * D, 1e-6 * max_abs(dtxt, (size_t)B * D), 0);
    assert_close("siglip dlogit_scale", &sdls, &dls, 1, 1e-6, 1e-5);
    assert_close("siglip dlogit_bias", &sdlb, &dlb, 1, 1e-6, 1e-5);
    free(img), free(txt), free(z), free(scratch), free(dimg), free(dtxt), free(simg), free(stxt),
        free(g);
}

/* FILIP against PyTorch (tests/ref/make_objectives_ref.py): loss and
 * gradients to 1e-5; padded text tokens get no gradient. */
static void check_filip_ref(const char *name, int B, int Ti, int Tt, int D) {
    vlpt_file *f = ref_open(name);
    size_t ni = (size_t)B * Ti * D, nt = (size_t)B * Tt * D;
    const float *img = ref_f32(f, "img", ni), *txt = ref_f32(f, "txt", nt);
    const int32_t *lens = ref_i32(f, "lens", (size_t)B);
    float ls = *ref_f32(f, "logit_scale", 1), dloss = *ref_f32(f, "dloss", 1), loss, dls = 0.0f;
    float *pi = falloc((size_t)B * B), *pt = falloc((size_t)B * B), *sims = falloc(2 * (size_t)B * B);
    float *scratch = falloc(filip_scratch_floats(B, Ti, Tt));
    int32_t *arg = malloc(sizeof(int32_t) * filip_saved_ints(B, Ti, Tt));
    float *dimg = falloc(ni), *dtxt = falloc(nt);
    assert_int_equal(filip_loss_forward(&loss, pi, pt, sims, arg, img, txt, lens, ls, scratch, B,
                                        Ti, Tt, D, NULL),
                     VLP_OK);
    assert_close("filip loss", &loss, ref_f32(f, "loss", 1), 1, 1e-6, 1e-5);
    filip_loss_backward(dimg, dtxt, &dls, dloss, pi, pt, sims, arg, img, txt, lens, ls, B, Ti, Tt, D);
    assert_close("filip dimg", dimg, ref_f32(f, "dimg", ni), ni, 1e-6, 1e-5);
    assert_close("filip dtxt", dtxt, ref_f32(f, "dtxt", nt), nt, 1e-6, 1e-5);
    assert_close("filip dlogit_scale", &dls, ref_f32(f, "dlogit_scale", 1), 1, 1e-6, 1e-5);
    for (int j = 0; j < B; j++)
        for (int r = lens[j]; r < Tt; r++)
            for (int d = 0; d < D; d++) assert_true(dtxt[((size_t)j * Tt + r) * D + d] == 0.0f);
    int32_t bad[16] = {0};
    vlp_error err = {0};
    assert_int_equal(filip_loss_forward(&loss, pi, pt, sims, arg, img, txt, bad, ls, scratch, B,
                                        Ti, Tt, D, &err),
                     VLP_ERR_SHAPE); /* a caption of 0 tokens */
    free(pi), free(pt), free(sims), free(scratch), free(arg), free(dimg), free(dtxt);
    vlpt_free(f);
}

static void test_filip_matches_pytorch(void **state) {
    check_filip_ref("filip_loss", 5, 4, 6, 8);
    check_filip_ref("filip_loss_b7", 7, 9, 5, 6);
}

/* FILIP in W simulated shards: the mean loss and the summed gradients
 * (gathered-token gradients reduce-scattered) are the whole batch's. */
static void test_filip_shards_equal_full_batch(void **state) {
    enum { B = 6, W = 3, b = B / W, Ti = 4, Tt = 5, D = 8 };
    int32_t lens[B] = {5, 2, 3, 1, 4, 5};
    rng r = {31};
    size_t ni = (size_t)B * Ti * D, nt = (size_t)B * Tt * D;
    float *img = falloc(ni), *txt = falloc(nt);
    fill_normal(&r, img, ni, 1.0f, 0.0f);
    fill_normal(&r, txt, nt, 1.0f, 0.0f);
    normalize_rows(img, B * Ti, D);
    normalize_rows(txt, B * Tt, D);
    float ls = 2.0f, loss, dls = 0.0f;
    float *pi = falloc(B * B), *pt = falloc(B * B), *sims = falloc(4 * B * B);
    float *scratch = falloc(filip_scratch_floats(B, Ti, Tt));
    int32_t *arg = malloc(sizeof(int32_t) * filip_local_saved_ints(B, B, Ti, Tt));
    float *dimg = falloc(ni), *dtxt = falloc(nt);
    assert_int_equal(filip_loss_forward(&loss, pi, pt, sims, arg, img, txt, lens, ls, scratch, B,
                                        Ti, Tt, D, NULL),
                     VLP_OK);
    filip_loss_backward(dimg, dtxt, &dls, 1.0f, pi, pt, sims, arg, img, txt, lens, ls, B, Ti, Tt, D);

    float *simg = falloc(ni), *stxt = falloc(nt), *gimg = falloc(ni), *gtxt = falloc(nt);
    float *sum_gimg = falloc(ni), *sum_gtxt = falloc(nt), *dsT = falloc(B * b);
    double lsum = 0.0;
    float sdls = 0.0f;
    for (int w = 0; w < W; w++) {
        const float *il = img + (size_t)w * b * Ti * D, *tl = txt + (size_t)w * b * Tt * D;
        float l;
        assert_int_equal(filip_loss_local_forward(&l, pi, pt, sims, arg, il, tl, lens + w * b, img,
                                                  txt, lens, ls, scratch, b, B, w * b, Ti, Tt, D,
                                                  NULL),
                         VLP_OK);
        lsum += l;
        filip_loss_local_backward(simg + (size_t)w * b * Ti * D, stxt + (size_t)w * b * Tt * D,
                                  gimg, gtxt, &sdls, 1.0f / W, pi, pt, dsT, sims, arg, il, tl,
                                  lens + w * b, img, txt, lens, ls, b, B, w * b, Ti, Tt, D);
        for (size_t k = 0; k < ni; k++) sum_gimg[k] += gimg[k];
        for (size_t k = 0; k < nt; k++) sum_gtxt[k] += gtxt[k];
    }
    for (size_t k = 0; k < ni; k++) simg[k] += sum_gimg[k];
    for (size_t k = 0; k < nt; k++) stxt[k] += sum_gtxt[k];
    float mean = (float)(lsum / W);
    assert_close("filip: mean of shard losses", &mean, &loss, 1, 0.0, 1e-6);
    assert_close("filip dimg", simg, dimg, ni, 1e-6 * max_abs(dimg, ni), 0.0);
    assert_close("filip dtxt", stxt, dtxt, nt, 1e-6 * max_abs(dtxt, nt), 0.0);
    assert_close("filip dlogit_scale", &sdls, &dls, 1, 1e-6, 1e-5);
    free(img), free(txt), free(pi), free(pt), free(sims), free(scratch), free(arg), free(dimg),
        free(dtxt), free(simg), free(stxt), free(gimg), free(gtxt), free(sum_gimg), free(sum_gtxt),
        free(dsT);
}

static void test_shard_errors(void **state) {
    float x[64], p[64], loss;
    vlp_error err = {0};
    memset(x, 0, sizeof x);
    assert_int_equal(clip_loss_local_forward(&loss, p, p, x, x, x, x, 1.0f, 4, 8, 6, 2, &err),
                     VLP_ERR_SHAPE); /* rows 6..9 of 8 */
    assert_non_null(strstr(err.message, "offset 6"));
    assert_int_equal(clip_loss_local_forward(&loss, p, p, x, x, x, x, NAN, 2, 4, 0, 2, &err),
                     VLP_ERR_NUMERIC);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_equal_full_batch),
        cmocka_unit_test(test_shard_errors),
        cmocka_unit_test(test_siglip_matches_pytorch),
        cmocka_unit_test(test_siglip_shards_equal_full_batch),
        cmocka_unit_test(test_filip_matches_pytorch),
        cmocka_unit_test(test_filip_shards_equal_full_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
