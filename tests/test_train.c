/* Training end to end on a small CLIP and synthetic pairs: checkpoints are
 * open_clip state dicts (names and shapes as the PyTorch module of
 * tests/ref/check_checkpoint.py lists them), a resumed run repeats the
 * uninterrupted run's losses and weights bit for bit, contrastive gradient
 * accumulation gives the full batch's gradient, and a process killed with
 * SIGKILL while writing checkpoints leaves one that resumes exactly. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vlp.h"
#include "testutil.h"
#include "data/loader.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "model/clip_io.h"
#include "train/objectives/shared.h"
#include "train/runfiles.h"
#include "train/trainer.h"

#define NPAIRS 20
#define S 16


typedef struct fixture {
    clip_config cfg;
    clip_model m;
    text_tokenizer tok;
    uint8_t rgb[NPAIRS * S * S * 3];
    char captions[NPAIRS][64];
    const char *cap_ptrs[2 * NPAIRS]; // (NPAIRS, 2): two captions per image
    batch_loader loader;
    trainer *t;
} fixture;

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("%s", vlp_error_format_debug(err, buf, sizeof buf));
}

/* one option of the objective, which must have it */
static void set_opt(train_opts *o, const char *key, float v) {
    vlp_error err = {0};
    check(train_opts_set(o, key, v, &err), &err);
}

static train_opts small_opts(void) {
    train_opts o = train_opts_defaults();
    o.batch = 8, o.steps = 12, o.warmup = 2, o.grad_clip = 1.0, o.seed = 11;
    o.adam.lr = 1e-3f;
    return o;
}

/* Pairs, tokenizer, model (initialised from init_seed) and loader; a trainer
 * on run_dir when given. width: the towers' width (bigger → slower writes). */
static void fixture_init_heads(fixture *f, const train_opts *o, uint64_t init_seed,
                               const char *run_dir, int width, bool every_head) {
    memset(f, 0, sizeof *f);
    synthetic_pairs(5, f->rgb, sizeof f->rgb, f->captions, NPAIRS);
    for (int i = 0; i < NPAIRS; i++)
        f->cap_ptrs[2 * i] = f->captions[i], f->cap_ptrs[2 * i + 1] = f->captions[(i + 7) % NPAIRS];
    vlp_error err = {0};
    /* a BPE learnt on the captions, as vlp train does */
    char merges[] = "/tmp/vlp-train-merges-XXXXXX";
    int fd = mkstemp(merges);
    assert_true(fd >= 0);
    close(fd);
    check(bpe_train(f->cap_ptrs, 2 * NPAIRS, 40, 2, merges, NULL, &err), &err);
    check(bpe_load(merges, 0, &f->tok, &err), &err);
    remove(merges);
    f->cfg = (clip_config){
        .embed_dim = 16,
        .vision = {.image_size = S, .patch_size = 4, .width = width, .layers = 2, .heads = 2, .mlp_width = 4 * width},
        .text = {.context_length = 8, .vocab_size = f->tok.vocab_size, .width = width, .layers = 2,
                 .heads = 2, .mlp_width = 4 * width}};
    bool coca = !strcmp(o->objective->name, "coca") || !strcmp(o->objective->name, "textlm");
    bool mae = !strcmp(o->objective->name, "mae") || !strcmp(o->objective->name, "clip-mae");
    bool fusion = !strcmp(o->objective->name, "itc-itm-mlm");
    if (coca || every_head) {
        /* a one-layer decoder; its width is the text tower's and the embedding's */
        f->cfg.embed_dim = width;
        f->cfg.multimodal = (clip_multimodal_cfg){.width = width, .heads = 2, .layers = 1,
                                                  .mlp_width = 4 * width};
    }
    if (fusion || every_head) { /* a one-layer fusion encoder, as wide as the text tower and the embedding */
        f->cfg.embed_dim = width;
        f->cfg.fusion = (clip_fusion_cfg){.width = width, .heads = 2, .layers = 1, .mlp_width = 4 * width};
    }
    if (every_head) f->cfg.has_logit_bias = true;
    if (mae || every_head)
        f->cfg.mae = (clip_mae_cfg){.width = 16, .heads = 2, .layers = 1, .mlp_width = 32};
    check(clip_init(&f->m, &f->cfg, &err), &err);
    clip_init_weights(&f->m, init_seed);
    image_norm norm = image_norm_openai();
    check(pair_loader_create(&f->loader, f->rgb, f->cap_ptrs, 2, NPAIRS, S, &f->tok, 8, &norm, o->seed, &err), &err);
    if (run_dir) check(trainer_create(&f->t, &f->m, &f->loader, o, run_dir, NULL, &err), &err);
}

static void fixture_init(fixture *f, const train_opts *o, uint64_t init_seed, const char *run_dir,
                         int width) {
    fixture_init_heads(f, o, init_seed, run_dir, width, false);
}

static void fixture_free(fixture *f) {
    trainer_free(f->t);
    loader_free(&f->loader);
    tokenizer_free(&f->tok);
    clip_free(&f->m);
}

static char *make_dir(void) {
    char *d = strdup("/tmp/vlp-train-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}


/* ---- checkpoints ---------------------------------------------------------------------- */

static void test_checkpoint_round_trip(void **state) {
    char *dir = make_dir();
    train_opts o = small_opts();
    fixture f;
    fixture_init(&f, &o, 3, NULL, 32);
    char path[256];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    vlp_error err = {0};
    st_meta extra[] = {{"vlp.step", "7"}};
    check(clip_save(&f.m, path, extra, 1, &err), &err);

    clip_model back;
    check(clip_load(&back, path, &err), &err);
    assert_int_equal(back.cfg.embed_dim, f.m.cfg.embed_dim); /* fields: the struct has padding */
    assert_int_equal(back.cfg.quick_gelu, f.m.cfg.quick_gelu);
    assert_memory_equal(&back.cfg.vision, &f.m.cfg.vision, sizeof f.m.cfg.vision);
    assert_memory_equal(&back.cfg.text, &f.m.cfg.text, sizeof f.m.cfg.text);
    assert_int_equal(back.nfloats, f.m.nfloats);
    assert_memory_equal(back.weights, f.m.weights, sizeof(float) * f.m.nfloats);

    /* only the image tower (LiT's --init-image): visual.* from the file, the rest kept */
    clip_model part;
    check(clip_init(&part, &f.cfg, &err), &err);
    clip_init_weights(&part, 99);
    float *w99 = malloc(sizeof(float) * part.nfloats);
    memcpy(w99, part.weights, sizeof(float) * part.nfloats);
    st_file *pf;
    check(st_open(path, &pf, &err), &err);
    check(clip_load_prefix(&part, pf, "visual.", &err), &err);
    assert_int_equal(clip_load_prefix(&part, pf, "nothing.", &err), VLP_ERR_FORMAT);
    st_close(pf);
    for (int i = 0; i < part.nparams; i++) {
        const clip_param *p = &part.params[i];
        const float *want = strncmp(p->name, "visual.", 7) ? w99 : f.m.weights;
        assert_memory_equal(part.weights + p->offset, want + p->offset, sizeof(float) * p->numel);
    }
    free(w99);
    clip_free(&part);

    /* a model of another shape: the first tensor that differs is named */
    clip_config other = f.cfg;
    other.embed_dim = 8;
    clip_model m8;
    check(clip_init(&m8, &other, &err), &err);
    st_file *sf;
    check(st_open(path, &sf, &err), &err);
    assert_int_equal(clip_load_weights(&m8, sf, &err), VLP_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'text_projection' has shape [32, 16], the model wants [32, 8]"));
    st_close(sf);
    clip_free(&m8);

    /* a file missing a tensor, and one with a tensor the model lacks */
    st_tensor ts[2] = {{.name = "logit_scale", .dtype = ST_F32, .ndim = 0, .data = f.m.views.logit_scale},
                       {.name = "visual.extra.bias", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = f.m.views.logit_scale}};
    check(st_write(path, ts, 1, NULL, 0, &err), &err);
    check(st_open(path, &sf, &err), &err);
    assert_int_equal(clip_load_weights(&back, sf, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'positional_embedding' is missing"));
    st_close(sf);
    check(st_write(path, ts, 2, NULL, 0, &err), &err);
    check(st_open(path, &sf, &err), &err);
    assert_int_equal(clip_load_weights(&back, sf, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'visual.extra.bias' is not a parameter"));
    st_close(sf);
    /* no config in the metadata */
    assert_int_equal(clip_load(&m8, path, &err), VLP_ERR_FORMAT);
    assert_non_null(strstr(err.message, "vlp.config"));
    clip_free(&back);
    fixture_free(&f);
    remove_dir(dir);
}

/* The names, shapes and order of the state dict equal those of the PyTorch
 * module with open_clip's structure (tests/ref/check_checkpoint.py --keys). */
static void test_keys_match_torch_module(void **state) {
    const char *path = ref_path("clip_state_dict_keys.txt");
    FILE *fp = fopen(path, "r");
    if (!fp) fail_msg("cannot open %s (make ref regenerates it)", path);
    clip_config cfg;
    char line[512];
    assert_non_null(fgets(line, sizeof line, fp)); /* the config as JSON on the first line */
    vlp_error err = {0};
    check(clip_config_parse(line, path, &cfg, &err), &err);
    clip_model m;
    check(clip_init(&m, &cfg, &err), &err);
    int i = 0;
    while (fgets(line, sizeof line, fp)) {
        char want[512], got[512];
        snprintf(want, sizeof want, "%s", line);
        want[strcspn(want, "\n")] = '\0';
        if (i >= m.nparams) fail_msg("torch has more tensors than vlp; next: %s", want);
        const clip_param *p = &m.params[i++];
        int k = snprintf(got, sizeof got, "%s", p->name);
        for (int d = 0; d < p->ndim; d++) k += snprintf(got + k, sizeof got - (size_t)k, " %lld", (long long)p->shape[d]);
        if (strcmp(got, want)) fail_msg("tensor %d: vlp has '%s', torch '%s'", i - 1, got, want);
    }
    fclose(fp);
    assert_int_equal(i, m.nparams);
    clip_free(&m);
}

/* ---- resume --------------------------------------------------------------------------- */

static void test_resume_is_bit_exact(void **state) {
    enum { N = 12, K = 5 }; /* 20 pairs, batch 8: 2 batches an epoch, so epochs roll over */
    train_opts o = small_opts();
    char *d1 = make_dir(), *d2 = make_dir();
    fixture a, b;
    float la[N], lb[N];
    fixture_init(&a, &o, o.seed, d1, 32);
    train_steps(a.t, N, la);

    fixture_init(&b, &o, o.seed, d2, 32);
    train_steps(b.t, K, lb);
    vlp_error err = {0};
    check(trainer_save(b.t, 2, NULL, 0, &err), &err);
    train_steps(b.t, 2, NULL); /* work after the checkpoint that the "crash" loses */
    fixture_free(&b);

    fixture_init(&b, &o, 999 /* overwritten by the checkpoint */, d2, 32);
    check(trainer_resume(b.t, &err), &err);
    assert_int_equal(trainer_step_count(b.t), K);
    train_steps(b.t, N - K, lb + K);
    assert_memory_equal(la + K, lb + K, sizeof(float) * (N - K));
    assert_memory_equal(a.m.weights, b.m.weights, sizeof(float) * a.m.nfloats);
    /* and the losses really changed: the test would notice a frozen model */
    assert_true(fabsf(la[N - 1] - la[0]) > 1e-3f);
    fixture_free(&a), fixture_free(&b);

    /* other options than the run's are refused, naming what the run used */
    train_opts o2 = o;
    o2.batch = 4;
    fixture_init(&b, &o2, 1, d2, 32);
    assert_int_equal(trainer_resume(b.t, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "batch 8"));
    fixture_free(&b);
    /* every option of the math is compared, betas and eps too; steps may change */
    o2 = o, o2.adam.beta2 = 0.95f;
    fixture_init(&b, &o2, 1, d2, 32);
    assert_int_equal(trainer_resume(b.t, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--beta2 0.98, not 0.95"));
    fixture_free(&b);
    o2 = o, o2.adam.eps = 1e-8f;
    fixture_init(&b, &o2, 1, d2, 32);
    assert_int_equal(trainer_resume(b.t, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--eps 1e-06, not 1e-08"));
    fixture_free(&b);
    o2 = o, o2.adam.decay_embeddings = false;
    fixture_init(&b, &o2, 1, d2, 32);
    assert_int_equal(trainer_resume(b.t, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "--wd-embeddings on, not off"));
    fixture_free(&b);
    o2 = o, o2.steps = o.steps + 4;
    fixture_init(&b, &o2, 1, d2, 32);
    check(trainer_resume(b.t, &err), &err);
    fixture_free(&b);
    /* a truncated state file is an error, not a crash */
    char p[256];
    snprintf(p, sizeof p, "%s/ckpt-%08d.state", d2, K);
    assert_int_equal(truncate(p, 100), 0);
    fixture_init(&b, &o, 1, d2, 32);
    assert_int_not_equal(trainer_resume(b.t, &err), VLP_OK);
    fixture_free(&b);
    remove_dir(d1), remove_dir(d2);
}

static int count_lines(const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    int n = 0, c;
    while ((c = fgetc(fp)) != EOF) n += c == '\n';
    fclose(fp);
    return n;
}

static void test_resume_drops_later_metrics(void **state) {
    train_opts o = small_opts();
    char *d = make_dir();
    fixture f;
    fixture_init(&f, &o, o.seed, d, 32);
    vlp_error err = {0};
    char line[64];
    for (int s = 1; s <= 5; s++) {
        train_steps(f.t, 1, NULL);
        snprintf(line, sizeof line, "{\"step\":%d,\"loss\":1}", s);
        check(trainer_log(f.t, line, &err), &err);
        if (s == 3) check(trainer_save(f.t, 2, NULL, 0, &err), &err);
    }
    fixture_free(&f);
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.jsonl", d);
    assert_int_equal(count_lines(path), 5);
    fixture_init(&f, &o, o.seed, d, 32);
    check(trainer_resume(f.t, &err), &err);
    assert_int_equal(count_lines(path), 3);
    fixture_free(&f);
    remove_dir(d);
}

/* pruning keeps the run's own newest checkpoints: a stray file whose step
 * does not fit (sscanf took it as LONG_MAX, the "newest") is not one */
static void test_prune_ignores_odd_names(void **state) {
    train_opts o = small_opts();
    char *d = make_dir(), stray[256], path[256];
    snprintf(stray, sizeof stray, "%s/ckpt-99999999999999999999.safetensors", d);
    FILE *fp = fopen(stray, "w");
    assert_non_null(fp);
    fclose(fp);
    fixture f;
    fixture_init(&f, &o, o.seed, d, 32);
    vlp_error err = {0};
    for (int s = 1; s <= 2; s++) {
        train_steps(f.t, 1, NULL);
        check(trainer_save(f.t, 1, NULL, 0, &err), &err);
    }
    fixture_free(&f);
    snprintf(path, sizeof path, "%s/ckpt-00000002.safetensors", d);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/ckpt-00000001.safetensors", d);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(access(stray, F_OK), 0); /* not the run's: left alone */
    remove_dir(d);
}

/* latest.state rewritten with one metadata value replaced */
static void tamper_state(const char *dir, const char *key, const char *value) {
    static const char *const keys[] = {"format", "version", "step", "epoch", "index", "checkpoint", "options", "world"};
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/latest.state", dir);
    snprintf(tmp, sizeof tmp, "%s/tampered.state", dir);
    st_file *f;
    vlp_error err = {0};
    check(st_open(path, &f, &err), &err);
    st_meta meta[8];
    for (int i = 0; i < 8; i++) meta[i] = (st_meta){keys[i], strcmp(keys[i], key) ? st_meta_get(f, keys[i]) : value};
    st_tensor ts[2] = {*st_at(f, 0), *st_at(f, 1)};
    check(st_write(tmp, ts, 2, meta, 8, &err), &err);
    st_close(f);
    assert_int_equal(rename(tmp, path), 0);
}

/* a state whose numbers no run makes, or whose checkpoint is no file name, is
 * refused by name (issue 31: an epoch near 2^63 overflowed epoch + 1) */
static void test_resume_refuses_bad_state(void **state) {
    train_opts o = small_opts();
    static const char *const cases[][3] = {
        {"epoch", "9223372036854775807", "metadata \"epoch\" is '9223372036854775807', not a whole number in 0.."},
        {"epoch", "99999999999999999999", "metadata \"epoch\" is '99999999999999999999'"},
        {"step", "1099511627777", "metadata \"step\" is '1099511627777', not a whole number in 0..1099511627776"},
        {"index", "-1", "metadata \"index\" is '-1'"},
        {"checkpoint", "", "metadata \"checkpoint\" is missing or not a file name"},
        {"checkpoint", "..", "metadata \"checkpoint\" is missing or not a file name"},
        {"step", "+1", "metadata \"step\" is '+1'"},
        {"index", " 1", "metadata \"index\" is ' 1'"},
        {"world", "0", "metadata \"world\" is 0"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char *d = make_dir();
        fixture f;
        fixture_init(&f, &o, o.seed, d, 32);
        vlp_error err = {0};
        train_steps(f.t, 1, NULL);
        check(trainer_save(f.t, 2, NULL, 0, &err), &err);
        fixture_free(&f);
        tamper_state(d, cases[k][0], cases[k][1]);
        fixture_init(&f, &o, o.seed, d, 32);
        assert_int_equal(trainer_resume(f.t, &err), VLP_ERR_FORMAT);
        if (!strstr(err.message, cases[k][2])) fail_msg("%s: '%s'", cases[k][0], err.message);
        fixture_free(&f);
        remove_dir(d);
    }
}

/* a rank's position file: what run_pos_format writes reads back, and
 * nothing else (an epoch near 2^63 was taken by fscanf) */
static void test_rank_pos_file(void **state) {
    const data_pos good[] = {{0, 0}, {3, 17}, {RUN_MAX_EPOCH, RUN_MAX_INDEX}};
    for (size_t k = 0; k < sizeof good / sizeof *good; k++) {
        char line[RUN_POS_CAP];
        run_pos_format(line, good[k]);
        data_pos p = {-1, -1};
        vlp_error err = {0};
        check(run_pos_parse(line, "r.pos", &p, &err), &err);
        assert_true(p.epoch == good[k].epoch && p.index == good[k].index);
    }
    static const char *const bad[][2] = {
        {"9223372036854775807 0\n", "r.pos: the epoch is '9223372036854775807', not a whole number in 0..4503599627370496"},
        {"1 99999999999999999999\n", "r.pos: the index is '99999999999999999999'"},
        {"1 -2\n", "r.pos: the index is '-2'"},
        {"1 2", "r.pos: not \"epoch index\" on one line"},
        {"1 2\n3 4\n", "r.pos: not \"epoch index\" on one line"},
        {"", "r.pos: not \"epoch index\" on one line"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        data_pos p;
        vlp_error err = {0};
        assert_int_equal(run_pos_parse(bad[k][0], "r.pos", &p, &err), VLP_ERR_FORMAT);
        if (!strstr(err.message, bad[k][1])) fail_msg("'%s': '%s'", bad[k][0], err.message);
    }
}

/* ---- accumulation --------------------------------------------------------------------- */

/* 4 micro-batches give the whole batch's loss and gradient: CLIP, CoCa
 * (contrastive + captions, with and without PRIOR's weights) and the
 * text-only LM */
static void accumulation_matches(train_opts o, clip_model *ref) {
    o.grad_clip = 0;
    char *d1 = make_dir(), *d2 = make_dir();
    fixture full, acc;
    fixture_init(&full, &o, o.seed, d1, 32);
    o.accum = 4;
    fixture_init(&acc, &o, o.seed, d2, 32);
    vlp_error err = {0};
    if (ref) {
        check(trainer_set_model(full.t, "prior", ref, &err), &err);
        check(trainer_set_model(acc.t, "prior", ref, &err), &err);
    }
    train_step_info i1, i2;
    check(trainer_step(full.t, &i1, &err), &err);
    check(trainer_step(acc.t, &i2, &err), &err);
    assert_true(isfinite(i1.loss) && i1.loss > 0);
    assert_true(fabsf(i1.loss - i2.loss) <= 1e-5f * fabsf(i1.loss));
    int with_grad = 0;
    for (int i = 0; i < full.m.nparams; i++) {
        const clip_param *p = &full.m.params[i];
        float big = 0;
        for (size_t k = 0; k < p->numel; k++) big = fmaxf(big, fabsf(full.m.grads[p->offset + k]));
        with_grad += big > 0;
        assert_close(p->name, acc.m.grads + p->offset, full.m.grads + p->offset, p->numel, 1e-5 * big, 1e-4);
        /* the text-only LM learns the text tower below its head and the decoder
         * without its cross-attention; nothing else */
        if (!strcmp(o.objective->name, "textlm")) {
            bool unused = !strncmp(p->name, "visual.", 7) || !strcmp(p->name, "logit_scale") ||
                          !strncmp(p->name, "text_decoder.cross_attn.", 24) ||
                          !strcmp(p->name, "text_projection") || !strncmp(p->name, "ln_final.", 9);
            if (unused != (big == 0)) fail_msg("%s: gradient max %g", p->name, big);
        }
        /* MAE alone learns the image tower and its decoder, nothing else */
        if (!strcmp(o.objective->name, "mae")) {
            bool used = !strncmp(p->name, "visual.", 7) || !strncmp(p->name, "mae_decoder.", 12);
            if (used != (big > 0)) fail_msg("%s: gradient max %g", p->name, big);
        }
        if (!strcmp(o.objective->name, "coca") || !strcmp(o.objective->name, "clip-mae"))
            assert_true(big > 0); /* every parameter learns */
    }
    assert_true(with_grad >= 41); /* 41 of 91 for textlm (above), all for CoCa */
    fixture_free(&full), fixture_free(&acc);
    remove_dir(d1), remove_dir(d2);
}

static void test_accumulation_gives_full_batch_gradient(void **state) {
    accumulation_matches(small_opts(), NULL);
}

static void test_coca_accumulation(void **state) {
    train_opts o = small_opts();
    train_opts_set_objective(&o, objective_find("coca"));
    accumulation_matches(o, NULL);
}

static void test_textlm_accumulation(void **state) {
    train_opts o = small_opts();
    train_opts_set_objective(&o, objective_find("textlm"));
    accumulation_matches(o, NULL);
}

/* MAE alone and the joint objective: the masks are drawn per sample of the
 * whole batch, so micro-batches see the same ones */
static void test_mae_accumulation(void **state) {
    train_opts o = small_opts();
    train_opts_set_objective(&o, objective_find("mae"));
    accumulation_matches(o, NULL);
    train_opts_set_objective(&o, objective_find("clip-mae"));
    set_opt(&o, "mae_weight", 0.5f);
    accumulation_matches(o, NULL);
}

/* the joint loss is clip_weight · contrastive + mae_weight · MAE: weight 0
 * leaves the contrastive loss on the masked images, whose gradient never
 * reaches the MAE decoder; the masks change from step to step; MAE needs
 * mae_cfg and refuses a locked tower */
static void test_mae_weights_and_masks(void **state) {
    float loss[3];
    int32_t keep1[4];
    for (int k = 0; k < 3; k++) {
        train_opts q = small_opts();
        train_opts_set_objective(&q, objective_find("clip-mae"));
        set_opt(&q, "mae_weight", k == 0 ? 0.0f : k == 1 ? 1.0f : 2.0f);
        char *d = make_dir();
        fixture f;
        fixture_init(&f, &q, q.seed, d, 32);
        vlp_error err = {0};
        train_step_info info;
        check(trainer_step(f.t, &info, &err), &err);
        loss[k] = info.loss;
        const clip_param *p = clip_param_find(&f.m, "mae_decoder.pred.weight");
        float big = 0;
        for (size_t i = 0; i < p->numel; i++) big = fmaxf(big, fabsf(f.m.grads[p->offset + i]));
        assert_true((big > 0) == (k > 0));
        if (k == 1) { /* the next step draws other masks */
            memcpy(keep1, f.m.mae.keep, sizeof keep1);
            check(trainer_step(f.t, &info, &err), &err);
            assert_true(memcmp(keep1, f.m.mae.keep, sizeof keep1) != 0);
        }
        fixture_free(&f);
        remove_dir(d);
    }
    /* loss = contrastive + w · MAE: linear in w */
    assert_true(fabsf((loss[2] - loss[1]) - (loss[1] - loss[0])) <= 1e-5f * loss[2]);
    assert_true(loss[1] > loss[0]);

    train_opts q = small_opts();
    char *d = make_dir();
    fixture f;
    fixture_init(&f, &q, q.seed, NULL, 32); /* no mae_cfg */
    vlp_error err = {0};
    trainer *t2;
    train_opts_set_objective(&q, objective_find("mae"));
    assert_int_equal(trainer_create(&t2, &f.m, &f.loader, &q, d, NULL, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "mae_cfg"));
    q.lock_image = 0;
    assert_int_equal(trainer_create(&t2, &f.m, &f.loader, &q, d, NULL, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "locked"));
    q.lock_image = -1;
    set_opt(&q, "mask_ratio", 1.0f);
    assert_int_equal(trainer_create(&t2, &f.m, &f.loader, &q, d, NULL, &err), VLP_ERR_ARG);
    fixture_free(&f);
    remove_dir(d);
}

/* PRIOR: a reference LM (another initialisation of the same architecture);
 * accumulation stays exact, alpha 0 is plain CoCa, alpha 1 is not */
static void test_coca_prior(void **state) {
    train_opts o = small_opts();
    train_opts_set_objective(&o, objective_find("coca"));
    fixture ref;
    fixture_init(&ref, &o, 99, NULL, 32);
    set_opt(&o, "prior", 1);
    accumulation_matches(o, &ref.m);

    float loss[3];
    for (int k = 0; k < 3; k++) {
        train_opts q = small_opts();
        train_opts_set_objective(&q, objective_find("coca"));
        set_opt(&q, "prior", k > 0);
        set_opt(&q, "prior_alpha", k == 1 ? 0.0f : 1.0f);
        char *d = make_dir();
        fixture f;
        fixture_init(&f, &q, q.seed, d, 32);
        vlp_error err = {0};
        if (k > 0) check(trainer_set_model(f.t, "prior", &ref.m, &err), &err);
        train_step_info info;
        check(trainer_step(f.t, &info, &err), &err);
        loss[k] = info.loss;
        fixture_free(&f);
        remove_dir(d);
    }
    assert_true(loss[0] == loss[1]);
    assert_true(fabsf(loss[2] - loss[0]) > 1e-4f);
    /* PRIOR without its reference, or on another objective, is refused */
    train_opts q = small_opts();
    train_opts_set_objective(&q, objective_find("coca"));
    set_opt(&q, "prior", 1);
    char *d = make_dir();
    fixture f;
    fixture_init(&f, &q, q.seed, d, 32);
    vlp_error err = {0};
    train_step_info info;
    assert_int_equal(trainer_step(f.t, &info, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "reference"));
    train_opts_set_objective(&q, objective_find("clip"));
    assert_int_equal(train_opts_set(&q, "prior", 1, &err), VLP_ERR_ARG);
    assert_non_null(strstr(err.message, "coca"));
    fixture_free(&f);
    remove_dir(d);
    fixture_free(&ref);
}

/* ---- an objective from the test file alone ---------------------------------------------------- */

/* CLIP with a fixed temperature (no learnt logit scale): the whole objective
 * is this block and its table; nothing in the library names it. */
enum { TEMPERATURE };
static const objective_option fixed_options[] = {
    OBJECTIVE_NUMBER(TEMPERATURE, "temperature", "--temperature", "T",
                     "the fixed softmax temperature", 0.07f, 1e-3f, 10.0f),
};

static vlp_err fixed_grads(void *state, const objective_ctx *c, float *loss, vlp_error *err) {
    embeddings *e = state;
    float *scale = c->m->views.logit_scale, learnt = *scale;
    *scale = logf(1.0f / c->opt[TEMPERATURE]); /* InfoNCE reads the scale from the model */
    vlp_err rc = embeddings_encode(e, c, image_forward_plain, NULL, err);
    if (rc == VLP_OK) rc = infonce_grads(e, c, 1.0f, loss, err);
    if (rc == VLP_OK) rc = embeddings_backward(e, c, image_forward_plain, NULL, err);
    *scale = learnt;
    return rc;
}

static const objective fixed_temperature = {
    .name = "clip-fixed-t",
    .help = "InfoNCE at a fixed temperature",
    .options = fixed_options,
    .noptions = 1,
    .lock = LOCK_OPTIONAL,
    .trains = TRAINS_TOWERS, /* not the logit scale */
    .create = embeddings_create,
    .grads = fixed_grads,
    .free = embeddings_destroy,
};

/* It trains: at CLIP's initial temperature (0.07 = 1/exp(logit_scale)) its
 * first loss is the clip objective's, bit for bit; the logit scale never
 * moves while clip's does; another temperature gives another loss. */
static void test_objective_from_the_test_file(void **state) {
    float first[3], second[3], scale_after[3];
    for (int k = 0; k < 3; k++) {
        train_opts o = small_opts();
        if (k > 0) train_opts_set_objective(&o, &fixed_temperature);
        if (k == 2) set_opt(&o, "temperature", 0.2f);
        char *d = make_dir();
        fixture f;
        fixture_init(&f, &o, o.seed, d, 32);
        float scale0 = *f.m.views.logit_scale;
        assert_true(fabsf(expf(scale0) - 1.0f / 0.07f) < 1e-3f);
        vlp_error err = {0};
        train_step_info info;
        check(trainer_step(f.t, &info, &err), &err);
        first[k] = info.loss;
        check(trainer_step(f.t, &info, &err), &err);
        second[k] = info.loss;
        scale_after[k] = *f.m.views.logit_scale - scale0;
        assert_true(isfinite(second[k]) && second[k] != first[k]);
        fixture_free(&f);
        remove_dir(d);
    }
    printf("# clip %.6f %.6f, fixed 0.07 %.6f %.6f, fixed 0.2 %.6f %.6f; logit scale moved %g / %g\n",
           first[0], second[0], first[1], second[1], first[2], second[2], scale_after[0], scale_after[1]);
    assert_true(first[1] == first[0]);
    assert_true(scale_after[0] != 0.0f && scale_after[1] == 0.0f);
    assert_true(fabsf(first[2] - first[0]) > 1e-3f);
}

/* ---- a step that is not finite ------------------------------------------------------------- */

/* the fixture's loader, with NaN in one image of the nan_at-th batch */
typedef struct nan_loader {
    batch_loader *inner;
    int calls, nan_at;
} nan_loader;

static vlp_err nan_next(void *impl, int B, float *images, int32_t *ids, vlp_error *err) {
    nan_loader *l = impl;
    VLP_TRY(l->inner->next(l->inner->impl, B, images, ids, err));
    if (++l->calls == l->nan_at) images[5] = NAN;
    return VLP_OK;
}
static data_pos nan_tell(const void *impl) {
    const nan_loader *l = impl;
    return l->inner->tell(l->inner->impl);
}
static vlp_err nan_seek(void *impl, data_pos p, vlp_error *err) {
    nan_loader *l = impl;
    return l->inner->seek(l->inner->impl, p, err);
}

/* NaN in step 2's batch: the step is named and nothing is updated (the
 * weights stay step 1's: its checkpoint is good), or with skip_nonfinite the
 * step is skipped, counted, and step 3 trains on */
static void test_nonfinite_step(void **state) {
    for (int skip = 0; skip < 2; skip++) {
        train_opts o = small_opts();
        o.skip_nonfinite = skip;
        fixture f;
        fixture_init(&f, &o, o.seed, NULL, 32);
        nan_loader nl = {.inner = &f.loader, .nan_at = 2};
        batch_loader l = f.loader;
        l.impl = &nl, l.next = nan_next, l.tell = nan_tell, l.seek = nan_seek, l.free = NULL;
        char *d = make_dir();
        vlp_error err = {0};
        check(trainer_create(&f.t, &f.m, &l, &o, d, NULL, &err), &err);
        train_step_info info;
        check(trainer_step(f.t, &info, &err), &err);
        float *after1 = malloc(sizeof(float) * f.m.nfloats);
        memcpy(after1, f.m.weights, sizeof(float) * f.m.nfloats);
        vlp_err rc = trainer_step(f.t, &info, &err);
        assert_memory_equal(after1, f.m.weights, sizeof(float) * f.m.nfloats);
        if (!skip) {
            assert_int_equal(rc, VLP_ERR_NUMERIC);
            assert_non_null(strstr(err.message, "step 2: the loss is nan"));
            assert_int_equal(trainer_step_count(f.t), 1);
        } else {
            check(rc, &err);
            assert_true(info.skipped && info.step == 2);
            check(trainer_step(f.t, &info, &err), &err);
            assert_true(!info.skipped && isfinite(info.loss) && info.step == 3);
            assert_true(memcmp(after1, f.m.weights, sizeof(float) * f.m.nfloats) != 0);
        }
        free(after1);
        fixture_free(&f);
        remove_dir(d);
    }
}

/* ---- SIGKILL while writing checkpoints -------------------------------------------------- */

#define WRITER_WIDTH 96 /* ~1 MB checkpoints + 2 MB state: writes take a while */

/* The child: trains and checkpoints every step until killed. */
static int checkpoint_writer(const char *dir) {
    vlp_set_threads(1);
    train_opts o = small_opts();
    o.steps = 1000000;
    fixture f;
    fixture_init(&f, &o, o.seed, dir, WRITER_WIDTH);
    vlp_error err = {0};
    for (;;) {
        train_step_info info;
        if (trainer_step(f.t, &info, &err) != VLP_OK || trainer_save(f.t, 2, NULL, 0, &err) != VLP_OK) {
            fprintf(stderr, "writer: %s\n", err.message);
            return 1;
        }
    }
}

static void test_kill_during_checkpoint_write(void **state) {
    vlp_set_threads(1);
    train_opts o = small_opts();
    o.steps = 1000000;
    for (int round = 0; round < 4; round++) {
        char *d = make_dir();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execl("/proc/self/exe", "test_train", "--checkpoint-writer", d, (char *)NULL);
            _exit(127);
        }
        /* wait for its first checkpoint (slow under ASan or a loaded machine), then
         * let it write more and kill it at an arbitrary moment */
        char first[128];
        snprintf(first, sizeof first, "%s/latest.state", d);
        for (int waited = 0; access(first, F_OK) != 0 && waited < 600; waited++) {
            struct timespec poll = {0, 50 * 1000000L};
            nanosleep(&poll, NULL);
        }
        struct timespec ts = {0, (100 + 137 * round) * 1000000L};
        nanosleep(&ts, NULL);
        if (round == 0) { /* meanwhile the directory is the writer's alone */
            int fd;
            vlp_error lerr = {0};
            assert_int_equal(run_dir_lock(d, &fd, &lerr), VLP_ERR_IO);
            assert_non_null(strstr(lerr.message, "in use by another process"));
        }
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        fixture f;
        fixture_init(&f, &o, 1, d, WRITER_WIDTH);
        vlp_error err = {0};
        check(trainer_resume(f.t, &err), &err);
        long k = trainer_step_count(f.t);
        assert_true(k > 0);
        /* the checkpoint holds exactly the weights of k uninterrupted steps */
        char ref_dir[] = "/tmp/vlp-train-ref-XXXXXX";
        assert_non_null(mkdtemp(ref_dir));
        fixture r;
        fixture_init(&r, &o, o.seed, ref_dir, WRITER_WIDTH);
        train_steps(r.t, (int)k, NULL);
        assert_memory_equal(r.m.weights, f.m.weights, sizeof(float) * f.m.nfloats);
        fixture_free(&r), fixture_free(&f);
        remove_dir(strdup(ref_dir));
        remove_dir(d);
    }
    vlp_set_threads(0);
}

/* ---- locked-image tuning --------------------------------------------------------------- */

/* LiT: with the whole image tower locked its weights never move and the text
 * tower still learns; with the top groups unlocked, every trainable
 * parameter gets exactly the gradient the unlocked model gives it (the
 * backward just stops early), and the locked ones none. */
static void test_locked_image_tower(void **state) {
    train_opts o = small_opts();
    o.grad_clip = 0.0; /* clipping would couple the locked and unlocked norms */
    char *d1 = make_dir(), *d2 = make_dir(), *d3 = make_dir();
    fixture full, top, all;
    fixture_init(&full, &o, 3, d1, 32);
    o.lock_image = 2; /* head + the last block */
    fixture_init(&top, &o, 3, d2, 32);
    o.lock_image = 0;
    fixture_init(&all, &o, 3, d3, 32);
    float *w0 = malloc(sizeof(float) * all.m.nfloats);
    memcpy(w0, all.m.weights, sizeof(float) * all.m.nfloats);
    train_steps(full.t, 1, NULL);
    train_steps(top.t, 1, NULL);
    int unlocked = 0, locked = 0;
    for (int i = 0; i < top.m.nparams; i++) {
        const clip_param *p = &top.m.params[i];
        const float *g = top.m.grads + p->offset, *gf = full.m.grads + p->offset;
        if (p->frozen) {
            locked++;
            for (size_t k = 0; k < p->numel; k++)
                if (g[k] != 0.0f) fail_msg("locked %s has gradient %g", p->name, g[k]);
        } else {
            unlocked += !strncmp(p->name, "visual.", 7);
            assert_close(p->name, g, gf, p->numel, 1e-7, 1e-6);
        }
    }
    /* head: ln_post w/b + proj; block: 12 tensors */
    assert_int_equal(unlocked, 3 + 12);
    assert_true(locked > 0);
    train_steps(all.t, 3, NULL);
    for (int i = 0; i < all.m.nparams; i++) {
        const clip_param *p = &all.m.params[i];
        bool vis = !strncmp(p->name, "visual.", 7);
        assert_int_equal(p->frozen, vis);
        int moved = memcmp(all.m.weights + p->offset, w0 + p->offset, sizeof(float) * p->numel);
        if (vis && moved) fail_msg("locked %s moved", p->name);
        if (!vis && !moved) fail_msg("%s did not learn", p->name);
    }
    free(w0);

    /* open_clip's groups: 1 unlocks proj alone; layers + 1 everything but the
     * stem, which the backward then does not reach at all */
    int L = full.m.cfg.vision.layers;
    vlp_error err = {0};
    check(clip_lock_image(&full.m, 1, &err), &err);
    for (int i = 0; i < full.m.nparams; i++) {
        const clip_param *p = &full.m.params[i];
        bool vis = !strncmp(p->name, "visual.", 7);
        assert_int_equal(p->frozen, vis && strcmp(p->name, "visual.proj") != 0);
    }
    check(clip_lock_image(&full.m, L + 1, &err), &err);
    int nb = o.batch, side = full.m.cfg.vision.image_size, ctx = full.m.cfg.text.context_length;
    float *images = malloc(sizeof(float) * (size_t)nb * 3 * side * side);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)nb * ctx);
    check(full.loader.next(full.loader.impl, nb, images, ids, &err), &err);
    memset(full.m.grads, 0, sizeof(float) * full.m.nfloats);
    clip_step st = {0};
    check(clip_step_forward(&st, &full.m, images, ids, nb, &err), &err);
    clip_step_backward(&st, &full.m, nb);
    clip_step_free(&st);
    for (int i = 0; i < full.m.nparams; i++) {
        const clip_param *p = &full.m.params[i];
        double g2 = 0;
        for (size_t k = 0; k < p->numel; k++)
            g2 += (double)full.m.grads[p->offset + k] * full.m.grads[p->offset + k];
        if (p->frozen && g2 != 0.0) fail_msg("frozen %s got a gradient", p->name);
        if (!p->frozen && !strncmp(p->name, "visual.transformer", 18) && g2 == 0.0)
            fail_msg("unlocked %s got none", p->name);
    }
    free(images), free(ids);
    assert_int_equal(clip_lock_image(&full.m, L + 3, &err), VLP_ERR_ARG);
    check(clip_lock_image(&full.m, -1, &err), &err); /* unlocks everything */
    for (int i = 0; i < full.m.nparams; i++) assert_false(full.m.params[i].frozen);
    fixture_free(&full), fixture_free(&top), fixture_free(&all);
    remove_dir(d1), remove_dir(d2), remove_dir(d3);
}


/* ---- what an objective does not train stays as it is --------------------------------- */

/* Each built-in objective and the parameters it trains (name prefixes),
 * written down here rather than read from the objective: on a model that
 * carries every head (CoCa's text decoder, MAE's decoder, SigLIP's logit
 * bias), a step with weight decay must leave everything else bit for bit
 * as it was, and move something in each part it trains. The case that
 * started it: `clip` on a CoCa model decayed text_decoder.* every step. */
static const struct {
    const char *objective;
    const char *trains[8];
} trained_parts[] = {
    {"clip", {"visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
              "text_projection", "logit_scale"}},
    {"siglip", {"visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                "text_projection", "logit_scale", "logit_bias"}},
    {"filip", {"visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
               "text_projection", "logit_scale"}},
    {"coca", {"visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
              "text_projection", "logit_scale", "text_decoder."}},
    {"textlm", {"transformer.", "token_embedding.", "positional_embedding", "text_decoder."}},
    {"itc-itm-mlm", {"visual.", "transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                     "text_projection", "logit_scale", "text_fusion."}},
    {"mae", {"visual.", "mae_decoder."}},
    {"clip-mae", {"visual.", "transformer.", "token_embedding.", "positional_embedding",
                  "ln_final.", "text_projection", "logit_scale", "mae_decoder."}},
};

static int trained_prefix(const char *const *prefixes, const char *name) {
    for (int k = 0; k < 8 && prefixes[k]; k++)
        if (!strncmp(name, prefixes[k], strlen(prefixes[k]))) return k;
    return -1;
}

static void test_untrained_parts_stay(void **state) {
    int objectives = 0;
    for (int i = 0; vlp_objectives[i]; i++) {
        const objective *obj = vlp_objectives[i];
        int row = -1;
        for (size_t r = 0; r < sizeof trained_parts / sizeof *trained_parts; r++)
            if (!strcmp(trained_parts[r].objective, obj->name)) row = (int)r;
        if (row < 0) fail_msg("objective %s: add what it trains to trained_parts", obj->name);
        const char *const *trains = trained_parts[row].trains;
        train_opts o = small_opts();
        train_opts_set_objective(&o, obj);
        o.adam.weight_decay = 0.5f; /* decay alone moves any 2-D tensor it reaches */
        char *d = make_dir();
        fixture f;
        /* nothing frozen: the loss's gradient reaches the parts the table
         * names and no other (what the objective declares is what it uses) */
        fixture_init_heads(&f, &o, 3, d, 16, true);
        for (int k = 0; k < f.m.nparams; k++) { /* a head's parameters are named after it */
            const clip_param *p = &f.m.params[k];
            bool dec = !strncmp(p->name, "text_decoder.", 13), mae = !strncmp(p->name, "mae_decoder.", 12);
            bool fus = !strncmp(p->name, "text_fusion.", 12);
            assert_int_equal(dec, p->part == CLIP_PART_TEXT_DECODER);
            assert_int_equal(mae, p->part == CLIP_PART_MAE_DECODER);
            assert_int_equal(fus, p->part == CLIP_PART_FUSION);
        }
        for (int k = 0; k < f.m.nparams; k++) f.m.params[k].frozen = false;
        train_steps(f.t, 1, NULL);
        for (int k = 0; k < f.m.nparams; k++) {
            const clip_param *p = &f.m.params[k];
            bool reached = false;
            for (size_t j = 0; j < p->numel && !reached; j++) reached = f.m.grads[p->offset + j] != 0;
            bool declared = (obj->trains & p->part) != 0;
            if (reached && trained_prefix(trains, p->name) < 0)
                fail_msg("%s's loss reaches %s, which it does not train", obj->name, p->name);
            if (reached && !declared)
                fail_msg("%s's loss reaches %s (%s), which it does not declare", obj->name, p->name,
                         clip_part_name(p->part));
        }
        fixture_free(&f);
        fixture_init_heads(&f, &o, 3, d, 16, true);
        float *w0 = malloc(sizeof(float) * f.m.nfloats);
        memcpy(w0, f.m.weights, sizeof(float) * f.m.nfloats);
        train_steps(f.t, 2, NULL);
        bool moved_part[8] = {false};
        int kept = 0;
        for (int k = 0; k < f.m.nparams; k++) {
            const clip_param *p = &f.m.params[k];
            bool moved = memcmp(f.m.weights + p->offset, w0 + p->offset, sizeof(float) * p->numel);
            int part = trained_prefix(trains, p->name);
            if (part < 0 && moved) fail_msg("%s changed %s, which it does not train", obj->name, p->name);
            if (part >= 0) moved_part[part] |= moved;
            kept += part < 0;
        }
        for (int k = 0; k < 8 && trains[k]; k++)
            if (!moved_part[k]) fail_msg("%s trained nothing of %s*", obj->name, trains[k]);
        printf("# %s: %d of %d tensors left as they were\n", obj->name, kept, f.m.nparams);
        assert_true(kept > 0);
        free(w0);
        fixture_free(&f);
        remove_dir(d);
        objectives++;
    }
    assert_int_equal(objectives, (int)(sizeof trained_parts / sizeof *trained_parts));
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--checkpoint-writer")) return checkpoint_writer(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrained_parts_stay),
        cmocka_unit_test(test_locked_image_tower),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_keys_match_torch_module),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_resume_drops_later_metrics),
        cmocka_unit_test(test_resume_refuses_bad_state),
        cmocka_unit_test(test_rank_pos_file),
        cmocka_unit_test(test_prune_ignores_odd_names),
        cmocka_unit_test(test_accumulation_gives_full_batch_gradient),
        cmocka_unit_test(test_coca_accumulation),
        cmocka_unit_test(test_textlm_accumulation),
        cmocka_unit_test(test_mae_accumulation),
        cmocka_unit_test(test_mae_weights_and_masks),
        cmocka_unit_test(test_objective_from_the_test_file),
        cmocka_unit_test(test_nonfinite_step),
        cmocka_unit_test(test_coca_prior),
        cmocka_unit_test(test_kill_during_checkpoint_write),
    };
    return cmocka_run_group_tests_name("train", tests, NULL, NULL);
}
