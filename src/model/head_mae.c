/* MAE's pixel decoder (mae_decoder.*, vlp's names: open_clip has no MAE):
 * it reads the projected tokens of a masked image forward and predicts every
 * patch's pixels. */
#include "model/clip_head.h"

#include <stdlib.h>
#include <string.h>

static bool present(const clip_config *cfg) { return cfg->mae.layers > 0; }

static void set_dims(clip_model *m) {
    const clip_mae_cfg *ac = &m->cfg.mae;
    const clip_vision_cfg *v = &m->cfg.vision;
    int grid = v->image_size / v->patch_size;
    m->mae.on = true;
    block_dims bd = {.T = m->image_dims.T, .C = ac->width, .NH = ac->heads, .hidden = ac->mlp_width,
                     .causal = false, .act = m->image_dims.act, .eps = 1e-5f};
    m->mae.dims = (mae_dims){.blk = bd, .NP = grid * grid, .E = m->cfg.embed_dim,
                             .K = 3 * v->patch_size * v->patch_size, .layers = ac->layers};
}

static int blocks(const clip_model *m) { return m->cfg.mae.layers; }

static vlp_err bind_views(clip_model *m, block_params *b, bool with_grads, vlp_error *err) {
    m->views.mae.blocks = b;
    if (with_grads) m->grad_views.mae.blocks = b + m->cfg.mae.layers;
    return VLP_OK;
}

static void layout(param_layout *L) {
    clip_model *m = L->m;
    const mae_dims *d = &m->mae.dims;
    mae_views *w = &m->views.mae, *gv = &m->grad_views.mae;
    bool g = layout_with_grads(L), bind = layout_binding(L);
    float *unused;
    int C = d->blk.C;
#define M_G(field) bind ? &w->field : &unused, g ? &gv->field : NULL
    layout_reg(L, "mae_decoder.embed.weight", 2, C, d->E, M_G(embed_w));
    layout_reg(L, "mae_decoder.embed.bias", 1, C, 0, M_G(embed_b));
    layout_reg_embedding(L, "mae_decoder.mask_token", 1, C, 0, M_G(mask_token));
    layout_reg_embedding(L, "mae_decoder.positional_embedding", 2, d->blk.T, C, M_G(pos));
    layout_reg_blocks(L, "mae_decoder.", d->layers, &d->blk, w->blocks, g ? gv->blocks : NULL);
    layout_reg(L, "mae_decoder.ln.weight", 1, C, 0, M_G(ln_w));
    layout_reg(L, "mae_decoder.ln.bias", 1, C, 0, M_G(ln_b));
    layout_reg(L, "mae_decoder.pred.weight", 2, d->K, C, M_G(pred_w));
    layout_reg(L, "mae_decoder.pred.bias", 1, d->K, 0, M_G(pred_b));
#undef M_G
}

static void init_weights(clip_model *m, rng64 *r) {
    mae_init_weights(&m->views.mae, &m->mae.dims, rng64_u64(r));
}

/* training reads the masked forward's tokens; an inference model has no decoder to run */
static bool reads_image_tokens(const clip_model *m) { return !m->inference; }

static void free_acts(clip_model *m) {
    free(m->mae.acts.xs), free(m->mae.acts.blocks);
    memset(&m->mae.acts, 0, sizeof m->mae.acts);
}

static vlp_err reserve(clip_model *m, vlp_error *err) {
    if (m->inference) return VLP_OK;
    int Lm = m->mae.dims.layers;
    free_acts(m);
    m->mae.acts = (mae_acts){.xs = calloc((size_t)Lm + 1, sizeof(float *)),
                             .blocks = calloc((size_t)Lm, sizeof(block_acts))};
    VLP_CHECK(m->mae.acts.xs && m->mae.acts.blocks, err, VLP_ERR_NOMEM, "could not allocate MAE's activation tables");
    return VLP_OK;
}

static size_t bind(clip_model *m, arena *a, int B) {
    if (m->inference) return 0;
    int E = m->cfg.embed_dim, NP = m->image_dims.T - 1;
    size_t n = mae_acts_bind(&m->mae.acts, NULL, &m->mae.dims, B);
    float *acts = arena_take(a, n);
    if (a->base) mae_acts_bind(&m->mae.acts, acts, &m->mae.dims, B);
    m->mae.keep = (int32_t *)arena_take(a, (size_t)B * NP);
    m->mae.dimg = arena_take(a, (size_t)B * m->image_dims.T * E);
    return mae_scratch_floats(&m->mae.dims, B);
}

const clip_head head_mae_decoder = {
    .name = "mae_decoder", .part = CLIP_PART_MAE_DECODER, .present = present, .set_dims = set_dims,
    .blocks = blocks, .bind_views = bind_views, .layout = layout, .init_weights = init_weights,
    .reads_image_tokens = reads_image_tokens, .reserve = reserve, .bind = bind, .free = free_acts};

/* ---- its forward and backward ------------------------------------------------------------------ */

vlp_err clip_mae_forward(clip_model *m, int B, vlp_error *err) {
    VLP_CHECK_ARG(m->mae.on && !m->inference, err,
                  "the model has no MAE decoder (config mae_cfg) or is for inference only");
    int NP = m->mae.dims.NP, NK = m->mae.nkeep;
    VLP_CHECK_ARG(NK < NP, err, "MAE needs a masked image forward first (it kept all %d patches)", NP);
    mae_dims d = m->mae.dims;
    d.blk.mm = &m->mm;
    return mae_forward(&m->mae.acts, m->image_acts.tok_feat, m->mae.keep, NK, &m->views.mae, &d, B, err);
}

void clip_mae_backward(clip_model *m, const float *dpred, int B) {
    mae_dims d = m->mae.dims;
    d.blk.mm = &m->mm;
    memset(m->mae.dimg, 0, sizeof(float) * (size_t)B * (1 + m->mae.nkeep) * m->cfg.embed_dim);
    mae_backward(m->mae.dimg, &m->grad_views.mae, dpred, &m->mae.acts, &m->views.mae, &d, m->scratch, B);
}
