#include "model/mae.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "model/arena.h"
#include "model/init.h"

#include <math.h>
#include <string.h>

size_t mae_acts_bind(mae_acts *a, float *base, const mae_dims *d, int B) {
    block_dims bd = d->blk;
    bd.B = B;
    size_t N = (size_t)B * bd.T, C = bd.C;
    arena ar = {base, 0};
    float *emb = arena_take(&ar, N * C); /* 1 + NK <= T tokens a sample */
    float *slot = arena_take(&ar, (size_t)B * d->NP);
    for (int l = 0; l <= d->layers; l++) {
        float *x = arena_take(&ar, N * C);
        if (base) a->xs[l] = x;
    }
    for (int l = 0; l < d->layers; l++) {
        float *blk = arena_take(&ar, block_acts_bind(&a->blocks[l], NULL, &bd));
        if (base) block_acts_bind(&a->blocks[l], blk, &bd);
    }
    float *ln = arena_take(&ar, N * C), *mean = arena_take(&ar, N), *rstd = arena_take(&ar, N);
    float *pred = arena_take(&ar, N * (size_t)d->K);
    if (base) {
        a->emb = emb, a->slot = (int32_t *)slot;
        a->ln = ln, a->ln_mean = mean, a->ln_rstd = rstd, a->pred = pred;
    }
    return ar.off;
}

size_t mae_scratch_floats(const mae_dims *d, int B) {
    block_dims bd = d->blk;
    bd.B = B;
    size_t NC = (size_t)B * bd.T * bd.C;
    /* two (B,T,C) gradients in turn, the final LN's input gradient, a block's scratch */
    return 3 * arena_round_up(NC) + arena_round_up(block_scratch_floats(&bd));
}

vlp_err mae_forward(mae_acts *a, const float *tok, const int32_t *keep, int NK, const mae_views *w,
                    const mae_dims *d, int B, vlp_error *err) {
    block_dims bd = d->blk;
    bd.B = B;
    int T = bd.T, C = bd.C, NP = d->NP, Te = 1 + NK;
    VLP_CHECK_ARG(NK >= 1 && NK <= NP, err, "MAE keeps %d of %d patches", NK, NP);
    for (int b = 0; b < B; b++) { /* the slot table */
        int32_t *slot = a->slot + (size_t)b * NP;
        memset(slot, 0, sizeof(int32_t) * NP);
        for (int j = 0; j < NK; j++) slot[keep[(size_t)b * NK + j]] = 1 + j;
    }
    a->tok = tok, a->nkeep = NK;
    linear_forward(bd.mm, a->emb, tok, w->embed_w, w->embed_b, B * Te, d->E, C);
    float *x0 = a->xs[0];
    VLP_OMP_FOR
    for (int bt = 0; bt < B * T; bt++) {
        int b = bt / T, t = bt % T;
        int s = t == 0 ? 0 : a->slot[(size_t)b * NP + t - 1];
        const float *src = t == 0 || s ? a->emb + ((size_t)b * Te + s) * C : w->mask_token;
        const float *p = w->pos + (size_t)t * C;
        float *o = x0 + (size_t)bt * C;
        for (int c = 0; c < C; c++) o[c] = src[c] + p[c];
    }
    for (int l = 0; l < d->layers; l++)
        VLP_TRY(block_forward(a->xs[l + 1], &a->blocks[l], a->xs[l], &w->blocks[l], &bd, err));
    layernorm_forward(a->ln, a->ln_mean, a->ln_rstd, a->xs[d->layers], w->ln_w, w->ln_b, B * T, C,
                      bd.eps);
    linear_forward(bd.mm, a->pred, a->ln, w->pred_w, w->pred_b, B * T, C, d->K);
    return VLP_OK;
}

void mae_backward(float *dtok, mae_views *g, const float *dpred, const mae_acts *a,
                  const mae_views *w, const mae_dims *d, float *scratch, int B) {
    block_dims bd = d->blk;
    bd.B = B;
    int T = bd.T, C = bd.C, NP = d->NP, NK = a->nkeep, Te = 1 + NK, N = B * T;
    size_t NC = (size_t)N * C;
    float *dx = scratch, *dy = dx + arena_round_up(NC), *dln = dy + arena_round_up(NC);
    float *bscratch = dln + arena_round_up(NC);
    memset(dln, 0, sizeof(float) * NC);
    linear_backward(bd.mm, dln, g->pred_w, g->pred_b, dpred, a->ln, w->pred_w, N, C, d->K);
    memset(dx, 0, sizeof(float) * NC);
    layernorm_backward(dx, g->ln_w, g->ln_b, dln, a->xs[d->layers], w->ln_w, a->ln_mean,
                       a->ln_rstd, N, C);
    for (int l = d->layers - 1; l >= 0; l--) {
        memset(dy, 0, sizeof(float) * NC);
        block_backward(dy, &g->blocks[l], dx, a->xs[l], &a->blocks[l], &w->blocks[l], bscratch, &bd);
        float *t = dx;
        dx = dy, dy = t;
    }
    /* dx = d(x0): positions sum over the batch, the mask token over masked
     * rows, the embedded tokens take their rows back (into dy, (B, Te, C)) */
    VLP_OMP_FOR
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *gr = dx + ((size_t)b * T + t) * C;
            float *p = g->pos + (size_t)t * C;
            for (int c = 0; c < C; c++) p[c] += gr[c];
        }
    VLP_OMP_FOR
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            for (int p = 0; p < NP; p++)
                if (!a->slot[(size_t)b * NP + p]) g->mask_token[c] += dx[((size_t)b * T + 1 + p) * C + c];
    float *demb = dy;
    VLP_OMP_FOR
    for (int b = 0; b < B; b++) {
        memcpy(demb + (size_t)b * Te * C, dx + (size_t)b * T * C, sizeof(float) * C);
        for (int p = 0; p < NP; p++) {
            int s = a->slot[(size_t)b * NP + p];
            if (s)
                memcpy(demb + ((size_t)b * Te + s) * C, dx + ((size_t)b * T + 1 + p) * C,
                       sizeof(float) * C);
        }
    }
    linear_backward(bd.mm, dtok, g->embed_w, g->embed_b, demb, a->tok, w->embed_w, B * Te, d->E, C);
}

/* ---- initialisation ------------------------------------------------------------------------ */

static void xavier(rng64 *r, float *w, int out, int in) {
    init_uniform(r, w, (size_t)out * in, sqrtf(6.0f / (float)(in + out)));
}

/* MAE's get_2d_sincos_pos_embed: half the channels encode the column, half
 * the row, each as [sin(pos·ω_k), cos(pos·ω_k)], ω_k = 10000^(−k/(D/4));
 * the class token's row is zero. */
static void sincos_2d(float *pos, int grid, int D) {
    int q = D / 4;
    init_const(pos, (size_t)D, 0.0f);
    for (int p = 0; p < grid * grid; p++) {
        float *o = pos + (size_t)(1 + p) * D;
        init_const(o, (size_t)D, 0.0f); /* D not a multiple of 4: the last channels stay 0 */
        int coord[2] = {p % grid, p / grid};
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < q; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / q), v = coord[h] * omega;
                o[h * 2 * q + k] = (float)sin(v);
                o[h * 2 * q + q + k] = (float)cos(v);
            }
    }
}

void mae_init_weights(mae_views *w, const mae_dims *d, uint64_t seed) {
    rng64 r = {seed};
    int C = d->blk.C, H = d->blk.hidden;
    xavier(&r, w->embed_w, C, d->E), init_const(w->embed_b, (size_t)C, 0.0f);
    init_normal(&r, w->mask_token, (size_t)C, 0.02f);
    int grid = (int)lround(sqrt((double)d->NP));
    sincos_2d(w->pos, grid, C);
    for (int l = 0; l < d->layers; l++) {
        block_params *p = &w->blocks[l];
        init_const(p->ln_1_w, (size_t)C, 1.0f), init_const(p->ln_1_b, (size_t)C, 0.0f);
        init_const(p->ln_2_w, (size_t)C, 1.0f), init_const(p->ln_2_b, (size_t)C, 0.0f);
        xavier(&r, p->in_proj_w, 3 * C, C), init_const(p->in_proj_b, 3 * (size_t)C, 0.0f);
        xavier(&r, p->out_proj_w, C, C), init_const(p->out_proj_b, (size_t)C, 0.0f);
        xavier(&r, p->c_fc_w, H, C), init_const(p->c_fc_b, (size_t)H, 0.0f);
        xavier(&r, p->c_proj_w, C, H), init_const(p->c_proj_b, (size_t)C, 0.0f);
    }
    init_const(w->ln_w, (size_t)C, 1.0f), init_const(w->ln_b, (size_t)C, 0.0f);
    xavier(&r, w->pred_w, d->K, C), init_const(w->pred_b, (size_t)d->K, 0.0f);
}

/* ---- masking ------------------------------------------------------------------------------- */

void mae_random_keep(int32_t *keep, int NP, int NK, uint64_t seed) {
    rng64 r = {seed};
    /* selection sampling (Knuth's algorithm S): patch p is taken with
     * probability (still needed)/(still left): a uniform NK-subset, ascending */
    int taken = 0;
    for (int p = 0; p < NP && taken < NK; p++) {
        double u = (rng64_u64(&r) >> 11) * (1.0 / 9007199254740992.0);
        if ((double)(NP - p) * u < (double)(NK - taken)) keep[taken++] = p;
    }
}

int mae_keep_count(int NP, float mask_ratio) {
    int n = (int)((double)NP * (1.0 - (double)mask_ratio));
    return n < 1 ? 1 : n > NP ? NP : n;
}
