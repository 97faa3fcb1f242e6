/* CLIP weights in safetensors with open_clip's state-dict names and shapes,
 * so a vlp checkpoint loads with open_clip's model.load_state_dict and back.
 * The model config travels in the metadata ("vlp.config", open_clip field
 * names), so a checkpoint alone is enough to rebuild the model. */
#ifndef VLP_MODEL_CLIP_IO_H
#define VLP_MODEL_CLIP_IO_H
#include "io/safetensors.h"
#include "model/clip.h"

#define CLIP_META_CONFIG "vlp.config"

/* Atomic write of every parameter, plus `extra` metadata entries. */
vlp_err clip_save(const clip_model *m, const char *path, const st_meta *extra, int nextra,
                  vlp_error *err);

/* The parts of clip_save, for writers of other layouts (clip_q8.c): every
 * parameter as an F32 tensor (ts[nparams]), and the atomic write of any
 * tensors with the format and config metadata plus `extra`. */
void clip_param_tensors(const clip_model *m, st_tensor *ts);
vlp_err clip_write(const clip_model *m, const char *path, const st_tensor *ts, int count,
                   const st_meta *extra, int nextra, vlp_error *err);
/* One parameter from the file, its presence and shape checked. */
vlp_err clip_load_param(clip_model *m, const clip_param *p, const st_file *f, vlp_error *err);

/* Copy the weights of an open file into m: every parameter must be present
 * with its shape; a tensor the model does not have is an error naming it. */
vlp_err clip_load_weights(clip_model *m, const st_file *f, vlp_error *err);
/* Only the parameters whose names start with prefix ("visual." for an image
 * tower), each required in the file with its shape; the rest stay. */
vlp_err clip_load_prefix(clip_model *m, const st_file *f, const char *prefix, vlp_error *err);

/* Open a checkpoint, build the model from its embedded config and load it. */
vlp_err clip_load(clip_model *m, const char *path, vlp_error *err);
#endif
