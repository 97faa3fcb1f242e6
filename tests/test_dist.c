/* Data-parallel training over MPI on localhost. Run directly, the binary
 * starts itself under `mpirun -np 2` (when vlp was built with MPI and
 * mpirun is on PATH; else its tests are skipped, saying why); rank 0 prints
 * the results, the other rank only fails (its exit status fails the job).
 *
 * On every rank: K steps of one process with the whole batch B (no MPI),
 * then K steps of the 2-rank job with global batch B. Losses equal to 1e-5
 * relative, final weights to 1e-5 absolute (they are O(0.01–1); the
 * attention key biases, whose true gradient is 0, carry AdamW-normalised
 * rounding noise of ~1e-6), and the ranks' weights equal to the bit. The
 * same with gradient caching (accum 2) inside each rank, and for SigLIP, FILIP,
 * CoCa and the text-only LM. And: resume of the
 * job from a checkpoint repeats the uninterrupted job bit for bit; a run
 * trained on 2 ranks refuses to resume on 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "train/trainer.h"

#define NPAIRS 24
#define S 16
#define STEPS 5

static dist_group *g_dist;


typedef struct fixture {
    clip_model m;
    text_tokenizer tok;
    uint8_t rgb[NPAIRS * S * S * 3];
    char captions[NPAIRS][64];
    const char *cap_ptrs[NPAIRS];
    batch_loader loader;
    trainer *t;
} fixture;

static void check(vlp_err e, const vlp_error *err) {
    char buf[600];
    if (e != VLP_OK) fail_msg("rank %d: %s", dist_rank(g_dist), vlp_error_format_debug(err, buf, sizeof buf));
}

static train_opts opts(int accum) {
    train_opts o = train_opts_defaults();
    train_opts_set_objective(&o, objective_find("clip"));
    o.batch = 8, o.accum = accum, o.steps = 2 * STEPS, o.warmup = 2, o.grad_clip = 1.0, o.seed = 3;
    o.adam.lr = 1e-3f;
    return o;
}

/* the same pairs, tokenizer and initial weights on every rank */
static void fixture_init(fixture *f, const train_opts *o, const char *run_dir, dist_group *dist) {
    memset(f, 0, sizeof *f);
    synthetic_pairs(9, f->rgb, sizeof f->rgb, f->captions, NPAIRS);
    for (int i = 0; i < NPAIRS; i++) f->cap_ptrs[i] = f->captions[i];
    vlp_error err = {0};
    char merges[64];
    snprintf(merges, sizeof merges, "/tmp/vlp-dist-merges-%d-%d", (int)getpid(), dist_rank(g_dist));
    check(bpe_train(f->cap_ptrs, NPAIRS, 30, 2, merges, NULL, &err), &err);
    check(bpe_load(merges, 0, &f->tok, &err), &err);
    remove(merges);
    clip_config cfg = {
        .embed_dim = 16,
        .vision = {.image_size = S, .patch_size = 4, .width = 32, .layers = 2, .heads = 2, .mlp_width = 128},
        .text = {.context_length = 8, .vocab_size = f->tok.vocab_size, .width = 32, .layers = 2,
                 .heads = 2, .mlp_width = 128},
        .has_logit_bias = !strcmp(o->objective->name, "siglip"), .init_logit_bias = -10.0f,
        .has_logit_scale_init = !strcmp(o->objective->name, "siglip"), .init_logit_scale = 2.302585f};
    if (!strcmp(o->objective->name, "coca") || !strcmp(o->objective->name, "textlm")) {
        cfg.embed_dim = 32; /* the decoder's width: the text tower's and the embedding's */
        cfg.multimodal = (clip_multimodal_cfg){.width = 32, .heads = 2, .layers = 1, .mlp_width = 128};
    }
    if (!strcmp(o->objective->name, "mae") || !strcmp(o->objective->name, "clip-mae"))
        cfg.mae = (clip_mae_cfg){.width = 16, .heads = 2, .layers = 1, .mlp_width = 32};
    check(clip_init(&f->m, &cfg, &err), &err);
    clip_init_weights(&f->m, 17);
    image_norm norm = image_norm_openai();
    check(pair_loader_create(&f->loader, f->rgb, f->cap_ptrs, 1, NPAIRS, S, &f->tok, 8, &norm,
                             o->seed, &err),
          &err);
    check(pair_loader_shard(&f->loader, dist_rank(dist), dist_world(dist), &err), &err);
    check(trainer_create(&f->t, &f->m, &f->loader, o, run_dir, dist, &err), &err);
}

static void fixture_free(fixture *f) {
    trainer_free(f->t);
    loader_free(&f->loader);
    tokenizer_free(&f->tok);
    clip_free(&f->m);
}


/* a directory every rank of the job uses: rank 0 makes it */
static char *shared_dir(void) {
    char *d = calloc(64, 1);
    vlp_error err = {0};
    if (dist_rank(g_dist) == 0) {
        strcpy(d, "/tmp/vlp-dist-XXXXXX");
        assert_non_null(mkdtemp(d));
    }
    check(dist_broadcast(g_dist, d, 64, 0, &err), &err);
    return d;
}

static void remove_dir(char *d) {
    vlp_error err = {0};
    check(dist_barrier(g_dist, &err), &err);
    if (dist_rank(g_dist) == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", d);
        assert_int_equal(system(cmd), 0);
    }
    free(d);
}

/* rank 0's weights, broadcast: every rank's must be the same bits */
static void assert_ranks_agree(const clip_model *m) {
    float *w0 = malloc(sizeof(float) * m->nfloats);
    memcpy(w0, m->weights, sizeof(float) * m->nfloats);
    vlp_error err = {0};
    check(dist_broadcast(g_dist, w0, sizeof(float) * m->nfloats, 0, &err), &err);
    if (memcmp(w0, m->weights, sizeof(float) * m->nfloats))
        fail_msg("rank %d's weights differ from rank 0's", dist_rank(g_dist));
    free(w0);
}

static void job_equals_one_process(int accum, const char *name) {
    train_opts o = opts(accum);
    train_opts_set_objective(&o, objective_find(name));
    float one[STEPS], job[STEPS];
    /* one process, the whole batch: its own directory on each rank */
    char single[64];
    snprintf(single, sizeof single, "/tmp/vlp-dist-one-XXXXXX");
    assert_non_null(mkdtemp(single));
    fixture a;
    fixture_init(&a, &o, single, NULL);
    train_steps(a.t, STEPS, one);

    char *dir = shared_dir();
    fixture b;
    fixture_init(&b, &o, dir, g_dist);
    train_steps(b.t, STEPS, job);
    for (int i = 0; i < STEPS; i++)
        if (!(fabsf(job[i] - one[i]) <= 1e-5f * fabsf(one[i])))
            fail_msg("%s, accum %d, step %d: loss %.8g on 2 ranks, %.8g in one process",
                     name, accum, i + 1, job[i], one[i]);
    assert_close("weights: 2 ranks vs one process", b.m.weights, a.m.weights, a.m.nfloats, 1e-5, 0.0);
    assert_ranks_agree(&b.m);
    if (dist_rank(g_dist) == 0)
        printf("# %s, accum %d: %d steps, losses %.6f .. %.6f equal one process's\n",
               name, accum, STEPS, job[0], job[STEPS - 1]);
    fixture_free(&a), fixture_free(&b);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", single);
    assert_int_equal(system(cmd), 0);
    remove_dir(dir);
}

static void test_two_ranks_equal_one_process(void **state) {
    job_equals_one_process(1, "clip");
}
static void test_two_ranks_with_gradient_caching(void **state) {
    job_equals_one_process(2, "clip");
}
static void test_siglip_two_ranks_with_caching(void **state) {
    job_equals_one_process(1, "siglip");
    job_equals_one_process(2, "siglip");
}
static void test_filip_two_ranks_with_caching(void **state) {
    job_equals_one_process(1, "filip");
    job_equals_one_process(2, "filip");
}

/* CoCa: the caption loss's divisor is the whole batch's target count (summed
 * over the ranks), so ranks equal one process here too; and the text-only LM */
static void test_coca_two_ranks_with_caching(void **state) {
    job_equals_one_process(1, "coca");
    job_equals_one_process(2, "coca");
    job_equals_one_process(2, "textlm");
}

/* MAE: each sample's mask is a function of its place in the whole batch and
 * the loss's divisor the whole batch's masked patches */
static void test_mae_two_ranks_with_caching(void **state) {
    job_equals_one_process(2, "mae");
    job_equals_one_process(1, "clip-mae");
    job_equals_one_process(2, "clip-mae");
}

static void test_resume_same_world(void **state) {
    train_opts o = opts(1);
    float full[2 * STEPS], resumed[STEPS];
    char *d1 = shared_dir(), *d2 = shared_dir();
    fixture a;
    fixture_init(&a, &o, d1, g_dist);
    train_steps(a.t, 2 * STEPS, full);

    vlp_error err = {0};
    fixture b;
    fixture_init(&b, &o, d2, g_dist);
    train_steps(b.t, STEPS, NULL);
    check(trainer_save(b.t, 2, NULL, 0, &err), &err);
    train_steps(b.t, 2, NULL); /* lost: the job dies here */
    fixture_free(&b);
    fixture c;
    fixture_init(&c, &o, d2, g_dist);
    check(trainer_resume(c.t, &err), &err);
    assert_int_equal(trainer_step_count(c.t), STEPS);
    train_steps(c.t, STEPS, resumed);
    assert_memory_equal(resumed, full + STEPS, sizeof resumed);
    assert_memory_equal(c.m.weights, a.m.weights, sizeof(float) * a.m.nfloats);
    /* a 2-rank run does not resume in one process */
    if (dist_rank(g_dist) == 0) {
        fixture one;
        char lone[64];
        snprintf(lone, sizeof lone, "/tmp/vlp-dist-lone-XXXXXX");
        assert_non_null(mkdtemp(lone));
        fixture_init(&one, &o, lone, NULL);
        trainer_free(one.t);
        check(trainer_create(&one.t, &one.m, &one.loader, &o, d2, NULL, &err), &err);
        assert_int_equal(trainer_resume(one.t, &err), VLP_ERR_ARG);
        assert_non_null(strstr(err.message, "mpirun -np 2"));
        fixture_free(&one);
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf %s", lone);
        assert_int_equal(system(cmd), 0);
    }
    fixture_free(&a), fixture_free(&c);
    remove_dir(d1), remove_dir(d2);
}

static void test_without_mpi(void **state) {
    printf("# %s: the data-parallel tests need mpirun and a vlp built with MPI (libopenmpi-dev)\n",
           dist_have_mpi() ? "mpirun not found" : "built without MPI");
    skip();
}

/* Not under mpirun yet: start this binary again under it, 2 ranks. */
static int relaunch(char **argv) {
    if (!dist_have_mpi() || system("command -v mpirun >/dev/null 2>&1") != 0) return -1;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1); /* CI containers run as root */
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1); /* no ptrace in containers */
    /* OpenMPI's own allocations are reported by LeakSanitizer as leaks */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    fflush(stdout);
    execlp("mpirun", "mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", argv[0],
           (char *)NULL);
    return -1;
}

int main(int argc, char **argv) {
    (void)argc;
    bool launched = getenv("OMPI_COMM_WORLD_SIZE") != NULL;
    if (!launched && relaunch(argv) != 0) {
        const struct CMUnitTest skipped[] = {cmocka_unit_test(test_without_mpi)};
        return cmocka_run_group_tests(skipped, NULL, NULL);
    }
    vlp_error err = {0};
    if (dist_init(&g_dist, &err) != VLP_OK) {
        fprintf(stderr, "test_dist: %s\n", err.message);
        return 1;
    }
    if (dist_rank(g_dist) != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_equal_one_process),
        cmocka_unit_test(test_two_ranks_with_gradient_caching),
        cmocka_unit_test(test_siglip_two_ranks_with_caching),
        cmocka_unit_test(test_filip_two_ranks_with_caching),
        cmocka_unit_test(test_coca_two_ranks_with_caching),
        cmocka_unit_test(test_mae_two_ranks_with_caching),
        cmocka_unit_test(test_resume_same_world),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    dist_free(g_dist);
    return failed ? 1 : 0;
}
