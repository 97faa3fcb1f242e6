/*
 * Loading CLIP weights made elsewhere:
 *   - open_clip / OpenAI state-dict naming (visual.conv1.weight, ...), with the
 *     config the caller gives, else vlp's metadata, else inferred from the
 *     shapes as open_clip's build_model_from_openai_state_dict does (widths
 *     from the tensors, layers by counting resblocks, heads = width / 64:
 *     shapes do not tell the head count, so models with another head width
 *     need their config);
 *   - HF transformers CLIPModel naming (vision_model.*, text_model.*,
 *     separate q/k/v projections, (out, in) projection matrices, pre_layrnorm),
 *     mapped onto open_clip's layout.
 * F32, F16 and BF16 tensors are read (widened to f32). A tensor of the wrong
 * shape or a non-float dtype, a missing one or one the model does not use is
 * an error naming it; non-finite weights are an error naming the tensor.
 */
#ifndef VLP_MODEL_CLIP_PRETRAINED_H
#define VLP_MODEL_CLIP_PRETRAINED_H
#include "io/safetensors.h"
#include "model/clip.h"

typedef enum clip_naming { CLIP_NAMING_OPENCLIP, CLIP_NAMING_HF } clip_naming;

/* where the architecture of a loaded model came from, in priority order */
typedef enum clip_config_source {
    CLIP_CONFIG_GIVEN,    // the caller's (--model-config)
    CLIP_CONFIG_METADATA, // the file's vlp.config metadata
    CLIP_CONFIG_INFERRED, // the tensor shapes, head width 64 assumed
} clip_config_source;

typedef struct clip_load_opts {
    int quick_gelu; // -1: the config's, or OpenAI's QuickGELU when the config is inferred; 0/1: forced
    bool inference; // build the model with clip_init_inference (no gradients)
    const clip_config *config; // NULL: the file's metadata, else inferred from the shapes
    clip_config_source source; // out: where the config came from
} clip_load_opts;

/* Which naming a file uses (error when neither). */
vlp_err clip_detect_naming(const st_file *f, clip_naming *out, vlp_error *err);

/* The config: vlp.config metadata when present, else inferred from shapes. */
vlp_err clip_infer_config(const st_file *f, clip_naming naming, clip_config *cfg, bool *from_metadata,
                          vlp_error *err);

/* Opens, infers, builds and fills m (m is initialised here; clip_free it).
 * o->source tells where the config came from. */
vlp_err clip_load_pretrained(clip_model *m, const char *path, clip_load_opts *o, vlp_error *err);
#endif
