/*
 * bench/train: CLIP training throughput of vlp next to the PyTorch peer
 * (bench/peer/train.py: the same architecture as open_clip, AdamW, ClipLoss),
 * same config, batch and threads, random data, in one run:
 *   samples/s (median of the timed steps after warm-up), ms/step broken down
 *   (vlp: vision fwd/bwd, text fwd/bwd, loss fwd+bwd, optimizer), GFLOP/s
 *   counted as 3x the forward matmul FLOPs (attention included), MFU against
 *   the measured FMA peak (bf16: the measured AVX512-BF16 dot-product peak),
 *   peak RSS; then the ratio. With --precision bf16 vlp runs the blocks'
 *   matmuls in bf16 and the peer its forward under torch.autocast(bfloat16).
 *   build/release/bench/train [--config tiny|vitb32] [--precision fp32|bf16] [--batch B]
 *                             [--steps N] [--threads T] [--no-peer]
 * Each comparison ends with
 *   RESULT name=<config>-<precision>-train vlp=<samples/s> peer=<samples/s> ratio=<vlp/peer> mfu=<fraction>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vlp.h"
#include "blas_env.h"
#include "core/rng.h"
#include "loss/loss.h"
#include "model/clip.h"
#include "peak.h"
#include "train/optim.h"

static clip_config config(const char *name, int *vocab) {
    if (!strcmp(name, "vitb32"))
        return (clip_config){.embed_dim = 512, .quick_gelu = true,
                             .vision = {224, 32, 768, 12, 12, 3072}, .text = {77, *vocab = 49408, 512, 12, 8, 2048}};
    return (clip_config){.embed_dim = 256, .quick_gelu = false,
                         .vision = {64, 8, 256, 6, 4, 1024}, .text = {32, *vocab = 2514, 256, 4, 4, 1024}};
}

/* forward matmul FLOPs per sample (2 per multiply-add), attention included */
static double forward_flops(const clip_config *c) {
    const clip_vision_cfg *v = &c->vision;
    const clip_text_cfg *t = &c->text;
    double np = (double)(v->image_size / v->patch_size) * (v->image_size / v->patch_size), T = np + 1;
    double f = 2 * np * 3 * v->patch_size * v->patch_size * v->width; /* patch embedding */
    f += v->layers * (2 * T * v->width * 4.0 * v->width + 4 * T * T * v->width + 4 * T * v->width * v->mlp_width);
    f += 2.0 * v->width * c->embed_dim;
    double L = t->context_length;
    f += t->layers * (2 * L * t->width * 4.0 * t->width + 4 * L * L * t->width + 4 * L * t->width * t->mlp_width);
    f += 2.0 * t->width * c->embed_dim;
    return f;
}

enum { VF, VB, TF, TB, LOSS, OPT, NPHASE };
static const char *PHASE[NPHASE] = {"vision fwd", "vision bwd", "text fwd", "text bwd", "loss", "optimizer"};

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/train")) return 2;
    const char *name = "tiny";
    int B = 0, steps = 12, threads = 2, peer = 1, ckpt = 0;
    const char *prec = "fp32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else if (!strcmp(argv[i], "--grad-checkpointing")) ckpt = 1;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) prec = argv[++i];
        else {
            fprintf(stderr, "usage: bench/train [--config tiny|vitb32] [--precision fp32|bf16] [--batch B] "
                            "[--steps N] [--threads T] [--no-peer] [--grad-checkpointing]\n");
            return 2;
        }
    }
    if (strcmp(name, "tiny") && strcmp(name, "vitb32")) return fprintf(stderr, "bench/train: config tiny or vitb32\n"), 2;
    bool bf16 = !strcmp(prec, "bf16");
    if (!bf16 && strcmp(prec, "fp32")) return fprintf(stderr, "bench/train: precision fp32 or bf16\n"), 2;
    if (bf16 && !gemm_bf16_hw())
        return fprintf(stderr, "bench/train: this CPU has no AVX512-BF16, nothing to measure\n"), 1;
    int vocab;
    clip_config c = config(name, &vocab);
    if (B <= 0) B = !strcmp(name, "tiny") ? 128 : 32;
    if (steps < 3 || steps > 500) steps = 12;
    vlp_set_threads(threads);
    tool_print_sysinfo(stdout);
    const char *simd;
    double peak = measure_fma_peak(threads, &simd);
    if (bf16) { /* MFU against the bf16 dot-product peak */
        peak = measure_bf16_peak(threads);
        simd = "AVX512-BF16 dot products";
    }
    clip_model m;
    vlp_error err = {0};
    if (clip_init(&m, &c, &err) == VLP_OK) clip_set_checkpointing(&m, ckpt); /* before the activations exist */
    if (err.code || clip_reserve(&m, B, &err) != VLP_OK ||
        clip_set_precision(&m, bf16 ? VLP_PRECISION_BF16 : VLP_PRECISION_FP32, threads, &err) != VLP_OK) {
        fprintf(stderr, "bench/train: %s\n", err.message);
        return 1;
    }
    clip_init_weights(&m, 1);
    int S = c.vision.image_size, T = c.text.context_length, E = c.embed_dim;
    float *img = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    int32_t *ids = calloc((size_t)B * T, sizeof(int32_t));
    float *mom = calloc(m.nfloats, sizeof(float)), *vel = calloc(m.nfloats, sizeof(float));
    /* the loss's buffers: the clip objective's */
    float loss, *probs = malloc(sizeof(float) * 2 * (size_t)B * B);
    float *demb = malloc(sizeof(float) * 2 * (size_t)B * E), *scratch = malloc(sizeof(float) * clip_loss_scratch_floats(B, E));
    float *probs_t2i = probs + (size_t)B * B, *demb_txt = demb + (size_t)B * E;
    rng64 r = {3};
    for (size_t i = 0; i < (size_t)B * 3 * S * S; i++) img[i] = rng64_normal(&r);
    for (int b = 0; b < B; b++) {
        int len = 8 + (int)(rng64_u64(&r) % (T - 9));
        for (int t = 1; t < len; t++) ids[b * T + t] = 1 + (int)(rng64_u64(&r) % (vocab - 3));
        ids[b * T] = vocab - 2, ids[b * T + len] = vocab - 1;
    }
    adamw_cfg ac = adamw_defaults();
    double ph[NPHASE][500], tot[500];
    for (int s = -2; s < steps; s++) { /* two warm-up steps */
        double t[NPHASE + 1];
        t[0] = bench_now();
        memset(m.grads, 0, sizeof(float) * m.nfloats);
        clip_image_forward(&m, img, B, &err);
        t[1] = bench_now();
        clip_text_forward(&m, ids, B, &err);
        t[2] = bench_now();
        clip_loss_forward(&loss, probs, probs_t2i, m.image_acts.emb, m.text_acts.emb, *m.views.logit_scale, B, E, &err);
        memset(demb, 0, sizeof(float) * 2 * (size_t)B * E);
        clip_loss_backward(demb, demb_txt, m.grad_views.logit_scale, 1.0f, probs, probs_t2i, m.image_acts.emb,
                           m.text_acts.emb, *m.views.logit_scale, scratch, B, E);
        t[3] = bench_now();
        clip_text_backward(&m, demb_txt, B);
        t[4] = bench_now();
        clip_image_backward(&m, demb, B);
        t[5] = bench_now();
        adamw_step(&ac, 1e-4f, s + 3, m.params, m.nparams, m.weights, m.grads, mom, vel);
        t[6] = bench_now();
        if (s < 0) continue;
        ph[VF][s] = t[1] - t[0], ph[TF][s] = t[2] - t[1], ph[LOSS][s] = t[3] - t[2];
        ph[TB][s] = t[4] - t[3], ph[VB][s] = t[5] - t[4], ph[OPT][s] = t[6] - t[5], tot[s] = t[6] - t[0];
    }
    for (int p = 0; p < NPHASE; p++) qsort(ph[p], (size_t)steps, sizeof(double), bench_cmp_double);
    qsort(tot, (size_t)steps, sizeof(double), bench_cmp_double);
    double step_s = tot[steps / 2], sps = B / step_s, gflop = 3 * forward_flops(&c) * B * 1e-9;
    double gfs = gflop / step_s, mfu = gfs / peak;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s CLIP training, %s%s, batch %d, %d threads, median of %d steps after 2 warm-up; %.2f GFLOP a step "
           "(3x forward matmuls); peak %.0f GFLOP/s (%s)\n", name, bf16 ? "bf16 matmuls" : "fp32",
           ckpt ? ", gradient checkpointing" : "", B, threads, steps, gflop, peak, simd);
    printf("vlp: %.1f samples/s, %.0f ms/step, %.0f GFLOP/s, MFU %.2f, peak RSS %.0f MiB\n", sps, step_s * 1e3, gfs,
           mfu, ru.ru_maxrss / 1024.0);
    printf("| phase | ms |\n|---|--:|\n");
    for (int p = 0; p < NPHASE; p++) printf("| %s | %.1f |\n", PHASE[p], ph[p][steps / 2] * 1e3);
    double psps = 0, pms = 0, prss = 0, pf = 0, pb = 0, po = 0;
    if (peer) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "sh bench/peer/run.sh bench/peer/train.py --config %s --precision %s --batch %d --steps %d --threads %d%s 2>&1",
                 name, prec, B, steps, threads, ckpt ? " --grad-checkpointing" : "");
        FILE *p = popen(cmd, "r");
        char line[512];
        while (p && fgets(line, sizeof line, p))
            if (sscanf(line, "peer samples/s %lf ms %lf fwd %lf bwd %lf opt %lf rss_mib %lf", &psps, &pms, &pf, &pb, &po, &prss) != 6)
                fputs(line, stdout);
        if (p) pclose(p);
        if (psps > 0)
            printf("PyTorch: %.1f samples/s, %.0f ms/step (forward %.0f, backward %.0f, optimizer %.0f), %.0f GFLOP/s, "
                   "MFU %.2f, peak RSS %.0f MiB\n", psps, pms, pf, pb, po, gflop / (pms * 1e-3), gflop / (pms * 1e-3) / peak, prss);
    }
    printf("RESULT name=%s-%s%s-train isa=%s vlp=%.2f peer=%.2f ratio=%.2f mfu=%.3f vlp_rss_mib=%.0f peer_rss_mib=%.0f\n", name,
           prec, ckpt ? "-ckpt" : "", tool_isa(), sps, psps, psps > 0 ? sps / psps : 0, mfu, ru.ru_maxrss / 1024.0, prss);
    free(img), free(ids), free(mom), free(vel), free(probs), free(demb), free(scratch);
    clip_free(&m);
    return 0;
}
