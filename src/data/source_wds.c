/* WebDataset tar shards: members grouped by key (the name up to the first
 * dot of its last path part), the image from jpg/jpeg/png/webp/gif/tif/tiff, the caption
 * from txt or a field of json; shard lists brace-expanded and joined with
 * '::'. Shards are permuted per epoch and dealt to the readers; samples pass
 * through a shuffle buffer. */
#include "data/source_kind.h"
#include "data/table.h"
#include "data/tar.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MEMBERS 64 /* a whole record with more members is cut there, and said so */

/* ---- brace expansion ---------------------------------------------------------------------- */

typedef struct strvec {
    char **v;
    int n, cap;
} strvec;

static bool push(strvec *s, char *str) {
    if (!str) return false;
    if (s->n == s->cap) {
        char **g = realloc(s->v, sizeof(char *) * (size_t)(s->cap = s->cap ? 2 * s->cap : 16));
        if (!g) return free(str), false;
        s->v = g;
    }
    s->v[s->n++] = str;
    return true;
}

static void strvec_free(strvec *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* expands the first {...} of p, recursing on the rest */
static bool expand(const char *p, strvec *out) {
    const char *open = strchr(p, '{');
    if (!open) return push(out, strdup(p));
    const char *close = strchr(open, '}');
    if (!close) return false;
    size_t pre = (size_t)(open - p);
    char body[256];
    size_t bl = (size_t)(close - open - 1);
    if (bl >= sizeof body) return false;
    memcpy(body, open + 1, bl), body[bl] = '\0';
    const char *dots = strstr(body, "..");
    if (dots) { /* numeric range, zero-padded to the width of the first bound */
        char *e1, *e2;
        errno = 0;
        long lo = strtol(body, &e1, 10), hi = strtol(dots + 2, &e2, 10);
        /* bounded: {0..LONG_MAX} would step past LONG_MAX */
        if (errno || e1 != dots || *e2 || lo < 0 || hi < lo || hi > 999999999999L || hi - lo > 10000000) return false;
        int width = (int)(dots - body);
        for (long v = lo; v <= hi; v++) {
            char num[32];
            snprintf(num, sizeof num, "%0*ld", width, v);
            char *head = str_join3(p, pre, num, strlen(num), "");
            char *full = head ? str_join3(head, strlen(head), "", 0, close + 1) : NULL;
            free(head);
            if (!full) return false;
            bool ok = expand(full, out);
            free(full);
            if (!ok) return false;
        }
        return true;
    }
    char *save, *alt = strtok_r(body, ",", &save); /* {a,b,c} */
    if (!alt) return false;
    for (; alt; alt = strtok_r(NULL, ",", &save)) {
        char *full = str_join3(p, pre, alt, strlen(alt), close + 1);
        if (!full) return false;
        bool ok = expand(full, out);
        free(full);
        if (!ok) return false;
    }
    return true;
}

int brace_expand(const char *pattern, char ***out) {
    strvec v = {0};
    if (!expand(pattern, &v)) {
        strvec_free(&v);
        return -1;
    }
    *out = v.v;
    return v.n;
}

/* ---- the shards' state ----------------------------------------------------------------------- */

typedef struct shards {
    strvec shards;
    int *shard_order;
    int nmine, shard_pos;
    tar_reader tar;
    bool tar_open;
    raw_sample pending; // a sample being assembled from members
    char pending_key[4096];
    bool have_pending;
    int members_cap;    // room in pending.members (records)
    int members_cut;    // members past MAX_MEMBERS in the pending sample (records)
    raw_sample *buf;    // shuffle buffer
    int nbuf;
    rng64 rng;
    bool shards_done;
} shards;

static void shards_free(void *state) {
    shards *w = state;
    if (!w) return;
    strvec_free(&w->shards);
    free(w->shard_order);
    if (w->tar_open) tar_close(&w->tar);
    raw_sample_free(&w->pending);
    for (int i = 0; i < w->nbuf; i++) raw_sample_free(&w->buf[i]);
    free(w->buf);
    free(w);
}


/* json caption field → malloc'd string or NULL */
char *wds_json_field(const uint8_t *d, size_t n, const char *key) {
    json_t *j = json_loadb((const char *)d, n, 0, NULL);
    json_t *v = j ? json_object_get(j, key) : NULL;
    char *r = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    json_decref(j);
    return r;
}

/* takes the current tar member into the pending sample */
/* with records: the member itself, NUL-terminated, up to MAX_MEMBERS (the
 * rest said once and left out); false when out of memory */
static bool keep_member(sample_stream *s, shards *w) {
    tar_reader *t = &w->tar;
    raw_sample *p = &w->pending;
    if (p->nmembers == MAX_MEMBERS) {
        if (!w->members_cut++) {
            char what[512];
            snprintf(what, sizeof what, "%.250s: %.250s", t->path, w->pending_key);
            const dataset_opts *o = stream_opts(s);
            char msg[600];
            snprintf(msg, sizeof msg, "%s: more than %d members; the rest are left out", what, MAX_MEMBERS);
            if (o->warn) o->warn(o->warn_ctx, msg);
        }
        return true;
    }
    if (p->nmembers == w->members_cap) {
        int cap = w->members_cap ? 2 * w->members_cap : 4;
        raw_member *g = realloc(p->members, sizeof(raw_member) * (size_t)cap);
        if (!g) return false;
        p->members = g, w->members_cap = cap;
    }
    raw_member *m = &p->members[p->nmembers];
    m->name = strdup(t->name);
    m->data = malloc(t->size + 1);
    if (!m->name || !m->data) return free(m->name), free(m->data), false;
    memcpy(m->data, t->data, t->size);
    m->data[t->size] = '\0';
    m->len = t->size;
    p->nmembers++;
    return true;
}

static bool take_member(sample_stream *s, shards *w, const char *ext) {
    const dataset_opts *o = stream_opts(s);
    tar_reader *t = &w->tar;
    raw_sample *p = &w->pending;
    if (o->records) return keep_member(s, w);
    if (wds_is_image_ext(ext) && !p->image) {
        p->image = malloc(t->size ? t->size : 1);
        if (!p->image) return false;
        memcpy(p->image, t->data, t->size);
        p->image_len = t->size;
    } else if (!strcmp(ext, "txt") && !p->caption) {
        if (!(p->caption = strdup((const char *)t->data))) return false;
    } else if (!strcmp(ext, "json")) {
        if (!p->caption && o->caption_key) p->caption = wds_json_field(t->data, t->size, o->caption_key);
        if (!p->alt_caption && o->alt_caption_key) p->alt_caption = wds_json_field(t->data, t->size, o->alt_caption_key);
    } else if (o->alt_caption_key && !strcmp(ext, o->alt_caption_key) && !p->alt_caption) {
        if (!(p->alt_caption = strdup((const char *)t->data))) return false;
    }
    return true;
}

/* with records: the image (the first image member) and the caption (a txt
 * member, else the json field) among the members; false if it has none */
static bool record_fields(const sample_stream *s, raw_sample *p) {
    const dataset_opts *o = stream_opts(s);
    const char *txt = NULL;
    char *json = NULL;
    const raw_member *image = NULL;
    for (int i = 0; i < p->nmembers; i++) {
        char key[4096];
        const char *ext;
        wds_split_key(p->members[i].name, key, sizeof key, &ext);
        if (wds_is_image_ext(ext) && !image) image = &p->members[i];
        else if (!strcmp(ext, "txt") && !txt) txt = (const char *)p->members[i].data;
        else if (!strcmp(ext, "json") && !json && o->caption_key)
            json = wds_json_field(p->members[i].data, p->members[i].len, o->caption_key);
    }
    p->caption = txt ? (free(json), strdup(txt)) : json;
    if (image && (p->image = malloc(image->len ? image->len : 1)))
        memcpy(p->image, image->data, image->len), p->image_len = image->len;
    return p->image && p->caption && !table_blank(p->caption);
}

/* the pending sample, if complete, into *out; else counted as skipped */
static bool finish_pending(sample_stream *s, shards *w, raw_sample *out) {
    raw_sample *p = &w->pending;
    if (stream_opts(s)->records) { /* the whole record, named as the shard and its key */
        if (!w->have_pending) return false;
        w->have_pending = false, w->members_cut = 0, w->members_cap = 0;
        char what[512];
        snprintf(what, sizeof what, "%.250s: %.250s", w->tar.path ? w->tar.path : "", w->pending_key);
        if (!record_fields(s, p)) {
            stream_skip(s, "%s: no image (jpg/jpeg/png/webp/gif/tif/tiff) or no caption", what);
            raw_sample_free(p);
            return false;
        }
        *out = *p;
        snprintf(out->what, sizeof out->what, "%s", what);
        memset(p, 0, sizeof *p);
        return true;
    }
    bool ok = p->image && p->caption;
    if (!w->have_pending) return false;
    w->have_pending = false;
    if (ok && table_blank(p->caption)) {
        stream_skip(s, "%.200s: sample '%.200s' has an empty caption", w->tar.path ? w->tar.path : "", w->pending_key);
        raw_sample_free(p);
        return false;
    }
    if (!ok) {
        stream_skip(s, "%.200s: sample '%.200s' lacks an image (jpg/jpeg/png/webp/gif/tif/tiff) or a caption", w->tar.path ? w->tar.path : "", w->pending_key);
        raw_sample_free(p);
        return false;
    }
    *out = *p;
    snprintf(out->what, sizeof out->what, "%.200s:%.100s", w->tar.path, w->pending_key);
    memset(p, 0, sizeof *p);
    return true;
}

/* the next complete sample straight from the shards (no shuffle buffer) */
static vlp_err shard_sample(sample_stream *s, shards *w, raw_sample *out, bool *got, vlp_error *err) {
    *got = false;
    for (;;) {
        if (!w->tar_open) {
            if (w->shard_pos >= w->nmine) {
                *got = finish_pending(s, w, out);
                w->shards_done = !*got;
                return VLP_OK;
            }
            const char *path = w->shards.v[w->shard_order[w->shard_pos++]];
            vlp_error e2 = {0};
            if (tar_open(&w->tar, path, &e2) != VLP_OK) {
                stream_skip(s, "%s%s", e2.message, ""); /* it names the path */
                continue;
            }
            w->tar_open = true;
        }
        bool end;
        vlp_error e2 = {0};
        if (tar_next(&w->tar, &end, &e2) != VLP_OK) { /* a corrupt shard: keep what came before */
            stream_skip(s, "%s (rest of the shard skipped)%s", e2.message, "");
            end = true;
        }
        if (end) {
            bool g = finish_pending(s, w, out);
            tar_close(&w->tar);
            w->tar_open = false;
            if (g) return *got = true, VLP_OK;
            continue;
        }
        char key[4096];
        const char *ext;
        wds_split_key(w->tar.name, key, sizeof key, &ext);
        bool g = false;
        if (w->have_pending && strcmp(key, w->pending_key)) g = finish_pending(s, w, out);
        if (!w->have_pending) {
            snprintf(w->pending_key, sizeof w->pending_key, "%s", key);
            w->have_pending = true;
        }
        VLP_CHECK(take_member(s, w, ext), err, VLP_ERR_NOMEM, "%s: member %s", w->tar.path, w->tar.name);
        if (g) return *got = true, VLP_OK;
    }
}

static vlp_err shards_next(sample_stream *s, void *state, raw_sample *out, bool *done, vlp_error *err) {
    shards *w = state;
    const dataset_opts *o = stream_opts(s);
    int K = o->shuffle ? o->shuffle_buffer : 0;
    /* fill the buffer, then each draw takes a random slot and refills it */
    while (w->nbuf < K && !w->shards_done) {
        bool got;
        VLP_TRY(shard_sample(s, w, &w->buf[w->nbuf], &got, err));
        if (got) w->nbuf++;
    }
    if (K == 0) {
        bool got;
        VLP_TRY(shard_sample(s, w, out, &got, err));
        if (!got) *done = true;
        return VLP_OK;
    }
    if (w->nbuf == 0) {
        *done = true;
        return VLP_OK;
    }
    int i = (int)(rng64_u64(&w->rng) % (uint64_t)w->nbuf);
    *out = w->buf[i];
    bool got = false;
    if (!w->shards_done) VLP_TRY(shard_sample(s, w, &w->buf[i], &got, err));
    if (!got) w->buf[i] = w->buf[--w->nbuf];
    return VLP_OK;
}

vlp_err shard_list(const char *spec, char ***out, int *count, vlp_error *err) {
    *out = NULL, *count = 0;
    strvec v = {0};
    char *copy = strdup(spec);
    VLP_CHECK_ALLOC(copy, err, strlen(spec) + 1);
    bool ok = true;
    for (char *p = copy, *next; p && ok; p = next) { /* patterns joined with '::' */
        char *sep = strstr(p, "::");
        next = sep ? sep + 2 : NULL;
        if (sep) *sep = '\0';
        char **names;
        int n = brace_expand(p, &names);
        if (n < 0) {
            vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__,
                          "'%s': malformed shard pattern (use name-{000..123}.tar or {a,b})", p);
            free(copy);
            strvec_free(&v);
            return VLP_ERR_ARG;
        }
        for (int i = 0; i < n; i++) ok = ok && push(&v, names[i]);
        free(names);
    }
    free(copy);
    if (!ok) strvec_free(&v);
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "shard list");
    *out = v.v, *count = v.n;
    return VLP_OK;
}

static vlp_err open_shards(sample_stream *s, void **state, int64_t *epoch_size, vlp_error *err) {
    const char *spec = stream_spec(s);
    const dataset_opts *o = stream_opts(s);
    shards *w = calloc(1, sizeof *w);
    VLP_CHECK_ALLOC(w, err, sizeof *w);
    *state = w;
    VLP_TRY(shard_list(spec, &w->shards.v, &w->shards.n, err));
    w->shards.cap = w->shards.n;
    VLP_CHECK_ARG(w->shards.n >= o->world, err, "%d shards for %d readers: every reader needs one",
                  w->shards.n, o->world);
    w->shard_order = malloc(sizeof(int) * (size_t)w->shards.n);
    w->buf = malloc(sizeof(raw_sample) * (size_t)(o->shuffle_buffer + 1));
    VLP_CHECK(w->shard_order && w->buf, err, VLP_ERR_NOMEM, "shard tables");
    if (o->records) { /* one pass is what the caller reads: not counted, an unreadable shard skipped then */
        *epoch_size = -1;
        return VLP_OK;
    }
    /* count this rank's samples: every header once (bodies skipped by seek) */
    int64_t count = 0;
    char first_problem[600] = ""; /* why a shard stopped early, for the message below */
    for (int i = o->rank; i < w->shards.n; i += o->world) {
        tar_reader t;
        vlp_error e2 = {0};
        if (tar_open(&t, w->shards.v[i], &e2) != VLP_OK) {
            tar_close(&t);
            VLP_FAIL(err, VLP_ERR_IO, "%s", e2.message);
        }
        char last[4096] = "";
        bool end = false;
        vlp_err trc = VLP_OK;
        while (!end && (trc = tar_next(&t, &end, &e2)) == VLP_OK && !end) {
            char key[4096];
            const char *ext;
            wds_split_key(t.name, key, sizeof key, &ext);
            if (strcmp(key, last)) count++, snprintf(last, sizeof last, "%s", key);
        }
        if (trc != VLP_OK && !first_problem[0]) snprintf(first_problem, sizeof first_problem, "%s", e2.message);
        tar_close(&t);
    }
    VLP_CHECK_FORMAT(count > 0, err, "'%s': no samples in this reader's shards%s%s%s", spec,
                     first_problem[0] ? " (" : "", first_problem, first_problem[0] ? ")" : "");
    *epoch_size = count;
    return VLP_OK;
}

static vlp_err shards_begin(sample_stream *s, void *state, int64_t epoch, vlp_error *err) {
    shards *w = state;
    const dataset_opts *o = stream_opts(s);
    if (w->tar_open) tar_close(&w->tar), w->tar_open = false;
    raw_sample_free(&w->pending);
    w->have_pending = false;
    for (int i = 0; i < w->nbuf; i++) raw_sample_free(&w->buf[i]);
    w->nbuf = 0;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)w->shards.n);
    VLP_CHECK_ALLOC(perm, err, sizeof(int64_t) * (size_t)w->shards.n);
    for (int i = 0; i < w->shards.n; i++) perm[i] = i;
    rng64 r = stream_epoch_rng(s, epoch, 2);
    if (o->shuffle) stream_permute(perm, w->shards.n, &r);
    w->nmine = 0;
    for (int i = o->rank; i < w->shards.n; i += o->world) w->shard_order[w->nmine++] = (int)perm[i];
    free(perm);
    w->shard_pos = 0;
    w->shards_done = false;
    w->rng = stream_epoch_rng(s, epoch, 3 + (uint64_t)o->rank);
    return VLP_OK;
}

static bool claims_shards(const char *spec, const dataset_opts *o) { return true; }

const source_kind source_webdataset = {
    .name = "webdataset",
    .spec = "WebDataset tar shards: train-{00000..00011}.tar, patterns joined with ::",
    .claims = claims_shards, .open = open_shards, .begin = shards_begin, .next = shards_next,
    .free = shards_free};
