/* The instruction-set levels compute the same bits where they should:
 * the elementwise kernels of the active level (src/ops/levels/eltwise.c at
 * x86-64-v3 or -v4) against the portable build of the same C, the fused
 * attention's AVX2 and AVX-512 tiles against each other through the active
 * one and a double reference. tests/run.sh runs this binary at every level
 * the CPU has (VLP_CPU), so each pair is compared on a machine that runs it.
 * A kernel that contracted a·b + c into an FMA, summed in another order or
 * lost a lane of a ragged tail fails here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "ops/attention_fused.h"
#include "ops/eltwise.h"
#include "ops/gemm_int8.h"
#include "testutil.h"

/* odd lengths: the vector loops' tails run too */
#define N 4099

static void same_bits(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)))
            fail_msg("%s at level %s: element %zu is %.9g, the portable build's %.9g", what, vlp_cpu()->level,
                     i, a[i], b[i]);
}

static void test_level_named(void **state) {
    const vlp_cpu_state *c = vlp_cpu();
    char line[256];
    snprintf(line, sizeof line, "%s", c->level);
    printf("# level %s (eltwise %s, int8 %s)\n", line, eltwise_level(), q8_level());
    assert_int_equal(c->status, VLP_OK);
    assert_true((c->active & c->cpu) == c->active); /* never above the CPU */
}

static void test_activations(void **state) {
    const eltwise_kernels *k = eltwise(), *p = eltwise_portable_kernels();
    rng r = {11};
    float *x = falloc(N), *dy = falloc(N), *a = falloc(N), *b = falloc(N);
    fill_normal(&r, x, N, 3.0f, 0.0f);
    fill_normal(&r, dy, N, 1.0f, 0.0f);
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 100.0f, x[4] = -100.0f, x[5] = 0.0f;
    for (int act = 0; act < 2; act++) {
        const char *name = act ? "QuickGELU" : "GELU";
        k->act_forward((vlp_act)act, a, x, N);
        p->act_forward((vlp_act)act, b, x, N);
        same_bits(a, b, N, name);
        uint16_t *a16 = (uint16_t *)a, *b16 = (uint16_t *)b;
        k->act_forward_bf16((vlp_act)act, a16, x, N);
        p->act_forward_bf16((vlp_act)act, b16, x, N);
        assert_memory_equal(a16, b16, N * sizeof(uint16_t));
        for (int write = 0; write < 2; write++) {
            for (int i = 0; i < N; i++) a[i] = b[i] = 0.25f * (float)(i % 7);
            k->act_backward((vlp_act)act, a, dy, x, N, write);
            p->act_backward((vlp_act)act, b, dy, x, N, write);
            same_bits(a, b, N, write ? "act backward (written)" : "act backward (accumulated)");
        }
    }
    free(x), free(dy), free(a), free(b);
}

static void test_layernorm_softmax_adamw(void **state) {
    const eltwise_kernels *k = eltwise(), *p = eltwise_portable_kernels();
    enum { R = 37, C = 131 };
    rng r = {12};
    float *x = falloc(R * C), *dy = falloc(R * C), *w = falloc(C), *bias = falloc(C);
    float *o1 = falloc(R * C), *o2 = falloc(R * C), *m1 = falloc(R), *m2 = falloc(R), *s1 = falloc(R), *s2 = falloc(R);
    float *dw1 = falloc(C), *dw2 = falloc(C);
    fill_normal(&r, x, R * C, 2.0f, 0.5f);
    fill_normal(&r, dy, R * C, 1.0f, 0.0f);
    fill_normal(&r, w, C, 0.3f, 1.0f);
    fill_normal(&r, bias, C, 0.1f, 0.0f);
    k->layernorm_rows(o1, NULL, m1, s1, x, w, bias, R, C, 1e-5f);
    p->layernorm_rows(o2, NULL, m2, s2, x, w, bias, R, C, 1e-5f);
    same_bits(o1, o2, R * C, "layernorm");
    same_bits(s1, s2, R, "layernorm 1/std");
    memset(o1, 0, sizeof(float) * R * C), memset(o2, 0, sizeof(float) * R * C);
    k->layernorm_backward(o1, dw1, dy, x, w, m1, s1, R, C);
    p->layernorm_backward(o2, dw2, dy, x, w, m2, s2, R, C);
    same_bits(o1, o2, R * C, "layernorm backward dx");
    same_bits(dw1, dw2, C, "layernorm backward dweight");

    /* causal softmax rows and dS on (T, T) = (R, R) scores */
    memcpy(o1, x, sizeof(float) * R * R), memcpy(o2, x, sizeof(float) * R * R);
    k->attention_softmax_rows(o1, R, R, true);
    p->attention_softmax_rows(o2, R, R, true);
    same_bits(o1, o2, R * R, "attention softmax");
    float *d1 = falloc(R * R), *d2 = falloc(R * R);
    memcpy(d1, dy, sizeof(float) * R * R), memcpy(d2, dy, sizeof(float) * R * R);
    k->attention_ds_rows(d1, o1, R, R);
    p->attention_ds_rows(d2, o2, R, R);
    same_bits(d1, d2, R * R, "attention dS");

    /* AdamW on the R·C values */
    float *mo1 = falloc(R * C), *mo2 = falloc(R * C), *v1 = falloc(R * C), *v2 = falloc(R * C);
    memcpy(o1, x, sizeof(float) * R * C), memcpy(o2, x, sizeof(float) * R * C);
    for (int step = 0; step < 3; step++) {
        k->adamw(o1, dy, mo1, v1, R * C, 0.9f, 0.98f, 1e-6f, 0.9998f, 1e-3f, 1.3f);
        p->adamw(o2, dy, mo2, v2, R * C, 0.9f, 0.98f, 1e-6f, 0.9998f, 1e-3f, 1.3f);
    }
    same_bits(o1, o2, R * C, "AdamW weights");
    same_bits(v1, v2, R * C, "AdamW second moment");
    free(x), free(dy), free(w), free(bias), free(o1), free(o2), free(m1), free(m2), free(s1), free(s2);
    free(dw1), free(dw2), free(d1), free(d2), free(mo1), free(mo2), free(v1), free(v2);
}

/* The fused attention's AVX-512 and AVX2 tiles: the same products bit for
 * bit (each output the same FMA chain over k), on ragged shapes, both
 * layouts of A and accumulation; both within 1e-5 of a double product. */
static void test_attention_tiles(void **state) {
    if ((vlp_cpu()->cpu & (VLP_FEAT_AVX2 | VLP_FEAT_AVX512)) != (VLP_FEAT_AVX2 | VLP_FEAT_AVX512)) {
        printf("# this CPU has not both AVX2 and AVX-512: no two tiles to compare\n");
        skip();
    }
    static const int shapes[][3] = {{65, 64, 65}, {7, 33, 17}, {1, 1, 1}, {50, 50, 64}, {13, 16, 5}};
    rng r = {13};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s][0], Nn = shapes[s][1], K = shapes[s][2];
        float *A = falloc((size_t)M * K), *B = falloc((size_t)K * Nn);
        float *c1 = falloc((size_t)M * Nn), *c2 = falloc((size_t)M * Nn);
        fill_normal(&r, A, (size_t)M * K, 1.0f, 0.0f);
        fill_normal(&r, B, (size_t)K * Nn, 1.0f, 0.0f);
        for (int t = 0; t < 4; t++) {
            bool trans = t & 1, acc = t & 2; /* A read down its columns (as Pᵀ), and C accumulated */
            int am = trans ? 1 : K, ak = trans ? M : 1;
            for (size_t i = 0; i < (size_t)M * Nn; i++) c1[i] = c2[i] = 0.5f * (float)(i % 5);
            assert_true(attention_small_gemm_at("avx512", c1, Nn, A, am, ak, B, Nn, M, Nn, K, 0.125f, acc));
            assert_true(attention_small_gemm_at("avx2", c2, Nn, A, am, ak, B, Nn, M, Nn, K, 0.125f, acc));
            same_bits(c2, c1, (size_t)M * Nn, "attention tile: avx2 against avx512");
            for (int i = 0; i < M; i++)
                for (int j = 0; j < Nn; j++) {
                    double want = acc ? 0.5 * (double)(((size_t)i * Nn + j) % 5) : 0.0;
                    double dot = 0;
                    for (int k = 0; k < K; k++) dot += (double)A[(size_t)i * am + (size_t)k * ak] * B[(size_t)k * Nn + j];
                    want += 0.125 * dot;
                    if (fabs(c1[(size_t)i * Nn + j] - want) > 1e-5 * (1 + fabs(want)))
                        fail_msg("tile (%d, %d) of %dx%dx%d: %.7g, want %.7g", i, j, M, Nn, K, c1[(size_t)i * Nn + j], want);
                }
        }
        free(A), free(B), free(c1), free(c2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_named),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_layernorm_softmax_adamw),
        cmocka_unit_test(test_attention_tiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
