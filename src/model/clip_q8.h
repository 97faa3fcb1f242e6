/*
 * int8 inference models (vlp quantize). The four matrices of every
 * transformer block of both towers (attn.in_proj_weight, attn.out_proj.weight,
 * mlp.c_fc.weight, mlp.c_proj.weight) are quantized per output channel;
 * everything else (embeddings, LayerNorms, biases, the projections, the
 * attention products, CoCa's decoder) stays fp32. Activations are quantized
 * per token as each layer runs (src/ops/gemm_int8.h).
 *
 * File: a safetensors checkpoint like clip_save's, with those matrices as I8
 * tensors of the same names and shapes, each with an F32 "<name>.scale" (OC),
 * and the metadata "vlp.quantization": "int8-per-channel". Any of the
 * matrices may be left F32 (it then runs in fp32). The fp32 copies of the
 * int8 matrices are released (zeros; their pages given back to the OS): an
 * int8 model holds the int8 weights and the fp32 rest, not both.
 */
#ifndef VLP_MODEL_CLIP_Q8_H
#define VLP_MODEL_CLIP_Q8_H
#include "io/safetensors.h"
#include "model/clip.h"

#define CLIP_META_QUANT "vlp.quantization"
#define CLIP_QUANT_INT8 "int8-per-channel"

typedef struct clip_q8 {
    block_q8 *blocks;      // [vision.layers + text.layers]: the image tower's, then the text's
    void *workspace;       // the int8 layers' activations, for m->batch
    size_t workspace_bytes;
    int matrices;          // how many are int8
} clip_q8;

/* Quantizes the towers' block matrices of an inference model in memory (their
 * fp32 copies are released). An error names a non-finite tensor and leaves
 * the model as it was. */
vlp_err clip_quantize(clip_model *m, vlp_error *err);
/* Writes an int8 model (clip_quantize'd or loaded from an int8 file). */
vlp_err clip_save_int8(const clip_model *m, const char *path, vlp_error *err);
/* Whether an open file is an int8 model (its metadata says so). */
bool clip_file_is_int8(const st_file *f);
/* An error naming the file when it is an int8 model: the loaders of models
 * that train (resume, --init-image, adapt) refuse them. */
vlp_err clip_int8_refuse_training(const st_file *f, vlp_error *err);
/* Loads an int8 file's weights into an inference model built from its config. */
vlp_err clip_load_int8(clip_model *m, const st_file *f, vlp_error *err);
/* Sizes the int8 workspace for batches up to B (clip_reserve calls it). */
vlp_err clip_q8_reserve(clip_model *m, int B, vlp_error *err);
void clip_q8_free(clip_model *m);
#endif
