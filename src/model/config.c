#include "model/config.h"
#include "io/json_text.h"
#include "core/error.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* Reads an integer field; absent fields take `dflt` (or are an error when
 * dflt < 0). */
static vlp_err get_int(json_t *obj, const char *section, const char *key, int dflt, int *out,
                       const char *what, vlp_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v) {
        VLP_CHECK_FORMAT(dflt >= 0, err, "%s: %s%s%s is missing", what, section, *section ? "." : "",
                         key);
        *out = dflt;
        return VLP_OK;
    }
    VLP_CHECK_FORMAT(json_is_integer(v) && json_integer_value(v) > 0 &&
                         json_integer_value(v) <= (1 << 24),
                     err, "%s: %s%s%s must be a whole number in 1..%d", what, section,
                     *section ? "." : "", key, 1 << 24);
    *out = (int)json_integer_value(v);
    return VLP_OK;
}

static vlp_err get_ratio(json_t *obj, const char *section, int width, int *mlp_width,
                         const char *what, vlp_error *err) {
    json_t *v = json_object_get(obj, "mlp_ratio");
    double r = 4.0;
    if (v) {
        VLP_CHECK_FORMAT(json_is_number(v), err, "%s: %s.mlp_ratio must be a number", what, section);
        r = json_number_value(v);
        VLP_CHECK_FORMAT(r > 0 && r <= 64, err, "%s: %s.mlp_ratio %g is outside (0, 64]", what,
                         section, r);
    }
    *mlp_width = (int)(width * r); /* open_clip: int(width * mlp_ratio) */
    return VLP_OK;
}

/* three numbers (a mean or std), each in [lo, hi] */
static vlp_err get_rgb(json_t *obj, const char *section, const char *key, float lo, float hi, float out[3],
                       bool *given, const char *what, vlp_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return VLP_OK;
    VLP_CHECK_FORMAT(json_is_array(v) && json_array_size(v) == 3, err,
                     "%s: %s.%s must be three numbers (R, G, B)", what, section, key);
    for (int c = 0; c < 3; c++) {
        json_t *x = json_array_get(v, (size_t)c);
        VLP_CHECK_FORMAT(json_is_number(x) && json_number_value(x) >= lo && json_number_value(x) <= hi, err,
                         "%s: %s.%s[%d] must be a number in [%g, %g]", what, section, key, c, lo, hi);
        out[c] = (float)json_number_value(x);
    }
    *given = true;
    return VLP_OK;
}

/* a text field that vlp does one way only: absent, null or `only` */
static vlp_err get_only(json_t *obj, const char *section, const char *key, const char *only, const char *why,
                        const char *what, vlp_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return VLP_OK;
    VLP_CHECK_FORMAT(json_is_string(v) && !strcmp(json_string_value(v), only), err,
                     "%s: %s.%s must be \"%s\" (%s)", what, section, key, only, why);
    return VLP_OK;
}

/* The preprocessing fields of vision_cfg (prefix "image_") or of a model
 * hub's preprocess_cfg (no prefix); fill_color only pads, which "shortest"
 * never does. */
static vlp_err get_preprocess(json_t *obj, const char *section, const char *prefix, image_preprocess *p,
                              const char *what, vlp_error *err) {
    char key[64];
    bool given = false;
    /* one given alone: the other stays as it was (OpenAI's, as open_clip merges) */
    image_transform now = image_transform_for(p, 1, false);
    snprintf(key, sizeof key, "%smean", prefix);
    VLP_TRY(get_rgb(obj, section, key, -1e3f, 1e3f, now.mean, &given, what, err));
    snprintf(key, sizeof key, "%sstd", prefix);
    VLP_TRY(get_rgb(obj, section, key, 1e-6f, 1e3f, now.std, &given, what, err));
    if (given) p->own_norm = true, memcpy(p->mean, now.mean, sizeof now.mean), memcpy(p->std, now.std, sizeof now.std);
    snprintf(key, sizeof key, "%sinterpolation", prefix);
    VLP_TRY(get_only(obj, section, key, "bicubic", "the resize vlp computes as PIL does", what, err));
    snprintf(key, sizeof key, "%sresize_mode", prefix);
    VLP_TRY(get_only(obj, section, key, "shortest",
                     "vlp resizes the shortest side and crops the centre, open_clip's default", what, err));
    if (*prefix) {
        json_t *bg = json_object_get(obj, "image_background");
        VLP_CHECK_FORMAT(!bg || json_is_null(bg) ||
                             (json_is_string(bg) && (!strcmp(json_string_value(bg), "white") ||
                                                     !strcmp(json_string_value(bg), "none"))),
                         err, "%s: %s.image_background must be \"white\" or \"none\" (alpha dropped)", what,
                         section);
        p->white_background = bg && json_is_string(bg) && !strcmp(json_string_value(bg), "white");
    }
    return VLP_OK;
}

static vlp_err get_section(json_t *root, const char *key, json_t **out, const char *what,
                           vlp_error *err) {
    *out = json_object_get(root, key);
    VLP_CHECK_FORMAT(*out && json_is_object(*out), err, "%s: \"%s\" must be an object", what, key);
    return VLP_OK;
}

static vlp_err parse_root(json_t *root, const char *what, clip_config *c, vlp_error *err) {
    memset(c, 0, sizeof *c);
    VLP_CHECK_FORMAT(json_is_object(root), err, "%s: the config must be a JSON object", what);
    /* a model hub's open_clip_config.json: {"model_cfg": {...}, "preprocess_cfg": {...}} */
    json_t *wrapped = json_object_get(root, "model_cfg"), *hub_pre = NULL;
    if (wrapped && !json_object_get(root, "vision_cfg")) {
        VLP_CHECK_FORMAT(json_is_object(wrapped), err, "%s: \"model_cfg\" must be an object", what);
        hub_pre = json_object_get(root, "preprocess_cfg");
        VLP_CHECK_FORMAT(!hub_pre || json_is_object(hub_pre), err, "%s: \"preprocess_cfg\" must be an object",
                         what);
        root = wrapped;
    }
    VLP_TRY(get_int(root, "", "embed_dim", -1, &c->embed_dim, what, err));
    json_t *qg = json_object_get(root, "quick_gelu");
    VLP_CHECK_FORMAT(!qg || json_is_boolean(qg), err, "%s: quick_gelu must be true or false", what);
    c->quick_gelu = qg && json_is_true(qg);
    json_t *ls = json_object_get(root, "init_logit_scale"), *lb = json_object_get(root, "init_logit_bias");
    VLP_CHECK_FORMAT(!ls || json_is_null(ls) || json_is_number(ls), err,
                     "%s: init_logit_scale must be a number", what);
    VLP_CHECK_FORMAT(!lb || json_is_null(lb) || json_is_number(lb), err,
                     "%s: init_logit_bias must be a number or null", what);
    if (ls && json_is_number(ls))
        c->has_logit_scale_init = true, c->init_logit_scale = (float)json_number_value(ls);
    if (lb && json_is_number(lb))
        c->has_logit_bias = true, c->init_logit_bias = (float)json_number_value(lb);
    VLP_CHECK_FORMAT(isfinite(c->init_logit_scale) && isfinite(c->init_logit_bias) &&
                         fabsf(c->init_logit_scale) < 50 && fabsf(c->init_logit_bias) < 1e4,
                     err, "%s: init_logit_scale %g / init_logit_bias %g out of range", what,
                     c->init_logit_scale, c->init_logit_bias);

    json_t *v, *t;
    VLP_TRY(get_section(root, "vision_cfg", &v, what, err));
    clip_vision_cfg *vc = &c->vision;
    VLP_TRY(get_int(v, "vision_cfg", "image_size", -1, &vc->image_size, what, err));
    VLP_TRY(get_int(v, "vision_cfg", "patch_size", -1, &vc->patch_size, what, err));
    VLP_TRY(get_int(v, "vision_cfg", "width", -1, &vc->width, what, err));
    VLP_TRY(get_int(v, "vision_cfg", "layers", -1, &vc->layers, what, err));
    if (json_object_get(v, "heads")) {
        VLP_TRY(get_int(v, "vision_cfg", "heads", -1, &vc->heads, what, err));
    } else {
        int head_width;
        VLP_TRY(get_int(v, "vision_cfg", "head_width", 64, &head_width, what, err));
        VLP_CHECK_FORMAT(vc->width % head_width == 0, err,
                         "%s: vision_cfg.width %d is not a multiple of head_width %d", what,
                         vc->width, head_width);
        vc->heads = vc->width / head_width;
    }
    VLP_TRY(get_ratio(v, "vision_cfg", vc->width, &vc->mlp_width, what, err));
    VLP_TRY(get_preprocess(v, "vision_cfg", "image_", &vc->pre, what, err));
    if (hub_pre) VLP_TRY(get_preprocess(hub_pre, "preprocess_cfg", "", &vc->pre, what, err));

    VLP_TRY(get_section(root, "text_cfg", &t, what, err));
    clip_text_cfg *tc = &c->text;
    VLP_TRY(get_int(t, "text_cfg", "context_length", 77, &tc->context_length, what, err));
    VLP_TRY(get_int(t, "text_cfg", "vocab_size", 49408, &tc->vocab_size, what, err));
    VLP_TRY(get_int(t, "text_cfg", "width", 512, &tc->width, what, err));
    VLP_TRY(get_int(t, "text_cfg", "heads", 8, &tc->heads, what, err));
    VLP_TRY(get_int(t, "text_cfg", "layers", 12, &tc->layers, what, err));
    VLP_TRY(get_ratio(t, "text_cfg", tc->width, &tc->mlp_width, what, err));

    json_t *mm = json_object_get(root, "multimodal_cfg");
    if (mm && !json_is_null(mm)) {
        VLP_TRY(get_section(root, "multimodal_cfg", &mm, what, err));
        clip_multimodal_cfg *mc = &c->multimodal;
        VLP_TRY(get_int(mm, "multimodal_cfg", "width", tc->width, &mc->width, what, err));
        VLP_TRY(get_int(mm, "multimodal_cfg", "heads", 8, &mc->heads, what, err));
        VLP_TRY(get_int(mm, "multimodal_cfg", "layers", 12, &mc->layers, what, err));
        VLP_TRY(get_ratio(mm, "multimodal_cfg", mc->width, &mc->mlp_width, what, err));
        int vocab;
        VLP_TRY(get_int(mm, "multimodal_cfg", "vocab_size", tc->vocab_size, &vocab, what, err));
        VLP_CHECK_FORMAT(vocab == tc->vocab_size, err,
                         "%s: multimodal_cfg.vocab_size %d differs from text_cfg.vocab_size %d",
                         what, vocab, tc->vocab_size);
    }
    json_t *fu = json_object_get(root, "fusion_cfg");
    if (fu && !json_is_null(fu)) {
        VLP_TRY(get_section(root, "fusion_cfg", &fu, what, err));
        clip_fusion_cfg *fc = &c->fusion;
        VLP_TRY(get_int(fu, "fusion_cfg", "width", tc->width, &fc->width, what, err));
        VLP_TRY(get_int(fu, "fusion_cfg", "heads", tc->heads, &fc->heads, what, err));
        VLP_TRY(get_int(fu, "fusion_cfg", "layers", 6, &fc->layers, what, err));
        VLP_TRY(get_ratio(fu, "fusion_cfg", fc->width, &fc->mlp_width, what, err));
    }
    json_t *mae = json_object_get(root, "mae_cfg");
    if (mae && !json_is_null(mae)) {
        VLP_TRY(get_section(root, "mae_cfg", &mae, what, err));
        clip_mae_cfg *ac = &c->mae;
        VLP_TRY(get_int(mae, "mae_cfg", "width", 512, &ac->width, what, err));
        VLP_TRY(get_int(mae, "mae_cfg", "heads", 16, &ac->heads, what, err));
        VLP_TRY(get_int(mae, "mae_cfg", "layers", 8, &ac->layers, what, err));
        VLP_TRY(get_ratio(mae, "mae_cfg", ac->width, &ac->mlp_width, what, err));
    }
    return clip_config_validate(c, what, err);
}

vlp_err clip_config_validate(const clip_config *c, const char *what, vlp_error *err) {
    const clip_vision_cfg *v = &c->vision;
    const clip_text_cfg *t = &c->text;
    VLP_CHECK_SHAPE(v->image_size % v->patch_size == 0, err,
                    "%s: vision_cfg.image_size %d is not a multiple of patch_size %d", what,
                    v->image_size, v->patch_size);
    VLP_CHECK_SHAPE(v->heads > 0 && v->width % v->heads == 0, err,
                    "%s: vision_cfg.width %d is not divisible by %d heads", what, v->width,
                    v->heads);
    VLP_CHECK_SHAPE(t->heads > 0 && t->width % t->heads == 0, err,
                    "%s: text_cfg.width %d is not divisible by %d heads", what, t->width, t->heads);
    VLP_CHECK_SHAPE(v->mlp_width > 0 && t->mlp_width > 0, err, "%s: mlp_ratio gives no MLP",
                    what);
    const clip_multimodal_cfg *mc = &c->multimodal;
    if (mc->layers > 0) {
        VLP_CHECK_SHAPE(mc->width == t->width && mc->width == c->embed_dim, err,
                        "%s: multimodal_cfg.width %d must equal text_cfg.width %d and embed_dim %d "
                        "(the decoder reads the text tower's tokens and the image's projected tokens)",
                        what, mc->width, t->width, c->embed_dim);
        VLP_CHECK_SHAPE(mc->heads > 0 && mc->width % mc->heads == 0 && mc->mlp_width > 0 &&
                            mc->layers <= 1024,
                        err, "%s: multimodal_cfg.width %d is not divisible by %d heads", what,
                        mc->width, mc->heads);
    }
    const clip_fusion_cfg *fc = &c->fusion;
    if (fc->layers > 0) {
        VLP_CHECK_SHAPE(fc->width == t->width && fc->width == c->embed_dim, err,
                        "%s: fusion_cfg.width %d must equal text_cfg.width %d and embed_dim %d "
                        "(the fusion layers read the text tower's tokens and the image's projected tokens)",
                        what, fc->width, t->width, c->embed_dim);
        VLP_CHECK_SHAPE(fc->heads > 0 && fc->width % fc->heads == 0 && fc->mlp_width > 0 &&
                            fc->mlp_width <= 131072 && fc->layers <= 1024,
                        err, "%s: fusion_cfg.width %d is not divisible by %d heads", what, fc->width,
                        fc->heads);
    }
    const clip_mae_cfg *ac = &c->mae;
    if (ac->layers > 0)
        VLP_CHECK_SHAPE(ac->heads > 0 && ac->width % ac->heads == 0 && ac->mlp_width > 0 &&
                            ac->width <= 16384 && ac->mlp_width <= 131072 && ac->layers <= 1024,
                        err, "%s: mae_cfg.width %d is not divisible by %d heads", what, ac->width,
                        ac->heads);
    /* keep every tensor size well inside int and size_t arithmetic */
    int grid = v->image_size / v->patch_size;
    VLP_CHECK_SHAPE(v->width <= 16384 && t->width <= 16384 && v->layers <= 1024 &&
                        t->layers <= 1024 && grid <= 1024 && t->context_length <= 65536 &&
                        c->embed_dim <= 65536 && v->mlp_width <= 131072 && t->mlp_width <= 131072,
                    err, "%s: dimensions beyond what vlp supports", what);
    return VLP_OK;
}

vlp_err clip_config_parse(const char *text, const char *what, clip_config *out, vlp_error *err) {
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    VLP_CHECK_FORMAT(root, err, "%s:%d:%d: %s", what, je.line, je.column, je.text);
    vlp_err e = parse_root(root, what, out, err);
    json_decref(root);
    return e;
}

vlp_err clip_config_load(const char *path, clip_config *out, vlp_error *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        /* jansson says "unable to open" for I/O problems; anything else is syntax */
        bool io = strstr(je.text, "unable to open") != NULL;
        VLP_FAIL(err, io ? VLP_ERR_IO : VLP_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column,
                 je.text);
    }
    vlp_err e = parse_root(root, path, out, err);
    json_decref(root);
    return e;
}

/* The mlp_ratio to write for an MLP width: the width is the fact, and
 * open_clip (and get_ratio) read int(width * mlp_ratio). mlp_width / width
 * where that reads back (4.0 for open_clip's own configs), else the middle
 * of the interval that does: 123 wide on 120 is written 1.0291..., not
 * 1.025, which read back as 122. */
static double ratio_of(int mlp_width, int width) {
    double r = (double)mlp_width / width;
    if ((int)(width * r) == mlp_width) return r;
    return (mlp_width + 0.5) / width;
}

char *clip_config_to_json(const clip_config *c) {
    const clip_vision_cfg *v = &c->vision;
    const clip_text_cfg *t = &c->text;
    json_doc doc = {.root = json_pack(
        "{s:i, s:b, s:{s:i, s:i, s:i, s:i, s:i, s:f}, s:{s:i, s:i, s:i, s:i, s:i, s:f}}",
        "embed_dim", c->embed_dim, "quick_gelu", c->quick_gelu, "vision_cfg", "image_size",
        v->image_size, "patch_size", v->patch_size, "width", v->width, "layers", v->layers,
        "heads", v->heads, "mlp_ratio", ratio_of(v->mlp_width, v->width), "text_cfg",
        "context_length", t->context_length, "vocab_size", t->vocab_size, "width", t->width,
        "heads", t->heads, "layers", t->layers, "mlp_ratio", ratio_of(t->mlp_width, t->width))};
    json_t *root = doc.root;
    if (!root) return NULL;
    if (c->has_logit_scale_init)
        jd_put(&doc, root, "init_logit_scale", json_real(c->init_logit_scale));
    if (c->has_logit_bias) jd_put(&doc, root, "init_logit_bias", json_real(c->init_logit_bias));
    const image_preprocess *pre = &v->pre;
    json_t *vj = json_object_get(root, "vision_cfg");
    if (pre->own_norm) {
        jd_put(&doc, vj, "image_mean", json_pack("[f, f, f]", pre->mean[0], pre->mean[1], pre->mean[2]));
        jd_put(&doc, vj, "image_std", json_pack("[f, f, f]", pre->std[0], pre->std[1], pre->std[2]));
    }
    if (pre->white_background) jd_exact(&doc, vj, "image_background", "white");
    const clip_multimodal_cfg *mc = &c->multimodal;
    if (mc->layers > 0)
        jd_put(&doc, root, "multimodal_cfg",
               json_pack("{s:i, s:i, s:i, s:f, s:i, s:i}", "width", mc->width, "heads", mc->heads, "layers",
                         mc->layers, "mlp_ratio", ratio_of(mc->mlp_width, mc->width), "context_length",
                         t->context_length, "vocab_size", t->vocab_size));
    const clip_fusion_cfg *fc = &c->fusion;
    if (fc->layers > 0)
        jd_put(&doc, root, "fusion_cfg",
               json_pack("{s:i, s:i, s:i, s:f}", "width", fc->width, "heads", fc->heads, "layers", fc->layers,
                         "mlp_ratio", ratio_of(fc->mlp_width, fc->width)));
    const clip_mae_cfg *ac = &c->mae;
    if (ac->layers > 0)
        jd_put(&doc, root, "mae_cfg",
               json_pack("{s:i, s:i, s:i, s:f}", "width", ac->width, "heads", ac->heads, "layers", ac->layers,
                         "mlp_ratio", ratio_of(ac->mlp_width, ac->width)));
    char *s = json_doc_dumps(&doc, JSON_PRESERVE_ORDER | JSON_INDENT(4), "config", NULL);
    json_doc_free(&doc);
    return s;
}

float clip_config_logit_scale_init(const clip_config *c) {
    return c->has_logit_scale_init ? c->init_logit_scale : logf(1.0f / 0.07f);
}
