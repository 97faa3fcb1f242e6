/* The public model API of include/vlp.h over the internal CLIP model. */
#include "api/model_internal.h"
#include "core/datadir.h"
#include "core/error.h"
#include "core/parallel.h"
#include "data/bpe.h"
#include "data/image.h"
#include "eval/eval.h"
#include "eval/itm.h"
#include "loss/loss.h"
#include "model/clip_pretrained.h"
#include "model/clip_q8.h"
#include "ops/gemm_int8.h"
#include "model/config_registry.h"
#include "model/generate.h"
#include "vlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


vlp_model_opts vlp_model_opts_default(void) {
    return (vlp_model_opts){.vocab = NULL, .quick_gelu = -1, .batch = 32, .normalize = true};
}

void vlp_model_free(vlp_model *v) {
    if (!v) return;
    clip_free(&v->m);
    tokenizer_free(&v->tok);
    free(v->pixels), free(v->ids);
    free(v);
}

/* where the tokenizer comes from when the caller names none */
static vlp_err default_vocab(const char *weights, char *out, size_t n, vlp_error *err) {
    vocab_beside(weights, out, n);
    if (access(out, R_OK) == 0) return VLP_OK;
    const char *env = getenv("VLP_BPE_MERGES");
    if (env && *env) return snprintf(out, n, "%s", env), VLP_OK;
    return vlp_data_file(VLP_DEFAULT_VOCAB, out, n, err);
}

vlp_err vlp_model_load(vlp_model **out, const char *path, const vlp_model_opts *opts, vlp_error *err) {
    VLP_CHECK_ARG(out && path, err, "vlp_model_load needs an output handle and a path");
    *out = NULL;
    VLP_TRY(vlp_cpu_check(err)); /* a VLP_CPU the CPU cannot honour */
    vlp_model *v = calloc(1, sizeof *v);
    VLP_CHECK_ALLOC(v, err, sizeof *v);
    v->o = opts ? *opts : vlp_model_opts_default();
    if (v->o.batch <= 0) v->o.batch = 32;
    clip_load_opts lo = {.quick_gelu = v->o.quick_gelu, .inference = !v->o.trainable}; /* no gradients */
    clip_config given;
    vlp_err rc = VLP_OK;
    if (v->o.model_config) {
        rc = clip_config_resolve(v->o.model_config, &given, NULL, 0, err);
        lo.config = &given;
    }
    v->o.model_config = NULL; /* the caller's string is not kept */
    if (rc == VLP_OK) rc = clip_load_pretrained(&v->m, path, &lo, err);
    if (rc == VLP_OK && v->o.alpha != VLP_ALPHA_MODEL)
        v->m.cfg.vision.pre.white_background = v->o.alpha == VLP_ALPHA_WHITE;
    if (rc == VLP_OK && lo.source == CLIP_CONFIG_INFERRED)
        snprintf(v->warning, sizeof v->warning,
                 "%s has no config: the architecture was inferred from the tensor shapes, with "
                 "head width 64 (%d vision heads, %d text heads); give the model's config if "
                 "its heads differ",
                 path, v->m.cfg.vision.heads, v->m.cfg.text.heads);
    char vocab[4096];
    if (rc == VLP_OK) {
        if (v->o.vocab) snprintf(vocab, sizeof vocab, "%s", v->o.vocab);
        else rc = default_vocab(path, vocab, sizeof vocab, err);
        v->o.vocab = NULL;
    }
    if (rc == VLP_OK) rc = bpe_load(vocab, 0, &v->tok, err);
    if (rc == VLP_OK && v->tok.vocab_size != v->m.cfg.text.vocab_size)
        rc = vlp_error_set(err, VLP_ERR_SHAPE, __FILE__, __LINE__,
                           "%s gives %d token ids, the model's vocab_size is %d: give the model's tokenizer",
                           vocab, v->tok.vocab_size, v->m.cfg.text.vocab_size);
    if (rc == VLP_OK) rc = clip_reserve(&v->m, v->o.batch, err);
    if (rc == VLP_OK && v->o.bf16 && gemm_bf16_hw())
        rc = clip_set_precision(&v->m, VLP_PRECISION_BF16, omp_get_max_threads(), err);
    if (rc == VLP_OK) {
        int S = v->m.cfg.vision.image_size, T = v->m.cfg.text.context_length;
        v->pixels = malloc(sizeof(float) * (size_t)v->o.batch * 3 * S * S);
        v->ids = malloc(sizeof(int32_t) * (size_t)v->o.batch * T);
        if (!v->pixels || !v->ids) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "encoder buffers");
    }
    if (rc != VLP_OK) {
        vlp_model_free(v);
        return rc;
    }
    *out = v;
    return VLP_OK;
}

const char *vlp_model_warning(const vlp_model *v) { return v->warning[0] ? v->warning : NULL; }

int vlp_model_embed_dim(const vlp_model *v) { return v->m.cfg.embed_dim; }
int vlp_model_image_size(const vlp_model *v) { return v->m.cfg.vision.image_size; }
int vlp_model_context_length(const vlp_model *v) { return v->m.cfg.text.context_length; }
size_t vlp_model_parameter_count(const vlp_model *v) { return v ? v->m.nfloats : 0; }

vlp_err vlp_model_config_json(const vlp_model *v, char *buf, size_t n, vlp_error *err) {
    VLP_CHECK_ARG(v && buf, err, "vlp_model_config_json: bad arguments");
    char *json = clip_config_to_json(&v->m.cfg);
    VLP_CHECK_ALLOC(json, err, 4096);
    size_t need = strlen(json) + 1;
    if (need > n) {
        free(json);
        VLP_FAIL(err, VLP_ERR_ARG, "vlp_model_config_json: the config takes %zu bytes, the buffer has %zu", need, n);
    }
    memcpy(buf, json, need);
    free(json);
    return VLP_OK;
}

const char *vlp_model_describe(const vlp_model *v, char *buf, size_t n) {
    const clip_config *c = &v->m.cfg;
    int used = snprintf(buf, n, "%s: embed %d; vision %dpx patch %d width %d x %d layers (%d heads); text ctx %d "
                     "vocab %d width %d x %d layers (%d heads); %s; %zu parameters; %s matmuls",
             c->multimodal.layers ? "CoCa" : "CLIP", c->embed_dim, c->vision.image_size,
             c->vision.patch_size, c->vision.width, c->vision.layers,
             c->vision.heads, c->text.context_length, c->text.vocab_size, c->text.width, c->text.layers,
             c->text.heads, c->quick_gelu ? "QuickGELU" : "GELU", v->m.nfloats,
             v->m.q8 ? q8_describe() : v->m.mm.precision == VLP_PRECISION_BF16 ? "bf16"
             : v->o.bf16 ? "fp32 (bf16 asked for, but the CPU has no AVX512-BF16)" : "fp32");
    if (c->multimodal.layers && used > 0 && (size_t)used < n)
        used += snprintf(buf + used, n - (size_t)used, "; text decoder %d layers (%d heads)",
                         c->multimodal.layers, c->multimodal.heads);
    if (c->fusion.layers && used > 0 && (size_t)used < n)
        used += snprintf(buf + used, n - (size_t)used, "; fusion encoder %d layers (%d heads)", c->fusion.layers,
                         c->fusion.heads);
    if (c->vision.pre.white_background && used > 0 && (size_t)used < n)
        used += snprintf(buf + used, n - (size_t)used, "; transparent pixels on white");
    if (c->mae.layers && used > 0 && (size_t)used < n)
        snprintf(buf + used, n - (size_t)used, "; MAE decoder width %d x %d layers (%d heads)",
                 c->mae.width, c->mae.layers, c->mae.heads);
    return buf;
}

vlp_err vlp_model_quantize(vlp_model *v, vlp_error *err) {
    VLP_CHECK_ARG(v, err, "vlp_model_quantize needs a model");
    return clip_quantize(&v->m, err);
}

vlp_err vlp_model_save_int8(vlp_model *v, const char *path, vlp_error *err) {
    VLP_CHECK_ARG(v && path, err, "vlp_model_save_int8 needs a model and a path");
    VLP_TRY(clip_quantize(&v->m, err));
    return clip_save_int8(&v->m, path, err);
}

bool vlp_model_is_int8(const vlp_model *v) { return v && v->m.q8; }

/* the tower's output for b rows: normalised (emb) or the raw projection (feat) */
static void copy_out(const vlp_model *v, const tower_acts *t, int b, float *out) {
    memcpy(out, v->o.normalize ? t->emb : t->feat, sizeof(float) * (size_t)b * v->m.cfg.embed_dim);
}

vlp_err model_encode_images_keeping(vlp_model *v, const float *pixels, int n, float *out, itm_store *keep,
                                    vlp_error *err) {
    VLP_CHECK_ARG(v && (pixels || n == 0) && (out || keep || n == 0) && n >= 0, err, "vlp_encode_images: bad arguments");
    int S = v->m.cfg.vision.image_size, E = v->m.cfg.embed_dim;
    size_t img = (size_t)3 * S * S;
    for (int i0 = 0; i0 < n; i0 += v->o.batch) {
        int b = n - i0 < v->o.batch ? n - i0 : v->o.batch;
        VLP_TRY(clip_image_forward(&v->m, pixels + (size_t)i0 * img, b, err));
        if (out) copy_out(v, &v->m.image_acts, b, out + (size_t)i0 * E);
        if (keep) VLP_TRY(itm_store_images(keep, &v->m, b, err));
    }
    return VLP_OK;
}

vlp_err vlp_encode_images(vlp_model *v, const float *pixels, int n, float *out, vlp_error *err) {
    VLP_CHECK_ARG(out || n == 0, err, "vlp_encode_images: bad arguments");
    return model_encode_images_keeping(v, pixels, n, out, NULL, err);
}

/* an image through the model's eval transform into out (3, S, S): the
 * model's normalisation */
static vlp_err eval_pixels(const vlp_model *v, const image_u8 *im, float *out, vlp_error *err) {
    image_transform tf = image_transform_for(&v->m.cfg.vision.pre, v->m.cfg.vision.image_size, false);
    return image_transform_apply(&tf, im, NULL, out, err);
}

/* one image file into out: the model's alpha rule; full-size decode, Pillow's pixels */
static vlp_err file_to(const vlp_model *v, const char *path, float *out, vlp_error *err) {
    image_decode_opts dec = image_decode_for(&v->m.cfg.vision.pre);
    image_u8 im;
    VLP_TRY(image_load(path, &dec, &im, err));
    vlp_err rc = eval_pixels(v, &im, out, err);
    image_free(&im);
    return rc;
}

/* one image file into pixel slot i */
static vlp_err file_pixels(vlp_model *v, const char *path, int i, vlp_error *err) {
    int S = v->m.cfg.vision.image_size;
    return file_to(v, path, v->pixels + (size_t)i * 3 * S * S, err);
}

vlp_err vlp_preprocess_image_file(vlp_model *v, const char *path, float *out, vlp_error *err) {
    VLP_CHECK_ARG(v && path && out, err, "vlp_preprocess_image_file: bad arguments");
    return file_to(v, path, out, err);
}

_Static_assert(VLP_IMAGE_RGB == (int)IMAGE_RGB && VLP_IMAGE_RGBA == (int)IMAGE_RGBA && VLP_IMAGE_L == (int)IMAGE_L &&
                   VLP_IMAGE_LA == (int)IMAGE_LA && VLP_IMAGE_1 == (int)IMAGE_1 && VLP_IMAGE_P == (int)IMAGE_P &&
                   VLP_IMAGE_CMYK == (int)IMAGE_CMYK && VLP_IMAGE_I == (int)IMAGE_I,
               "the public image modes are the decoder's");

vlp_err vlp_preprocess_image(vlp_model *v, const vlp_image *img, float *out, vlp_error *err) {
    VLP_CHECK_ARG(v && img && out, err, "vlp_preprocess_image: bad arguments");
    VLP_CHECK_ARG(img->mode >= VLP_IMAGE_RGB && img->mode <= VLP_IMAGE_I, err, "vlp_preprocess_image: mode %d is "
                  "none of VLP_IMAGE_RGB .. VLP_IMAGE_I", img->mode);
    VLP_CHECK_ARG(img->pixels && (img->mode != VLP_IMAGE_P || img->palette), err,
                  "vlp_preprocess_image: no pixels%s", img->mode == VLP_IMAGE_P ? ", or no palette" : "");
    VLP_CHECK_ARG(img->width > 0 && img->height > 0 && img->width <= IMAGE_MAX_SIDE && img->height <= IMAGE_MAX_SIDE &&
                      (unsigned long)img->width * (unsigned long)img->height <= IMAGE_MAX_PIXELS,
                  err, "vlp_preprocess_image: a %dx%d image (at most %d a side, %u pixels)", img->width, img->height,
                  IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
    image_decode_opts dec = image_decode_for(&v->m.cfg.vision.pre);
    /* the caller's memory, read only: the transform writes to its own buffers */
    image_u8 im = {.w = img->width, .h = img->height, .mode = (image_mode)img->mode,
                   .px = (uint8_t *)(uintptr_t)img->pixels, .palette = (uint8_t *)(uintptr_t)img->palette,
                   .composite = dec.composite};
    memcpy(im.background, dec.background, 3);
    return eval_pixels(v, &im, out, err);
}

vlp_err model_file_pixels(vlp_model *v, const char *const *paths, int b, vlp_error *err) {
    for (int i = 0; i < b; i++) VLP_TRY(file_pixels(v, paths[i], i, err));
    return VLP_OK;
}

vlp_err vlp_encode_image_files(vlp_model *v, const char *const *paths, int n, float *out, vlp_error *err) {
    VLP_CHECK_ARG(v && (paths || n == 0) && (out || n == 0) && n >= 0, err, "vlp_encode_image_files: bad arguments");
    int E = v->m.cfg.embed_dim;
    for (int i0 = 0; i0 < n; i0 += v->o.batch) {
        int b = n - i0 < v->o.batch ? n - i0 : v->o.batch;
        VLP_TRY(model_file_pixels(v, paths + i0, b, err));
        VLP_TRY(clip_image_forward(&v->m, v->pixels, b, err));
        copy_out(v, &v->m.image_acts, b, out + (size_t)i0 * E);
    }
    return VLP_OK;
}

vlp_err vlp_encode_image_files_skipping(vlp_model *v, const char *const *paths, int n, float *out, bool *ok,
                                        int *rows, vlp_error *skipped, vlp_error *err) {
    VLP_CHECK_ARG(v && (paths || n == 0) && (out || n == 0) && (ok || n == 0) && rows && n >= 0, err,
                  "vlp_encode_image_files_skipping: bad arguments");
    int E = v->m.cfg.embed_dim;
    *rows = 0;
    for (int i = 0; i < n;) {
        int b = 0; /* a batch of images that decode */
        for (; i < n && b < v->o.batch; i++) {
            vlp_error e = {0};
            vlp_err rc = file_pixels(v, paths[i], b, &e);
            if (rc == VLP_ERR_NOMEM) {
                if (err) *err = e;
                return rc;
            }
            ok[i] = rc == VLP_OK;
            if (ok[i]) b++;
            else if (skipped) skipped[i] = e;
        }
        if (b == 0) continue;
        VLP_TRY(clip_image_forward(&v->m, v->pixels, b, err));
        copy_out(v, &v->m.image_acts, b, out + (size_t)*rows * E);
        *rows += b;
    }
    return VLP_OK;
}

vlp_err model_encode_texts_keeping(vlp_model *v, const char *const *texts, int n, float *out, itm_store *keep,
                                   vlp_error *err) {
    VLP_CHECK_ARG(v && (texts || n == 0) && (out || keep || n == 0) && n >= 0, err, "vlp_encode_texts: bad arguments");
    int T = v->m.cfg.text.context_length, E = v->m.cfg.embed_dim;
    for (int i0 = 0; i0 < n; i0 += v->o.batch) {
        int b = n - i0 < v->o.batch ? n - i0 : v->o.batch;
        for (int i = 0; i < b; i++) v->tok.encode(v->tok.impl, texts[i0 + i], v->ids + (size_t)i * T, T);
        VLP_TRY(clip_text_forward(&v->m, v->ids, b, err));
        if (out) copy_out(v, &v->m.text_acts, b, out + (size_t)i0 * E);
        if (keep) VLP_TRY(itm_store_texts(keep, &v->m, b, err));
    }
    return VLP_OK;
}

vlp_err vlp_encode_texts(vlp_model *v, const char *const *texts, int n, float *out, vlp_error *err) {
    VLP_CHECK_ARG(out || n == 0, err, "vlp_encode_texts: bad arguments");
    return model_encode_texts_keeping(v, texts, n, out, NULL, err);
}

vlp_err vlp_encode_classes(vlp_model *v, const char *const *classes, int C, const char *const *templates,
                           int nt, float *out, vlp_error *err) {
    VLP_CHECK_ARG(v && classes && templates && out && C > 0 && nt > 0, err,
                  "vlp_encode_classes: %d classes, %d templates", C, nt);
    return encode_classes(&v->m, &v->tok, classes, C, templates, nt, out, err);
}

vlp_err vlp_templates_load(const char *name_or_file, char ***out, int *n, vlp_error *err) {
    VLP_CHECK_ARG(name_or_file && out && n, err, "vlp_templates_load: bad arguments");
    return templates_load(name_or_file, out, n, err);
}

void vlp_templates_free(char **templates, int n) {
    for (int i = 0; templates && i < n; i++) free(templates[i]);
    free(templates);
}

void vlp_tokenize(const vlp_model *v, const char *text, int *ids, int ctx) {
    _Static_assert(sizeof(int) == sizeof(int32_t), "token ids are int32");
    v->tok.encode(v->tok.impl, text, (int32_t *)ids, ctx);
}

bool vlp_model_has_decoder(const vlp_model *v) { return v && v->m.coca.on; }
bool vlp_model_has_fusion(const vlp_model *v) { return v && v->m.fusion.on; }

vlp_err vlp_caption_images(vlp_model *v, const float *pixels, int n, int beam, char **texts,
                           float *scores, vlp_error *err) {
    VLP_CHECK_ARG(v && (pixels || n == 0) && (texts || n == 0) && n >= 0, err,
                  "vlp_caption_images: bad arguments");
    VLP_CHECK_ARG(v->m.coca.on, err, "the model has no caption decoder (its config has no multimodal_cfg)");
    int S = v->m.cfg.vision.image_size, T = v->m.cfg.text.context_length;
    int32_t sot = v->m.cfg.text.vocab_size - 2, eot = v->m.cfg.text.vocab_size - 1;
    size_t img = (size_t)3 * S * S, cap = (size_t)T * 64 + 1;
    for (int i = 0; i < n; i++) texts[i] = NULL;
    vlp_err rc = VLP_OK;
    for (int i = 0; rc == VLP_OK && i < n; i++) {
        float score;
        rc = caption_generate(&v->m, pixels + i * img, beam, sot, eot, v->ids, &score, err);
        if (rc == VLP_OK && !(texts[i] = malloc(cap)))
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "a caption of %zu bytes", cap);
        if (rc != VLP_OK) break;
        v->tok.decode(v->tok.impl, v->ids, T, texts[i], cap);
        if (scores) scores[i] = score;
    }
    if (rc != VLP_OK) /* all or nothing: the caller frees nothing on failure */
        for (int i = 0; i < n; i++) free(texts[i]), texts[i] = NULL;
    return rc;
}

vlp_err vlp_caption_nll(vlp_model *v, const float *pixels, const char *const *captions, int n,
                        double *nll, long *targets, vlp_error *err) {
    VLP_CHECK_ARG(v && captions && nll && targets && n >= 0, err, "vlp_caption_nll: bad arguments");
    VLP_CHECK_ARG(v->m.coca.on, err, "the model has no caption decoder (its config has no multimodal_cfg)");
    int S = v->m.cfg.vision.image_size, T = v->m.cfg.text.context_length;
    int V = v->m.cfg.text.vocab_size, B = v->o.batch;
    size_t img = (size_t)3 * S * S;
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)B * T);
    float *rows = malloc(sizeof(float) * (size_t)B * T);
    vlp_err rc = labels && rows ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "labels");
    *nll = 0, *targets = 0;
    for (int i0 = 0; rc == VLP_OK && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int i = 0; i < b; i++) v->tok.encode(v->tok.impl, captions[i0 + i], v->ids + (size_t)i * T, T);
        long nt = caption_targets(labels, v->ids, b, T);
        if (pixels) rc = clip_image_forward(&v->m, pixels + (size_t)i0 * img, b, err);
        if (rc == VLP_OK) rc = clip_text_forward(&v->m, v->ids, b, err);
        if (rc == VLP_OK) rc = clip_caption_forward(&v->m, pixels != NULL, b, err);
        float mean;
        if (rc == VLP_OK && nt > 0)
            rc = caption_loss_forward(&mean, v->m.coca.acts.logits, rows, v->m.coca.acts.logits, labels, NULL, b * T,
                                      V, (double)nt, err);
        if (rc == VLP_OK && nt > 0) *nll += (double)mean * nt, *targets += nt;
    }
    free(labels), free(rows);
    return rc;
}

clip_model *model_clip(vlp_model *m) { return &m->m; }
const text_tokenizer *model_tokenizer(const vlp_model *m) { return &m->tok; }
