/* Inputs from strangers that once got through: each test is a finding of
 * the fuzzing campaign, reproduced with the input that triggered it, now
 * refused with a message that names what is wrong (under ASan/UBSan too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/dataset.h"
#include "data/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "model/clip_pretrained.h"
#include "train/trainer.h"

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

static char *tmp_path(const char *suffix) {
    char *p = malloc(64);
    snprintf(p, 64, "/tmp/vlp-hostile-%d%s", (int)getpid(), suffix);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* F1: a training state naming an objective this build does not know: the
 * name was printed from freed JSON */
static void test_state_with_unknown_objective(void **state) {
    vlp_error err = {0};
    train_opts o;
    const char *text = "{\"objective\":\"clip-with-a-very-long-unknown-name\",\"batch\":8,\"accum\":1,"
                       "\"steps\":4,\"warmup\":1,\"lr\":0.001,\"beta1\":0.9,\"beta2\":0.98,\"eps\":1e-6,"
                       "\"weight_decay\":0.2,\"grad_clip\":0,\"seed\":\"0\"}";
    assert_int_equal(train_opts_from_json(text, "run/latest.state", &o, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "unknown objective 'clip-with-a-very-long-unknown-name'"));
    assert_non_null(strstr(err.message, "this build knows clip, siglip"));
    /* the same state with a known objective reads */
    const char *ok = strstr(text, ",\"batch\"");
    char known[512];
    snprintf(known, sizeof known, "{\"objective\":\"siglip\"%s", ok);
    check(train_opts_from_json(known, "run/latest.state", &o, &err), &err);
    assert_string_equal(o.objective->name, "siglip");
    assert_int_equal(o.batch, 8);
}

/* F2: a 128-byte .npy claiming 1.7 G rows was allocated (6.9 GB) before its
 * length was looked at */
static void test_npy_claims_more_than_it_holds(void **state) {
    char *path = tmp_path(".npy");
    vlp_error err = {0};
    float m[6] = {1, 2, 3, 4, 5, 6};
    check(npy_write_f32(path, m, 2, 3, &err), &err);
    float *back;
    int64_t r, c;
    check(npy_read_f32(path, &back, &r, &c, &err), &err);
    assert_true(r == 2 && c == 3 && back[5] == 6.0f);
    free(back);
    /* the same header claiming 1,700,000,000 rows of one float */
    char hdr[118];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (1700000000, 1), }");
    memset(hdr + n, ' ', sizeof hdr - n - 1);
    hdr[sizeof hdr - 1] = '\n';
    unsigned char file[128] = "\x93NUMPY\x01\x00";
    file[8] = (unsigned char)sizeof hdr, file[9] = 0;
    memcpy(file + 10, hdr, sizeof hdr);
    write_bytes(path, file, sizeof file);
    back = NULL;
    assert_int_equal(npy_read_f32(path, &back, &r, &c, &err), VLP_ERR_FORMAT);
    assert_null(back);
    assert_non_null(strstr(err.message, "claims 1700000000 x 1 floats (6800000000 bytes), the file holds 0 bytes"));
    unlink(path);
    free(path);
}

/* F3: the BPE trainer learnt merges of long words that the loader, reading
 * lines into 1024 bytes, refused: a learnt tokenizer could not be loaded back */
static void test_learnt_long_merges_load_back(void **state) {
    char word[2001];
    memset(word, 'q', 2000);
    word[2000] = 0;
    const char *texts[2] = {word, word};
    char *path = tmp_path(".merges");
    vlp_error err = {0};
    int learnt = 0;
    check(bpe_train(texts, 2, 40, 2, path, &learnt, &err), &err);
    assert_true(learnt >= 11); /* 2^11 > 2000: the last merges join symbols of > 512 letters */
    text_tokenizer tok;
    check(bpe_load(path, 0, &tok, &err), &err);
    int32_t ids[8];
    tok.encode(tok.impl, word, ids, 8);
    /* the whole word in a few learnt symbols, not 2000 letters */
    int used = 0;
    while (used < 8 && ids[used] != 0) used++;
    assert_true(used > 2 && used < 8);
    tokenizer_free(&tok);
    unlink(path);
    free(path);
}

/* F4: 'visual.conv1.weight' shaped [0, 3, 1, 2^31 - 1]: the reader bounded
 * dims only up to the first zero one, and the config inferred from it
 * multiplied grid · patch size in int */
static void test_zero_dim_then_huge_dims(void **state) {
    char *path = tmp_path(".safetensors");
    vlp_error err = {0};
    static const float pos[5] = {0};
    st_tensor ts[] = {
        {.name = "visual.conv1.weight", .dtype = ST_F32, .ndim = 4, .shape = {0, 3, 1, 2147483647}},
        {.name = "visual.positional_embedding", .dtype = ST_F32, .ndim = 2, .shape = {5, 1}, .data = pos},
        {.name = "text_projection", .dtype = ST_F32, .ndim = 2, .shape = {0, 8}},
        {.name = "positional_embedding", .dtype = ST_F32, .ndim = 2, .shape = {0, 8}},
        {.name = "token_embedding.weight", .dtype = ST_F32, .ndim = 2, .shape = {0, 8}},
        {.name = "visual.transformer.resblocks.0.mlp.c_fc.weight", .dtype = ST_F32, .ndim = 2, .shape = {0, 8}},
        {.name = "transformer.resblocks.0.mlp.c_fc.weight", .dtype = ST_F32, .ndim = 2, .shape = {0, 8}},
    };
    check(st_write(path, ts, 7, NULL, 0, &err), &err);
    clip_model m;
    clip_load_opts lo = {.quick_gelu = -1, .inference = true};
    vlp_err lrc = clip_load_pretrained(&m, path, &lo, &err);
    if (lrc != VLP_ERR_FORMAT) fail_msg("%d: %s", lrc, err.message);
    if (!strstr(err.message, "'visual.conv1.weight' [0, 3, 1, 2147483647]")) fail_msg("%s", err.message);
    /* a dim beyond int after a zero dim: refused by the reader itself */
    ts[0].shape[3] = 2147483648LL;
    check(st_write(path, ts, 7, NULL, 0, &err), &err);
    st_file *f;
    assert_int_equal(st_open(path, &f, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "dim 3 is 2147483648, above 2^31 - 1"));
    unlink(path);
    free(path);
}

/* F5: a truncated JPEG declaring 16384×16384 decoded into an 805 MB buffer */
static void test_tiny_file_declaring_a_huge_image(void **state) {
    char *ref = strdup("tests/ref/img_src.jpg");
    FILE *f = fopen(ref, "rb");
    assert_non_null(f);
    uint8_t jpg[1 << 16];
    size_t n = fread(jpg, 1, sizeof jpg, f);
    fclose(f);
    free(ref);
    assert_true(n > 700);
    /* the frame header (SOF0..SOF2): height and width at +5 and +7 */
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n && !sof; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] >= 0xC0 && jpg[i + 1] <= 0xC2) sof = i;
    assert_true(sof > 0);
    vlp_error err = {0};
    image_decode_opts o = {0};
    image_u8 im;
    /* truncated at 687 bytes with its own size: refused as cut short (as
     * Pillow refuses it), not by the size bound */
    assert_int_equal(image_decode(jpg, 687, "small.jpg", &o, &im, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "small.jpg: JPEG: the file ends before the image does"));
    jpg[sof + 5] = 0x40, jpg[sof + 6] = 0x00, jpg[sof + 7] = 0x40, jpg[sof + 8] = 0x00;
    assert_int_equal(image_decode(jpg, 687, "bomb.jpg", &o, &im, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "bomb.jpg: 16384x16384 pixels declared in 687 bytes"));
    assert_null(im.px);
    /* F7 (the 10-minute fuzz run): decoded at 1/8 scale (training's min_side)
     * the 32768x24576 it declares made 4096x3072 output pixels, under the
     * bound, while libjpeg still decoded every block of the declared image
     * (10 s under the fuzzer); the bound is judged on the declared size */
    jpg[sof + 5] = 0x60, jpg[sof + 6] = 0x00, jpg[sof + 7] = 0x80, jpg[sof + 8] = 0x00;
    image_decode_opts scaled = {.min_side = 32};
    assert_int_equal(image_decode(jpg, 687, "scaled.jpg", &scaled, &im, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "scaled.jpg: 32768x24576 pixels declared in 687 bytes"));
    assert_null(im.px);
    /* the signatures, one rule for decoding and for naming a shard's member */
    assert_string_equal(image_format_ext(jpg, 3), "jpg");
    assert_null(image_format_ext(jpg, 2));
    assert_null(image_format_ext(NULL, 0));
    assert_string_equal(image_format_ext("GIF89a", 6), "gif");
    assert_null(image_format_ext("BM\066\0\0\0", 6));
    assert_string_equal(image_format_ext("RIFF\0\0\0\0WEBP", 12), "webp");
}


/* A caption of 1 MB is a skipped row, counted and named; a 512 MB line (a
 * sparse file: a caption file gone wrong) is read through without holding it */
static void test_table_rows_too_long(void **state) {
    char *path = tmp_path(".tsv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "filepath\ttitle\na.png\ta cat\nb.png\t");
    for (int i = 0; i < (1 << 20); i++) fputc('x', f);
    fprintf(f, "\nc.png\ta dog\n");
    fclose(f);
    vlp_error err = {0};
    dataset_opts o = dataset_opts_default();
    sample_stream *s;
    check(stream_open(&s, path, &o, &err), &err);
    assert_int_equal(stream_epoch_size(s), 2);
    const char *why;
    assert_int_equal(stream_skipped(s, &why), 1);
    if (!strstr(why, ":3: a row longer than 262144 bytes")) fail_msg("%s", why);
    stream_free(s);
    /* a header, a row, then 512 MB without a newline */
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "filepath\ttitle\na.png\ta cat\n");
    long at = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, at + (512L << 20)), 0);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    check(stream_open(&s, path, &o, &err), &err);
    getrusage(RUSAGE_SELF, &after);
    assert_int_equal(stream_epoch_size(s), 1);
    assert_int_equal(stream_skipped(s, &why), 1);
    /* the peak grew by far less than the line */
    if (after.ru_maxrss - before.ru_maxrss > 64 * 1024) fail_msg("peak RSS grew by %ld KiB", after.ru_maxrss - before.ru_maxrss);
    stream_free(s);
    unlink(path);
    free(path);
}

/* Resource bombs refused before allocation: a PNG header claiming
 * 65535×65535 (with a valid CRC, so it is vlp's limit that speaks) and a
 * tar member claiming 8 GiB */
static void test_headers_claiming_too_much(void **state) {
    FILE *f = fopen("tests/ref/img_src.png", "rb");
    assert_non_null(f);
    uint8_t png[1 << 15];
    size_t n = fread(png, 1, sizeof png, f);
    fclose(f);
    assert_true(n > 33 && !memcmp(png + 12, "IHDR", 4));
    png[16] = 0, png[17] = 0, png[18] = 0xFF, png[19] = 0xFF; /* width 65535 */
    png[20] = 0, png[21] = 0, png[22] = 0xFF, png[23] = 0xFF; /* height 65535 */
    uLong crc = crc32(crc32(0L, Z_NULL, 0), png + 12, 17);     /* "IHDR" + 13 bytes */
    png[29] = (uint8_t)(crc >> 24), png[30] = (uint8_t)(crc >> 16), png[31] = (uint8_t)(crc >> 8), png[32] = (uint8_t)crc;
    vlp_error err = {0};
    image_decode_opts o = {0};
    image_u8 im;
    assert_int_equal(image_decode(png, n, "huge.png", &o, &im, &err), VLP_ERR_FORMAT);
    if (!strstr(err.message, "huge.png: 65535x65535 pixels is outside 1..32768 a side")) fail_msg("%s", err.message);

    /* a ustar header: 000.jpg, size 8 GiB (octal 100000000000), then 1 KiB */
    uint8_t tar[2048] = {0};
    memcpy(tar, "000.jpg", 7);
    memcpy(tar + 100, "0000644", 7);
    memcpy(tar + 124, "100000000000", 12);
    tar[156] = '0';
    memcpy(tar + 257, "ustar", 6), memcpy(tar + 263, "00", 2);
    memset(tar + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += tar[i];
    snprintf((char *)tar + 148, 8, "%06o", sum);
    char *path = tmp_path(".tar");
    write_bytes(path, tar, sizeof tar);
    dataset_opts d = dataset_opts_default();
    sample_stream *s = NULL;
    vlp_err rc = stream_open(&s, path, &d, &err);
    const char *why = err.message;
    if (rc == VLP_OK) { /* counted as a damaged shard: nothing to read */
        assert_int_equal(stream_epoch_size(s), 0);
        assert_true(stream_skipped(s, &why) >= 1);
    }
    if (!strstr(why, "000.jpg")) fail_msg("%s", why);
    stream_free(s);
    unlink(path);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_with_unknown_objective),
        cmocka_unit_test(test_npy_claims_more_than_it_holds),
        cmocka_unit_test(test_learnt_long_merges_load_back),
        cmocka_unit_test(test_zero_dim_then_huge_dims),
        cmocka_unit_test(test_tiny_file_declaring_a_huge_image),
        cmocka_unit_test(test_table_rows_too_long),
        cmocka_unit_test(test_headers_claiming_too_much),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
