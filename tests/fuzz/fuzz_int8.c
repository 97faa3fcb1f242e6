/* An int8 model file (vlp quantize's: I8 matrices with F32 scales, the
 * config and "vlp.quantization" in the metadata) loaded as vlp embed loads
 * it, then used: a batch of images and of token ids through both towers.
 * Configs too large for a fuzzing run (over 64 K parameters, images over 32
 * pixels, contexts over 16) are skipped
 * before anything is allocated. The seeds are a valid file of a small model
 * and variants (scales missing, scales of the wrong dtype, a LayerNorm in
 * I8, the metadata's mark dropped), written by this file's own main when built with
 * -DINT8_SEEDS (see below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model/clip_io.h"
#include "model/clip_pretrained.h"
#include "model/clip_q8.h"

/* the config in the file's metadata, if it is small enough to build */
static bool small_config(const char *path) {
    st_file *f;
    if (st_open(path, &f, NULL) != VLP_OK) return false;
    const char *text = st_meta_get(f, CLIP_META_CONFIG);
    clip_config c;
    bool ok = text && clip_config_parse(text, path, &c, NULL) == VLP_OK && clip_config_param_count(&c) <= (1u << 16) &&
              c.vision.image_size <= 32 && c.text.context_length <= 16;
    st_close(f);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".safetensors");
    if (!path || !small_config(path)) return 0;
    clip_model m;
    clip_load_opts o = {.quick_gelu = -1, .inference = true};
    if (clip_load_pretrained(&m, path, &o, NULL) != VLP_OK) return 0;
    int S = m.cfg.vision.image_size, T = m.cfg.text.context_length, V = m.cfg.text.vocab_size;
    float *img = malloc(sizeof(float) * 2 * 3 * (size_t)S * S);
    int32_t *ids = calloc(2 * (size_t)T, sizeof(int32_t));
    if (img && ids && clip_reserve(&m, 2, NULL) == VLP_OK) {
        for (size_t i = 0; i < 2 * 3 * (size_t)S * S; i++) img[i] = (float)(i % 17) / 17.0f - 0.5f;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < T && t < 4 + b; t++) ids[b * T + t] = (t * 31 + b) % V;
        clip_image_forward(&m, img, 2, NULL);
        clip_text_forward(&m, ids, 2, NULL);
    }
    free(img), free(ids);
    clip_free(&m);
    return 0;
}

#ifdef INT8_SEEDS
/* cc -DINT8_SEEDS -Isrc -Iinclude -Itests/fuzz tests/fuzz/fuzz_int8.c tests/fuzz/fuzz_support.c
 *    build/release/libvlp.a $(libs) -o seeds && ./seeds tests/fuzz/corpus/int8 */

/* the int8 file `from` rewritten to `to` with tensor `name` dropped, or its
 * dtype changed (the file stays well-formed: the loader reads numel elements of the new size) */
static int variant(const char *from, const char *to, const char *name, int drop, st_dtype dtype, int quant) {
    st_file *f;
    if (st_open(from, &f, NULL) != VLP_OK) return 1;
    int n = st_count(f), k = 0;
    st_tensor *ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(f, i);
        if (!strcmp(t->name, name) && drop) continue;
        ts[k] = *t;
        if (!strcmp(t->name, name)) ts[k].dtype = dtype;
        k++;
    }
    st_meta meta[3] = {{"format", "pt"}, {CLIP_META_CONFIG, st_meta_get(f, CLIP_META_CONFIG)},
                       {CLIP_META_QUANT, CLIP_QUANT_INT8}};
    vlp_error err = {0};
    int rc = st_write(to, ts, k, meta, quant ? 3 : 2, &err) != VLP_OK;
    if (rc) fprintf(stderr, "%s: %s\n", to, err.message);
    free(ts);
    st_close(f);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    clip_config c = {.embed_dim = 16,
                     .vision = {.image_size = 16, .patch_size = 8, .width = 16, .layers = 1, .heads = 2, .mlp_width = 32},
                     .text = {.context_length = 8, .vocab_size = 40, .width = 16, .layers = 1, .heads = 2, .mlp_width = 32}};
    clip_model m;
    vlp_error err = {0};
    if (clip_init_inference(&m, &c, &err) != VLP_OK) return 1;
    for (size_t i = 0; i < m.nfloats; i++) m.weights[i] = (float)((int)(i * 7919 % 201) - 100) / 512.0f;
    char good[512], out[512];
    snprintf(good, sizeof good, "%s/valid", argv[1]);
    if (clip_quantize(&m, &err) != VLP_OK || clip_save_int8(&m, good, &err) != VLP_OK)
        return fprintf(stderr, "%s: %s\n", good, err.message), 1;
    clip_free(&m);
    /* the I8 matrices' dtype is what the loader reads; the last, unmarked
     * file reaches the plain loader with I8 tensors */
    struct { const char *file, *tensor; int drop; st_dtype dtype; int quant; } v[] = {
        {"no_scale", "visual.transformer.resblocks.0.mlp.c_fc.weight.scale", 1, ST_F32, 1},
        {"scale_i32", "transformer.resblocks.0.attn.in_proj_weight.scale", 0, ST_I32, 1},
        {"ln_i8", "visual.transformer.resblocks.0.ln_1.weight", 0, ST_I8, 1},
        {"unmarked", "", 0, ST_F32, 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        snprintf(out, sizeof out, "%s/%s", argv[1], v[i].file);
        if (variant(good, out, v[i].tensor, v[i].drop, v[i].dtype, v[i].quant)) return 1;
    }
    return 0;
}
#endif
