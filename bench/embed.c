/*
 * bench/embed: ViT-B-32 embedding throughput, images/s and texts/s at batch 32,
 * next to the PyTorch peer (bench/peer/embed.py: the open_clip-structured
 * module of tests/ref/check_checkpoint.py, fp32, no grad) on the same thread
 * count in the same run. Weights are random (throughput does not depend on
 * them); both sides run the same shapes. With --precision bf16 vlp runs the
 * blocks' matmuls in bf16 and the peer under torch.autocast(bfloat16).
 *   build/release/bench/embed [--precision fp32|bf16] [--threads N] [--batch B] [--reps R] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "blas_env.h"
#include "core/rng.h"
#include "model/clip.h"
#include "ops/gemm.h"

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    int threads = 2, B = 32, reps = 10, peer = 1;
    const char *prec = "fp32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) prec = argv[++i];
        else {
            fprintf(stderr, "usage: bench/embed [--precision fp32|bf16] [--threads N] [--batch B] [--reps R] "
                            "[--no-peer]\n");
            return 2;
        }
    }
    if (B < 1 || reps < 1 || reps > 1000) return 2;
    bool bf16 = !strcmp(prec, "bf16");
    if (!bf16 && strcmp(prec, "fp32")) return fprintf(stderr, "bench/embed: precision fp32 or bf16\n"), 2;
    if (bf16 && !gemm_bf16_hw())
        return fprintf(stderr, "bench/embed: this CPU has no AVX512-BF16, nothing to measure\n"), 1;
    vlp_set_threads(threads);
    tool_print_sysinfo(stdout);
    clip_config c = {.embed_dim = 512, .quick_gelu = true,
                     .vision = {.image_size = 224, .patch_size = 32, .width = 768, .layers = 12, .heads = 12, .mlp_width = 3072},
                     .text = {.context_length = 77, .vocab_size = 49408, .width = 512, .layers = 12, .heads = 8, .mlp_width = 2048}};
    clip_model m;
    vlp_error err = {0};
    /* what vlp embed runs: no gradients, shared activations */
    if (clip_init_inference(&m, &c, &err) != VLP_OK || clip_reserve(&m, B, &err) != VLP_OK ||
        clip_set_precision(&m, bf16 ? VLP_PRECISION_BF16 : VLP_PRECISION_FP32, threads, &err) != VLP_OK) {
        fprintf(stderr, "bench/embed: %s\n", err.message);
        return 1;
    }
    clip_init_weights(&m, 1);
    float *img = malloc(sizeof(float) * (size_t)B * 3 * 224 * 224);
    int32_t *ids = calloc((size_t)B * 77, sizeof(int32_t));
    vlp_rng r = {7};
    for (size_t i = 0; i < (size_t)B * 3 * 224 * 224; i++) img[i] = vlp_rng_normal(&r);
    for (int b = 0; b < B; b++) { /* captions of 12 tokens, as typical alt-texts */
        ids[b * 77] = 49406;
        for (int t = 1; t < 12; t++) ids[b * 77 + t] = 1 + (int)(vlp_rng_u64(&r) % 49000);
        ids[b * 77 + 12] = 49407;
    }
    double ti[1000], tt[1000];
    for (int k = -1; k < reps; k++) { /* one warm-up */
        double t0 = bench_now();
        if (clip_image_forward(&m, img, B, &err) != VLP_OK) return 1;
        double t1 = bench_now();
        if (clip_text_forward(&m, ids, B, &err) != VLP_OK) return 1;
        double t2 = bench_now();
        if (k >= 0) ti[k] = t1 - t0, tt[k] = t2 - t1;
    }
    qsort(ti, (size_t)reps, sizeof(double), bench_cmp_double);
    qsort(tt, (size_t)reps, sizeof(double), bench_cmp_double);
    double vi = B / ti[reps / 2], vt = B / tt[reps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    double pi = 0, pt = 0, prss = 0;
    if (peer) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "sh bench/peer/run.sh bench/peer/embed.py --precision %s --threads %d --batch %d --reps %d 2>&1",
                 prec, threads, B, reps);
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            sscanf(line, "peer images/s %lf texts/s %lf rss_mib %lf", &pi, &pt, &prss);
            if (!strstr(line, "peer images/s")) fputs(line, stdout);
        }
        if (p) pclose(p);
    }
    /* model FLOPs per item: 2 x matmul MACs of the forward, attention included */
    printf("ViT-B-32 embedding, batch %d, %d threads, median of %d (weights random; %s)\n", B, threads, reps,
           bf16 ? "bf16 matmuls; peer under autocast" : "fp32");
    printf("| tower | vlp items/s | PyTorch items/s | ratio | vlp peak RSS MiB | PyTorch peak RSS MiB |\n|---|--:|--:|--:|--:|--:|\n");
    printf("| images 224px | %.1f | %.1f | %.2f | %.0f | %.0f |\n", vi, pi, pi > 0 ? vi / pi : 0, rss, prss);
    printf("| texts (ctx 77) | %.1f | %.1f | %.2f | | |\n", vt, pt, pt > 0 ? vt / pt : 0);
    const char *sfx = bf16 ? "-bf16" : "";
    printf("RESULT name=vitb32-embed-images%s vlp=%.2f peer=%.2f ratio=%.2f\n", sfx, vi, pi, pi > 0 ? vi / pi : 0);
    printf("RESULT name=vitb32-embed-texts%s vlp=%.2f peer=%.2f ratio=%.2f\n", sfx, vt, pt, pt > 0 ? vt / pt : 0);
    free(img), free(ids);
    clip_free(&m);
    return 0;
}
