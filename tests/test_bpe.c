/* The CLIP BPE tokenizer against tests/ref/bpe_ref.tsv: 340 texts (the
 * "a photo of a cat" example, punctuation, digits, accents, CJK, emoji, html entities,
 * odd whitespace, special tokens, long texts, random mixtures) encoded by the
 * Python reference of tests/ref/make_bpe_ref.py; every id must be equal.
 * Also: invalid UTF-8 never crashes, and bad merges files are named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlp.h"
#include "testutil.h"
#include "core/datadir.h"
#include "data/bpe.h"
#include "data/bpe_train.h"

#define CTX 77

/* OpenAI's merges as vlp ships them (vocab/, found as the library finds it) */
static text_tokenizer load(void) {
    text_tokenizer t;
    vlp_error err = {0};
    char path[4200];
    if (vlp_data_file(VLP_DEFAULT_VOCAB, path, sizeof path, &err) != VLP_OK ||
        bpe_load(path, 0, &t, &err) != VLP_OK)
        fail_msg("%s", err.message);
    return t;
}

static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
        } else *w++ = *r;
    }
    *w = '\0';
}

static void test_matches_reference(void **state) {
    text_tokenizer t = load();
    assert_int_equal(t.vocab_size, 49408);
    const char *path = ref_path("bpe_ref.tsv");
    FILE *fp = fopen(path, "r");
    if (!fp) fail_msg("cannot open %s", path);
    static char line[1 << 16];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, fp)) {
        char *tab = strrchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        unescape(line);
        int32_t want[CTX], got[CTX];
        char *p = tab + 1;
        for (int i = 0; i < CTX; i++) want[i] = (int32_t)strtol(p, &p, 10);
        t.encode(t.impl, line, got, CTX);
        if (memcmp(got, want, sizeof got)) {
            int i = 0;
            while (got[i] == want[i]) i++;
            if (bad++ < 5)
                print_error("text %d '%.60s': id %d is %d, reference %d\n", n, line, i, got[i], want[i]);
        }
        n++;
    }
    fclose(fp);
    assert_int_equal(n, 340);
    if (bad) fail_msg("%d of %d texts differ from the reference", bad, n);
    tokenizer_free(&t);
}

/* decode(encode(text)) is the cleaned text (lower case, one space between
 * words), bytes outside ASCII included; start/end/padding decode to nothing */
static void test_decode_round_trip(void **state) {
    text_tokenizer t = load();
    const char *cases[][2] = {
        {"A photo of a CAT", "a photo of a cat"},
        {"  grinning   face\twith big eyes ", "grinning face with big eyes"},
        {"caf\xc3\xa9 \xe2\x98\x95 emoji!", "caf\xc3\xa9 \xe2\x98\x95 emoji !"},
        {"don't stop", "don 't stop"}, /* CLIP's pre-tokenizer splits 't off: open_clip decodes the same */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[32];
        t.encode(t.impl, cases[i][0], ids, 32);
        char out[128];
        size_t n = t.decode(t.impl, ids, 32, out, sizeof out);
        assert_string_equal(out, cases[i][1]);
        assert_int_equal(n, strlen(cases[i][1]));
        char small[5];
        t.decode(t.impl, ids, 32, small, sizeof small); /* truncated, still terminated */
        assert_true(strlen(small) <= 4 && !strncmp(small, cases[i][1], strlen(small)));
    }
    /* a lone byte token of a multi-byte character (a byte-level BPE can end a
     * caption there) decodes to U+FFFD, as open_clip's errors="replace"; a cut
     * never splits a character */
    int32_t ids[32];
    t.encode(t.impl, "\xc3\xa9", ids, 32);
    int32_t lone[3] = {ids[0], 0, ids[2]};
    char out[64];
    int32_t cp_of_id[256], id_of_byte[256];
    bpe_byte_symbols(cp_of_id, id_of_byte);
    lone[1] = id_of_byte[0xc3];
    assert_int_equal(t.decode(t.impl, lone, 3, out, sizeof out), 3);
    assert_string_equal(out, "\xef\xbf\xbd");
    t.encode(t.impl, "\xc3\xa9t\xc3\xa9", ids, 32);
    char cut[4];
    t.decode(t.impl, ids, 32, cut, sizeof cut);
    assert_string_equal(cut, "\xc3\xa9t"); /* not "é" + half of the second é */
    tokenizer_free(&t);
}

static void test_invalid_utf8_and_truncation(void **state) {
    text_tokenizer t = load();
    int32_t ids[CTX];
    const char bad[] = "ok \xff\xfe \xc3 broken \xe2\x82 end \xed\xa0\x80 surrogate";
    t.encode(t.impl, bad, ids, CTX);
    assert_int_equal(ids[0], 49406);
    int n = 1;
    while (n < CTX && ids[n] != 49407) n++;
    assert_true(n > 4 && n < CTX); /* words kept, bad bytes replaced, not dropped silently */
    /* over-long text: exactly ctx ids, the last the end token */
    char *longt = malloc(20001);
    for (int i = 0; i < 20000; i++) longt[i] = "ab c"[i % 4];
    longt[20000] = '\0';
    t.encode(t.impl, longt, ids, CTX);
    assert_int_equal(ids[0], 49406);
    assert_int_equal(ids[CTX - 1], 49407);
    for (int i = 1; i < CTX - 1; i++) assert_true(ids[i] > 0 && ids[i] < 49406);
    free(longt);
    tokenizer_free(&t);
}

static void test_bad_merges_files(void **state) {
    text_tokenizer t;
    vlp_error err = {0};
    assert_int_equal(bpe_load("/nonexistent/merges.txt", 0, &t, &err), VLP_ERR_IO);
    char path[] = "/tmp/vlp-bpe-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs("#version: 0.2\nt h\nth e\nx y z\n", fp);
    fclose(fp);
    assert_int_equal(bpe_load(path, 0, &t, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, ":4:"));
    fp = fopen(path, "w");
    fputs("#version: 0.2\nt h\nqq e\n", fp);
    fclose(fp);
    assert_int_equal(bpe_load(path, 0, &t, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "merge 2"));
    fp = fopen(path, "w");
    fputs("#version: 0.2\nt h\nth e</w>\n", fp);
    fclose(fp);
    assert_int_equal(bpe_load(path, 0, &t, &err), VLP_OK);
    /* open_clip reads the empty string after the final newline as an entry too */
    assert_int_equal(t.vocab_size, 512 + 2 + 1 + 2);
    int32_t ids[8];
    assert_int_equal(bpe_encode_ids(&t, "The", ids, 8), 1);
    assert_int_equal(ids[0], 513); /* "the</w>" is the second merge */
    tokenizer_free(&t);
    fp = fopen(path, "wb"); /* a gzip header, then garbage */
    fputs("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage that does not inflate", fp);
    fclose(fp);
    assert_int_not_equal(bpe_load(path, 0, &t, &err), VLP_OK);
    remove(path);
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* A hand-worked example: counts a a:3, a a</w>:3 (tie → "a" < "a</w>"),
 * then aa a</w>:3; a b</w> occurs once, below min_count 2. */
static void test_trainer_small_example(void **state) {
    char path[] = "/tmp/vlp-bpe-train-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const char *texts[] = {"aaa AAA", "aaa", "ab"};
    vlp_error err = {0};
    int learnt = -1;
    assert_int_equal(bpe_train(texts, 3, 100, 2, path, &learnt, &err), VLP_OK);
    assert_int_equal(learnt, 2);
    assert_string_equal(strchr(slurp(path), '\n') + 1, "a a\naa a</w>"); /* no final newline */
    text_tokenizer t;
    assert_int_equal(bpe_load(path, 0, &t, &err), VLP_OK);
    assert_int_equal(t.vocab_size, 512 + 2 + 2);
    int32_t ids[4];
    assert_int_equal(bpe_encode_ids(&t, "AAA", ids, 4), 1);
    assert_int_equal(ids[0], 513);
    tokenizer_free(&t);
    /* nothing frequent enough */
    const char *once[] = {"xy"};
    assert_int_equal(bpe_train(once, 1, 10, 2, path, NULL, &err), VLP_ERR_ARG);
    remove(path);
}

/* Learnt on real captions, the merges load and shorten the encodings. */
static void test_trainer_on_captions(void **state) {
    static const char *caps[] = {
        "grinning face with big eyes, a face smiling emoji of smileys & emotion",
        "grinning face with smiling eyes, a face smiling emoji of smileys & emotion",
        "waving hand: medium skin tone, a hand fingers open emoji of people & body",
        "red apple, a food fruit emoji of food & drink", "green apple, a food fruit emoji of food & drink",
        "flag: japan, a country flag emoji of flags", "flag: france, a country flag emoji of flags"};
    char path[] = "/tmp/vlp-bpe-train-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    vlp_error err = {0};
    int learnt;
    assert_int_equal(bpe_train(caps, 7, 300, 2, path, &learnt, &err), VLP_OK);
    assert_true(learnt > 20 && learnt <= 300);
    text_tokenizer t;
    assert_int_equal(bpe_load(path, 0, &t, &err), VLP_OK);
    assert_int_equal(t.vocab_size, 512 + learnt + 2);
    int32_t ids[128];
    int n = bpe_encode_ids(&t, caps[0], ids, 128);
    assert_true(n > 0 && n < (int)strlen(caps[0]) / 3); /* frequent words became single tokens */
    for (int i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < 512 + learnt);
    tokenizer_free(&t);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_invalid_utf8_and_truncation),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_bad_merges_files),
        cmocka_unit_test(test_trainer_small_example),
        cmocka_unit_test(test_trainer_on_captions),
    };
    return cmocka_run_group_tests_name("bpe", tests, NULL, NULL);
}
