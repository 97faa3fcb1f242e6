/* CLIP model config, with the field names of open_clip's model configs:
 *   {"embed_dim": 512, "quick_gelu": false,
 *    "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12,
 *                   "heads": 12 | "head_width": 64, "mlp_ratio": 4.0},
 *    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
 *                 "layers": 12, "mlp_ratio": 4.0}}
 * open_clip derives the vision heads from head_width (default 64); "heads"
 * is accepted too. A model hub's open_clip_config.json, the same object under
 * "model_cfg", is read as well. */
#ifndef VLP_MODEL_CONFIG_H
#define VLP_MODEL_CONFIG_H
#include <stdbool.h>

#include "core/error.h"
#include "data/image.h"

typedef struct clip_vision_cfg {
    int image_size, patch_size, width, layers, heads, mlp_width;
    /* open_clip's image_mean / image_std (and its image_interpolation and
     * image_resize_mode, of which vlp does "bicubic" and "shortest"), a model
     * hub's preprocess_cfg, and vlp's image_background ("white") */
    image_preprocess pre;
} clip_vision_cfg;

typedef struct clip_text_cfg {
    int context_length, vocab_size, width, layers, heads, mlp_width;
} clip_text_cfg;

/* CoCa's multimodal decoder (open_clip's "multimodal_cfg"); layers 0: none.
 * Its vocabulary and context are the text tower's; vlp requires width ==
 * text_cfg.width == embed_dim (its input is the text tower's tokens, its
 * keys the image tower's projected tokens). */
typedef struct clip_multimodal_cfg {
    int width, heads, layers, mlp_width;
} clip_multimodal_cfg;

/* The fusion encoder of ALBEF/BLIP (vlp's "fusion_cfg"); layers 0: none.
 * Its layers read the text tower's last block output (bidirectional
 * self-attention, then cross-attention to the image tower's projected
 * tokens, each with its MLP), then a final LN; the image-text matching head
 * (2-way, on the fused end-of-text token) and the masked-LM head (tied to
 * the token embedding) read that. vlp requires width == text_cfg.width ==
 * embed_dim, as for CoCa's decoder. */
typedef struct clip_fusion_cfg {
    int width, heads, layers, mlp_width;
} clip_fusion_cfg;

/* MAE's light decoder (He et al. 2021), vlp's "mae_cfg"; layers 0: none.
 * It reads the image tower's projected tokens (embed_dim wide) and predicts
 * every patch's pixels; MAE's own decoder is 8 blocks of width 512. */
typedef struct clip_mae_cfg {
    int width, heads, layers, mlp_width;
} clip_mae_cfg;

typedef struct clip_config {
    int embed_dim;
    bool quick_gelu;
    clip_vision_cfg vision;
    clip_text_cfg text;
    clip_multimodal_cfg multimodal;
    clip_fusion_cfg fusion;
    clip_mae_cfg mae;
    /* open_clip's init_logit_scale (its default, ln(1/0.07), when absent) and
     * init_logit_bias: present (SigLIP: −10, with init_logit_scale ln 10) the
     * model has a learnable `logit_bias` after `logit_scale` */
    bool has_logit_scale_init;
    float init_logit_scale;
    bool has_logit_bias;
    float init_logit_bias;
} clip_config;

/* the initial logit_scale parameter of a config */
float clip_config_logit_scale_init(const clip_config *c);

/* `what` names the source (a path) in error messages. */
vlp_err clip_config_parse(const char *json, const char *what, clip_config *out, vlp_error *err);
vlp_err clip_config_load(const char *path, clip_config *out, vlp_error *err);
/* Checks ranges and divisibility; called by parse, exposed for built configs. */
vlp_err clip_config_validate(const clip_config *c, const char *what, vlp_error *err);

/* The config as JSON in open_clip's field names (malloc'd; NULL when out of memory). */
char *clip_config_to_json(const clip_config *c);
#endif
