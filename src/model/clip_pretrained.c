#include "model/clip_pretrained.h"
#include "core/error.h"
#include "io/file.h"
#include "model/clip_io.h"
#include "model/clip_q8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const st_tensor *need(const st_file *f, const char *name, int ndim, vlp_error *err) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->ndim != ndim) {
        vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: tensor '%s' %s", st_path(f), name,
                      t ? "has the wrong rank" : "is missing");
        return NULL;
    }
    return t;
}

vlp_err clip_detect_naming(const st_file *f, clip_naming *out, vlp_error *err) {
    if (st_find(f, "visual.conv1.weight")) *out = CLIP_NAMING_OPENCLIP;
    else if (st_find(f, "vision_model.embeddings.patch_embedding.weight")) *out = CLIP_NAMING_HF;
    else VLP_FAIL(err, VLP_ERR_FORMAT, "%s: neither open_clip (visual.conv1.weight) nor HF CLIPModel "
                  "(vision_model.embeddings.patch_embedding.weight) naming", st_path(f));
    return VLP_OK;
}

/* layers: the largest N + 1 of "<prefix>N." among the tensor names */
static int count_layers(const st_file *f, const char *prefix) {
    int n = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < st_count(f); i++) {
        const char *name = st_at(f, i)->name;
        if (strncmp(name, prefix, pl)) continue;
        char *end;
        long k = strtol(name + pl, &end, 10);
        if (end != name + pl && *end == '.' && k + 1 > n && k < 100000) n = (int)k + 1;
    }
    return n;
}

vlp_err clip_infer_config(const st_file *f, clip_naming naming, clip_config *cfg, bool *from_metadata,
                          vlp_error *err) {
    const char *meta = st_meta_get(f, CLIP_META_CONFIG);
    *from_metadata = meta != NULL;
    if (meta) {
        char what[512];
        snprintf(what, sizeof what, "%s (metadata %s)", st_path(f), CLIP_META_CONFIG);
        return clip_config_parse(meta, what, cfg, err);
    }
    bool hf = naming == CLIP_NAMING_HF;
    const st_tensor *conv = need(f, hf ? "vision_model.embeddings.patch_embedding.weight" : "visual.conv1.weight", 4, err);
    const st_tensor *vpos = need(f, hf ? "vision_model.embeddings.position_embedding.weight" : "visual.positional_embedding", 2, err);
    const st_tensor *tproj = need(f, hf ? "text_projection.weight" : "text_projection", 2, err);
    const st_tensor *tpos = need(f, hf ? "text_model.embeddings.position_embedding.weight" : "positional_embedding", 2, err);
    const st_tensor *tok = need(f, hf ? "text_model.embeddings.token_embedding.weight" : "token_embedding.weight", 2, err);
    const st_tensor *vfc = need(f, hf ? "vision_model.encoder.layers.0.mlp.fc1.weight" : "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, err);
    const st_tensor *tfc = need(f, hf ? "text_model.encoder.layers.0.mlp.fc1.weight" : "transformer.resblocks.0.mlp.c_fc.weight", 2, err);
    if (!conv || !vpos || !tproj || !tpos || !tok || !vfc || !tfc) return err ? err->code : VLP_ERR_FORMAT;
    memset(cfg, 0, sizeof *cfg);
    clip_vision_cfg *v = &cfg->vision;
    clip_text_cfg *t = &cfg->text;
    v->width = (int)conv->shape[0];
    v->patch_size = (int)conv->shape[3];
    /* before any product of them: a file may claim any shape */
    VLP_CHECK_FORMAT(v->width > 0 && v->patch_size > 0 && v->patch_size <= 4096 &&
                         vpos->shape[0] >= 2 && vpos->shape[0] <= (1 << 24),
                     err, "%s: '%s' [%lld, %lld, %lld, %lld] and %lld vision positions are not a ViT's",
                     st_path(f), hf ? "vision_model.embeddings.patch_embedding.weight" : "visual.conv1.weight",
                     (long long)conv->shape[0], (long long)conv->shape[1], (long long)conv->shape[2],
                     (long long)conv->shape[3], (long long)vpos->shape[0]);
    int grid = (int)lround(sqrt((double)(vpos->shape[0] - 1)));
    VLP_CHECK_FORMAT(grid * grid + 1 == vpos->shape[0], err, "%s: %lld vision positions is not a square grid + 1",
                     st_path(f), (long long)vpos->shape[0]);
    v->image_size = grid * v->patch_size;
    v->layers = count_layers(f, hf ? "vision_model.encoder.layers." : "visual.transformer.resblocks.");
    v->heads = v->width / 64; /* open_clip: head_width 64 */
    v->mlp_width = (int)vfc->shape[0];
    cfg->embed_dim = (int)(hf ? tproj->shape[0] : tproj->shape[1]);
    t->width = (int)(hf ? tproj->shape[1] : tproj->shape[0]);
    t->context_length = (int)tpos->shape[0];
    t->vocab_size = (int)tok->shape[0];
    t->layers = count_layers(f, hf ? "text_model.encoder.layers." : "transformer.resblocks.");
    t->heads = t->width / 64;
    t->mlp_width = (int)tfc->shape[0];
    cfg->quick_gelu = true; /* OpenAI's models; the caller may override */
    if (!hf && st_find(f, "logit_bias")) /* open_clip SigLIP-style: the value comes from the file */
        cfg->has_logit_bias = true, cfg->init_logit_bias = -10.0f;
    VLP_CHECK_FORMAT(v->layers > 0 && t->layers > 0 && v->heads > 0 && t->heads > 0, err,
                     "%s: cannot infer the architecture (vision %d layers, text %d layers)", st_path(f),
                     v->layers, t->layers);
    return clip_config_validate(cfg, st_path(f), err);
}

/* ---- HF → open_clip ---------------------------------------------------------------------- */

/* copies tensor `name` into dst: the file must hold shape `want` (ndim
 * dims); transposed: the file's (cols, rows) matrix becomes dst's (rows, cols) */
static vlp_err take(const st_file *f, const char *name, float *dst, int ndim, const int64_t *want,
                    bool transpose, vlp_error *err) {
    const st_tensor *t = st_find(f, name);
    VLP_CHECK_FORMAT(t, err, "%s: tensor '%s' is missing", st_path(f), name);
    bool same = t->ndim == ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) same = same && t->shape[d] == want[d], numel *= (size_t)want[d];
    if (!same) {
        char got[96], wanted[96];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(wanted, sizeof wanted, ndim, want);
        VLP_FAIL(err, VLP_ERR_SHAPE, "%s: tensor '%s' has shape %s, the model wants %s", st_path(f),
                 name, got, wanted);
    }
    if (!transpose) return st_read_f32(f, t, dst, err);
    int64_t cols = want[0], rows = want[1];
    float *tmp = malloc(sizeof(float) * numel);
    VLP_CHECK_ALLOC(tmp, err, sizeof(float) * numel);
    vlp_err rc = st_read_f32(f, t, tmp, err);
    if (rc == VLP_OK)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = tmp[c * rows + r];
    free(tmp);
    return rc;
}

/* the open_clip parameter's own shape (HF's tensors have the same one) */
static vlp_err take_param(const st_file *f, const char *name, clip_model *m, const clip_param *p,
                          vlp_error *err) {
    return take(f, name, m->weights + p->offset, p->ndim, p->shape, false, err);
}

static vlp_err load_hf_block(clip_model *m, const st_file *f, const char *hp, const char *op, int l,
                             int W, vlp_error *err) {
    char hn[256], on[256];
    const clip_param *p;
#define DST(suffix)                                                                     \
    (snprintf(on, sizeof on, "%sresblocks.%d.%s", op, l, suffix), p = clip_param_find(m, on), \
     m->weights + p->offset)
#define SRC(suffix) (snprintf(hn, sizeof hn, "%s%d.%s", hp, l, suffix), hn)
    static const char *const pairs[][2] = {
        {"layer_norm1.weight", "ln_1.weight"}, {"layer_norm1.bias", "ln_1.bias"},
        {"self_attn.out_proj.weight", "attn.out_proj.weight"}, {"self_attn.out_proj.bias", "attn.out_proj.bias"},
        {"layer_norm2.weight", "ln_2.weight"}, {"layer_norm2.bias", "ln_2.bias"},
        {"mlp.fc1.weight", "mlp.c_fc.weight"}, {"mlp.fc1.bias", "mlp.c_fc.bias"},
        {"mlp.fc2.weight", "mlp.c_proj.weight"}, {"mlp.fc2.bias", "mlp.c_proj.bias"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        (void)DST(pairs[k][1]);
        VLP_TRY(take_param(f, SRC(pairs[k][0]), m, p, err));
    }
    /* in_proj = [q; k; v] stacked by rows, as nn.MultiheadAttention */
    static const char *const qkv[] = {"q", "k", "v"};
    float *w = DST("attn.in_proj_weight");
    float *b = DST("attn.in_proj_bias");
    const int64_t wshape[2] = {W, W}, bshape[1] = {W};
    for (int j = 0; j < 3; j++) {
        char s[64];
        snprintf(s, sizeof s, "self_attn.%s_proj.weight", qkv[j]);
        VLP_TRY(take(f, SRC(s), w + (size_t)j * W * W, 2, wshape, false, err));
        snprintf(s, sizeof s, "self_attn.%s_proj.bias", qkv[j]);
        VLP_TRY(take(f, SRC(s), b + (size_t)j * W, 1, bshape, false, err));
    }
#undef DST
#undef SRC
    return VLP_OK;
}

static vlp_err load_hf(clip_model *m, const st_file *f, vlp_error *err) {
    const clip_config *c = &m->cfg;
    int Wv = c->vision.width, Wt = c->text.width, E = c->embed_dim;
    static const char *const direct[][2] = {
        {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
        {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
        {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
        {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},
        {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
        {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
        {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"},
        {"logit_scale", "logit_scale"}};
    for (size_t k = 0; k < sizeof direct / sizeof direct[0]; k++)
        VLP_TRY(take_param(f, direct[k][0], m, clip_param_find(m, direct[k][1]), err));
    /* projections: HF stores nn.Linear (E, W); open_clip multiplies x @ proj with (W, E) */
    const int64_t vproj[2] = {E, Wv}, tproj[2] = {E, Wt};
    VLP_TRY(take(f, "visual_projection.weight", m->views.vis.proj, 2, vproj, true, err));
    VLP_TRY(take(f, "text_projection.weight", m->views.txt.text_projection, 2, tproj, true, err));
    for (int l = 0; l < c->vision.layers; l++)
        VLP_TRY(load_hf_block(m, f, "vision_model.encoder.layers.", "visual.transformer.", l, Wv, err));
    for (int l = 0; l < c->text.layers; l++)
        VLP_TRY(load_hf_block(m, f, "text_model.encoder.layers.", "transformer.", l, Wt, err));
    /* tensors we did not use: position_ids buffers are fine, anything else is not */
    for (int i = 0; i < st_count(f); i++) {
        const char *n = st_at(f, i)->name;
        if (strstr(n, "position_ids")) continue;
        bool known = !strncmp(n, "vision_model.", 13) || !strncmp(n, "text_model.", 11) ||
                     !strcmp(n, "visual_projection.weight") || !strcmp(n, "text_projection.weight") ||
                     !strcmp(n, "logit_scale");
        VLP_CHECK_FORMAT(known, err, "%s: tensor '%s' is not part of a CLIP model", st_path(f), n);
        if (!strncmp(n, "vision_model.encoder.layers.", 28) || !strncmp(n, "text_model.encoder.layers.", 26)) {
            const char *num = n + (n[0] == 'v' ? 28 : 26);
            char *end;
            errno = 0;
            long layer = num[0] >= '0' && num[0] <= '9' ? strtol(num, &end, 10) : -1;
            VLP_CHECK_FORMAT(!errno && layer >= 0 && layer < (n[0] == 'v' ? c->vision.layers : c->text.layers),
                             err, "%s: tensor '%s' belongs to a layer the config does not have", st_path(f), n);
        }
    }
    return VLP_OK;
}

vlp_err clip_load_pretrained(clip_model *m, const char *path, clip_load_opts *o, vlp_error *err) {
    memset(m, 0, sizeof *m);
    st_file *f;
    VLP_TRY(st_open(path, &f, err));
    clip_naming naming = CLIP_NAMING_OPENCLIP;
    clip_config cfg;
    bool from_meta = false;
    vlp_err rc = clip_detect_naming(f, &naming, err);
    if (rc == VLP_OK && o && o->config) {
        cfg = *o->config;
        o->source = CLIP_CONFIG_GIVEN;
    } else if (rc == VLP_OK) {
        rc = clip_infer_config(f, naming, &cfg, &from_meta, err);
        if (o) o->source = from_meta ? CLIP_CONFIG_METADATA : CLIP_CONFIG_INFERRED;
    }
    if (rc == VLP_OK && o && o->quick_gelu >= 0) cfg.quick_gelu = o->quick_gelu;
    if (rc == VLP_OK) rc = o && o->inference ? clip_init_inference(m, &cfg, err) : clip_init(m, &cfg, err);
    if (rc == VLP_OK && clip_file_is_int8(f))
        rc = clip_load_int8(m, f, err); /* refuses a model that would train */
    else if (rc == VLP_OK)
        rc = naming == CLIP_NAMING_HF ? load_hf(m, f, err) : clip_load_weights(m, f, err);
    for (int i = 0; rc == VLP_OK && i < m->nparams; i++) { /* NaN/Inf weights: name the tensor */
        const clip_param *p = &m->params[i];
        for (size_t k = 0; k < p->numel; k++)
            if (!isfinite(m->weights[p->offset + k])) {
                rc = vlp_error_set(err, VLP_ERR_NUMERIC, __FILE__, __LINE__,
                                   "%s: tensor '%s' holds a non-finite value at index %zu", path, p->name, k);
                break;
            }
    }
    st_close(f);
    if (rc != VLP_OK) clip_free(m);
    return rc;
}
