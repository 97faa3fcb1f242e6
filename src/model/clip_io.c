#include "model/clip_io.h"
#include "core/error.h"
#include "io/file.h"
#include "model/clip_q8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void clip_param_tensors(const clip_model *m, st_tensor *ts) {
    for (int i = 0; i < m->nparams; i++) {
        const clip_param *p = &m->params[i];
        ts[i] = (st_tensor){.name = p->name, .dtype = ST_F32, .ndim = p->ndim,
                            .numel = p->numel, .data = m->weights + p->offset};
        memcpy(ts[i].shape, p->shape, sizeof p->shape);
    }
}

vlp_err clip_write(const clip_model *m, const char *path, const st_tensor *ts, int count,
                   const st_meta *extra, int nextra, vlp_error *err) {
    st_meta *meta = calloc((size_t)nextra + 2, sizeof *meta);
    char *cfg = clip_config_to_json(&m->cfg);
    vlp_err rc = VLP_OK;
    if (!meta || !cfg) {
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "checkpoint header of %d tensors",
                           count);
        goto done;
    }
    /* "format": "pt" is what safetensors.torch writes; loaders look for it */
    meta[0] = (st_meta){"format", "pt"};
    meta[1] = (st_meta){CLIP_META_CONFIG, cfg};
    if (nextra) memcpy(meta + 2, extra, sizeof *meta * (size_t)nextra); /* extra may be NULL */
    rc = st_write(path, ts, count, meta, nextra + 2, err);
done:
    free(meta), free(cfg);
    return rc;
}

vlp_err clip_save(const clip_model *m, const char *path, const st_meta *extra, int nextra,
                  vlp_error *err) {
    st_tensor *ts = calloc((size_t)m->nparams, sizeof *ts);
    VLP_CHECK_ALLOC(ts, err, sizeof *ts * (size_t)m->nparams);
    clip_param_tensors(m, ts);
    vlp_err rc = clip_write(m, path, ts, m->nparams, extra, nextra, err);
    free(ts);
    return rc;
}

/* one parameter from the file, its shape checked */
vlp_err clip_load_param(clip_model *m, const clip_param *p, const st_file *f, vlp_error *err) {
    const st_tensor *t = st_find(f, p->name);
    VLP_CHECK_FORMAT(t, err, "%s: tensor '%s' is missing", st_path(f), p->name);
    bool same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
        char want[96], got[96];
        shape_str(want, sizeof want, p->ndim, p->shape);
        shape_str(got, sizeof got, t->ndim, t->shape);
        VLP_FAIL(err, VLP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model wants %s",
                 st_path(f), p->name, got, want);
    }
    return st_read_f32(f, t, m->weights + p->offset, err);
}

vlp_err clip_load_prefix(clip_model *m, const st_file *f, const char *prefix, vlp_error *err) {
    VLP_TRY(clip_int8_refuse_training(f, err));
    int n = 0;
    for (int i = 0; i < m->nparams; i++) {
        if (strncmp(m->params[i].name, prefix, strlen(prefix))) continue;
        VLP_TRY(clip_load_param(m, &m->params[i], f, err));
        n++;
    }
    VLP_CHECK_FORMAT(n > 0, err, "%s: the model has no parameter under '%s'", st_path(f), prefix);
    return VLP_OK;
}

vlp_err clip_load_weights(clip_model *m, const st_file *f, vlp_error *err) {
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        /* OpenAI's state dicts carry these scalars; open_clip drops them too */
        if (!strcmp(t->name, "input_resolution") || !strcmp(t->name, "context_length") ||
            !strcmp(t->name, "vocab_size"))
            continue;
        VLP_CHECK_FORMAT(clip_param_find(m, t->name), err,
                         "%s: tensor '%s' is not a parameter of this model", st_path(f), t->name);
    }
    for (int i = 0; i < m->nparams; i++) VLP_TRY(clip_load_param(m, &m->params[i], f, err));
    return VLP_OK;
}

vlp_err clip_load(clip_model *m, const char *path, vlp_error *err) {
    memset(m, 0, sizeof *m);
    st_file *f;
    VLP_TRY(st_open(path, &f, err));
    const char *cfg_text = st_meta_get(f, CLIP_META_CONFIG);
    clip_config cfg;
    vlp_err rc = VLP_OK;
    if (!cfg_text) {
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                           "%s: no \"%s\" in the metadata; give the model config", path,
                           CLIP_META_CONFIG);
        goto done;
    }
    char what[512];
    snprintf(what, sizeof what, "%s (metadata %s)", path, CLIP_META_CONFIG);
    rc = clip_config_parse(cfg_text, what, &cfg, err);
    if (rc == VLP_OK) rc = clip_int8_refuse_training(f, err);
    if (rc == VLP_OK) rc = clip_init(m, &cfg, err);
    if (rc == VLP_OK) rc = clip_load_weights(m, f, err);
    if (rc != VLP_OK) clip_free(m);
done:
    st_close(f);
    return rc;
}
