/* bench/ops: GFLOP/s of the op layer's linear and attention, forward and
 * backward, at the shapes of `tiny` training at batch 128, next to
 * cblas_sgemm running the very same GEMMs (what the op layer adds on top of
 * the BLAS), and next to PyTorch doing the same ops (bench/peer/ops.py) in the
 * same run. Prints a markdown table and one RESULT line per row.
 *
 *   build/release/bench/ops [--threads N] [--batch B] [--reps R] [--quick] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vlp.h"
#include "blas_env.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "peak.h"

typedef struct cfg {
    int threads, batch, reps;
    int peer;
    const char *python, *peer_script;
    matmul_cfg mm; /* the ops' precision: fp32, or bf16 (--precision bf16; the peer autocasts) */
} cfg;

typedef struct row {
    char name[48], shape[48];
    double flops_fwd, flops_bwd;          // per call
    double fwd_ms, bwd_ms, sg_fwd_ms, sg_bwd_ms;
    double peer_fwd_ms, peer_bwd_ms;
} row;

static float *buf(size_t n, unsigned seed) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench/ops: out of memory allocating %zu floats\n", n);
        exit(1);
    }
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((float)(s >> 9) / (float)(1u << 23) - 0.5f) * 0.2f;
    }
    return p;
}

/* median wall time in ms of fn(ctx) over reps runs after 2 warm-ups */
static double time_ms(void (*fn)(void *), void *ctx, int reps) {
    double t[256];
    if (reps > 256) reps = 256;
    fn(ctx), fn(ctx);
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        fn(ctx);
        t[i] = (bench_now() - t0) * 1e3;
    }
    qsort(t, reps, sizeof *t, bench_cmp_double);
    return t[reps / 2];
}

/* ---- linear ------------------------------------------------------------------ */
typedef struct lin {
    const matmul_cfg *mm;
    int N, C, OC;
    float *inp, *w, *b, *out, *dout, *dinp, *dw, *db;
} lin;
static void lin_fw(void *p) {
    lin *l = p;
    linear_forward(l->mm, l->out, l->inp, l->w, l->b, l->N, l->C, l->OC);
}
static void lin_bw(void *p) {
    lin *l = p;
    linear_backward(l->mm, l->dinp, l->dw, l->db, l->dout, l->inp, l->w, l->N, l->C, l->OC);
}
static void lin_sg_fw(void *p) {
    lin *l = p;
    vlp_sgemm(false, true, l->N, l->OC, l->C, 1.0f, l->inp, l->C, l->w, l->C, 0.0f, l->out, l->OC);
}
static void lin_sg_bw(void *p) {
    lin *l = p;
    vlp_sgemm(false, false, l->N, l->C, l->OC, 1.0f, l->dout, l->OC, l->w, l->C, 1.0f, l->dinp, l->C);
    vlp_sgemm(true, false, l->OC, l->C, l->N, 1.0f, l->dout, l->OC, l->inp, l->C, 1.0f, l->dw, l->C);
}

static void bench_linear(row *r, const matmul_cfg *mm, const char *name, int N, int C, int OC,
                         int reps) {
    lin l = {mm, N, C, OC, buf((size_t)N * C, 1), buf((size_t)OC * C, 2), buf(OC, 3),
             buf((size_t)N * OC, 4), buf((size_t)N * OC, 5), buf((size_t)N * C, 6),
             buf((size_t)OC * C, 7), buf(OC, 8)};
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->shape, sizeof r->shape, "%dx%d -> %d", N, C, OC);
    r->flops_fwd = 2.0 * N * C * OC;
    r->flops_bwd = 4.0 * N * C * OC;
    r->fwd_ms = time_ms(lin_fw, &l, reps);
    r->bwd_ms = time_ms(lin_bw, &l, reps);
    r->sg_fwd_ms = time_ms(lin_sg_fw, &l, reps);
    r->sg_bwd_ms = time_ms(lin_sg_bw, &l, reps);
    free(l.inp), free(l.w), free(l.b), free(l.out), free(l.dout), free(l.dinp), free(l.dw), free(l.db);
}

/* ---- attention core and full MHA ------------------------------------------------ */
typedef struct att {
    const matmul_cfg *mm;
    int B, T, C, NH;
    bool causal;
    float *qkv, *out, *att, *dout, *dqkv, *scratch;
    float *inp, *w_in, *b_in, *w_out, *b_out, *heads, *mha_out, *dinp, *dw_in, *db_in, *dw_out,
        *db_out, *mha_scratch;
} att;
static void att_fw(void *p) {
    att *a = p;
    attention_forward(a->mm, a->out, a->att, a->qkv, a->B, a->T, a->C, a->NH, a->causal, NULL);
}
static void att_bw(void *p) {
    att *a = p;
    attention_backward(a->mm, a->dqkv, a->dout, a->qkv, a->att, a->scratch, a->B, a->T, a->C, a->NH, true);
}
/* the same per-head GEMMs, same threading, with nothing around them */
static void att_sg_fw(void *p) {
    att *a = p;
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < a->B * a->NH; bh++) {
        int b = bh / a->NH, h = bh % a->NH;
        const float *q = a->qkv + (size_t)b * T * C3 + h * hs;
        float *s = a->att + (size_t)bh * T * T;
        vlp_sgemm(false, true, T, T, hs, 1.0f, q, C3, q + C, C3, 0.0f, s, T);
        vlp_sgemm(false, false, T, hs, T, 1.0f, s, T, q + 2 * C, C3, 0.0f, a->out + (size_t)b * T * C + h * hs, C);
    }
}
static void att_sg_bw(void *p) {
    att *a = p;
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < a->B * a->NH; bh++) {
        int b = bh / a->NH, h = bh % a->NH;
        size_t qo = (size_t)b * T * C3 + h * hs;
        const float *q = a->qkv + qo, *dy = a->dout + (size_t)b * T * C + h * hs;
        float *dq = a->dqkv + qo, *s = a->att + (size_t)bh * T * T, *ds = a->scratch + (size_t)bh * T * T;
        vlp_sgemm(true, false, T, hs, T, 1.0f, s, T, dy, C, 1.0f, dq + 2 * C, C3);
        vlp_sgemm(false, true, T, T, hs, 1.0f, dy, C, q + 2 * C, C3, 0.0f, ds, T);
        vlp_sgemm(false, false, T, hs, T, 1.0f, ds, T, q + C, C3, 1.0f, dq, C3);
        vlp_sgemm(true, false, T, hs, T, 1.0f, ds, T, q, C3, 1.0f, dq + C, C3);
    }
}
static void mha_fw(void *p) {
    att *a = p;
    mha_forward(a->mm, a->mha_out, a->qkv, a->att, a->heads, a->inp, a->w_in, a->b_in, a->w_out,
                a->b_out, a->B, a->T, a->C, a->NH, a->causal, NULL);
}
static void mha_bw(void *p) {
    att *a = p;
    mha_backward(a->mm, a->dinp, a->dw_in, a->db_in, a->dw_out, a->db_out, a->dout, a->inp,
                 a->qkv, a->att, a->heads, NULL, a->w_in, a->w_out, a->mha_scratch, a->B, a->T, a->C,
                 a->NH, true);
}
static void mha_sg_fw(void *p) {
    att *a = p;
    int N = a->B * a->T, C = a->C;
    vlp_sgemm(false, true, N, 3 * C, C, 1.0f, a->inp, C, a->w_in, C, 0.0f, a->qkv, 3 * C);
    att_sg_fw(p);
    vlp_sgemm(false, true, N, C, C, 1.0f, a->heads, C, a->w_out, C, 0.0f, a->mha_out, C);
}
static void mha_sg_bw(void *p) {
    att *a = p;
    int N = a->B * a->T, C = a->C;
    vlp_sgemm(false, false, N, C, C, 1.0f, a->dout, C, a->w_out, C, 0.0f, a->heads, C);
    vlp_sgemm(true, false, C, C, N, 1.0f, a->dout, C, a->heads, C, 1.0f, a->dw_out, C);
    att_sg_bw(p);
    vlp_sgemm(false, false, N, C, 3 * C, 1.0f, a->dqkv, 3 * C, a->w_in, C, 1.0f, a->dinp, C);
    vlp_sgemm(true, false, 3 * C, C, N, 1.0f, a->dqkv, 3 * C, a->inp, C, 1.0f, a->dw_in, C);
}

static void bench_attention(row *core, row *full, const matmul_cfg *mm, const char *tag, int B,
                            int T, int C, int NH, bool causal, int reps) {
    size_t N = (size_t)B * T, natt = (size_t)B * NH * T * T;
    att a = {.mm = mm, .B = B, .T = T, .C = C, .NH = NH, .causal = causal};
    a.qkv = buf(N * 3 * C, 11), a.out = buf(N * C, 12), a.att = buf(natt, 13);
    a.dout = buf(N * C, 14), a.dqkv = buf(N * 3 * C, 15), a.scratch = buf(natt, 16);
    a.inp = buf(N * C, 17), a.w_in = buf((size_t)3 * C * C, 18), a.b_in = buf(3 * C, 19);
    a.w_out = buf((size_t)C * C, 20), a.b_out = buf(C, 21), a.heads = buf(N * C, 22);
    a.mha_out = buf(N * C, 23), a.dinp = buf(N * C, 24), a.dw_in = buf((size_t)3 * C * C, 25);
    a.db_in = buf(3 * C, 26), a.dw_out = buf((size_t)C * C, 27), a.db_out = buf(C, 28);
    a.mha_scratch = buf(mha_scratch_floats(B, T, C, NH), 29);
    a.heads = a.out; /* the core's output is the heads tensor of the MHA */
    double hs = (double)C / NH;
    /* core: QKᵀ and AV forward; AᵀdY, dY·Vᵀ, dS·K, dSᵀ·Q backward (causal counted full) */
    snprintf(core->name, sizeof core->name, "attention core %s", tag);
    snprintf(core->shape, sizeof core->shape, "%dx%dx%dx%d", B, NH, T, (int)hs);
    core->flops_fwd = 4.0 * B * NH * T * T * hs;
    core->flops_bwd = 8.0 * B * NH * T * T * hs;
    core->fwd_ms = time_ms(att_fw, &a, reps);
    core->bwd_ms = time_ms(att_bw, &a, reps);
    core->sg_fwd_ms = time_ms(att_sg_fw, &a, reps);
    core->sg_bwd_ms = time_ms(att_sg_bw, &a, reps);
    snprintf(full->name, sizeof full->name, "mha %s", tag);
    snprintf(full->shape, sizeof full->shape, "%zux%d, %d heads", N, C, NH);
    full->flops_fwd = core->flops_fwd + 2.0 * N * C * 4 * C;
    full->flops_bwd = core->flops_bwd + 4.0 * N * C * 4 * C;
    full->fwd_ms = time_ms(mha_fw, &a, reps);
    full->bwd_ms = time_ms(mha_bw, &a, reps);
    full->sg_fwd_ms = time_ms(mha_sg_fw, &a, reps);
    full->sg_bwd_ms = time_ms(mha_sg_bw, &a, reps);
    float *all[] = {a.qkv, a.out, a.att, a.dout, a.dqkv, a.scratch, a.inp, a.w_in, a.b_in,
                    a.w_out, a.b_out, a.mha_out, a.dinp, a.dw_in, a.db_in, a.dw_out, a.db_out,
                    a.mha_scratch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* ---- the PyTorch peer ---------------------------------------------------------------- */
static void run_peer(const cfg *c, row *rows, int nrows) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "PYTHON='%s' sh bench/peer/run.sh %s --threads %d --batch %d --reps %d --precision %s 2>&1",
             c->python, c->peer_script, c->threads, c->batch, c->reps,
             c->mm.precision == VLP_PRECISION_BF16 ? "bf16" : "fp32");
    FILE *fp = popen(cmd, "r");
    if (!fp) {
        printf("peer: could not run '%s'\n", cmd);
        return;
    }
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, fp)) {
        char name[64];
        double f, b;
        if (sscanf(line, "PEER %63[^|]| %lf %lf", name, &f, &b) == 3) {
            size_t L = strlen(name);
            while (L && name[L - 1] == ' ') name[--L] = '\0';
            for (int i = 0; i < nrows; i++)
                if (!strcmp(rows[i].name, name)) rows[i].peer_fwd_ms = f, rows[i].peer_bwd_ms = b, got++;
        } else if (!strncmp(line, "peer:", 5)) {
            fputs(line, stdout);
        }
    }
    int rc = pclose(fp);
    if (rc != 0 || got == 0)
        printf("peer: unavailable (exit %d); install PyTorch with scripts/deps.sh --ref\n", rc);
}

static void usage(void) {
    printf("usage: bench/ops [options]\n"
           "  -t, --threads N   threads for vlp and the peer (default: one per core)\n"
           "  -b, --batch B     batch size; tokens per image 65, per text 32 (default 128)\n"
           "  -r, --reps R      timed repetitions, median reported (default 20)\n"
           "  -q, --quick       5 repetitions, batch 32\n"
           "      --precision P fp32 or bf16: the ops' matmuls (the peer under autocast; the\n"
           "                    sgemm columns stay fp32) (default fp32)\n"
           "      --no-peer     skip the PyTorch peer\n"
           "      --python P    interpreter for the peer (default /usr/bin/python3)\n");
}

int main(int argc, char **argv) {
    tool_fix_blas_env(argv);
    if (tool_check_cpu("bench/ops")) return 2;
    cfg c = {0, 128, 20, 1, "/usr/bin/python3", "bench/peer/ops.py", {VLP_PRECISION_FP32, NULL, 0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) c.threads = atoi(argv[++i]);
        else if ((!strcmp(a, "-b") || !strcmp(a, "--batch")) && has) c.batch = atoi(argv[++i]);
        else if ((!strcmp(a, "-r") || !strcmp(a, "--reps")) && has) c.reps = atoi(argv[++i]);
        else if (!strcmp(a, "-q") || !strcmp(a, "--quick")) c.reps = 5, c.batch = 32;
        else if (!strcmp(a, "--no-peer")) c.peer = 0;
        else if (!strcmp(a, "--precision") && has && !strcmp(argv[i + 1], "fp32")) i++;
        else if (!strcmp(a, "--precision") && has && !strcmp(argv[i + 1], "bf16"))
            c.mm.precision = VLP_PRECISION_BF16, i++;
        else if (!strcmp(a, "--python") && has) c.python = argv[++i];
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        else {
            fprintf(stderr, "bench/ops: bad option '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (c.batch < 1 || c.reps < 1 || c.reps > 256 || c.threads < 0) {
        fprintf(stderr, "bench/ops: need batch >= 1, 1 <= reps <= 256, threads >= 0\n");
        return 2;
    }
    vlp_set_threads(c.threads);
    c.threads = omp_get_max_threads();
    if (c.mm.precision == VLP_PRECISION_BF16) {
        if (!gemm_bf16_hw()) {
            fprintf(stderr, "bench/ops: this CPU has no AVX512-BF16; --precision bf16 would time the portable kernel\n");
            return 2;
        }
        c.mm.threads = c.threads;
        c.mm.workspace = malloc(gemm_bf16_workspace_bytes(c.threads));
        if (!c.mm.workspace) return fprintf(stderr, "bench/ops: out of memory\n"), 1;
    }
    const matmul_cfg *mm = c.mm.precision == VLP_PRECISION_BF16 ? &c.mm : NULL;
    tool_print_sysinfo(stdout);
    const char *simd;
    double peak = measure_fma_peak(c.threads, &simd);
    printf("peak: %.0f GFLOP/s fp32 measured (%s, %d threads)\n", peak, simd, c.threads);
    if (c.mm.precision == VLP_PRECISION_BF16) { /* the RESULT lines' MFU against the bf16 dot products */
        peak = measure_bf16_peak(c.threads);
        printf("peak: %.0f GFLOP/s bf16 measured (AVX512-BF16 dot products): the MFU below\n", peak);
    }
    printf("shapes: tiny config (width 256, 4 heads, MLP 1024), batch %d: 65 image tokens, 32 text tokens\n",
           c.batch);
    printf("precision: %s\n\n", mm ? "bf16 (vlp's bf16 kernels; the peer under torch.autocast)" : "fp32");

    row rows[8] = {0};
    int n = 0, Nv = c.batch * 65;
    bench_linear(&rows[n++], mm, "linear qkv", Nv, 256, 768, c.reps);
    bench_linear(&rows[n++], mm, "linear c_fc", Nv, 256, 1024, c.reps);
    bench_linear(&rows[n++], mm, "linear c_proj", Nv, 1024, 256, c.reps);
    bench_attention(&rows[n], &rows[n + 1], mm, "image", c.batch, 65, 256, 4, false, c.reps);
    n += 2;
    bench_attention(&rows[n], &rows[n + 1], mm, "text causal", c.batch, 32, 256, 4, true, c.reps);
    n += 2;
    if (c.peer) run_peer(&c, rows, n);

    printf("| op | shape | fwd ms | fwd GFLOP/s | sgemm GFLOP/s | op/sgemm | bwd ms | bwd GFLOP/s | "
           "sgemm GFLOP/s | op/sgemm | torch fwd ms | torch bwd ms | torch/vlp time |\n");
    printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        double gf = r->flops_fwd / r->fwd_ms * 1e-6, sgf = r->flops_fwd / r->sg_fwd_ms * 1e-6;
        double gb = r->flops_bwd / r->bwd_ms * 1e-6, sgb = r->flops_bwd / r->sg_bwd_ms * 1e-6;
        char pf[32] = "-", pb[32] = "-", ratio[32] = "-";
        if (r->peer_fwd_ms > 0) {
            snprintf(pf, sizeof pf, "%.2f", r->peer_fwd_ms);
            snprintf(pb, sizeof pb, "%.2f", r->peer_bwd_ms);
            snprintf(ratio, sizeof ratio, "%.2f",
                     (r->peer_fwd_ms + r->peer_bwd_ms) / (r->fwd_ms + r->bwd_ms));
        }
        printf("| %s | %s | %.2f | %.0f | %.0f | %.2f | %.2f | %.0f | %.0f | %.2f | %s | %s | %s |\n",
               r->name, r->shape, r->fwd_ms, gf, sgf, gf / sgf, r->bwd_ms, gb, sgb, gb / sgb, pf,
               pb, ratio);
    }
    printf("\n");
    for (int i = 0; i < n; i++) {
        row *r = &rows[i];
        char name[64];
        size_t k = 0;
        for (const char *s = r->name; *s && k + 1 < sizeof name; s++) name[k++] = *s == ' ' ? '-' : *s;
        name[k] = '\0';
        double vlp_gf = (r->flops_fwd + r->flops_bwd) / (r->fwd_ms + r->bwd_ms) * 1e-6;
        if (r->peer_fwd_ms > 0) {
            double peer_gf = (r->flops_fwd + r->flops_bwd) / (r->peer_fwd_ms + r->peer_bwd_ms) * 1e-6;
            printf("RESULT name=ops-%s-fwdbwd isa=%s vlp=%.1f peer=%.1f ratio=%.2f mfu=%.3f\n", name, tool_isa(), vlp_gf,
                   peer_gf, vlp_gf / peer_gf, vlp_gf / peak);
        } else {
            printf("RESULT name=ops-%s-fwdbwd isa=%s vlp=%.1f peer=- ratio=- mfu=%.3f\n", name, tool_isa(), vlp_gf,
                   vlp_gf / peak);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("(RESULT values in GFLOP/s of forward+backward; peak RSS of vlp %.0f MiB)\n",
           ru.ru_maxrss / 1024.0);
    return 0;
}
