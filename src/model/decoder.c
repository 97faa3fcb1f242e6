#include "model/decoder.h"
#include "core/error.h"
#include "model/arena.h"

#include <stdlib.h>
#include <string.h>


vlp_err decoder_acts_alloc(decoder_acts *a, int layers, vlp_error *err) {
    decoder_acts_free(a);
    *a = (decoder_acts){.in = calloc(2 * (size_t)layers, sizeof(float *)),
                        .out = calloc(2 * (size_t)layers, sizeof(float *)),
                        .self = calloc((size_t)layers, sizeof(block_acts)),
                        .cross = calloc((size_t)layers, sizeof(cross_acts))};
    VLP_CHECK(a->in && a->out && a->self && a->cross, err, VLP_ERR_NOMEM,
              "could not allocate the activation tables of %d decoder layers", layers);
    return VLP_OK;
}

void decoder_acts_free(decoder_acts *a) {
    free(a->in), free(a->out), free(a->self), free(a->cross);
    memset(a, 0, sizeof *a);
}

size_t decoder_acts_bind(decoder_acts *a, float *base, const decoder_dims *d, int B) {
    block_dims sd = d->self, cd = d->cross;
    sd.B = cd.B = B;
    size_t N = (size_t)B * sd.T, C = sd.C;
    arena ar = {base, 0};
    for (int l = 0; l < d->layers; l++) {
        float *o1 = arena_take(&ar, N * C), *o2 = arena_take(&ar, N * C);
        float *s = arena_take(&ar, block_acts_bind(&a->self[l], NULL, &sd));
        float *x = arena_take(&ar, cross_acts_bind(&a->cross[l], NULL, &cd, d->Tk));
        if (!base) continue;
        a->out[2 * l] = o1, a->out[2 * l + 1] = o2;
        block_acts_bind(&a->self[l], s, &sd);
        cross_acts_bind(&a->cross[l], x, &cd, d->Tk);
    }
    a->lnf = arena_take(&ar, N * C);
    a->lnf_mean = arena_take(&ar, N);
    a->lnf_rstd = arena_take(&ar, N);
    a->logits = arena_take(&ar, N * (size_t)d->V);
    return ar.off;
}

size_t decoder_scratch_floats(const decoder_dims *d, int B) {
    block_dims sd = d->self, cd = d->cross;
    sd.B = cd.B = B;
    size_t N = (size_t)B * sd.T, s = block_scratch_floats(&sd), c = cross_scratch_floats(&cd, d->Tk);
    /* two (B,T,C) gradients in turn and the final LN's input gradient, then a block's own */
    return 3 * arena_round_up(N * sd.C) + arena_round_up(s > c ? s : c);
}

vlp_err decoder_forward(decoder_acts *a, const float *txt, const float *img, const decoder_views *w,
                        const decoder_dims *d, int B, vlp_error *err) {
    block_dims sd = d->self, cd = d->cross;
    sd.B = cd.B = B;
    int N = B * sd.T, C = sd.C;
    const float *x = txt;
    a->img = img;
    for (int l = 0; l < d->layers; l++) {
        a->in[2 * l] = x;
        VLP_TRY(block_forward(a->out[2 * l], &a->self[l], x, &w->self[l], &sd, err));
        x = a->out[2 * l];
        if (!img) continue;
        a->in[2 * l + 1] = x;
        VLP_TRY(cross_block_forward(a->out[2 * l + 1], &a->cross[l], x, img, d->Tk, &w->cross[l],
                                    &cd, err));
        x = a->out[2 * l + 1];
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x, w->ln_final_w, w->ln_final_b, N, C,
                      sd.eps);
    if (d->V) proj_forward(a->logits, a->lnf, w->text_projection, N, C, d->V);
    return VLP_OK;
}

void decoder_backward(float *dtxt, float *dimg, decoder_views *g, const float *dlogits,
                      const decoder_acts *a, const decoder_views *w, const decoder_dims *d,
                      float *scratch, int B) {
    block_dims sd = d->self, cd = d->cross;
    sd.B = cd.B = B;
    int N = B * sd.T, C = sd.C, L = d->layers;
    size_t NC = (size_t)N * C;
    float *dx = scratch, *dy = dx + arena_round_up(NC);         // (N, C) each, in turn
    float *dln = dy + arena_round_up(NC), *bscratch = dln + arena_round_up(NC);
    const float *last = a->img ? a->out[2 * L - 1] : a->out[2 * L - 2]; /* layers >= 1 */
    if (d->V) {
        memset(dln, 0, sizeof(float) * NC);
        proj_backward(dln, g->text_projection, dlogits, a->lnf, w->text_projection, N, C, d->V);
    } else memcpy(dln, dlogits, sizeof(float) * NC); /* no projection: the gradient is lnf's */
    memset(dx, 0, sizeof(float) * NC);
    layernorm_backward(dx, g->ln_final_w, g->ln_final_b, dln, last, w->ln_final_w,
                       a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        if (a->img) {
            memset(dy, 0, sizeof(float) * NC);
            cross_block_backward(dy, dimg, &g->cross[l], dx, a->in[2 * l + 1], a->img, d->Tk,
                                 &a->cross[l], &w->cross[l], bscratch, &cd);
            float *t = dx;
            dx = dy, dy = t;
        }
        memset(dy, 0, sizeof(float) * NC);
        block_backward(dy, &g->self[l], dx, a->in[2 * l], &a->self[l], &w->self[l], bscratch, &sd);
        float *t = dx;
        dx = dy, dy = t;
    }
    for (size_t i = 0; i < NC; i++) dtxt[i] += dx[i];
}
