#include "model/clip_q8.h"
#include "core/error.h"
#include "model/clip_io.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The quantized matrices of a block: the parameter name's suffix and where
 * its int8 twin is in block_q8. */
static const struct {
    const char *suffix;
    size_t q8;
} MATRICES[] = {
    {"attn.in_proj_weight", offsetof(block_q8, in_proj)},
    {"attn.out_proj.weight", offsetof(block_q8, out_proj)},
    {"mlp.c_fc.weight", offsetof(block_q8, c_fc)},
    {"mlp.c_proj.weight", offsetof(block_q8, c_proj)},
};
#define NMATRICES (int)(sizeof MATRICES / sizeof *MATRICES)
/* an int8 matrix's scales are the tensor of its name plus this */
#define SCALE_SUFFIX ".scale"

/* the parameter whose scales tensor `name` is ("<param>.scale"), or NULL */
static const clip_param *scaled_param(const clip_model *m, const char *name) {
    size_t len = strlen(name), sl = strlen(SCALE_SUFFIX);
    char base[VLP_PARAM_NAME_MAX + 8];
    if (len <= sl || len - sl >= sizeof base || strcmp(name + len - sl, SCALE_SUFFIX)) return NULL;
    memcpy(base, name, len - sl);
    base[len - sl] = '\0';
    return clip_param_find(m, base);
}

/* One quantizable matrix of the model. */
typedef struct q8_target {
    const clip_param *p;
    q8_matrix *q;
} q8_target;

static int tower_layers(const clip_model *m, int tower) {
    return tower == 0 ? m->cfg.vision.layers : m->cfg.text.layers;
}

/* The model's quantizable matrices, image tower then text, into out
 * [(Lv + Lt) · NMATRICES]; m->q8 must be attached. */
static vlp_err list_targets(const clip_model *m, q8_target *out, int *count, vlp_error *err) {
    static const char *const prefix[2] = {"visual.transformer.", "transformer."};
    int n = 0, base = 0;
    for (int tower = 0; tower < 2; tower++) {
        for (int l = 0; l < tower_layers(m, tower); l++)
            for (int i = 0; i < NMATRICES; i++) {
                char name[VLP_PARAM_NAME_MAX + 32];
                snprintf(name, sizeof name, "%sresblocks.%d.%s", prefix[tower], l, MATRICES[i].suffix);
                const clip_param *p = clip_param_find(m, name);
                VLP_CHECK(p && p->ndim == 2, err, VLP_ERR_SHAPE, "the model has no matrix '%s'", name);
                out[n++] = (q8_target){p, (q8_matrix *)((char *)&m->q8->blocks[base + l] + MATRICES[i].q8)};
            }
        base += tower_layers(m, tower);
    }
    *count = n;
    return VLP_OK;
}

/* m->q8 with empty int8 matrices, and every tower block's view pointing at its own */
static vlp_err attach(clip_model *m, vlp_error *err) {
    VLP_CHECK_ARG(m->inference, err,
                  "int8 weights are for inference models: one that trains or adapts needs fp32 weights");
    int Lv = m->cfg.vision.layers, Lt = m->cfg.text.layers;
    m->q8 = calloc(1, sizeof *m->q8);
    if (m->q8) m->q8->blocks = calloc((size_t)(Lv + Lt), sizeof(block_q8));
    if (!m->q8 || !m->q8->blocks) {
        clip_q8_free(m);
        VLP_FAIL(err, VLP_ERR_NOMEM, "int8 tables of %d blocks", Lv + Lt);
    }
    for (int l = 0; l < Lv; l++) m->views.vis.blocks[l].q8 = &m->q8->blocks[l];
    for (int l = 0; l < Lt; l++) m->views.txt.blocks[l].q8 = &m->q8->blocks[Lv + l];
    return VLP_OK;
}

/* The fp32 copy of an int8 matrix is not read again (the forward runs the
 * int8 one): it is zeroed and its whole pages are given back to the OS, so an
 * int8 model holds about a quarter of the fp32 model's weight memory rather
 * than all of it and the int8 copy on top. */
static void release_fp32(float *w, size_t n) {
    char *lo = (char *)w, *hi = (char *)(w + n);
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0) {
        char *a = (char *)(((uintptr_t)lo + (uintptr_t)page - 1) & ~((uintptr_t)page - 1));
        char *b = (char *)((uintptr_t)hi & ~((uintptr_t)page - 1));
#ifdef MADV_DONTNEED
        /* private anonymous memory (malloc's) reads back as zeros */
        if (b > a && madvise(a, (size_t)(b - a), MADV_DONTNEED) == 0) {
            memset(lo, 0, (size_t)(a - lo)), memset(b, 0, (size_t)(hi - b));
            return;
        }
#endif
    }
    memset(lo, 0, (size_t)(hi - lo));
}

/* int8 values and scales (OC, C) (OC) into target t, packed */
static vlp_err set_target(clip_model *m, const q8_target *t, const int8_t *q, const float *scale,
                          vlp_error *err) {
    VLP_TRY(q8_matrix_init(t->q, q, scale, (int)t->p->shape[0], (int)t->p->shape[1], err));
    m->q8->matrices++;
    return VLP_OK;
}

/* The targets of a model with m->q8 attached: a fresh array, or NULL after an error. */
static q8_target *targets_of(const clip_model *m, int *n, vlp_error *err) {
    size_t cap = (size_t)(m->cfg.vision.layers + m->cfg.text.layers) * NMATRICES;
    q8_target *ts = calloc(cap ? cap : 1, sizeof *ts);
    if (!ts) {
        vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "int8 targets");
        return NULL;
    }
    if (list_targets(m, ts, n, err) != VLP_OK) {
        free(ts);
        return NULL;
    }
    return ts;
}

vlp_err clip_quantize(clip_model *m, vlp_error *err) {
    if (m->q8) return VLP_OK; /* already int8 */
    VLP_TRY(attach(m, err));
    int n = 0;
    q8_target *ts = targets_of(m, &n, err);
    vlp_err rc = ts ? VLP_OK : err->code;
    for (int i = 0; rc == VLP_OK && i < n; i++) {
        int OC = (int)ts[i].p->shape[0], C = (int)ts[i].p->shape[1];
        int8_t *q = malloc((size_t)OC * C);
        float *scale = malloc(sizeof(float) * (size_t)OC);
        if (!q || !scale)
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "quantizing '%s'", ts[i].p->name);
        else if (!q8_quantize_rows(q, scale, m->weights + ts[i].p->offset, OC, C))
            rc = vlp_error_set(err, VLP_ERR_NUMERIC, __FILE__, __LINE__,
                               "tensor '%s' holds a non-finite value: it cannot be quantized", ts[i].p->name);
        else
            rc = set_target(m, &ts[i], q, scale, err);
        free(q), free(scale);
    }
    /* the fp32 weights change only once every matrix is quantized: an error
     * above leaves the model as it was */
    for (int i = 0; rc == VLP_OK && i < n; i++) release_fp32(m->weights + ts[i].p->offset, ts[i].p->numel);
    free(ts);
    if (rc == VLP_OK && m->batch > 0) rc = clip_q8_reserve(m, m->batch, err);
    if (rc != VLP_OK) clip_q8_free(m);
    return rc;
}

vlp_err clip_save_int8(const clip_model *m, const char *path, vlp_error *err) {
    VLP_CHECK_ARG(m->q8, err, "the model has no int8 weights to save (clip_quantize first)");
    int n = 0;
    q8_target *targets = targets_of(m, &n, err);
    if (!targets) return err->code;
    int count = m->nparams + m->q8->matrices, k = m->nparams;
    st_tensor *ts = calloc((size_t)count, sizeof *ts);
    char (*names)[VLP_PARAM_NAME_MAX + 8] = calloc((size_t)n + 1, sizeof *names);
    int8_t **qs = calloc((size_t)n + 1, sizeof *qs);
    vlp_err rc = ts && names && qs ? VLP_OK
                                   : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__,
                                                   "header of %d tensors", count);
    if (rc == VLP_OK) clip_param_tensors(m, ts);
    for (int i = 0; rc == VLP_OK && i < n; i++) {
        const q8_matrix *q = targets[i].q;
        if (!q->packed) continue; /* left fp32 */
        qs[i] = malloc((size_t)q->OC * q->C);
        if (!qs[i]) {
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "int8 copy of '%s'", targets[i].p->name);
            break;
        }
        q8_matrix_unpack(q, qs[i]);
        st_tensor *t = &ts[targets[i].p - m->params];
        t->dtype = ST_I8, t->data = qs[i];
        snprintf(names[i], sizeof names[i], "%s" SCALE_SUFFIX, targets[i].p->name);
        ts[k++] = (st_tensor){.name = names[i], .dtype = ST_F32, .ndim = 1, .shape = {q->OC},
                              .numel = (size_t)q->OC, .data = q->scale};
    }
    const st_meta quant = {CLIP_META_QUANT, CLIP_QUANT_INT8};
    if (rc == VLP_OK) rc = clip_write(m, path, ts, k, &quant, 1, err);
    for (int i = 0; qs && i < n; i++) free(qs[i]);
    free(qs), free(names), free(ts), free(targets);
    return rc;
}

bool clip_file_is_int8(const st_file *f) { return st_meta_get(f, CLIP_META_QUANT) != NULL; }

/* an I8 tensor for target t, with its scale: shapes checked, loaded */
static vlp_err load_target(clip_model *m, const st_file *f, const q8_target *t, const st_tensor *q,
                           vlp_error *err) {
    const clip_param *p = t->p;
    VLP_CHECK(q->ndim == 2 && q->shape[0] == p->shape[0] && q->shape[1] == p->shape[1], err,
              VLP_ERR_SHAPE, "%s: int8 tensor '%s' is not (%lld, %lld)", st_path(f), p->name,
              (long long)p->shape[0], (long long)p->shape[1]);
    char name[VLP_PARAM_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s" SCALE_SUFFIX, p->name);
    const st_tensor *s = st_find(f, name);
    VLP_CHECK_FORMAT(s, err, "%s: int8 tensor '%s' has no scales ('%s')", st_path(f), p->name, name);
    VLP_CHECK(s->ndim == 1 && s->shape[0] == p->shape[0], err, VLP_ERR_SHAPE,
              "%s: tensor '%s' must hold %lld scales", st_path(f), name, (long long)p->shape[0]);
    float *scale = malloc(sizeof(float) * (size_t)p->shape[0]);
    VLP_CHECK_ALLOC(scale, err, sizeof(float) * (size_t)p->shape[0]);
    vlp_err rc = st_read_f32(f, s, scale, err);
    /* what a weight stands for, q · scale with |q| ≤ 127, must be finite */
    for (int64_t o = 0; rc == VLP_OK && o < p->shape[0]; o++)
        if (!(fabsf(scale[o]) <= FLT_MAX / 127.0f))
            rc = vlp_error_set(err, VLP_ERR_NUMERIC, __FILE__, __LINE__,
                               "%s: tensor '%s' holds a scale that is not finite or too large (%g at %lld)",
                               st_path(f), name, (double)scale[o], (long long)o);
    if (rc == VLP_OK) rc = set_target(m, t, q->data, scale, err);
    if (rc == VLP_OK) release_fp32(m->weights + p->offset, p->numel);
    free(scale);
    return rc;
}

vlp_err clip_int8_refuse_training(const st_file *f, vlp_error *err) {
    VLP_CHECK_ARG(!clip_file_is_int8(f), err,
                  "%s is an int8 model (vlp quantize), for inference only (embed, search, classify, "
                  "eval, caption): training or adapting needs the fp32 model", st_path(f));
    return VLP_OK;
}

vlp_err clip_load_int8(clip_model *m, const st_file *f, vlp_error *err) {
    if (!m->inference) return clip_int8_refuse_training(f, err);
    const char *kind = st_meta_get(f, CLIP_META_QUANT);
    VLP_CHECK_FORMAT(kind && !strcmp(kind, CLIP_QUANT_INT8), err,
                     "%s: quantization \"%s\" is not one this vlp reads (\"%s\")", st_path(f),
                     kind ? kind : "", CLIP_QUANT_INT8);
    /* every tensor of the file is a parameter or the scales of one */
    for (int i = 0; i < st_count(f); i++) {
        const char *name = st_at(f, i)->name;
        VLP_CHECK_FORMAT(clip_param_find(m, name) || scaled_param(m, name), err,
                         "%s: tensor '%s' is not a parameter of this model", st_path(f), name);
    }
    VLP_TRY(attach(m, err));
    int n = 0;
    q8_target *ts = targets_of(m, &n, err);
    bool *done = calloc((size_t)m->nparams, sizeof *done);
    vlp_err rc = ts && done ? VLP_OK
                            : (ts ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "int8 load")
                                  : err->code);
    for (int i = 0; rc == VLP_OK && i < n; i++) {
        const st_tensor *t = st_find(f, ts[i].p->name);
        if (!t || t->dtype != ST_I8) continue; /* fp32, loaded below (or missing: named there) */
        rc = load_target(m, f, &ts[i], t, err);
        done[ts[i].p - m->params] = true;
    }
    for (int i = 0; rc == VLP_OK && i < m->nparams; i++)
        if (!done[i]) rc = clip_load_param(m, &m->params[i], f, err);
    /* scales belong to an I8 matrix: one beside an F32 tensor would be ignored */
    for (int i = 0; rc == VLP_OK && i < st_count(f); i++) {
        const char *name = st_at(f, i)->name;
        const clip_param *p = clip_param_find(m, name) ? NULL : scaled_param(m, name);
        if (p && !done[p - m->params])
            rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__,
                               "%s: tensor '%s' scales '%s', which is not an int8 matrix", st_path(f), name,
                               p->name);
    }
    free(ts), free(done);
    if (rc != VLP_OK) clip_q8_free(m);
    return rc;
}

vlp_err clip_q8_reserve(clip_model *m, int B, vlp_error *err) {
    if (!m->q8 || B <= 0) return VLP_OK;
    const clip_vision_cfg *v = &m->cfg.vision;
    const clip_text_cfg *t = &m->cfg.text;
    int Tv = m->image_dims.T + m->image_prompt_room, Tt = m->text_dims.T;
    int rows = B * (Tv > Tt ? Tv : Tt);
    int cols = v->width;
    int widths[3] = {v->mlp_width, t->width, t->mlp_width};
    for (int i = 0; i < 3; i++) cols = widths[i] > cols ? widths[i] : cols;
    size_t bytes = q8_workspace_bytes(rows, cols);
    if (bytes > m->q8->workspace_bytes) {
        void *ws = malloc(bytes);
        VLP_CHECK(ws, err, VLP_ERR_NOMEM, "int8 workspace (%.1f MiB) for batch %d", bytes / 1048576.0, B);
        free(m->q8->workspace);
        m->q8->workspace = ws, m->q8->workspace_bytes = bytes;
    }
    m->image_dims.q8_ws = m->text_dims.q8_ws = m->q8->workspace;
    return VLP_OK;
}

void clip_q8_free(clip_model *m) {
    if (!m->q8) return;
    int L = m->cfg.vision.layers + m->cfg.text.layers;
    for (int b = 0; m->q8->blocks && b < L; b++)
        for (int i = 0; i < NMATRICES; i++)
            q8_matrix_free((q8_matrix *)((char *)&m->q8->blocks[b] + MATRICES[i].q8));
    for (int l = 0; m->views.vis.blocks && l < m->cfg.vision.layers; l++) m->views.vis.blocks[l].q8 = NULL;
    for (int l = 0; m->views.txt.blocks && l < m->cfg.text.layers; l++) m->views.txt.blocks[l].q8 = NULL;
    m->image_dims.q8_ws = m->text_dims.q8_ws = NULL;
    free(m->q8->blocks), free(m->q8->workspace), free(m->q8);
    m->q8 = NULL;
}
