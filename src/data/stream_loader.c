#include "data/stream_loader.h"
#include "core/error.h"
#include "core/rng.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_FAILED, SLOT_EPOCH_END };

typedef struct slot {
    int state;
    int64_t seq, epoch, index;
    float *image;   // (3, S, S)
    int32_t *ids;   // (ctx)
    char why[256];  // a failed decode's reason
    int64_t skips;  // samples the stream skipped just before this one
    char skip_why[256]; // the first of them
} slot;

typedef struct item { /* reader → workers */
    raw_sample raw;
    int64_t seq, epoch, index;
    bool epoch_end;
    int64_t skips;      // samples the stream skipped just before this one
    char skip_why[256]; // the first of them
} item;

typedef struct sl {
    stream_loader_opts o;
    sample_stream *stream;
    int S;
    /* threads */
    pthread_t reader, *workers;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;   // any state change
    bool stop;
    /* reader → workers queue */
    item *q;
    int qcap, qhead, qlen;
    int64_t next_seq;
    data_pos start;      // where the reader begins (epoch, samples to skip)
    /* the ring */
    slot *ring;
    int D;
    int64_t cons_seq;    // next seq the consumer takes
    data_pos pos;        // consumed: epoch, index within it
    int64_t epoch_ready; // usable samples the consumer saw in this epoch
    /* the stream's skips since the last item (the reader thread's alone):
     * they travel with the next item, so they are counted and reported when
     * consumed, not when read ahead (as decode failures) */
    int64_t pend_skips;
    char pend_why[256];
    /* errors and counts */
    vlp_err fatal;
    vlp_error fatal_err;
    int64_t decode_failed, stream_skips;
    char first_fail[512], first_skip[512];
} sl;

stream_loader_opts stream_loader_defaults(int image_size, bool train, int ctx, const text_tokenizer *tok) {
    /* training may decode big JPEGs at 1/2..1/8 scale (both sides stay >= the
     * crop size); evaluation decodes in full, as PIL does, for exact pixels */
    return (stream_loader_opts){.workers = 2, .prefetch = 512,
                                .tf = image_transform_default(image_size, train), .ctx = ctx,
                                .tok = tok, .alt_prob = 0,
                                .decode = {.min_side = train ? image_size : 0}};
}

static rng64 sample_rng(const sl *L, int64_t epoch, int64_t index) {
    rng64 r = {L->o.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)) ^
                 (0x8CB92BA72F3D8DD7ull * (uint64_t)(index + 1))};
    rng64_u64(&r);
    return r;
}

/* the stream's warn, in the reader thread */
static void reader_saw_skip(void *ctx, const char *msg) {
    sl *L = ctx;
    if (!L->pend_skips++) snprintf(L->pend_why, sizeof L->pend_why, "%.255s", msg);
}

static void *reader_main(void *arg) {
    sl *L = arg;
    vlp_error err = {0};
    for (int64_t epoch = L->start.epoch;; epoch++) {
        vlp_err rc = stream_begin(L->stream, epoch, &err);
        int64_t index = 0;
        bool done = false;
        while (rc == VLP_OK) {
            item it = {.epoch = epoch};
            rc = stream_next(L->stream, &it.raw, &done, &err);
            if (rc != VLP_OK) break;
            if (done) it.epoch_end = true;
            else it.index = index++;
            if (!done && epoch == L->start.epoch && it.index < L->start.index) { /* resuming: skip */
                raw_sample_free(&it.raw);
                L->pend_skips = 0; /* counted by the run that consumed them */
                continue;
            }
            it.skips = L->pend_skips;
            memcpy(it.skip_why, L->pend_why, sizeof it.skip_why);
            L->pend_skips = 0;
            pthread_mutex_lock(&L->mu);
            while (L->qlen == L->qcap && !L->stop) pthread_cond_wait(&L->cv, &L->mu);
            if (L->stop) {
                pthread_mutex_unlock(&L->mu);
                raw_sample_free(&it.raw);
                return NULL;
            }
            it.seq = L->next_seq++;
            L->q[(L->qhead + L->qlen++) % L->qcap] = it;
            pthread_cond_broadcast(&L->cv);
            pthread_mutex_unlock(&L->mu);
            if (done) break;
        }
        if (rc != VLP_OK) {
            pthread_mutex_lock(&L->mu);
            L->fatal = rc, L->fatal_err = err;
            pthread_cond_broadcast(&L->cv);
            pthread_mutex_unlock(&L->mu);
            return NULL;
        }
    }
}

/* fills the slot's buffers; returns its state (set by the caller, under the lock) */
static int decode_item(sl *L, item *it, slot *s) {
    vlp_error err = {0};
    image_u8 im;
    rng64 r = sample_rng(L, it->epoch, it->index);
    vlp_err rc = image_decode(it->raw.image, it->raw.image_len, it->raw.what, &L->o.decode, &im, &err);
    if (rc == VLP_OK) {
        rc = image_transform_apply(&L->o.tf, &im, &r, s->image, &err);
        image_free(&im);
    }
    if (rc != VLP_OK) { /* counted when consumed, so the count does not depend on read-ahead */
        snprintf(s->why, sizeof s->why, "%.255s", err.message);
        return SLOT_FAILED;
    }
    const char *cap = it->raw.caption;
    if (it->raw.alt_caption && L->o.alt_prob > 0 && rng64_uniform(&r) < L->o.alt_prob) cap = it->raw.alt_caption;
    L->o.tok->encode(L->o.tok->impl, cap, s->ids, L->o.ctx);
    return SLOT_READY;
}

static void *worker_main(void *arg) {
    sl *L = arg;
    for (;;) {
        pthread_mutex_lock(&L->mu);
        while (L->qlen == 0 && !L->stop) pthread_cond_wait(&L->cv, &L->mu);
        if (L->stop) {
            pthread_mutex_unlock(&L->mu);
            return NULL;
        }
        item it = L->q[L->qhead];
        L->qhead = (L->qhead + 1) % L->qcap, L->qlen--;
        pthread_cond_broadcast(&L->cv);
        slot *s = &L->ring[it.seq % L->D];
        /* the slot is ours once the consumer is within D of this seq */
        while (it.seq >= L->cons_seq + L->D && !L->stop) pthread_cond_wait(&L->cv, &L->mu);
        pthread_mutex_unlock(&L->mu);
        if (L->stop) {
            raw_sample_free(&it.raw);
            return NULL;
        }
        int state = it.epoch_end ? SLOT_EPOCH_END : decode_item(L, &it, s);
        raw_sample_free(&it.raw);
        pthread_mutex_lock(&L->mu); /* publish: the consumer reads only under the lock */
        s->seq = it.seq, s->epoch = it.epoch, s->index = it.index, s->state = state;
        s->skips = it.skips;
        memcpy(s->skip_why, it.skip_why, sizeof s->skip_why);
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
    }
}

static void stop_threads(sl *L) {
    if (!L->running) return;
    pthread_mutex_lock(&L->mu);
    L->stop = true;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->reader, NULL);
    for (int i = 0; i < L->o.workers; i++) pthread_join(L->workers[i], NULL);
    for (int i = 0; i < L->qlen; i++) raw_sample_free(&L->q[(L->qhead + i) % L->qcap].raw);
    L->running = false;
}

static vlp_err start_threads(sl *L, data_pos at, vlp_error *err) {
    L->stop = false;
    L->qhead = L->qlen = 0;
    L->next_seq = L->cons_seq = 0;
    for (int i = 0; i < L->D; i++) L->ring[i].state = SLOT_FREE;
    L->start = at, L->pos = at;
    L->epoch_ready = at.index; /* an approximation after a seek: only used for the too-small check */
    L->fatal = VLP_OK;
    L->pend_skips = 0;
    VLP_CHECK(pthread_create(&L->reader, NULL, reader_main, L) == 0, err, VLP_ERR_NOMEM, "cannot start the reader thread");
    for (int i = 0; i < L->o.workers; i++)
        if (pthread_create(&L->workers[i], NULL, worker_main, L) != 0) {
            L->o.workers = i; /* join those that started */
            L->running = true;
            stop_threads(L);
            VLP_FAIL(err, VLP_ERR_NOMEM, "cannot start decode thread %d", i);
        }
    L->running = true;
    return VLP_OK;
}

static vlp_err sl_next(void *impl, int B, float *images, int32_t *ids, vlp_error *err) {
    sl *L = impl;
    size_t img = (size_t)3 * L->S * L->S;
    int b = 0;
    pthread_mutex_lock(&L->mu);
    while (b < B) {
        slot *s = &L->ring[L->cons_seq % L->D];
        while ((s->state == SLOT_FREE || s->seq != L->cons_seq) && L->fatal == VLP_OK)
            pthread_cond_wait(&L->cv, &L->mu);
        if (s->state == SLOT_FREE || s->seq != L->cons_seq) { /* the reader failed */
            vlp_error e = L->fatal_err;
            vlp_err rc = L->fatal;
            pthread_mutex_unlock(&L->mu);
            if (err) *err = e;
            return rc;
        }
        int state = s->state;
        if (s->skips) { /* what the stream skipped before this slot */
            if (!L->stream_skips) snprintf(L->first_skip, sizeof L->first_skip, "%s", s->skip_why);
            L->stream_skips += s->skips;
            if (L->o.warn && s->skips == 1) L->o.warn(L->o.warn_ctx, s->skip_why);
            else if (L->o.warn) {
                char msg[400];
                snprintf(msg, sizeof msg, "%s (and %lld more samples skipped after it)", s->skip_why,
                         (long long)(s->skips - 1));
                L->o.warn(L->o.warn_ctx, msg);
            }
            s->skips = 0; /* counted once, even if this slot is retried below */
        }
        if (state == SLOT_EPOCH_END) { /* drop the partial batch, as open_clip (drop_last) */
            if (L->epoch_ready < B) { /* no batch can ever be formed: say so rather than spin */
                int64_t got = L->epoch_ready, bad = L->stream_skips + L->decode_failed;
                char first[512];
                snprintf(first, sizeof first, "%s", L->stream_skips ? L->first_skip : L->first_fail);
                pthread_mutex_unlock(&L->mu);
                if (!bad) /* the data is whole: the batch is too big for it */
                    VLP_FAIL(err, VLP_ERR_ARG, "epoch %lld has %lld samples, fewer than the batch of %d",
                             (long long)s->epoch, (long long)got, B);
                VLP_FAIL(err, VLP_ERR_FORMAT, "epoch %lld has %lld usable samples, fewer than the batch of %d "
                         "(%lld unusable so far; the first: %.300s)", (long long)s->epoch, (long long)got, B,
                         (long long)bad, first);
            }
            L->epoch_ready = 0;
            b = 0;
            L->pos = (data_pos){s->epoch + 1, 0};
        } else {
            if (state == SLOT_FAILED) {
                if (!L->decode_failed++) snprintf(L->first_fail, sizeof L->first_fail, "%s", s->why);
                if (L->o.warn) L->o.warn(L->o.warn_ctx, s->why);
            }
            if (state == SLOT_READY) {
                L->epoch_ready++;
                memcpy(images + (size_t)b * img, s->image, sizeof(float) * img);
                memcpy(ids + (size_t)b * L->o.ctx, s->ids, sizeof(int32_t) * (size_t)L->o.ctx);
                b++;
            }
            L->pos = (data_pos){s->epoch, s->index + 1};
        }
        s->state = SLOT_FREE;
        L->cons_seq++;
        pthread_cond_broadcast(&L->cv);
    }
    pthread_mutex_unlock(&L->mu);
    return VLP_OK;
}

static data_pos sl_tell(const void *impl) { return ((const sl *)impl)->pos; }

static vlp_err sl_seek(void *impl, data_pos p, vlp_error *err) {
    sl *L = impl;
    VLP_CHECK_ARG(p.epoch >= 0 && p.index >= 0, err, "data position epoch %lld sample %lld",
                  (long long)p.epoch, (long long)p.index);
    stop_threads(L);
    return start_threads(L, p, err);
}

static void sl_free(void *impl) {
    sl *L = impl;
    if (!L) return;
    stop_threads(L);
    for (int i = 0; L->ring && i < L->D; i++) free(L->ring[i].image), free(L->ring[i].ids);
    free(L->ring), free(L->q), free(L->workers);
    stream_free(L->stream);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    free(L);
}

int64_t stream_loader_skipped(const batch_loader *l, char *first, size_t cap) {
    sl *L = l->impl;
    pthread_mutex_lock(&L->mu);
    int64_t n = L->stream_skips + L->decode_failed;
    if (first && cap) snprintf(first, cap, "%s", L->stream_skips ? L->first_skip : L->first_fail);
    pthread_mutex_unlock(&L->mu);
    return n;
}

vlp_err stream_loader_create(batch_loader *out, sample_stream *s, const stream_loader_opts *o,
                             vlp_error *err) {
    VLP_CHECK_ARG(o->workers >= 1 && o->workers <= 64 && o->prefetch >= 1 && o->ctx > 1 && o->tok &&
                      o->tf.size > 0,
                  err, "loader: workers %d (1..64), prefetch %d, ctx %d, tokenizer, image size %d",
                  o->workers, o->prefetch, o->ctx, o->tf.size);
    sl *L = calloc(1, sizeof *L);
    VLP_CHECK_ALLOC(L, err, sizeof *L);
    L->o = *o, L->stream = s, L->S = o->tf.size;
    stream_set_warn(s, reader_saw_skip, L);
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    L->D = o->prefetch;
    L->qcap = 2 * o->workers + 8;
    L->ring = calloc((size_t)L->D, sizeof(slot));
    L->q = calloc((size_t)L->qcap, sizeof(item));
    L->workers = calloc((size_t)o->workers, sizeof(pthread_t));
    bool ok = L->ring && L->q && L->workers;
    for (int i = 0; ok && i < L->D; i++) {
        L->ring[i].image = malloc(sizeof(float) * 3 * (size_t)L->S * L->S);
        L->ring[i].ids = malloc(sizeof(int32_t) * (size_t)o->ctx);
        ok = L->ring[i].image && L->ring[i].ids;
    }
    vlp_err rc = ok ? start_threads(L, (data_pos){0, 0}, err)
                    : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "loader ring of %d samples", L->D);
    if (rc != VLP_OK) {
        L->stream = NULL; /* the caller keeps the stream on failure, */
        stream_set_warn(s, NULL, NULL); /* without a report to a loader that is gone */
        sl_free(L);
        return rc;
    }
    *out = (batch_loader){.impl = L, .epoch_size = stream_epoch_size(s), .next = sl_next, .tell = sl_tell,
                        .seek = sl_seek, .free = sl_free};
    return VLP_OK;
}
