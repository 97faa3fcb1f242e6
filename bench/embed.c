/*
 * bench/embed: ViT-B-32 embedding throughput, images/s and texts/s at batch 32,
 * next to the PyTorch peer (bench/peer/embed.py: the open_clip-structured
 * module of tests/ref/check_checkpoint.py, fp32, no grad) on the same thread
 * count in the same run. Weights are random (throughput does not depend on
 * them); both sides run the same shapes. With --precision bf16 vlp runs the
 * blocks' matmuls in bf16 and the peer under torch.autocast(bfloat16). With
 * --precision int8 vlp runs the model clip_quantize makes (vlp quantize's) and
 * is compared with PyTorch fp32 and with PyTorch's dynamic int8 quantization,
 * each with the cosine of its embeddings to its own fp32 ones.
 *   build/release/bench/embed [--precision fp32|bf16|int8] [--threads N] [--batch B] [--reps R] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "vlp.h"
#include "bench_util.h"
#include "blas_env.h"
#include "core/rng.h"
#include "model/clip.h"
#include "model/clip_q8.h"
#include "ops/gemm.h"

typedef struct peer_result {
    double images, texts, rss, cos_min, cos_mean; // items/s, MiB; int8: cosine to its fp32
} peer_result;

/* bench/peer/embed.py at a precision (fp32, bf16, int8), its lines passed on */
static void run_peer(const char *prec, int threads, int B, int reps, peer_result *r) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "sh bench/peer/run.sh bench/peer/embed.py --precision %s --threads %d --batch %d --reps %d 2>&1",
             prec, threads, B, reps);
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof line, p)) {
        if (sscanf(line, "peer images/s %lf texts/s %lf rss_mib %lf cos_min %lf cos_mean %lf", &r->images, &r->texts,
                   &r->rss, &r->cos_min, &r->cos_mean) < 3)
            fputs(line, stdout);
    }
    if (p) pclose(p);
}

/* images/s and texts/s of the model: medians of reps after a warm-up */
static vlp_err time_model(clip_model *m, const float *img, const int32_t *ids, int B, int reps, double *vi,
                          double *vt) {
    double ti[1000], tt[1000];
    vlp_error err = {0};
    for (int k = -1; k < reps; k++) { /* one warm-up */
        double t0 = bench_now();
        if (clip_image_forward(m, img, B, &err) != VLP_OK) return err.code;
        double t1 = bench_now();
        if (clip_text_forward(m, ids, B, &err) != VLP_OK) return err.code;
        double t2 = bench_now();
        if (k >= 0) ti[k] = t1 - t0, tt[k] = t2 - t1;
    }
    qsort(ti, (size_t)reps, sizeof(double), bench_cmp_double);
    qsort(tt, (size_t)reps, sizeof(double), bench_cmp_double);
    *vi = B / ti[reps / 2], *vt = B / tt[reps / 2];
    return VLP_OK;
}

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/embed")) return 2;
    int threads = 2, B = 32, reps = 10, peer = 1;
    const char *prec = "fp32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) prec = argv[++i];
        else {
            fprintf(stderr, "usage: bench/embed [--precision fp32|bf16|int8] [--threads N] [--batch B] [--reps R] "
                            "[--no-peer]\n");
            return 2;
        }
    }
    if (B < 1 || reps < 1 || reps > 1000) return 2;
    bool bf16 = !strcmp(prec, "bf16"), int8 = !strcmp(prec, "int8");
    if (!bf16 && !int8 && strcmp(prec, "fp32"))
        return fprintf(stderr, "bench/embed: precision fp32, bf16 or int8\n"), 2;
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
    rng64 r = {7};
    for (size_t i = 0; i < (size_t)B * 3 * 224 * 224; i++) img[i] = rng64_normal(&r);
    for (int b = 0; b < B; b++) { /* captions of 12 tokens, as typical alt-texts */
        ids[b * 77] = 49406;
        for (int t = 1; t < 12; t++) ids[b * 77 + t] = 1 + (int)(rng64_u64(&r) % 49000);
        ids[b * 77 + 12] = 49407;
    }
    float *ref = NULL; /* int8: the fp32 model's embeddings (2B, E), images then texts */
    if (int8) {
        ref = malloc(sizeof(float) * 2 * (size_t)B * 512);
        if (clip_image_forward(&m, img, B, &err) != VLP_OK) return 1;
        memcpy(ref, m.image_acts.emb, sizeof(float) * (size_t)B * 512);
        if (clip_text_forward(&m, ids, B, &err) != VLP_OK) return 1;
        memcpy(ref + (size_t)B * 512, m.text_acts.emb, sizeof(float) * (size_t)B * 512);
    }
    double vi, vt, fi = 0, ft = 0; /* items/s: vlp's model, and (int8) its fp32 self before quantizing */
    if (int8) {
        if (time_model(&m, img, ids, B, reps, &fi, &ft) != VLP_OK) return 1;
        if (clip_quantize(&m, &err) != VLP_OK) return fprintf(stderr, "bench/embed: %s\n", err.message), 1;
    }
    if (time_model(&m, img, ids, B, reps, &vi, &vt) != VLP_OK) return 1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    double cos_min = 1, cos_mean = 0; /* int8: vlp's embeddings against its fp32 ones */
    for (int i = 0; int8 && i < 2 * B; i++) {
        const float *a = i < B ? m.image_acts.emb + (size_t)i * 512 : m.text_acts.emb + (size_t)(i - B) * 512;
        double dot = 0;
        for (int e = 0; e < 512; e++) dot += (double)a[e] * ref[(size_t)i * 512 + e];
        cos_min = dot < cos_min ? dot : cos_min, cos_mean += dot / (2 * B);
    }
    peer_result fp = {0}, q = {0};
    if (peer) run_peer(int8 ? "fp32" : prec, threads, B, reps, &fp);
    if (peer && int8) run_peer("int8", threads, B, reps, &q);
    /* model FLOPs per item: 2 x matmul MACs of the forward, attention included */
    printf("ViT-B-32 embedding, batch %d, %d threads, median of %d (weights random; %s)\n", B, threads, reps,
           bf16 ? "bf16 matmuls; peer under autocast"
           : int8 ? "vlp int8 (vlp quantize); peers PyTorch fp32 and PyTorch dynamic int8" : "fp32");
    printf("| tower | vlp items/s | PyTorch items/s | ratio |%s vlp peak RSS MiB | PyTorch peak RSS MiB |\n"
           "|---|--:|--:|--:|%s--:|--:|\n", int8 ? " PyTorch int8 items/s | ratio |" : "", int8 ? "--:|--:|" : "");
    char qi[64] = "", qt[64] = "";
    if (int8) {
        snprintf(qi, sizeof qi, " %.1f | %.2f |", q.images, q.images > 0 ? vi / q.images : 0);
        snprintf(qt, sizeof qt, " %.1f | %.2f |", q.texts, q.texts > 0 ? vt / q.texts : 0);
    }
    printf("| images 224px | %.1f | %.1f | %.2f |%s %.0f | %.0f |\n", vi, fp.images,
           fp.images > 0 ? vi / fp.images : 0, qi, rss, fp.rss);
    printf("| texts (ctx 77) | %.1f | %.1f | %.2f |%s | |\n", vt, fp.texts, fp.texts > 0 ? vt / fp.texts : 0, qt);
    const char *sfx = bf16 ? "-bf16" : int8 ? "-int8" : "";
    char tail[160] = "";
    if (int8) {
        printf("vlp fp32 (the same model before quantizing): images %.1f/s, texts %.1f/s; int8 is %.2fx and %.2fx\n",
               fi, ft, vi / fi, vt / ft);
        printf("embedding cosine to fp32 (%d images + %d texts): vlp int8 min %.5f mean %.5f; PyTorch dynamic int8 "
               "min %.5f mean %.5f\n", B, B, cos_min, cos_mean, q.cos_min, q.cos_mean);
        snprintf(tail, sizeof tail, " cos_min=%.5f", cos_min);
    }
    for (int k = 0; k < 2; k++) {
        double v = k ? vt : vi, p = k ? fp.texts : fp.images, pq = k ? q.texts : q.images;
        printf("RESULT name=vitb32-embed-%s%s isa=%s vlp=%.2f peer=%.2f ratio=%.2f", k ? "texts" : "images", sfx, tool_isa(), v, p,
               p > 0 ? v / p : 0);
        if (int8) printf(" peer_int8=%.2f ratio_int8=%.2f vlp_fp32=%.2f ratio_fp32=%.2f", pq, pq > 0 ? v / pq : 0,
                         k ? ft : fi, (k ? ft : fi) > 0 ? v / (k ? ft : fi) : 0);
        printf("%s\n", tail);
    }
    free(ref);
    free(img), free(ids);
    clip_free(&m);
    return 0;
}
