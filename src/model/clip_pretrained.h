/*
 * Loading CLIP weights made elsewhere:
 *   - open_clip / OpenAI state-dict naming (visual.conv1.weight, ...), with the
 *     config from vlp's metadata or inferred from the shapes as open_clip's
 *     build_model_from_openai_state_dict does (widths from the tensors, layers
 *     by counting resblocks, heads = width / 64);
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

typedef struct clip_load_opts {
    int quick_gelu; // -1: the file's metadata, else OpenAI's QuickGELU when the config is inferred; 0/1: forced
    bool inference; // build the model with clip_init_inference (no gradients)
} clip_load_opts;

/* Which naming a file uses (error when neither). */
vlp_err clip_detect_naming(const st_file *f, clip_naming *out, vlp_error *err);

/* The config: vlp.config metadata when present, else inferred from shapes. */
vlp_err clip_infer_config(const st_file *f, clip_naming naming, clip_config *cfg, bool *from_metadata,
                          vlp_error *err);

/* Opens, infers, builds and fills m (m is initialised here; clip_free it). */
vlp_err clip_load_pretrained(clip_model *m, const char *path, const clip_load_opts *o, vlp_error *err);
#endif
