/* The fusion encoder of ALBEF/BLIP (fusion_cfg; text_fusion.*): layers of
 * bidirectional self-attention and cross-attention to the image tower's
 * projected tokens (each with its MLP, vlp's block structure), a final LN,
 * and two heads on its output: image-text matching (2-way linear on the
 * fused end-of-text token) and masked language modelling (tied to the token
 * embedding, with its own bias); the text tower reads id vocab_size as its
 * [MASK] (text_fusion.mask_token). It reads pairs of rows of the last text and
 * image forwards, gathered into its own input, so that a batch's negatives
 * (another row's image or text) need no second tower pass; its backward
 * scatters the rows' gradients back, accumulated, for the towers' backward. */
#include "model/clip_head.h"
#include "model/init.h"
#include "ops/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool present(const clip_config *cfg) { return cfg->fusion.layers > 0; }

static void set_dims(clip_model *m) {
    const clip_fusion_cfg *fc = &m->cfg.fusion;
    const clip_text_cfg *t = &m->cfg.text;
    m->fusion.on = true;
    block_dims d = {.T = t->context_length, .C = fc->width, .NH = fc->heads, .hidden = fc->mlp_width,
                    .causal = false, .act = m->image_dims.act, .eps = 1e-5f};
    m->fusion.dims = (decoder_dims){.self = d, .cross = d, .Tk = m->image_dims.T, .V = 0, .layers = fc->layers};
}

static int blocks(const clip_model *m) { return m->cfg.fusion.layers; }

static vlp_err bind_views(clip_model *m, block_params *b, bool with_grads, vlp_error *err) {
    int L = m->cfg.fusion.layers;
    m->fusion.cross_views = calloc(2 * (size_t)L, sizeof *m->fusion.cross_views);
    VLP_CHECK_ALLOC(m->fusion.cross_views, err, 2 * (size_t)L * sizeof *m->fusion.cross_views);
    m->views.fus.dec.self = b, m->views.fus.dec.cross = m->fusion.cross_views;
    if (with_grads) m->grad_views.fus.dec.self = b + L, m->grad_views.fus.dec.cross = m->fusion.cross_views + L;
    return VLP_OK;
}

/* text_fusion.resblocks.*, then each cross_attn block's ln_1, attn, ln_1_kv,
 * ln_2, mlp (CoCa's decoder's order), ln_final, itm_head, mlm_bias */
static void layout(param_layout *L) {
    clip_model *m = L->m;
    const clip_fusion_cfg *fc = &m->cfg.fusion;
    fusion_views *fw = &m->views.fus, *fg = &m->grad_views.fus;
    bool g = layout_with_grads(L), bind = layout_binding(L);
    float *unused;
    layout_reg_blocks(L, "text_fusion.", fc->layers, &m->fusion.dims.self, fw->dec.self, g ? fg->dec.self : NULL);
    layout_reg_cross_blocks(L, "text_fusion.", fc->layers, &m->fusion.dims.cross, fw->dec.cross,
                            g ? fg->dec.cross : NULL);
    layout_reg(L, "text_fusion.ln_final.weight", 1, fc->width, 0, bind ? &fw->dec.ln_final_w : &unused,
               g ? &fg->dec.ln_final_w : NULL);
    layout_reg(L, "text_fusion.ln_final.bias", 1, fc->width, 0, bind ? &fw->dec.ln_final_b : &unused,
               g ? &fg->dec.ln_final_b : NULL);
    layout_reg(L, "text_fusion.itm_head.weight", 2, 2, fc->width, bind ? &fw->itm_w : &unused, g ? &fg->itm_w : NULL);
    layout_reg(L, "text_fusion.itm_head.bias", 1, 2, 0, bind ? &fw->itm_b : &unused, g ? &fg->itm_b : NULL);
    layout_reg(L, "text_fusion.mlm_bias", 1, m->cfg.text.vocab_size, 0, bind ? &fw->mlm_bias : &unused,
               g ? &fg->mlm_bias : NULL);
    layout_reg_embedding(L, "text_fusion.mask_token", 1, m->cfg.text.width, 0, bind ? &fw->mask_token : &unused,
                         g ? &fg->mask_token : NULL);
}

/* the blocks as the text tower's (open_clip's normal draws); the ITM head
 * N(0, 0.02) as BERT's heads, the MLM bias 0, the [MASK] embedding as the
 * token embedding's draws (open_clip: N(0, 0.02)) */
static void init_weights(clip_model *m, rng64 *r) {
    const clip_fusion_cfg *fc = &m->cfg.fusion;
    fusion_views *fw = &m->views.fus;
    for (int l = 0; l < fc->layers; l++) {
        clip_init_block(r, &fw->dec.self[l], &m->fusion.dims.self, true, fc->layers);
        clip_init_block(r, &fw->dec.cross[l].base, &m->fusion.dims.cross, true, fc->layers);
        init_const(fw->dec.cross[l].ln_1_kv_w, fc->width, 1.0f);
        init_const(fw->dec.cross[l].ln_1_kv_b, fc->width, 0.0f);
    }
    init_const(fw->dec.ln_final_w, fc->width, 1.0f), init_const(fw->dec.ln_final_b, fc->width, 0.0f);
    init_normal(r, fw->itm_w, 2 * (size_t)fc->width, 0.02f);
    init_const(fw->itm_b, 2, 0.0f);
    init_const(fw->mlm_bias, (size_t)m->cfg.text.vocab_size, 0.0f);
    init_normal(r, fw->mask_token, (size_t)m->cfg.text.width, 0.02f);
}

static bool reads_image_tokens(const clip_model *m) { return true; }

static vlp_err reserve(clip_model *m, vlp_error *err) {
    return decoder_acts_alloc(&m->fusion.acts, m->fusion.dims.layers, err);
}

static size_t bind(clip_model *m, arena *a, int B) {
    size_t T = (size_t)m->text_dims.T, C = (size_t)m->text_dims.C, Tk = (size_t)m->image_dims.T;
    size_t E = (size_t)m->cfg.embed_dim, g = m->inference ? 0 : 1; /* the backward's buffers: training only */
    size_t n = decoder_acts_bind(&m->fusion.acts, NULL, &m->fusion.dims, B);
    float *acts = arena_take(a, n);
    if (a->base) decoder_acts_bind(&m->fusion.acts, acts, &m->fusion.dims, B);
    m->fusion.text_row = (int32_t *)arena_take(a, (size_t)B); // each pair's rows and end-of-text position
    m->fusion.image_row = (int32_t *)arena_take(a, (size_t)B);
    m->fusion.pool = (int32_t *)arena_take(a, (size_t)B);
    m->fusion.txt = arena_take(a, (size_t)B * T * C);   // the pairs' text rows
    m->fusion.img = arena_take(a, (size_t)B * Tk * E);  // the pairs' image rows
    m->fusion.mlm_rows = arena_take(a, (size_t)B * T * C); // the fused tokens the MLM head read
    m->fusion.dlnf = arena_take(a, g * B * T * C);         // the heads' gradient for ln_final's output
    m->fusion.dpair_txt = arena_take(a, g * B * T * C);    // the pairs' gradients
    m->fusion.dpair_img = arena_take(a, g * B * Tk * E);
    m->fusion.dtxt = arena_take(a, g * B * T * C);         // the towers' rows, accumulated
    m->fusion.dimg = arena_take(a, g * B * Tk * E);
    return g ? decoder_scratch_floats(&m->fusion.dims, B) : 0;
}

static void free_head(clip_model *m) {
    free(m->fusion.cross_views);
    decoder_acts_free(&m->fusion.acts);
}

const clip_head head_text_fusion = {
    .name = "text_fusion", .part = CLIP_PART_FUSION, .present = present, .set_dims = set_dims,
    .blocks = blocks, .bind_views = bind_views, .layout = layout, .init_weights = init_weights,
    .reads_image_tokens = reads_image_tokens, .reserve = reserve, .bind = bind, .free = free_head};

/* ---- its forward and backward ------------------------------------------------------------------ */

/* the pairs gathered into the encoder's input, then its layers */
static vlp_err fusion_run(clip_model *m, const float *txt, const int32_t *text_row, const int32_t *pool,
                          const float *img, const int32_t *image_row, int P, vlp_error *err) {
    size_t T = (size_t)m->text_dims.T, C = (size_t)m->text_dims.C, Tk = (size_t)m->image_dims.T;
    size_t E = (size_t)m->cfg.embed_dim;
    for (int p = 0; p < P; p++) {
        memcpy(m->fusion.txt + (size_t)p * T * C, txt + (size_t)text_row[p] * T * C, sizeof(float) * T * C);
        memcpy(m->fusion.img + (size_t)p * Tk * E, img + (size_t)image_row[p] * Tk * E, sizeof(float) * Tk * E);
        m->fusion.text_row[p] = text_row[p], m->fusion.image_row[p] = image_row[p];
        m->fusion.pool[p] = pool[text_row[p]];
    }
    m->fusion.pairs = P, m->fusion.from_kept_rows = false;
    if (!m->inference) /* the heads' backwards add to it */
        memset(m->fusion.dlnf, 0, sizeof(float) * (size_t)P * T * C);
    decoder_dims d = m->fusion.dims;
    d.self.mm = d.cross.mm = &m->mm;
    return decoder_forward(&m->fusion.acts, m->fusion.txt, m->fusion.img, &m->views.fus.dec, &d, P, err);
}

static vlp_err fusion_usable(const clip_model *m, int P, vlp_error *err) {
    VLP_CHECK_ARG(m->fusion.on, err, "the model has no fusion encoder (config fusion_cfg)");
    VLP_CHECK_ARG(!m->image_prompts.n && !m->text_prompts.n, err, "the fusion encoder does not read prompted towers");
    VLP_CHECK_ARG(P > 0 && P <= m->batch, err, "%d pairs exceed the reserved batch of %d", P, m->batch);
    return VLP_OK;
}

vlp_err clip_fusion_forward(clip_model *m, const int32_t *text_row, const int32_t *image_row, int P,
                            vlp_error *err) {
    VLP_TRY(fusion_usable(m, P, err));
    VLP_CHECK_ARG(m->mae.nkeep == m->image_dims.T - 1, err,
                  "the fusion encoder reads every image token: the last image forward was masked");
    for (int p = 0; p < P; p++)
        VLP_CHECK_ARG(text_row[p] >= 0 && text_row[p] < m->batch && image_row[p] >= 0 && image_row[p] < m->batch,
                      err, "pair %d: text row %d, image row %d, of a batch of %d", p, text_row[p], image_row[p],
                      m->batch);
    return fusion_run(m, m->text_acts.xs[m->cfg.text.layers], text_row, m->text_acts.pool_index,
                      m->image_acts.tok_feat, image_row, P, err);
}

vlp_err clip_fusion_forward_rows(clip_model *m, const float *txt, const int32_t *pool, int n_txt,
                                 const int32_t *text_row, const float *img, int n_img, const int32_t *image_row,
                                 int P, vlp_error *err) {
    VLP_TRY(fusion_usable(m, P, err));
    for (int p = 0; p < P; p++)
        VLP_CHECK_ARG(text_row[p] >= 0 && text_row[p] < n_txt && image_row[p] >= 0 && image_row[p] < n_img, err,
                      "pair %d: text row %d of %d, image row %d of %d", p, text_row[p], n_txt, image_row[p], n_img);
    vlp_err rc = fusion_run(m, txt, text_row, pool, img, image_row, P, err);
    m->fusion.from_kept_rows = true; /* no tower rows for a backward to reach */
    return rc;
}

void clip_itm_forward(const clip_model *m, float *logits) {
    int P = m->fusion.pairs, C = m->text_dims.C, T = m->text_dims.T;
    const float *w = m->views.fus.itm_w, *b = m->views.fus.itm_b;
    for (int p = 0; p < P; p++) {
        const float *x = m->fusion.acts.lnf + ((size_t)p * T + m->fusion.pool[p]) * C;
        for (int k = 0; k < 2; k++) {
            double s = b[k];
            for (int c = 0; c < C; c++) s += (double)w[k * C + c] * x[c];
            logits[2 * p + k] = (float)s;
        }
    }
}

void clip_itm_backward(clip_model *m, const float *ditm) {
    int P = m->fusion.pairs, C = m->text_dims.C, T = m->text_dims.T;
    const fusion_views *w = &m->views.fus;
    fusion_views *g = &m->grad_views.fus;
    for (int p = 0; p < P; p++) { /* logits = W x_pool + b */
        size_t at = ((size_t)p * T + m->fusion.pool[p]) * C;
        const float *x = m->fusion.acts.lnf + at;
        float *dx = m->fusion.dlnf + at;
        for (int k = 0; k < 2; k++) {
            float d = ditm[2 * p + k];
            g->itm_b[k] += d;
            for (int c = 0; c < C; c++) g->itm_w[k * C + c] += d * x[c], dx[c] += d * w->itm_w[k * C + c];
        }
    }
}

/* the fused tokens at the positions, gathered (M, C) */
static void gather_rows(float *out, const float *lnf, const int32_t *pos, int M, int C) {
    for (int i = 0; i < M; i++) memcpy(out + (size_t)i * C, lnf + (size_t)pos[i] * C, sizeof(float) * C);
}

vlp_err clip_mlm_forward(clip_model *m, const int32_t *pos, int M, float *logits, vlp_error *err) {
    int P = m->fusion.pairs, C = m->text_dims.C, T = m->text_dims.T, V = m->cfg.text.vocab_size;
    VLP_CHECK_ARG(M >= 0 && M <= P * T, err, "%d MLM positions in %d pairs of %d tokens", M, P, T);
    for (int i = 0; i < M; i++)
        VLP_CHECK_ARG(pos[i] >= 0 && pos[i] < P * T, err, "MLM position %d is outside the %d pairs' %d tokens",
                      pos[i], P, P * T);
    float *rows = m->fusion.mlm_rows;
    gather_rows(rows, m->fusion.acts.lnf, pos, M, C);
    /* logits (M, V) = rows (M, C) · token_embedding (V, C)ᵀ + bias */
    for (int i = 0; i < M; i++) memcpy(logits + (size_t)i * V, m->views.fus.mlm_bias, sizeof(float) * V);
    vlp_sgemm(false, true, M, V, C, 1.0f, rows, C, m->views.txt.token_embedding, C, 1.0f, logits, V);
    return VLP_OK;
}

void clip_mlm_backward(clip_model *m, const int32_t *pos, const float *dmlm, int M) {
    int C = m->text_dims.C, V = m->cfg.text.vocab_size;
    float *rows = m->fusion.mlm_rows, *drows = m->fusion.dpair_txt; /* (M, C) each; M ≤ P·T */
    gather_rows(rows, m->fusion.acts.lnf, pos, M, C);
    for (int i = 0; i < M; i++) /* logits = rows · token_embeddingᵀ + bias, the embedding tied */
        for (int v = 0; v < V; v++) m->grad_views.fus.mlm_bias[v] += dmlm[(size_t)i * V + v];
    vlp_sgemm(true, false, V, C, M, 1.0f, dmlm, V, rows, C, 1.0f, m->grad_views.txt.token_embedding, C);
    vlp_sgemm(false, false, M, C, V, 1.0f, dmlm, V, m->views.txt.token_embedding, C, 0.0f, drows, C);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < C; c++) m->fusion.dlnf[(size_t)pos[i] * C + c] += drows[(size_t)i * C + c];
}

void clip_fusion_zero_grads(clip_model *m, bool text, bool image) {
    size_t B = (size_t)m->batch, T = (size_t)m->text_dims.T, C = (size_t)m->text_dims.C;
    if (text) memset(m->fusion.dtxt, 0, sizeof(float) * B * T * C);
    if (image) memset(m->fusion.dimg, 0, sizeof(float) * B * m->image_dims.T * m->cfg.embed_dim);
}

void clip_fusion_backward(clip_model *m) {
    if (m->fusion.from_kept_rows || m->inference) return; /* nothing to train from kept rows (clip.h) */
    int P = m->fusion.pairs, C = m->text_dims.C, T = m->text_dims.T;
    size_t NC = (size_t)P * T * C, Tk = (size_t)m->image_dims.T, E = (size_t)m->cfg.embed_dim;
    decoder_dims d = m->fusion.dims;
    d.self.mm = d.cross.mm = &m->mm;
    memset(m->fusion.dpair_txt, 0, sizeof(float) * NC);
    memset(m->fusion.dpair_img, 0, sizeof(float) * (size_t)P * Tk * E);
    decoder_backward(m->fusion.dpair_txt, m->fusion.dpair_img, &m->grad_views.fus.dec, m->fusion.dlnf,
                     &m->fusion.acts, &m->views.fus.dec, &d, m->scratch, P);
    for (int p = 0; p < P; p++) { /* back to the towers' rows, accumulated */
        float *dt = m->fusion.dtxt + (size_t)m->fusion.text_row[p] * T * C;
        const float *st = m->fusion.dpair_txt + (size_t)p * T * C;
        for (size_t i = 0; i < (size_t)T * C; i++) dt[i] += st[i];
        float *di = m->fusion.dimg + (size_t)m->fusion.image_row[p] * Tk * E;
        const float *si = m->fusion.dpair_img + (size_t)p * Tk * E;
        for (size_t i = 0; i < Tk * E; i++) di[i] += si[i];
    }
}
