/* CoCa's captioning head: open_clip's MultimodalTransformer (text_decoder.*),
 * self-attention blocks and cross-attention blocks reading the image tokens,
 * its final LN and the projection to the vocabulary. */
#include "model/clip_head.h"
#include "model/init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool present(const clip_config *cfg) { return cfg->multimodal.layers > 0; }

static void set_dims(clip_model *m) {
    const clip_multimodal_cfg *mc = &m->cfg.multimodal;
    const clip_text_cfg *t = &m->cfg.text;
    m->coca.on = true;
    block_dims sd = {.T = t->context_length, .C = mc->width, .NH = mc->heads, .hidden = mc->mlp_width,
                     .causal = true, .act = m->image_dims.act, .eps = 1e-5f};
    block_dims cd = sd;
    cd.causal = false;
    m->coca.dims = (decoder_dims){.self = sd, .cross = cd, .Tk = m->image_dims.T, .V = t->vocab_size,
                                  .layers = mc->layers};
}

static int blocks(const clip_model *m) { return m->cfg.multimodal.layers; }

static vlp_err bind_views(clip_model *m, block_params *b, bool with_grads, vlp_error *err) {
    int L = m->cfg.multimodal.layers;
    m->coca.cross_views = calloc(2 * (size_t)L, sizeof *m->coca.cross_views);
    VLP_CHECK_ALLOC(m->coca.cross_views, err, 2 * (size_t)L * sizeof *m->coca.cross_views);
    m->views.dec.self = b, m->views.dec.cross = m->coca.cross_views;
    if (with_grads) m->grad_views.dec.self = b + L, m->grad_views.dec.cross = m->coca.cross_views + L;
    return VLP_OK;
}

/* open_clip's order: resblocks, then each cross_attn block's ln_1, attn,
 * ln_1_kv, ln_2, mlp, then ln_final and text_projection */
static void layout(param_layout *L) {
    clip_model *m = L->m;
    const clip_multimodal_cfg *mc = &m->cfg.multimodal;
    decoder_views *dw = &m->views.dec, *dg = &m->grad_views.dec;
    bool g = layout_with_grads(L), bind = layout_binding(L);
    float *unused;
    layout_reg_blocks(L, "text_decoder.", mc->layers, &m->coca.dims.self, dw->self, g ? dg->self : NULL);
    layout_reg_cross_blocks(L, "text_decoder.", mc->layers, &m->coca.dims.cross, dw->cross, g ? dg->cross : NULL);
    layout_reg(L, "text_decoder.ln_final.weight", 1, mc->width, 0, bind ? &dw->ln_final_w : &unused,
               g ? &dg->ln_final_w : NULL);
    layout_reg(L, "text_decoder.ln_final.bias", 1, mc->width, 0, bind ? &dw->ln_final_b : &unused,
               g ? &dg->ln_final_b : NULL);
    layout_reg(L, "text_decoder.text_projection", 2, mc->width, m->cfg.text.vocab_size,
               bind ? &dw->text_projection : &unused, g ? &dg->text_projection : NULL);
}

/* MultimodalTransformer.init_parameters: the text tower's normal draws for
 * both kinds of block, text_projection N(0, width^-½) */
static void init_weights(clip_model *m, rng64 *r) {
    const clip_multimodal_cfg *mc = &m->cfg.multimodal;
    decoder_views *dw = &m->views.dec;
    for (int l = 0; l < mc->layers; l++) {
        clip_init_block(r, &dw->self[l], &m->coca.dims.self, true, mc->layers);
        clip_init_block(r, &dw->cross[l].base, &m->coca.dims.cross, true, mc->layers);
        init_const(dw->cross[l].ln_1_kv_w, mc->width, 1.0f);
        init_const(dw->cross[l].ln_1_kv_b, mc->width, 0.0f);
    }
    init_const(dw->ln_final_w, mc->width, 1.0f), init_const(dw->ln_final_b, mc->width, 0.0f);
    init_normal(r, dw->text_projection, (size_t)mc->width * m->cfg.text.vocab_size,
                1.0f / sqrtf((float)mc->width));
}

static bool reads_image_tokens(const clip_model *m) { return true; }

static vlp_err reserve(clip_model *m, vlp_error *err) {
    return decoder_acts_alloc(&m->coca.acts, m->coca.dims.layers, err);
}

static size_t bind(clip_model *m, arena *a, int B) {
    int E = m->cfg.embed_dim;
    size_t n = decoder_acts_bind(&m->coca.acts, NULL, &m->coca.dims, B);
    float *dec = arena_take(a, n);
    if (a->base) decoder_acts_bind(&m->coca.acts, dec, &m->coca.dims, B);
    m->coca.dimg = arena_take(a, (size_t)B * m->image_dims.T * E);
    m->coca.dtxt = arena_take(a, (size_t)B * m->text_dims.T * m->text_dims.C);
    return decoder_scratch_floats(&m->coca.dims, B);
}

static void free_head(clip_model *m) {
    free(m->coca.cross_views);
    decoder_acts_free(&m->coca.acts);
}

const clip_head head_text_decoder = {
    .name = "text_decoder", .part = CLIP_PART_TEXT_DECODER, .present = present, .set_dims = set_dims,
    .blocks = blocks, .bind_views = bind_views, .layout = layout, .init_weights = init_weights,
    .reads_image_tokens = reads_image_tokens, .reserve = reserve, .bind = bind, .free = free_head};

/* ---- its forward and backward ------------------------------------------------------------------ */

vlp_err clip_caption_forward(clip_model *m, bool with_image, int B, vlp_error *err) {
    VLP_CHECK_ARG(m->coca.on, err, "the model has no caption decoder (config multimodal_cfg)");
    VLP_CHECK_ARG(!m->image_prompts.n && !m->text_prompts.n, err, "the caption decoder does not read prompted towers");
    VLP_CHECK_ARG(B > 0 && B <= m->batch, err, "batch %d exceeds the reserved %d", B, m->batch);
    VLP_CHECK_ARG(!with_image || m->mae.nkeep == m->image_dims.T - 1, err,
                  "CoCa's decoder reads every image token: the last image forward was masked");
    decoder_dims d = m->coca.dims;
    d.self.mm = d.cross.mm = &m->mm;
    return decoder_forward(&m->coca.acts, m->text_acts.xs[m->cfg.text.layers],
                           with_image ? m->image_acts.tok_feat : NULL, &m->views.dec, &d, B, err);
}

void clip_caption_backward(clip_model *m, const float *dlogits, int B) {
    decoder_dims d = m->coca.dims;
    d.self.mm = d.cross.mm = &m->mm;
    memset(m->coca.dimg, 0, sizeof(float) * (size_t)B * m->image_dims.T * m->cfg.embed_dim);
    memset(m->coca.dtxt, 0, sizeof(float) * (size_t)B * m->text_dims.T * m->text_dims.C);
    decoder_backward(m->coca.dtxt, m->coca.dimg, &m->grad_views.dec, dlogits, &m->coca.acts, &m->views.dec, &d,
                     m->scratch, B);
}
