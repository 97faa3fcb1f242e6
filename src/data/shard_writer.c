/* WebDataset shards written sample by sample (shard_writer.h). */
#include "data/shard_writer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "data/tar.h"
#include "io/atomic.h"
#include "io/json_text.h"

#define KEY_CAP 4096 /* as the stream's WebDataset reader */

struct shard_writer {
    char *prefix;
    long per_shard, shard; // samples a shard; shards closed
    tar_writer tar;
    bool tar_open, finished;
    int64_t written, in_shard;
    char *made_dir; // PREFIX's directory when this writer made it
};

static void shard_path(char *out, size_t cap, const shard_writer *w, long k) {
    snprintf(out, cap, "%s-%05ld.tar", w->prefix, k);
}

vlp_err shard_writer_open(shard_writer **out, const char *prefix, long per_shard, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(per_shard >= 1, err, "%ld samples a shard", per_shard);
    shard_writer *w = calloc(1, sizeof *w);
    VLP_CHECK_ALLOC(w, err, sizeof *w);
    w->per_shard = per_shard;
    w->prefix = strdup(prefix);
    const char *slash = strrchr(prefix, '/');
    char *dir = slash && slash > prefix ? strndup(prefix, (size_t)(slash - prefix)) : NULL;
    vlp_err rc = w->prefix && (!slash || slash == prefix || dir) ? VLP_OK
                                                                 : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__,
                                                                                 __LINE__, "%s", prefix);
    if (rc == VLP_OK && dir) rc = out_dir_make(dir, &w->made_dir, err);
    free(dir);
    if (rc != VLP_OK) {
        shard_writer_free(w);
        return rc;
    }
    *out = w;
    return VLP_OK;
}

static vlp_err begin_sample(shard_writer *w, vlp_error *err) {
    if (w->tar_open) return VLP_OK;
    char path[4096];
    shard_path(path, sizeof path, w, w->shard);
    VLP_TRY(tar_create(&w->tar, path, err));
    w->tar_open = true, w->in_shard = 0;
    return VLP_OK;
}

static vlp_err end_sample(shard_writer *w, vlp_error *err) {
    w->written++;
    if (++w->in_shard < w->per_shard) return VLP_OK;
    w->tar_open = false, w->shard++;
    return tar_finish(&w->tar, err);
}

vlp_err shard_writer_add_pair(shard_writer *w, const uint8_t *image, size_t image_len, const char *const *keys,
                              const char *const *values, int nfields, const char *what, vlp_error *err) {
    const char *ext = image_format_ext(image, image_len);
    if (!ext) {
        char why[sizeof err->message];
        image_unknown_why(what, image_len, why, sizeof why);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s", why);
    }
    json_t *j = json_object();
    VLP_CHECK_ALLOC(j, err, 64);
    vlp_err rc = VLP_OK;
    for (int k = 0; rc == VLP_OK && k < nfields; k++) {
        char *key = utf8_repaired(keys[k]);
        rc = key ? json_put(j, key, json_text_repaired(values[k]), what, err)
                 : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%s: json", what);
        free(key);
    }
    char *text = rc == VLP_OK ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    VLP_TRY(rc);
    VLP_CHECK_ALLOC(text, err, 256);
    char name[64];
    rc = begin_sample(w, err);
    snprintf(name, sizeof name, "%09lld.%s", (long long)w->written, ext);
    if (rc == VLP_OK) rc = tar_add(&w->tar, name, image, image_len, err);
    snprintf(name, sizeof name, "%09lld.json", (long long)w->written);
    if (rc == VLP_OK) rc = tar_add(&w->tar, name, text, strlen(text), err);
    free(text);
    VLP_TRY(rc);
    return end_sample(w, err);
}

vlp_err shard_writer_add_members(shard_writer *w, const raw_member *members, int n, vlp_error *err) {
    bool long_key = false;
    for (int i = 0; i < n; i++) long_key = long_key || strlen(members[i].name) + 11 >= TAR_NAME_MAX;
    VLP_TRY(begin_sample(w, err));
    for (int i = 0; i < n; i++) {
        /* KEY.EXT as INDEX_KEY.EXT: the same extension, whole (a name too
         * long for ustar is refused by tar_add, never cut) */
        char name[2 * TAR_NAME_MAX + 64], key[KEY_CAP];
        const char *ext;
        wds_split_key(members[i].name, key, sizeof key, &ext);
        if (long_key) snprintf(name, sizeof name, "%09lld%s%.*s", (long long)w->written, *ext ? "." : "",
                               TAR_NAME_MAX, ext);
        else snprintf(name, sizeof name, "%09lld_%s", (long long)w->written, members[i].name);
        VLP_TRY(tar_add(&w->tar, name, members[i].data, members[i].len, err));
    }
    return end_sample(w, err);
}

int64_t shard_writer_count(const shard_writer *w) { return w->written; }

vlp_err shard_writer_finish(shard_writer *w, int64_t *samples, long *shards, vlp_error *err) {
    if (w->tar_open) {
        w->tar_open = false;
        VLP_TRY(tar_finish(&w->tar, err));
        w->shard++;
    }
    if (samples) *samples = w->written;
    if (shards) *shards = w->shard;
    w->finished = true;
    return VLP_OK;
}

void shard_writer_free(shard_writer *w) {
    if (!w) return;
    if (w->tar_open) tar_abort(&w->tar);
    for (long k = 0; !w->finished && k < w->shard; k++) {
        char path[4096];
        shard_path(path, sizeof path, w, k);
        unlink(path);
    }
    out_dir_release(w->made_dir, !w->finished);
    free(w->prefix);
    free(w);
}
