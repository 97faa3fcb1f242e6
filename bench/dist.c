/*
 * bench/dist: data-parallel training throughput of the `tiny` CLIP over MPI
 * on this machine, and what each step communicates.
 *   mpirun -np N build/release/bench/dist [--batch-per-rank b] [--threads T] [--steps S]
 * Each rank trains on random pairs (its share of every global batch of
 * N·b); rank 0 prints samples/s (median step), the bytes one rank sends and
 * receives per step (all-gather of the embeddings, reduce-scatter of their
 * gradients, allreduce of the gradients), the time of a lone gradient
 * allreduce, and
 *   RESULT name=dist-tiny ranks=N batch=<global> samples_per_s=<..> comm_mib_per_step=<..>
 * Run it with -np 1 and -np 2 (bench/run.sh does) for weak scaling: the
 * per-rank batch stays b.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vlp.h"
#include "bench_util.h"
#include "blas_env.h"
#include "core/rng.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "model/config_registry.h"
#include "model/config.h"
#include "train/trainer.h"

/* a tokenizer that maps every caption to the same ids: the bench times the model */
static void fixed_encode(const void *impl, const char *text, int32_t *ids, int ctx) {
    (void)impl, (void)text;
    for (int i = 0; i < ctx; i++) ids[i] = i < 10 ? 1 + i : 0;
    ids[0] = 2512, ids[10] = 2513;
}

static int die(dist_group *d, const vlp_error *e) {
    fprintf(stderr, "bench/dist: rank %d: %s\n", dist_rank(d), e->message);
    dist_abort(d, 1);
    return 1;
}

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/dist")) return 2;
    int b = 64, threads = 1, steps = 8;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch-per-rank") && i + 1 < argc) b = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mpirun -np N bench/dist [--batch-per-rank b] [--threads T] [--steps S]\n");
            return 2;
        }
    }
    if (b < 2 || steps < 3 || steps > 200) return 2;
    vlp_error err = {0};
    dist_group *d;
    if (dist_init(&d, &err) != VLP_OK) return fprintf(stderr, "bench/dist: %s\n", err.message), 1;
    int R = dist_rank(d), W = dist_world(d), B = b * W;
    vlp_set_threads(threads);
    if (R == 0) tool_print_sysinfo(stdout);
    clip_config c;
    if (clip_config_resolve("tiny", &c, NULL, 0, &err) != VLP_OK) return die(d, &err);
    c.text.vocab_size = 2514;
    clip_model m;
    if (clip_init(&m, &c, &err) != VLP_OK) return die(d, &err);
    clip_init_weights(&m, 1);
    int S = c.vision.image_size, n = 4 * B > 512 ? 4 * B : 512;
    uint8_t *rgb = malloc((size_t)n * S * S * 3);
    const char **caps = malloc(sizeof(char *) * n);
    rng64 r = {7};
    for (size_t i = 0; i < (size_t)n * S * S * 3; i++) rgb[i] = (uint8_t)(rng64_u64(&r) >> 56);
    for (int i = 0; i < n; i++) caps[i] = "an emoji";
    text_tokenizer tok = {.encode = fixed_encode, .vocab_size = 2514};
    image_norm norm = image_norm_openai();
    batch_loader l;
    if (pair_loader_create(&l, rgb, caps, 1, n, S, &tok, c.text.context_length, &norm, 1, &err) ||
        pair_loader_shard(&l, R, W, &err))
        return die(d, &err);
    char dir[64] = "/tmp/vlp-bench-dist-XXXXXX";
    if (R == 0 && !mkdtemp(dir)) {
        fprintf(stderr, "bench/dist: mkdtemp failed\n");
        dist_abort(d, 1); /* the other ranks wait in the broadcast */
        return 1;
    }
    if (dist_broadcast(d, dir, sizeof dir, 0, &err)) return die(d, &err);
    train_opts o = train_opts_defaults();
    o.batch = B, o.steps = steps + 2, o.warmup = 1;
    trainer *t;
    if (trainer_create(&t, &m, &l, &o, dir, d, &err) != VLP_OK) return die(d, &err);
    double times[200];
    for (int s = -2; s < steps; s++) {
        if (dist_barrier(d, &err)) return die(d, &err);
        double t0 = bench_now();
        train_step_info info;
        if (trainer_step(t, &info, &err) != VLP_OK) return die(d, &err);
        if (s >= 0) times[s] = bench_now() - t0;
    }
    qsort(times, (size_t)steps, sizeof(double), bench_cmp_double);
    double step = times[steps / 2];
    /* a lone allreduce of the gradient buffer: the largest transfer */
    double ar = 0;
    for (int k = 0; k < 3; k++) {
        if (dist_barrier(d, &err)) return die(d, &err);
        double t0 = bench_now();
        if (dist_allreduce_sum(d, m.grads, m.nfloats, &err)) return die(d, &err);
        double dt = bench_now() - t0;
        ar = k == 0 || dt < ar ? dt : ar;
    }
    /* per rank and step, bytes sent (≈ received): ring all-gather of 2 (b,E)
     * tensors: (W-1)·2·b·E; ring reduce-scatter of 2 (B,E): (W-1)/W·2·B·E;
     * ring allreduce of the gradient: 2·(W-1)/W·P */
    int E = c.embed_dim;
    double P = (double)m.nfloats;
    double bytes = W > 1 ? 4.0 * ((W - 1) * 2.0 * b * E + (W - 1.0) / W * 2.0 * B * E +
                                  2.0 * (W - 1.0) / W * P)
                         : 0.0;
    if (R == 0) {
        printf("tiny CLIP, %d rank%s x %d thread%s, %d samples per rank (global batch %d), median of "
               "%d steps\n",
               W, W > 1 ? "s" : "", threads, threads > 1 ? "s" : "", b, B, steps);
        printf("%.1f samples/s, %.0f ms/step; per rank and step %.1f MiB sent/received "
               "(gradients %.1f MiB = %zu parameters); lone gradient allreduce %.1f ms\n",
               B / step, step * 1e3, bytes / 1048576.0, 4.0 * P / 1048576.0, m.nfloats, ar * 1e3);
        printf("RESULT name=dist-tiny isa=%s ranks=%d batch=%d samples_per_s=%.2f comm_mib_per_step=%.1f\n",
               tool_isa(), W, B, B / step, bytes / 1048576.0);
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "bench/dist: could not remove %s\n", dir);
    }
    trainer_free(t);
    loader_free(&l);
    clip_free(&m);
    free(rgb), free(caps);
    dist_free(d);
    return 0;
}
