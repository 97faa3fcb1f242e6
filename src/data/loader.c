#include "data/loader.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

void rgb8_to_chw(float *out, const uint8_t *rgb, int S, const image_norm *n) {
    size_t plane = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        float scale = 1.0f / (255.0f * n->std[c]), shift = n->mean[c] / n->std[c];
        for (size_t i = 0; i < plane; i++) out[c * plane + i] = rgb[3 * i + c] * scale - shift;
    }
}

typedef struct pair_loader {
    const uint8_t *rgb; // (n, S, S, 3)
    int32_t *ids;       // (n, ncap, ctx)
    int64_t n;
    int S, ctx, ncap;
    image_norm norm;
    uint64_t seed;
    data_pos pos;       // index: samples of the epoch handed out to all ranks together
    int64_t *perm;      // (n) this epoch's order
    int rank, world;    // this process's share of each global batch
} pair_loader;

/* the permutation of an epoch depends on (seed, epoch) only */
static void make_perm(pair_loader *p) {
    rng64 r = {p->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(p->pos.epoch + 1))};
    for (int64_t i = 0; i < p->n; i++) p->perm[i] = i;
    for (int64_t i = p->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng64_u64(&r) % (uint64_t)(i + 1));
        int64_t t = p->perm[i];
        p->perm[i] = p->perm[j], p->perm[j] = t;
    }
}

/* B samples for this rank: its slice [rank·B, (rank+1)·B) of the global
 * batch of world·B, which every rank draws from the same permutation */
static vlp_err pl_next(void *impl, int B, float *images, int32_t *ids, vlp_error *err) {
    pair_loader *p = impl;
    int64_t G = (int64_t)B * p->world;
    VLP_CHECK_ARG(B > 0 && G <= p->n, err, "batch %lld but the dataset holds %lld samples",
                  (long long)G, (long long)p->n);
    if (p->pos.index + G > p->n) { /* drop the partial tail, start the next epoch */
        p->pos.epoch++, p->pos.index = 0;
        make_perm(p);
    }
    size_t img = (size_t)3 * p->S * p->S;
    const int64_t *order = p->perm + p->pos.index + (int64_t)p->rank * B;
    VLP_OMP_FOR
    for (int b = 0; b < B; b++) {
        int64_t s = order[b];
        rgb8_to_chw(images + (size_t)b * img, p->rgb + (size_t)s * p->S * p->S * 3, p->S, &p->norm);
        int v = 0;
        if (p->ncap > 1) { /* which caption: a function of (seed, epoch, sample) */
            rng64 r = {p->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(p->pos.epoch + 1)) ^
                         (0x8CB92BA72F3D8DD7ull * (uint64_t)(s + 1))};
            v = (int)(rng64_u64(&r) % (uint64_t)p->ncap);
        }
        memcpy(ids + (size_t)b * p->ctx, p->ids + ((size_t)s * p->ncap + v) * p->ctx,
               sizeof(int32_t) * p->ctx);
    }
    p->pos.index += G;
    return VLP_OK;
}

static data_pos pl_tell(const void *impl) { return ((const pair_loader *)impl)->pos; }

static vlp_err pl_seek(void *impl, data_pos pos, vlp_error *err) {
    pair_loader *p = impl;
    VLP_CHECK_ARG(pos.epoch >= 0 && pos.index >= 0 && pos.index <= p->n, err,
                  "data position epoch %lld sample %lld is outside a dataset of %lld",
                  (long long)pos.epoch, (long long)pos.index, (long long)p->n);
    p->pos = pos;
    make_perm(p);
    return VLP_OK;
}

static void pl_free(void *impl) {
    pair_loader *p = impl;
    if (!p) return;
    free(p->ids), free(p->perm), free(p);
}

vlp_err pair_loader_create(batch_loader *out, const uint8_t *rgb, const char *const *captions,
                           int ncap, int64_t n, int S, const text_tokenizer *tok, int ctx,
                           const image_norm *norm, uint64_t seed, vlp_error *err) {
    VLP_CHECK_ARG(n > 0 && S > 0 && ctx > 1 && ncap > 0, err,
                  "empty dataset or bad sizes (n %lld, S %d, ctx %d, captions per image %d)",
                  (long long)n, S, ctx, ncap);
    pair_loader *p = calloc(1, sizeof *p);
    VLP_CHECK_ALLOC(p, err, sizeof *p);
    p->ids = malloc(sizeof(int32_t) * (size_t)n * ncap * ctx);
    p->perm = malloc(sizeof(int64_t) * (size_t)n);
    if (!p->ids || !p->perm) {
        pl_free(p);
        VLP_FAIL(err, VLP_ERR_NOMEM, "token ids of %lld captions", (long long)n);
    }
    for (int64_t i = 0; i < n * ncap; i++) tok->encode(tok->impl, captions[i], p->ids + i * ctx, ctx);
    p->rgb = rgb, p->n = n, p->S = S, p->ctx = ctx, p->ncap = ncap, p->norm = *norm, p->seed = seed;
    p->pos = (data_pos){0, 0};
    p->rank = 0, p->world = 1;
    make_perm(p);
    *out = (batch_loader){.impl = p, .epoch_size = n, .next = pl_next, .tell = pl_tell,
                        .seek = pl_seek, .free = pl_free};
    return VLP_OK;
}

vlp_err pair_loader_shard(batch_loader *l, int rank, int world, vlp_error *err) {
    VLP_CHECK_ARG(l && l->next == pl_next, err, "pair_loader_shard needs a pair loader");
    VLP_CHECK_ARG(world >= 1 && rank >= 0 && rank < world, err, "rank %d of %d", rank, world);
    pair_loader *p = l->impl;
    p->rank = rank, p->world = world;
    l->epoch_ranks = world;
    return VLP_OK;
}
