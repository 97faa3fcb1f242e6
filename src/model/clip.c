#include "model/clip.h"
#include "model/clip_head.h"
#include "model/arena.h"
#include "core/parallel.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/clip_q8.h"
#include "model/init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- parameter table ------------------------------------------------------------- */

/* The heads a model may carry, in the order their parameters follow the
 * towers' (the checkpoint's order) and their weights are drawn: one line each. */
extern const clip_head head_mae_decoder, head_text_decoder, head_text_fusion;
static const clip_head *const heads[] = {&head_mae_decoder, &head_text_decoder, &head_text_fusion};
#define NHEADS ((int)(sizeof heads / sizeof heads[0]))
#define FOR_PRESENT_HEADS(h, m)                                                                    \
    for (int hi_ = 0; hi_ < NHEADS; hi_++)                                                         \
        for (const clip_head *h = heads[hi_]; h && h->present(&(m)->cfg); h = NULL)

typedef param_layout layout;

/* open_clip's weight-decay rule (its main.py): every parameter decays but
 * those with ndim < 2 or a name containing bn, ln, bias or logit_scale, so
 * token and positional embeddings decay too (adamw_cfg.decay_embeddings
 * exempts them, as vlp did before). */
static bool decays(const char *name, int ndim) {
    return ndim >= 2 && !strstr(name, "bn") && !strstr(name, "ln") && !strstr(name, "bias") &&
           !strstr(name, "logit_scale");
}

static void reg(layout *L, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                int64_t d3, float **wv, float **gv) {
    int64_t dims[4] = {d0, d1, d2, d3};
    size_t numel = 1;
    for (int k = 0; k < ndim; k++) numel *= (size_t)dims[k];
    if (L->bind) {
        clip_param *p = &L->m->params[L->n];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ndim = ndim;
        memcpy(p->shape, dims, sizeof dims);
        p->offset = L->off;
        p->numel = numel;
        p->decay = decays(name, ndim);
        p->part = L->part;
        *wv = L->m->weights + L->off;
        if (gv) *gv = L->m->grads ? L->m->grads + L->off : NULL; /* none for inference */
    }
    L->n++;
    L->off += numel; /* packed: the flat buffer is exactly the state dict's floats */
}

/* an embedding table (token, positional, class, mask token): declared as such */
static void reg_embedding(layout *L, const char *name, int ndim, int64_t d0, int64_t d1,
                          float **wv, float **gv) {
    reg(L, name, ndim, d0, d1, 0, 0, wv, gv);
    if (L->bind) L->m->params[L->n - 1].embedding = true;
}

static void reg_blocks(layout *L, const char *prefix, int layers, const block_dims *d,
                       block_params *w, block_params *g) {
    block_param_spec specs[BLOCK_NPARAMS];
    block_param_specs(d, specs);
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < BLOCK_NPARAMS; i++) {
            char name[VLP_PARAM_NAME_MAX];
            snprintf(name, sizeof name, "%sresblocks.%d.%s", prefix, l, specs[i].name);
            reg(L, name, specs[i].ndim, specs[i].dims[0], specs[i].dims[1], 0, 0,
                L->bind ? block_params_slot(&w[l], i) : NULL,
                L->bind && g ? block_params_slot(&g[l], i) : NULL);
        }
}

void layout_reg(param_layout *L, const char *name, int ndim, int64_t d0, int64_t d1, float **wv, float **gv) {
    reg(L, name, ndim, d0, d1, 0, 0, wv, gv);
}

void layout_reg_embedding(param_layout *L, const char *name, int ndim, int64_t d0, int64_t d1, float **wv,
                          float **gv) {
    reg_embedding(L, name, ndim, d0, d1, wv, gv);
}

void layout_reg_blocks(param_layout *L, const char *prefix, int layers, const block_dims *d, block_params *w,
                       block_params *g) {
    reg_blocks(L, prefix, layers, d, w, g);
}

void layout_reg_cross_blocks(param_layout *L, const char *prefix, int layers, const block_dims *d, cross_params *w,
                             cross_params *g) {
    bool bind = layout_binding(L);
    float *unused;
    int C = d->C;
    block_param_spec specs[BLOCK_NPARAMS];
    block_param_specs(d, specs);
    for (int l = 0; l < layers; l++)
        for (int i = 0; i <= BLOCK_NPARAMS; i++) {
            char name[VLP_PARAM_NAME_MAX];
            if (i == 6) /* open_clip's order: ln_1, attn, then ln_1_kv, ln_2, mlp */
                for (int k = 0; k < 2; k++) {
                    snprintf(name, sizeof name, "%scross_attn.%d.ln_1_kv.%s", prefix, l, k ? "bias" : "weight");
                    float **wv = bind ? (k ? &w[l].ln_1_kv_b : &w[l].ln_1_kv_w) : &unused;
                    float **gv = g ? (k ? &g[l].ln_1_kv_b : &g[l].ln_1_kv_w) : NULL;
                    layout_reg(L, name, 1, C, 0, wv, gv);
                }
            if (i == BLOCK_NPARAMS) break;
            snprintf(name, sizeof name, "%scross_attn.%d.%s", prefix, l, specs[i].name);
            layout_reg(L, name, specs[i].ndim, specs[i].dims[0], specs[i].dims[1],
                       bind ? block_params_slot(&w[l].base, i) : &unused, g ? block_params_slot(&g[l].base, i) : NULL);
        }
}

static void run_layout(layout *L) {
    clip_model *m = L->m;
    const clip_config *c = &m->cfg;
    const clip_vision_cfg *v = &c->vision;
    const clip_text_cfg *t = &c->text;
    int grid = v->image_size / v->patch_size, E = c->embed_dim;
    vision_views *vw = &m->views.vis, *vg = &m->grad_views.vis;
    text_views *tw = &m->views.txt, *tg = &m->grad_views.txt;
    float *unused;
#define W_G(field) L->bind ? &vw->field : &unused, L->bind ? &vg->field : &unused
#define T_G(field) L->bind ? &tw->field : &unused, L->bind ? &tg->field : &unused
    /* the order of open_clip's CLIP.state_dict() */
    L->part = CLIP_PART_TEXT;
    reg_embedding(L, "positional_embedding", 2, t->context_length, t->width, T_G(positional_embedding));
    L->part = CLIP_PART_TEXT_POOL;
    reg(L, "text_projection", 2, t->width, E, 0, 0, T_G(text_projection));
    L->part = CLIP_PART_LOGIT_SCALE;
    reg(L, "logit_scale", 0, 0, 0, 0, 0, L->bind ? &m->views.logit_scale : &unused,
        L->bind ? &m->grad_views.logit_scale : &unused);
    L->part = CLIP_PART_LOGIT_BIAS;
    if (c->has_logit_bias)
        reg(L, "logit_bias", 0, 0, 0, 0, 0, L->bind ? &m->views.logit_bias : &unused,
            L->bind ? &m->grad_views.logit_bias : &unused);
    L->part = CLIP_PART_IMAGE;
    reg_embedding(L, "visual.class_embedding", 1, v->width, 0, W_G(class_embedding));
    reg_embedding(L, "visual.positional_embedding", 2, grid * grid + 1, v->width,
                  W_G(positional_embedding));
    reg(L, "visual.proj", 2, v->width, E, 0, 0, W_G(proj));
    reg(L, "visual.conv1.weight", 4, v->width, 3, v->patch_size, v->patch_size, W_G(conv1));
    reg(L, "visual.ln_pre.weight", 1, v->width, 0, 0, 0, W_G(ln_pre_w));
    reg(L, "visual.ln_pre.bias", 1, v->width, 0, 0, 0, W_G(ln_pre_b));
    reg_blocks(L, "visual.transformer.", v->layers, &m->image_dims, vw->blocks, vg->blocks);
    reg(L, "visual.ln_post.weight", 1, v->width, 0, 0, 0, W_G(ln_post_w));
    reg(L, "visual.ln_post.bias", 1, v->width, 0, 0, 0, W_G(ln_post_b));
    L->part = CLIP_PART_TEXT;
    reg_blocks(L, "transformer.", t->layers, &m->text_dims, tw->blocks, tg->blocks);
    reg_embedding(L, "token_embedding.weight", 2, t->vocab_size, t->width, T_G(token_embedding));
    L->part = CLIP_PART_TEXT_POOL;
    reg(L, "ln_final.weight", 1, t->width, 0, 0, 0, T_G(ln_final_w));
    reg(L, "ln_final.bias", 1, t->width, 0, 0, 0, T_G(ln_final_b));
#undef W_G
#undef T_G
    FOR_PRESENT_HEADS(h, m) {
        L->part = h->part;
        h->layout(L);
    }
}

const char *clip_part_name(unsigned part) {
    static const char *const names[CLIP_PARTS_COUNT] = {
#define CLIP_PART_WORDS(name, words) words,
        CLIP_PARTS(CLIP_PART_WORDS)
#undef CLIP_PART_WORDS
    };
    for (int i = 0; i < CLIP_PARTS_COUNT; i++)
        if (part == 1u << i) return names[i];
    return "?";
}

/* the towers' and heads' dimensions of a config (no allocation) */
static void set_dims(clip_model *m, const clip_config *cfg) {
    m->cfg = *cfg;
    const clip_vision_cfg *v = &cfg->vision;
    const clip_text_cfg *t = &cfg->text;
    int grid = v->image_size / v->patch_size;
    m->image_dims = (block_dims){.T = grid * grid + 1, .C = v->width, .NH = v->heads,
                            .hidden = v->mlp_width, .causal = false,
                            .act = cfg->quick_gelu ? VLP_ACT_QUICKGELU : VLP_ACT_GELU, .eps = 1e-5f};
    m->text_dims = (block_dims){.T = t->context_length, .C = t->width, .NH = t->heads,
                            .hidden = t->mlp_width, .causal = true, .act = m->image_dims.act,
                            .eps = 1e-5f};
    FOR_PRESENT_HEADS(h, m) if (h->set_dims) h->set_dims(m);
}

size_t clip_config_param_count(const clip_config *cfg) {
    clip_model m;
    memset(&m, 0, sizeof m);
    set_dims(&m, cfg);
    layout L = {.m = &m};
    run_layout(&L);
    return L.off;
}

/* with_grads false: an inference model, no gradient buffer (never touched,
 * so it costs neither time nor resident memory) */
static vlp_err init_model(clip_model *m, const clip_config *cfg, bool with_grads, vlp_error *err) {
    memset(m, 0, sizeof *m);
    VLP_TRY(clip_config_validate(cfg, "config", err));
    set_dims(m, cfg);
    m->inference = !with_grads;
    const clip_vision_cfg *v = &cfg->vision;
    const clip_text_cfg *t = &cfg->text;
    layout L = {.m = m};
    run_layout(&L);
    m->nparams = L.n;
    m->nfloats = L.off;
    size_t bytes = arena_round_up(m->nfloats) * sizeof(float);
    m->params = calloc((size_t)m->nparams, sizeof *m->params);
    m->weights = aligned_alloc(64, bytes);
    m->grads = with_grads ? aligned_alloc(64, bytes) : NULL;
    int nblocks = 2 * (v->layers + t->layers);
    FOR_PRESENT_HEADS(h, m) nblocks += h->blocks ? 2 * h->blocks(m) : 0;
    m->block_views = calloc((size_t)nblocks, sizeof *m->block_views);
    if (!m->params || !m->weights || (with_grads && !m->grads) || !m->block_views) {
        clip_free(m);
        VLP_FAIL(err, VLP_ERR_NOMEM, "could not allocate %zu parameters (%.1f MiB%s)",
                 m->nfloats, bytes / 1048576.0, with_grads ? ", twice" : "");
    }
    memset(m->weights, 0, bytes);
    if (with_grads) memset(m->grads, 0, bytes);
    m->views.vis.blocks = m->block_views;
    m->views.txt.blocks = m->views.vis.blocks + v->layers;
    if (with_grads) {
        m->grad_views.vis.blocks = m->views.txt.blocks + t->layers;
        m->grad_views.txt.blocks = m->grad_views.vis.blocks + v->layers;
    }
    block_params *next = m->block_views + 2 * (v->layers + t->layers);
    FOR_PRESENT_HEADS(h, m) {
        vlp_err rc = h->bind_views ? h->bind_views(m, next, with_grads, err) : VLP_OK;
        if (rc != VLP_OK) return clip_free(m), rc;
        next += h->blocks ? 2 * h->blocks(m) : 0;
    }
    layout B = {.m = m, .bind = true};
    run_layout(&B);
    return VLP_OK;
}

vlp_err clip_init(clip_model *m, const clip_config *cfg, vlp_error *err) {
    return init_model(m, cfg, true, err);
}

vlp_err clip_init_inference(clip_model *m, const clip_config *cfg, vlp_error *err) {
    return init_model(m, cfg, false, err);
}

void clip_free(clip_model *m) {
    if (!m) return;
    clip_q8_free(m); /* first: it clears the block views' pointers at it */
    free(m->params);
    free(m->weights);
    free(m->grads);
    free(m->block_views);
    FOR_PRESENT_HEADS(h, m) if (h->free) h->free(m);
    free(m->image_acts.xs);
    free(m->image_acts.blocks);
    free(m->text_acts.xs);
    free(m->text_acts.blocks);
    free(m->arena);
    free(m->mm.workspace);
    memset(m, 0, sizeof *m);
}

/* bf16 training keeps each block's GEMM inputs in bf16 for the backward
 * (bind_tower's keep16): not inference, not checkpointing (one set of
 * activations, recomputed) */
static bool keeps16(const clip_model *m) {
    return !m->inference && !m->checkpoint && m->mm.precision == VLP_PRECISION_BF16;
}

vlp_err clip_set_precision(clip_model *m, matmul_precision precision, int threads, vlp_error *err) {
    VLP_CHECK_ARG(precision == VLP_PRECISION_FP32 || precision == VLP_PRECISION_BF16, err,
                  "unknown matmul precision %d", (int)precision);
    VLP_CHECK_ARG(threads >= 1, err, "threads must be positive, got %d", threads);
    free(m->mm.workspace);
    m->mm = (matmul_cfg){.precision = VLP_PRECISION_FP32};
    size_t bytes = 0;
    if (precision == VLP_PRECISION_BF16) {
        /* a slot for every thread a later vlp_set_threads may start (one per
         * core): a thread without one would multiply in fp32 */
        if (threads < omp_get_num_procs()) threads = omp_get_num_procs();
        bytes = gemm_bf16_workspace_bytes(threads);
        void *ws = malloc(bytes);
        if (ws) m->mm = (matmul_cfg){.precision = precision, .workspace = ws, .threads = threads};
    }
    /* the blocks of a reserved model hold what its precision needs (bind_all:
     * kept bf16 activations or not), also when the workspace could not be
     * had and it stays fp32: bound anew, for the same batch, when that
     * changes. The activations are lost: set the precision before a forward. */
    if (m->batch && m->kept16 != keeps16(m)) {
        int B = m->batch;
        m->batch = 0;
        VLP_TRY(clip_reserve(m, B, err));
    }
    VLP_CHECK(m->mm.precision == precision, err, VLP_ERR_NOMEM,
              "could not allocate the bf16 GEMM workspace (%.1f MiB): the model stays fp32",
              bytes / 1048576.0);
    return VLP_OK;
}

const clip_param *clip_param_find(const clip_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

/* ---- initialisation, as open_clip ------------------------------------------------------ */

void clip_init_block(rng64 *r, block_params *p, const block_dims *d, bool text, int layers) {
    int C = d->C, H = d->hidden;
    init_const(p->ln_1_w, C, 1.0f), init_const(p->ln_1_b, C, 0.0f);
    init_const(p->ln_2_w, C, 1.0f), init_const(p->ln_2_b, C, 0.0f);
    /* nn.MultiheadAttention: xavier-uniform in_proj, zero in_proj and out_proj biases */
    init_uniform(r, p->in_proj_w, (size_t)3 * C * C, sqrtf(6.0f / (float)(C + 3 * C)));
    init_const(p->in_proj_b, 3 * C, 0.0f);
    init_linear(r, p->out_proj_w, NULL, C, C);
    init_const(p->out_proj_b, C, 0.0f);
    init_linear(r, p->c_fc_w, p->c_fc_b, H, C);
    init_linear(r, p->c_proj_w, p->c_proj_b, C, H);
    if (text) { /* CLIP.init_parameters re-draws the text weights */
        float attn_std = 1.0f / sqrtf((float)C);
        float proj_std = attn_std / sqrtf(2.0f * layers);
        float fc_std = 1.0f / sqrtf(2.0f * C);
        init_normal(r, p->in_proj_w, (size_t)3 * C * C, attn_std);
        init_normal(r, p->out_proj_w, (size_t)C * C, proj_std);
        init_normal(r, p->c_fc_w, (size_t)H * C, fc_std);
        init_normal(r, p->c_proj_w, (size_t)C * H, proj_std);
    }
}

void clip_init_weights(clip_model *m, uint64_t seed) {
    rng64 r = {seed};
    const clip_vision_cfg *v = &m->cfg.vision;
    const clip_text_cfg *t = &m->cfg.text;
    vision_views *vw = &m->views.vis;
    text_views *tw = &m->views.txt;
    int E = m->cfg.embed_dim, Tv = m->image_dims.T, K = 3 * v->patch_size * v->patch_size;
    float vscale = 1.0f / sqrtf((float)v->width);
    init_uniform(&r, vw->conv1, (size_t)v->width * K, 1.0f / sqrtf((float)K));
    init_normal(&r, vw->class_embedding, v->width, vscale);
    init_normal(&r, vw->positional_embedding, (size_t)Tv * v->width, vscale);
    init_const(vw->ln_pre_w, v->width, 1.0f), init_const(vw->ln_pre_b, v->width, 0.0f);
    for (int l = 0; l < v->layers; l++) clip_init_block(&r, &vw->blocks[l], &m->image_dims, false, v->layers);
    init_const(vw->ln_post_w, v->width, 1.0f), init_const(vw->ln_post_b, v->width, 0.0f);
    init_normal(&r, vw->proj, (size_t)v->width * E, vscale);

    init_normal(&r, tw->token_embedding, (size_t)t->vocab_size * t->width, 0.02f);
    init_normal(&r, tw->positional_embedding, (size_t)t->context_length * t->width, 0.01f);
    for (int l = 0; l < t->layers; l++) clip_init_block(&r, &tw->blocks[l], &m->text_dims, true, t->layers);
    init_const(tw->ln_final_w, t->width, 1.0f), init_const(tw->ln_final_b, t->width, 0.0f);
    init_normal(&r, tw->text_projection, (size_t)t->width * E, 1.0f / sqrtf((float)t->width));
    *m->views.logit_scale = clip_config_logit_scale_init(&m->cfg);
    if (m->views.logit_bias) *m->views.logit_bias = m->cfg.init_logit_bias;

    FOR_PRESENT_HEADS(h, m) if (h->init_weights) h->init_weights(m, &r);
}

/* ---- activation arena ------------------------------------------------------------------- */

/* Every image token through the head: FILIP's loss and the heads that read them (CoCa's decoder, MAE's). */
static bool image_token_head(const clip_model *m) {
    bool tokens = m->token_head;
    FOR_PRESENT_HEADS(h, m) tokens |= h->reads_image_tokens && h->reads_image_tokens(m);
    return tokens;
}

static void bind_tower(arena *a, tower_acts *t, const block_dims *d, int layers, int B, int E,
                       size_t stem_floats, bool vision, bool inference, bool checkpoint, bool tokens,
                       bool keep16) {
    size_t BT = (size_t)B * d->T, W = d->C;
    t->stem = stem_floats ? arena_take(a, stem_floats) : NULL;
    t->x0 = vision ? arena_take(a, BT * W) : NULL;
    t->pre_mean = vision ? arena_take(a, BT) : NULL;
    t->pre_rstd = vision ? arena_take(a, BT) : NULL;
    /* training keeps every block's input and activations for the backward;
     * inference needs two alternating block inputs and one set of activations */
    float *shared_x[2] = {NULL, NULL};
    for (int l = 0; l <= layers; l++) {
        float *x = inference && l >= 2 ? shared_x[l % 2] : arena_take(a, BT * W);
        if (l < 2) shared_x[l] = x;
        if (a->base) t->xs[l] = x;
    }
    block_dims bd = *d;
    bd.B = B;
    float *shared_blk = NULL;
    /* one LayerNorm output and one MLP activation per tower: the backward
     * recomputes them; or (keep16: bf16 training) every block's own, in bf16
     * (half as many floats), kept for the backward like autocast keeps them */
    float *ln = keep16 ? NULL : arena_take(a, BT * W);
    float *fc_act = keep16 ? NULL : arena_take(a, BT * (size_t)d->hidden);
    size_t ln16 = (BT * W + 1) / 2, act16 = (BT * (size_t)d->hidden + 1) / 2; /* in floats */
    for (int l = 0; l < layers; l++) {
        size_t n = block_acts_bind_shared(&t->blocks[l], NULL, NULL, NULL, &bd);
        /* inference, and checkpointing (which recomputes them), keep one block's activations */
        float *blk = (inference || checkpoint) && l > 0 ? shared_blk : arena_take(a, n);
        if (l == 0) shared_blk = blk;
        float *ln1 = keep16 ? arena_take(a, ln16) : ln, *ln2 = keep16 ? arena_take(a, ln16) : ln;
        float *act = keep16 ? arena_take(a, act16) : fc_act;
        if (!a->base) continue;
        block_acts_bind_shared(&t->blocks[l], blk, ln1, act, &bd);
        t->blocks[l].ln2 = ln2;
        t->blocks[l].kept16 = keep16;
    }
    t->pool_index = (int32_t *)arena_take(a, (size_t)B);
    t->pooled = arena_take(a, (size_t)B * W);
    t->pooled_ln = arena_take(a, (size_t)B * W);
    t->fin_mean = arena_take(a, (size_t)B);
    t->fin_rstd = arena_take(a, (size_t)B);
    t->feat = arena_take(a, (size_t)B * E);
    t->feat_norm = arena_take(a, (size_t)B);
    t->emb = arena_take(a, (size_t)B * E);
    t->tok_ln = tokens ? arena_take(a, BT * W) : NULL;
    t->tok_mean = tokens ? arena_take(a, BT) : NULL;
    t->tok_rstd = tokens ? arena_take(a, BT) : NULL;
    t->tok_feat = tokens ? arena_take(a, BT * E) : NULL;
    t->tok_norm = tokens ? arena_take(a, BT) : NULL;
    t->tok_emb = tokens ? arena_take(a, BT * E) : NULL;
}

static size_t tower_scratch(const block_dims *d, int B, int E, bool tokens) {
    block_dims bd = *d;
    bd.B = B;
    size_t BT = (size_t)B * d->T, W = d->C;
    /* dfeat, dpooled_ln, dpooled, two (B,T,W) gradient buffers, block scratch;
     * with the token head also its dfeat (B·T, E) and dln (B·T, W) */
    return arena_round_up((size_t)B * E) + 2 * arena_round_up((size_t)B * W) + 2 * arena_round_up(BT * W) +
           arena_round_up(block_scratch_floats(&bd)) +
           (tokens ? arena_round_up(BT * E) + arena_round_up(BT * W) : 0);
}

/* The text ids are kept for the embedding backward: int32 in float-sized slots. */
static int32_t *text_ids(clip_model *m) { return (int32_t *)m->text_acts.stem; }

/* The image tower's blocks: the class token, the patches and the prompts. */
static block_dims vision_dims(const clip_model *m) {
    block_dims d = m->image_dims;
    d.T += m->image_prompt_room;
    return d;
}

static void bind_all(clip_model *m, arena *a, int B) {
    int E = m->cfg.embed_dim, P = m->cfg.vision.patch_size;
    int NP = m->image_dims.T - 1;
    block_dims vd = vision_dims(m);
    /* bf16 training keeps each block's GEMM inputs in bf16 rather than recomputing them */
    bool keep16 = keeps16(m);
    m->kept16 = keep16;
    bind_tower(a, &m->image_acts, &vd, m->cfg.vision.layers, B, E, (size_t)B * NP * 3 * P * P, true,
               m->inference, m->checkpoint, image_token_head(m), keep16);
    bind_tower(a, &m->text_acts, &m->text_dims, m->cfg.text.layers, B, E, (size_t)B * m->text_dims.T, false,
               m->inference, m->checkpoint, m->token_head, keep16);
    size_t s = tower_scratch(&vd, B, E, image_token_head(m));
    if (m->mae.on && !m->inference) /* a masked backward's patch gradient, after the rest */
        s += arena_round_up((size_t)B * NP * m->image_dims.C);
    size_t st = tower_scratch(&m->text_dims, B, E, m->token_head);
    if (st > s) s = st;
    size_t patches = (size_t)B * NP * m->image_dims.C;      /* forward: the patch embeddings */
    if (patches > s) s = patches;
    FOR_PRESENT_HEADS(h, m) {
        size_t hs = h->bind ? h->bind(m, a, B) : 0;
        if (hs > s) s = hs;
    }
    m->scratch = arena_take(a, s);
}

vlp_err clip_reserve(clip_model *m, int B, vlp_error *err) {
    VLP_CHECK_ARG(B > 0, err, "batch size must be positive, got %d", B);
    if (B <= m->batch) return VLP_OK;
    int Lv = m->cfg.vision.layers, Lt = m->cfg.text.layers;
    free(m->image_acts.xs), free(m->image_acts.blocks), free(m->text_acts.xs), free(m->text_acts.blocks), free(m->arena);
    m->arena = NULL, m->batch = 0;
    m->image_acts.xs = calloc((size_t)Lv + 1, sizeof(float *));
    m->image_acts.blocks = calloc((size_t)Lv, sizeof(block_acts));
    m->text_acts.xs = calloc((size_t)Lt + 1, sizeof(float *));
    m->text_acts.blocks = calloc((size_t)Lt, sizeof(block_acts));
    VLP_CHECK(m->image_acts.xs && m->image_acts.blocks && m->text_acts.xs && m->text_acts.blocks, err, VLP_ERR_NOMEM,
              "could not allocate the activation tables of %d + %d layers", Lv, Lt);
    FOR_PRESENT_HEADS(h, m) if (h->reserve) VLP_TRY(h->reserve(m, err));
    arena count = {0};
    bind_all(m, &count, B);
    size_t bytes = count.off * sizeof(float);
    m->arena = aligned_alloc(64, bytes);
    VLP_CHECK(m->arena, err, VLP_ERR_NOMEM,
              "could not allocate %.1f MiB of activations for batch %d", bytes / 1048576.0, B);
    memset(m->arena, 0, bytes);
    m->arena_floats = count.off;
    arena a = {m->arena, 0};
    bind_all(m, &a, B);
    VLP_TRY(clip_q8_reserve(m, B, err)); /* before batch is set: a failure leaves the model unreserved */
    m->batch = B;
    return VLP_OK;
}

/* ---- towers -------------------------------------------------------------------------------- */

/* The shared tail of both towers: pooled token → final LN → projection → L2. */
static void head_forward(tower_acts *t, const float *ln_w, const float *ln_b, const float *proj,
                         int B, int W, int E, float eps) {
    layernorm_forward(t->pooled_ln, t->fin_mean, t->fin_rstd, t->pooled, ln_w, ln_b, B, W, eps);
    proj_forward(t->feat, t->pooled_ln, proj, B, W, E);
    l2norm_forward(t->emb, t->feat_norm, t->feat, B, E);
}

/* the same head on every token of the last block's output (FILIP) */
static void token_head_forward(tower_acts *t, const float *x, const float *ln_w, const float *ln_b,
                               const float *proj, int BT, int W, int E, float eps) {
    if (!t->tok_emb) return;
    layernorm_forward(t->tok_ln, t->tok_mean, t->tok_rstd, x, ln_w, ln_b, BT, W, eps);
    proj_forward(t->tok_feat, t->tok_ln, proj, BT, W, E);
    l2norm_forward(t->tok_emb, t->tok_norm, t->tok_feat, BT, E);
}

/* Deep prompts (MaPLe): layer l's input holds prompt set l-1 at tokens
 * first..first+n-1 of every sequence, in place of what the block below wrote. */
static bool deep_prompted(const tower_prompts *p, int l) { return p && p->n && l >= 1 && l < p->depth; }

static void deep_prompts_place(float *x, const tower_prompts *p, int l, int first, const block_dims *d) {
    size_t nW = (size_t)p->n * d->C;
    const float *src = p->deep + (size_t)(l - 1) * nW;
    for (int b = 0; b < d->B; b++) memcpy(x + ((size_t)b * d->T + first) * d->C, src, sizeof(float) * nW);
}

/* their gradient: summed over the sequences into ddeep, and cut from dx (the
 * block below never saw those tokens) */
static void deep_prompts_take(float *dx, const tower_prompts *p, int l, int first, const block_dims *d) {
    size_t nW = (size_t)p->n * d->C;
    float *g = p->ddeep ? p->ddeep + (size_t)(l - 1) * nW : NULL;
    for (int b = 0; b < d->B; b++) {
        float *row = dx + ((size_t)b * d->T + first) * d->C;
        for (size_t i = 0; g && i < nW; i++) g[i] += row[i];
        memset(row, 0, sizeof(float) * nW);
    }
}

/* The stack of blocks: xs[0] → xs[layers]. */
static vlp_err blocks_forward(tower_acts *t, block_params *w, const block_dims *bd, int layers,
                              const tower_prompts *pr, int first, vlp_error *err) {
    for (int l = 0; l < layers; l++) {
        if (deep_prompted(pr, l)) deep_prompts_place(t->xs[l], pr, l, first, bd);
        VLP_TRY(block_forward(t->xs[l + 1], &t->blocks[l], t->xs[l], &w[l], bd, err));
    }
    return VLP_OK;
}

/* Backward of the tail and of the blocks; returns the gradient of xs[0]
 * (B,T,W) and, in *spare, the other (B,T,W) scratch buffer, free for the
 * caller's stem. g NULL: input gradients only (frozen weights; dln_w, dln_b
 * and dproj NULL too). Deep prompts at tokens `first`.. get theirs. */
static float *tower_backward(float **spare, tower_acts *t, const float *demb, const float *dtok,
                             const float *dtok_feat, const float *dx_last,
                             float *scratch, const float *ln_w,
                             const float *proj, float *dln_w, float *dln_b, float *dproj,
                             block_params *w, block_params *g, const block_dims *d, int layers,
                             int stop, const tower_prompts *pr, int first, bool recompute, int B, int E) {
    block_params no_grads = {0};
    size_t W = d->C, BT = (size_t)B * d->T;
    float *dfeat = scratch;
    float *dpooled_ln = dfeat + arena_round_up((size_t)B * E);
    float *dpooled = dpooled_ln + arena_round_up((size_t)B * W);
    float *dx = dpooled + arena_round_up((size_t)B * W);
    float *dy = dx + arena_round_up(BT * W);
    float *bscratch = dy + arena_round_up(BT * W);
    if (dx_last) memcpy(dx, dx_last, sizeof(float) * BT * W); /* the decoder's, CoCa */
    else memset(dx, 0, sizeof(float) * BT * W);
    if (demb) { /* the pooled embedding's head */
        memset(dfeat, 0, sizeof(float) * B * E);
        memset(dpooled_ln, 0, sizeof(float) * B * W);
        memset(dpooled, 0, sizeof(float) * B * W);
        l2norm_backward(dfeat, demb, t->emb, t->feat_norm, B, E);
        proj_backward(dpooled_ln, dproj, dfeat, t->pooled_ln, proj, B, (int)W, E);
        layernorm_backward(dpooled, dln_w, dln_b, dpooled_ln, t->pooled, ln_w, t->fin_mean,
                           t->fin_rstd, B, (int)W);
        token_pool_backward(dx, dpooled, t->pool_index, B, d->T, (int)W);
    }
    if (dtok || dtok_feat) { /* every token's head (FILIP, CoCa); after the block scratch */
        block_dims sd = *d;
        sd.B = B;
        float *dtfeat = bscratch + arena_round_up(block_scratch_floats(&sd));
        float *dtln = dtfeat + arena_round_up(BT * E);
        if (dtok_feat) memcpy(dtfeat, dtok_feat, sizeof(float) * BT * E);
        else memset(dtfeat, 0, sizeof(float) * BT * E);
        memset(dtln, 0, sizeof(float) * BT * W);
        if (dtok) l2norm_backward(dtfeat, dtok, t->tok_emb, t->tok_norm, (int)BT, E);
        proj_backward(dtln, dproj, dtfeat, t->tok_ln, proj, (int)BT, (int)W, E);
        layernorm_backward(dx, dln_w, dln_b, dtln, t->xs[layers], ln_w, t->tok_mean, t->tok_rstd,
                           (int)BT, (int)W);
    }
    block_dims bd = *d;
    bd.B = B;
    for (int l = layers - 1; l >= stop; l--) {
        memset(dy, 0, sizeof(float) * BT * W);
        /* checkpointing: the block's activations again, from its kept input. Its
         * output xs[l+1] is rewritten (at deep prompts' tokens with the block's
         * output, not the prompts): the backward above is done with it. The
         * forward did the same call, so it cannot fail here. */
        if (recompute) (void)block_forward(t->xs[l + 1], &t->blocks[l], t->xs[l], &w[l], &bd, NULL);
        block_backward(dy, g ? &g[l] : &no_grads, dx, t->xs[l], &t->blocks[l], &w[l], bscratch, &bd);
        float *tmp = dx;
        dx = dy, dy = tmp;
        if (deep_prompted(pr, l)) deep_prompts_take(dx, pr, l, first, &bd);
    }
    *spare = dy;
    return dx;
}

vlp_err clip_image_forward(clip_model *m, const float *images, int B, vlp_error *err) {
    return clip_image_forward_masked(m, images, NULL, m->image_dims.T - 1, B, err);
}

vlp_err clip_image_forward_masked(clip_model *m, const float *images, const int32_t *keep, int NK,
                                  int B, vlp_error *err) {
    VLP_CHECK_ARG(B > 0 && B <= m->batch, err, "batch %d exceeds the reserved %d", B, m->batch);
    const clip_vision_cfg *v = &m->cfg.vision;
    const vision_views *w = &m->views.vis;
    tower_acts *t = &m->image_acts;
    block_dims bd = m->image_dims;
    int NP = bd.T - 1;
    if (NK == NP) keep = NULL; /* every patch, in order */
    VLP_CHECK_ARG(NK >= 1 && NK <= NP && (keep || NK == NP), err,
                  "a masked image forward keeps 1..%d patches, not %d", NP, NK);
    for (int i = 0; keep && i < B * NK; i++)
        VLP_CHECK_ARG(keep[i] >= 0 && keep[i] < NP && (i % NK == 0 || keep[i] > keep[i - 1]), err,
                      "keep list of sample %d: patch %d at %d is not ascending in [0, %d)", i / NK,
                      keep[i], i % NK, NP);
    VLP_CHECK_ARG(!keep || !m->image_prompts.n, err, "image prompts and a masked image forward do not go together");
    if (keep && m->mae.keep) memcpy(m->mae.keep, keep, sizeof(int32_t) * B * NK);
    m->mae.nkeep = NK;
    int nvp = m->image_prompts.n;
    VLP_CHECK_ARG(!nvp || B <= m->image_prompts.count, err, "batch %d: the image prompts are set for %d images", B, m->image_prompts.count);
    bd.T = 1 + NK + nvp;
    bd.B = B;
    bd.mm = &m->mm;
    int W = v->width, E = m->cfg.embed_dim;
    float *patches = m->scratch; // (B, NP, W), not needed by the backward
    VLP_TRY(patch_embed_forward(patches, t->stem, images, w->conv1, B, 3, v->image_size,
                                v->image_size, v->patch_size, W, err));
    if (!nvp) {
        cls_pos_forward(t->x0, patches, w->class_embedding, w->positional_embedding, keep, B, NP, NK, W);
    } else { /* each image's tokens, then its prompts (no position), at a stride of 1+NK+n */
        cls_pos_forward(t->xs[0], patches, w->class_embedding, w->positional_embedding, keep, B, NP, NK, W);
        size_t own = (size_t)(1 + NK) * W, pn = (size_t)nvp * W;
        for (int b = 0; b < B; b++) {
            float *dst = t->x0 + (size_t)b * bd.T * W;
            memcpy(dst, t->xs[0] + b * own, sizeof(float) * own);
            memcpy(dst + own, m->image_prompts.in + b * pn, sizeof(float) * pn);
        }
    }
    layernorm_forward(t->xs[0], t->pre_mean, t->pre_rstd, t->x0, w->ln_pre_w, w->ln_pre_b,
                      B * bd.T, W, bd.eps);
    VLP_TRY(blocks_forward(t, w->blocks, &bd, v->layers, &m->image_prompts, 1 + NK, err));
    pool_index_first(t->pool_index, B);
    token_pool_forward(t->pooled, t->xs[v->layers], t->pool_index, B, bd.T, W);
    head_forward(t, w->ln_post_w, w->ln_post_b, w->proj, B, W, E, bd.eps);
    token_head_forward(t, t->xs[v->layers], w->ln_post_w, w->ln_post_b, w->proj, B * bd.T, W, E,
                       bd.eps);
    return VLP_OK;
}

static void image_backward(clip_model *m, const float *demb, const float *dtok,
                           const float *dtok_feat, int B) {
    const clip_vision_cfg *v = &m->cfg.vision;
    vision_views *w = &m->views.vis, *g = &m->grad_views.vis;
    tower_acts *t = &m->image_acts;
    /* the last forward's tokens: 1 + NK, all patches unless it was masked */
    int nvp = m->image_prompts.n, W = v->width, T = 1 + m->mae.nkeep + nvp, NP = m->image_dims.T - 1, E = m->cfg.embed_dim;
    size_t BT = (size_t)B * T;
    const int32_t *keep = m->mae.nkeep < NP ? m->mae.keep : NULL;
    float *other;
    block_dims bd = m->image_dims;
    bd.T = T;
    bd.mm = &m->mm;
    if (m->frozen) { /* prompt learning: down to the image's prompts, no weight gradients */
        if (!nvp) return;
        float *dx = tower_backward(&other, t, demb, dtok, dtok_feat, NULL, m->scratch, w->ln_post_w, w->proj,
                                   NULL, NULL, NULL, w->blocks, NULL, &bd, v->layers, 0, &m->image_prompts,
                                   1 + m->mae.nkeep, m->checkpoint, B, E);
        memset(other, 0, sizeof(float) * BT * W);
        layernorm_backward(other, NULL, NULL, dx, t->x0, w->ln_pre_w, t->pre_mean, t->pre_rstd, (int)BT, W);
        size_t pn = (size_t)nvp * W;
        for (int b = 0; m->image_prompts.din && b < B; b++)
            memcpy(m->image_prompts.din + b * pn, other + ((size_t)b * T + 1 + m->mae.nkeep) * W, sizeof(float) * pn);
        return;
    }
    if (clip_image_frozen(m)) return; /* locked: nothing to learn here */
    int stop = m->vision_frozen_below;
    float *dx = tower_backward(&other, t, demb, dtok, dtok_feat, NULL, m->scratch, w->ln_post_w, w->proj, g->ln_post_w,
                               g->ln_post_b, g->proj, w->blocks, g->blocks, &bd, v->layers, stop, NULL, 0,
                               m->checkpoint, B, E);
    if (stop > 0 || m->vision_stem_frozen) return; /* the blocks below and/or the stem are frozen */
    memset(other, 0, sizeof(float) * BT * W);
    layernorm_backward(other, g->ln_pre_w, g->ln_pre_b, dx, t->x0, w->ln_pre_w, t->pre_mean,
                       t->pre_rstd, (int)BT, W);
    /* d(x0) is in `other`; the patches' gradient only feeds conv1's weight.
     * It has a row for every patch: more than dx holds after a masked
     * forward, so it then lives past the whole unmasked layout */
    float *dpatches = keep ? m->scratch + tower_scratch(&m->image_dims, B, E, image_token_head(m)) : dx;
    memset(dpatches, 0, sizeof(float) * (size_t)B * NP * W);
    cls_pos_backward(dpatches, g->class_embedding, g->positional_embedding, other, keep, B, NP,
                     m->mae.nkeep, W);
    patch_embed_backward(NULL, g->conv1, dpatches, t->stem, w->conv1, NULL, B, 3, v->image_size,
                         v->image_size, v->patch_size, W);
}

void clip_image_backward(clip_model *m, const float *demb, int B) {
    image_backward(m, demb, NULL, NULL, B);
}
void clip_image_backward_tokens(clip_model *m, const float *dtok, int B) {
    image_backward(m, NULL, dtok, NULL, B);
}
void clip_image_backward_with_tokens(clip_model *m, const float *demb, const float *dtok_feat,
                                     int B) {
    image_backward(m, demb, NULL, dtok_feat, B);
}

vlp_err clip_text_forward(clip_model *m, const int32_t *ids, int B, vlp_error *err) {
    VLP_CHECK_ARG(B > 0 && B <= m->batch, err, "batch %d exceeds the reserved %d", B, m->batch);
    const clip_text_cfg *c = &m->cfg.text;
    const text_views *w = &m->views.txt;
    tower_acts *t = &m->text_acts;
    block_dims bd = m->text_dims;
    bd.B = B;
    bd.mm = &m->mm;
    int W = c->width, T = c->context_length, E = m->cfg.embed_dim;
    /* id vocab_size: a fusion model's [MASK] (text_fusion.mask_token), for masked language modelling */
    VLP_TRY(embedding_forward_extra(t->xs[0], ids, w->token_embedding, w->positional_embedding,
                                    m->views.fus.mask_token, B, T, W, c->vocab_size, err));
    memcpy(text_ids(m), ids, sizeof(int32_t) * B * T);
    const tower_prompts *pr = &m->text_prompts;
    VLP_CHECK_ARG(!pr->n || B <= pr->count, err, "batch %d: the text prompts are set for %d texts", B, pr->count);
    for (int b = 0; pr->n && b < B; b++) /* prompts in place of tokens 1..n, positions added */
        for (int k = 0; k < pr->n; k++) {
            float *x = t->xs[0] + ((size_t)b * T + 1 + k) * W;
            const float *p = pr->in + ((size_t)b * pr->n + k) * W, *pos = w->positional_embedding + (size_t)(1 + k) * W;
            for (int i = 0; i < W; i++) x[i] = p[i] + pos[i];
        }
    VLP_TRY(blocks_forward(t, w->blocks, &bd, c->layers, pr, 1, err));
    /* a fusion model's [MASK] (id vocab_size, the largest) is not the end of text */
    pool_index_argmax(t->pool_index, ids, B, T, m->views.fus.mask_token ? c->vocab_size : -1);
    token_pool_forward(t->pooled, t->xs[c->layers], t->pool_index, B, T, W);
    head_forward(t, w->ln_final_w, w->ln_final_b, w->text_projection, B, W, E, bd.eps);
    token_head_forward(t, t->xs[c->layers], w->ln_final_w, w->ln_final_b, w->text_projection,
                       B * T, W, E, bd.eps);
    return VLP_OK;
}

static void text_backward(clip_model *m, const float *demb, const float *dtok,
                          const float *dx_last, int B) {
    const clip_text_cfg *c = &m->cfg.text;
    text_views *w = &m->views.txt, *g = &m->grad_views.txt;
    float *spare;
    block_dims bd = m->text_dims;
    bd.mm = &m->mm;
    if (m->frozen) { /* prompt learning: down to the text's prompts, no weight gradients */
        const tower_prompts *pr = &m->text_prompts;
        if (!pr->n) return;
        float *dx = tower_backward(&spare, &m->text_acts, demb, dtok, NULL, dx_last, m->scratch, w->ln_final_w,
                                   w->text_projection, NULL, NULL, NULL, w->blocks, NULL, &bd, c->layers, 0,
                                   pr, 1, m->checkpoint, B, m->cfg.embed_dim);
        size_t T = (size_t)c->context_length, W = c->width, pn = (size_t)pr->n * W;
        for (int b = 0; pr->din && b < B; b++) memcpy(pr->din + b * pn, dx + (b * T + 1) * W, sizeof(float) * pn);
        return;
    }
    float *dx = tower_backward(&spare, &m->text_acts, demb, dtok, NULL, dx_last, m->scratch, w->ln_final_w,
                               w->text_projection,
                               g->ln_final_w, g->ln_final_b, g->text_projection, w->blocks,
                               g->blocks, &bd, c->layers, 0, NULL, 0, m->checkpoint, B, m->cfg.embed_dim);
    embedding_backward_extra(g->token_embedding, g->positional_embedding, m->grad_views.fus.mask_token, dx,
                             text_ids(m), B, c->context_length, c->width, c->vocab_size);
}

void clip_text_backward(clip_model *m, const float *demb, int B) {
    text_backward(m, demb, NULL, NULL, B);
}
void clip_text_backward_tokens(clip_model *m, const float *dtok, int B) {
    text_backward(m, NULL, dtok, NULL, B);
}
void clip_text_backward_with_tokens(clip_model *m, const float *demb, const float *dx_last, int B) {
    text_backward(m, demb, NULL, dx_last, B);
}

void clip_set_checkpointing(clip_model *m, bool on) {
    if (m->checkpoint == on || m->inference) return; /* inference keeps one block's activations anyway */
    m->checkpoint = on;
    m->batch = 0; /* the next clip_reserve binds the blocks' activations anew */
}

void clip_enable_token_head(clip_model *m) {
    if (m->token_head) return;
    m->token_head = true;
    m->batch = 0; /* the next clip_reserve binds the token buffers too */
}

vlp_err clip_lock_image(clip_model *m, int unlocked_groups, vlp_error *err) {
    int L = m->cfg.vision.layers, groups = L + 2;
    VLP_CHECK_ARG(L >= 1, err, "the image tower has no blocks to lock");
    VLP_CHECK_ARG(unlocked_groups <= groups, err,
                  "the image tower has %d groups (stem, %d blocks, head); cannot unlock %d",
                  groups, L, unlocked_groups);
    if (unlocked_groups < 0) unlocked_groups = groups;
    /* group index of each visual parameter: 0 stem, 1..L blocks, L+1 head */
    int first_unlocked = groups - unlocked_groups;
    for (int i = 0; i < m->nparams; i++) {
        clip_param *p = &m->params[i];
        if (strncmp(p->name, "visual.", 7)) continue;
        /* open_clip's VisionTransformer.lock: [stem], blocks[:-1] one each,
         * [last block, ln_post], [proj] */
        int group = 0;
        const char *rb = strstr(p->name, "resblocks.");
        if (rb) group = 1 + atoi(rb + 10);
        else if (strstr(p->name, "ln_post")) group = L;
        else if (!strcmp(p->name, "visual.proj")) group = L + 1;
        p->frozen = group < first_unlocked;
    }
    /* the backward runs through the unlocked blocks only, and into the stem
     * only when it is unlocked */
    m->vision_frozen_below = unlocked_groups == 0 ? L + 1 : first_unlocked <= 1 ? 0 : first_unlocked - 1;
    m->vision_stem_frozen = first_unlocked >= 1;
    return VLP_OK;
}

bool clip_image_frozen(const clip_model *m) { return m->vision_frozen_below > m->cfg.vision.layers; }

static vlp_err check_prompts(const tower_prompts *p, int layers, int tokens, const char *tower, vlp_error *err) {
    if (!p || !p->n) return VLP_OK;
    VLP_CHECK_ARG(p->n > 0 && p->n <= tokens, err, "%s prompts: %d tokens, the tower takes 1..%d", tower, p->n,
                  tokens);
    VLP_CHECK_ARG(p->depth >= 1 && p->depth <= layers, err, "%s prompts: depth %d outside 1..%d layers", tower,
                  p->depth, layers);
    VLP_CHECK_ARG(p->in && p->count >= 1 && (p->depth == 1 || p->deep), err, "%s prompts: no vectors given", tower);
    return VLP_OK;
}

vlp_err clip_set_prompts(clip_model *m, const tower_prompts *vis, const tower_prompts *txt, vlp_error *err) {
    /* text: the start token, the prompts, then at least the end token */
    VLP_TRY(check_prompts(txt, m->cfg.text.layers, m->cfg.text.context_length - 2, "text", err));
    VLP_TRY(check_prompts(vis, m->cfg.vision.layers, 1 << 16, "image", err));
    int nv = vis ? vis->n : 0;
    VLP_CHECK_ARG(!nv || !(m->coca.on || (m->mae.on && !m->inference) || m->token_head), err,
                  "a model with a caption or MAE decoder or a token head takes no image prompts");
    if (nv > m->image_prompt_room) m->image_prompt_room = nv, m->batch = 0; /* the next clip_reserve sizes the longer sequence */
    m->image_prompts = nv ? *vis : (tower_prompts){0};
    m->text_prompts = txt && txt->n ? *txt : (tower_prompts){0};
    m->frozen = m->image_prompts.n || m->text_prompts.n;
    return VLP_OK;
}
