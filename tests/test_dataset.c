/* Datasets and the streaming loader: brace expansion; TSV/CSV (columns by
 * name, relative paths, CSV quotes, bad rows skipped); WebDataset shards
 * (grouping by key, txt and json captions, a truncated shard and incomplete
 * samples skipped and counted); epoch orders fixed by (seed, epoch) and ranks
 * disjoint; the threaded loader gives the same batches with 1 or 3 workers
 * and after a seek, and skips images that do not decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "data/bpe_train.h"
#include "data/bpe.h"
#include "data/dataset.h"
#include "data/stream_loader.h"
#include "data/tar.h"

#define N 24

static char g_dir[64];

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

static const char *tmp(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

/* N images (copies of the reference PNG/JPEG) in g_dir, a TSV and a CSV over
 * them (plus a row whose file is missing and one that is not an image), and
 * three shards (the last truncated). */
static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vlp-data-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    size_t np, nj;
    char abs_png[512], abs_jpg[512];
    snprintf(abs_png, sizeof abs_png, "%s", ref_path("img_src.png"));
    snprintf(abs_jpg, sizeof abs_jpg, "%s", ref_path("img_src.jpg"));
    uint8_t *png = slurp(abs_png, &np), *jpg = slurp(abs_jpg, &nj);
    FILE *tsv = fopen(tmp("pairs.tsv"), "w"), *csv = fopen(tmp("pairs.csv"), "w");
    fprintf(tsv, "id\ttitle\tfilepath\n");
    fprintf(csv, "filepath,title\n");
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%02d.%s", i, i % 2 ? "jpg" : "png");
        FILE *fp = fopen(tmp(name), "wb");
        fwrite(i % 2 ? jpg : png, 1, i % 2 ? nj : np, fp);
        fclose(fp);
        fprintf(tsv, "%d\tcaption number %d\t%s\n", i, i, name);
        fprintf(csv, "%s,\"caption, number \"\"%d\"\"\"\n", name, i);
    }
    fprintf(tsv, "99\tmissing file\tnope.png\n");
    fprintf(tsv, "98\ttoo few fields\n");
    fprintf(tsv, "97\t \timg00.png\n");                  /* an empty caption */
    fprintf(tsv, "96\ttoo many\timg00.png\textra\n");   /* the wrong number of fields */
    fclose(tsv), fclose(csv);
    /* shards: 10 + 10 samples, then 4 in a shard cut short */
    vlp_error err = {0};
    for (int s = 0; s < 3; s++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%02d.tar", s);
        tar_writer w;
        if (tar_create(&w, tmp(name), &err) != VLP_OK) return -1;
        int lo = s * 10, hi = s < 2 ? lo + 10 : N;
        for (int i = lo; i < hi; i++) {
            char key[64], cap[64];
            snprintf(key, sizeof key, "%06d.%s", i, i % 2 ? "jpg" : "png");
            tar_add(&w, key, i % 2 ? jpg : png, i % 2 ? nj : np, &err);
            snprintf(cap, sizeof cap, "caption number %d", i);
            if (i % 3 == 0) {
                char json[96];
                snprintf(json, sizeof json, "{\"title\": \"%s\", \"other\": 1}", cap);
                snprintf(key, sizeof key, "%06d.json", i);
                tar_add(&w, key, json, strlen(json), &err);
            } else {
                snprintf(key, sizeof key, "%06d.txt", i);
                tar_add(&w, key, cap, strlen(cap), &err);
            }
        }
        tar_add(&w, "999999.txt", "a caption without an image", 26, &err); /* incomplete: skipped */
        if (s == 0) { /* an image whose caption is empty: skipped */
            tar_add(&w, "999998.png", png, np, &err);
            tar_add(&w, "999998.txt", "  ", 2, &err);
        }
        if (tar_finish(&w, &err) != VLP_OK) return -1;
    }
    assert_int_equal(truncate(tmp("shard-02.tar"), 512 * 6), 0); /* cut inside the third shard */
    free(png), free(jpg);
    return 0;
}

static int teardown(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_brace_expand(void **state) {
    char **v;
    int n = brace_expand("data/train-{0008..0011}.tar", &v);
    assert_int_equal(n, 4);
    assert_string_equal(v[0], "data/train-0008.tar");
    assert_string_equal(v[3], "data/train-0011.tar");
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    n = brace_expand("{a,b}-{1..2}.tar", &v);
    assert_int_equal(n, 4);
    assert_string_equal(v[1], "a-2.tar");
    assert_string_equal(v[2], "b-1.tar");
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    assert_int_equal(brace_expand("x-{5..2}.tar", &v), -1);
    assert_int_equal(brace_expand("x-{1..2.tar", &v), -1);
    /* bounds near LONG_MAX are refused: the loop stepped past LONG_MAX (signed overflow, a hang) */
    assert_int_equal(brace_expand("x-{9223372036854775807..9223372036854775807}.tar", &v), -1);
    assert_int_equal(brace_expand("x-{99999999999999999999..99999999999999999999}.tar", &v), -1);
}

/* all captions of an epoch, in order */
static int epoch_captions(sample_stream *s, int64_t epoch, char caps[][64]) {
    vlp_error err = {0};
    check(stream_begin(s, epoch, &err), &err);
    int n = 0;
    for (;;) {
        raw_sample r;
        bool done;
        check(stream_next(s, &r, &done, &err), &err);
        if (done) break;
        assert_true(r.image_len > 0);
        strncpy(caps[n], r.caption, 63); /* pads with NULs: rows compare with memcmp */
        caps[n++][63] = 0;
        raw_sample_free(&r);
    }
    return n;
}

typedef struct warnings {
    int n;
    char last[512];
} warnings;

static void on_warn(void *ctx, const char *msg) {
    warnings *w = ctx;
    w->n++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

static void test_tsv_and_csv(void **state) {
    dataset_opts o = dataset_opts_default();
    warnings w = {0};
    o.seed = 3, o.warn = on_warn, o.warn_ctx = &w;
    sample_stream *s;
    vlp_error err = {0};
    check(stream_open(&s, tmp("pairs.tsv"), &o, &err), &err);
    assert_int_equal(stream_epoch_size(s), N + 1); /* the missing file counts until it is read */
    assert_int_equal(w.n, 3);
    char a[N + 1][64], b[N + 1][64], c[N + 1][64];
    assert_int_equal(epoch_captions(s, 0, a), N);
    const char *why;
    /* too few fields, an empty caption, too many fields (at open), the missing file */
    assert_int_equal(stream_skipped(s, &why), 4);
    assert_int_equal(w.n, 4); /* one warning each */
    assert_non_null(strstr(why, "pairs.tsv:27: 2 fields, the header has 3"));
    assert_non_null(strstr(w.last, "nope.png"));
    assert_int_equal(epoch_captions(s, 0, b), N);
    assert_memory_equal(a, b, sizeof(a[0]) * N);      /* same epoch, same order */
    assert_int_equal(epoch_captions(s, 1, c), N);
    assert_memory_not_equal(a, c, sizeof(a[0]) * N);  /* next epoch, new order */
    stream_free(s);
    /* two ranks: disjoint, together everything */
    o.world = 2;
    int seen[N] = {0};
    for (int r = 0; r < 2; r++) {
        o.rank = r;
        check(stream_open(&s, tmp("pairs.tsv"), &o, &err), &err);
        int n = epoch_captions(s, 0, a);
        for (int i = 0; i < n; i++) seen[atoi(a[i] + strlen("caption number "))]++;
        stream_free(s);
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    /* CSV with quotes; a header without the column is named */
    o = dataset_opts_default();
    o.shuffle = false;
    check(stream_open(&s, tmp("pairs.csv"), &o, &err), &err);
    assert_int_equal(epoch_captions(s, 0, a), N);
    assert_string_equal(a[5], "caption, number \"5\"");
    stream_free(s);
    o.caption_key = "text";
    assert_int_equal(stream_open(&s, tmp("pairs.csv"), &o, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "lacks column 'text'"));
}

static void test_webdataset(void **state) {
    dataset_opts o = dataset_opts_default();
    o.shuffle = false;
    char spec[600];
    snprintf(spec, sizeof spec, "%s/shard-{00..02}.tar", g_dir);
    sample_stream *s;
    vlp_error err = {0};
    check(stream_open(&s, spec, &o, &err), &err);
    char a[64][64];
    int n = epoch_captions(s, 0, a);
    assert_true(n >= 20 && n < N); /* the truncated shard gives what came before the cut */
    assert_string_equal(a[0], "caption number 0"); /* from json */
    assert_string_equal(a[1], "caption number 1"); /* from txt */
    const char *why;
    assert_true(stream_skipped(s, &why) >= 4); /* captions without images, an empty caption, the cut */
    assert_non_null(strstr(why, "shard-00.tar"));
    stream_free(s);
    /* shuffled: a permutation, fixed by the seed */
    o.shuffle = true, o.shuffle_buffer = 8, o.seed = 5;
    char b[64][64], c[64][64];
    check(stream_open(&s, spec, &o, &err), &err);
    int n1 = epoch_captions(s, 0, b), n2 = epoch_captions(s, 0, c);
    assert_int_equal(n1, n);
    assert_int_equal(n2, n);
    assert_memory_equal(b, c, sizeof(b[0]) * (size_t)n);
    assert_memory_not_equal(a, b, sizeof(a[0]) * (size_t)n);
    stream_free(s);
    snprintf(spec, sizeof spec, "%s/nothing-{0..1}.tar", g_dir);
    assert_int_equal(stream_open(&s, spec, &o, &err), VLP_ERR_IO);
}

static text_tokenizer tokenizer(void) {
    const char *caps[] = {"caption number 1", "caption number 2", "caption number 3"};
    vlp_error err = {0};
    check(bpe_train(caps, 3, 20, 2, tmp("merges.txt"), NULL, &err), &err);
    text_tokenizer t;
    check(bpe_load(tmp("merges.txt"), 0, &t, &err), &err);
    return t;
}

static void loader_batches(int workers, bool seek_first, float *images, int32_t *ids, int nb) {
    text_tokenizer tok = tokenizer();
    dataset_opts o = dataset_opts_default();
    o.seed = 9;
    sample_stream *s;
    vlp_error err = {0};
    check(stream_open(&s, tmp("pairs.tsv"), &o, &err), &err);
    stream_loader_opts lo = stream_loader_defaults(16, true, 8, &tok);
    lo.workers = workers, lo.prefetch = 7, lo.seed = 9;
    batch_loader l;
    check(stream_loader_create(&l, s, &lo, &err), &err);
    size_t img = 3 * 16 * 16;
    int b0 = 0;
    if (seek_first) { /* what a resumed run does: epoch 0 gave batches 0-3 (24 usable of 25,
                       * batch 5), epoch 1 batches 4 and 5; index 10 of epoch 1 is batch 6 */
        check(l.seek(l.impl, (data_pos){1, 10}, &err), &err);
        b0 = 6;
    }
    for (int b = b0; b < nb; b++) check(l.next(l.impl, 5, images + (size_t)b * 5 * img, ids + (size_t)b * 5 * 8, &err), &err);
    if (!seek_first) {
        data_pos p = l.tell(l.impl);
        assert_true(p.epoch >= 1);
    }
    loader_free(&l);
    tokenizer_free(&tok);
}

static void test_loader_is_deterministic(void **state) {
    enum { NB = 9 };
    size_t img = 3 * 16 * 16;
    float *i1 = calloc(NB * 5 * img, 4), *i3 = calloc(NB * 5 * img, 4), *is = calloc(NB * 5 * img, 4);
    int32_t *t1 = calloc(NB * 5 * 8, 4), *t3 = calloc(NB * 5 * 8, 4), *ts = calloc(NB * 5 * 8, 4);
    loader_batches(1, false, i1, t1, NB);
    loader_batches(3, false, i3, t3, NB);
    assert_memory_equal(i1, i3, NB * 5 * img * 4);
    assert_memory_equal(t1, t3, NB * 5 * 8 * 4);
    /* resuming at (epoch 1, index 10) continues with batch 6 */
    loader_batches(2, true, is, ts, NB);
    assert_memory_equal(is + 6 * 5 * img, i1 + 6 * 5 * img, (NB - 6) * 5 * img * 4);
    assert_memory_equal(ts + 6 * 5 * 8, t1 + 6 * 5 * 8, (NB - 6) * 5 * 8 * 4);
    free(i1), free(i3), free(is), free(t1), free(t3), free(ts);
}

/* An image that does not decode is skipped and counted; the batch fills from the next. */
static void test_loader_skips_bad_images(void **state) {
    FILE *fp = fopen(tmp("bad.png"), "w");
    fputs("this is not a PNG", fp);
    fclose(fp);
    fp = fopen(tmp("bad.tsv"), "w");
    fprintf(fp, "filepath\ttitle\n");
    for (int i = 0; i < 7; i++) fprintf(fp, "%s\tcaption number %d\n", i == 3 ? "bad.png" : "img00.png", i);
    fclose(fp);
    text_tokenizer tok = tokenizer();
    dataset_opts o = dataset_opts_default();
    o.shuffle = false;
    sample_stream *s;
    vlp_error err = {0};
    check(stream_open(&s, tmp("bad.tsv"), &o, &err), &err);
    stream_loader_opts lo = stream_loader_defaults(16, false, 8, &tok);
    batch_loader l;
    check(stream_loader_create(&l, s, &lo, &err), &err);
    static float img[7 * 3 * 16 * 16]; /* room for the 7 the last call asks for */
    int32_t ids[7 * 8];
    check(l.next(l.impl, 3, img, ids, &err), &err);
    check(l.next(l.impl, 3, img, ids, &err), &err); /* rows 4-6: the bad row 3 was skipped */
    data_pos p = l.tell(l.impl);
    assert_int_equal(p.index, 7);
    char why[256];
    assert_int_equal(stream_loader_skipped(&l, why, sizeof why), 1);
    assert_non_null(strstr(why, "bad.png"));
    /* a batch larger than what an epoch can give is an error, not a hang;
     * the data's fault (a bad file) when samples were skipped, so named */
    assert_int_equal(l.next(l.impl, 7, img, ids, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "6 usable samples, fewer than the batch of 7 (1 unusable so far; the first: "));
    loader_free(&l);
    tokenizer_free(&tok);
}

/* A folder of class folders (torchvision's ImageFolder layout): the class
 * (its folder's name, '_' read as a space) is the caption and the label;
 * classes and files in name order; a file that is not an image is ignored,
 * one that does not read is skipped and counted, a class folder without an
 * image is reported; the epoch's order and the readers' shares as a table's. */
static void test_class_folders(void **state) {
    size_t np;
    uint8_t *png = slurp(ref_path("img_src.png"), &np);
    char root[128], cmd[1024], link[192];
    snprintf(root, sizeof root, "%s/classes", g_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/red_car %s/blue %s/empty %s/.hidden", root, root, root, root);
    assert_int_equal(system(cmd), 0);
    const char *files[] = {"blue/b2.png", "blue/b1.png", "red_car/r1.png", ".hidden/h.png", "blue/notes.txt"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", root, files[i]);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        fwrite(png, 1, np, fp);
        fclose(fp);
    }
    snprintf(link, sizeof link, "%s/red_car/r0.png", root);
    assert_int_equal(symlink("/nonexistent.png", link), 0); /* does not read */
    free(png);
    dataset_opts o = dataset_opts_default();
    o.shuffle = false;
    sample_stream *s;
    vlp_error err = {0};
    check(stream_open(&s, root, &o, &err), &err);
    assert_string_equal(stream_kind(s), "folder");
    assert_int_equal(stream_epoch_size(s), 4); /* b1 b2 r0 r1; notes.txt and .hidden are not samples */
    const char *why;
    assert_int_equal(stream_skipped(s, &why), 1);
    assert_non_null(strstr(why, "class folder 'empty' holds no image"));
    check(stream_begin(s, 0, &err), &err);
    const char *want[][2] = {{"blue/b1.png", "blue"}, {"blue/b2.png", "blue"}, {"red_car/r1.png", "red car"}};
    for (int i = 0; i < 3; i++) {
        raw_sample r;
        bool done;
        check(stream_next(s, &r, &done, &err), &err);
        assert_false(done);
        assert_non_null(strstr(r.what, want[i][0]));
        assert_string_equal(r.caption, want[i][1]);
        assert_string_equal(r.alt_caption, want[i][1]);
        assert_int_equal(r.image_len, np);
        int64_t epoch, index;
        stream_position(s, &epoch, &index);
        assert_int_equal(epoch, 0);
        assert_int_equal(index, i + 1);
        raw_sample_free(&r);
    }
    raw_sample r;
    bool done;
    check(stream_next(s, &r, &done, &err), &err);
    assert_true(done);
    assert_int_equal(stream_skipped(s, &why), 2); /* r0.png could not be read */
    stream_free(s);
    /* two readers share the rows as a table's are shared */
    o.world = 2, o.rank = 1;
    check(stream_open(&s, root, &o, &err), &err);
    assert_int_equal(stream_epoch_size(s), 2);
    stream_free(s);
    /* a folder without class folders is refused, naming the layout */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/empty/nothing", root);
    assert_int_equal(system(cmd), 0);
    snprintf(link, sizeof link, "%s/empty", root);
    assert_int_equal(stream_open(&s, link, &o, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "no class folder with images"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brace_expand),
        cmocka_unit_test(test_tsv_and_csv),
        cmocka_unit_test(test_webdataset),
        cmocka_unit_test(test_class_folders),
        cmocka_unit_test(test_loader_is_deterministic),
        cmocka_unit_test(test_loader_skips_bad_images),
    };
    return cmocka_run_group_tests_name("dataset", tests, setup, teardown);
}
