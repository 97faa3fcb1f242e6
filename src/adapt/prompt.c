/* The prompt learner: parameters, the classes' prompts, the text tower in
 * chunks, the loss, SGD, the file. The methods are in coop.c, cocoop.c and
 * maple.c; their table is here. */
#include "adapt/prompt.h"
#include "io/json_text.h"
#include "core/error.h"
#include "model/init.h"
#include "ops/gemm.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* several allocations checked at once */
#define VLP_CHECK_ALL_ALLOC(ok, err, bytes) \
    VLP_CHECK(ok, err, VLP_ERR_NOMEM, "could not allocate %zu bytes", (size_t)(bytes))

extern const prompt_method prompt_coop, prompt_cocoop, prompt_maple, prompt_probe;
const prompt_method *const prompt_methods[] = {&prompt_coop, &prompt_cocoop, &prompt_maple, &prompt_probe};
const int prompt_method_count = sizeof prompt_methods / sizeof *prompt_methods;

const prompt_method *prompt_method_find(const char *name) {
    for (int i = 0; name && i < prompt_method_count; i++)
        if (!strcmp(prompt_methods[i]->name, name)) return prompt_methods[i];
    return NULL;
}

const char *prompt_method_names(void) { return "coop, cocoop, maple, linear-probe"; }

/* ---- parameters -------------------------------------------------------------------------- */

void pl_reg(prompt_learner *pl, const char *name, float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    if (pl->nparams >= PROMPT_MAX_PARAMS) return; /* prompt_create checks the depth first */
    clip_param *p = &pl->params[pl->nparams];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    int64_t d[3] = {d0, d1, d2};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = d[i], p->numel *= (size_t)d[i];
    p->offset = pl->nfloats;
    p->decay = true; /* Dassl's SGD decays every parameter */
    pl->slots[pl->nparams] = slot;
    pl->per_class[pl->nparams++] = false;
    pl->nfloats += p->numel;
}

void pl_reg_per_class(prompt_learner *pl, const char *name, float **slot, int ndim, int64_t d1, int64_t d2) {
    pl_reg(pl, name, slot, ndim, pl->C, d1, d2);
    if (pl->nparams) pl->per_class[pl->nparams - 1] = true;
}

static float *grad_of(const prompt_learner *pl, const float *w) {
    return w ? pl->grads + (w - pl->weights) : NULL;
}

/* ---- the classes' prompts ----------------------------------------------------------------- */

/* The ids of a text in the model's T tokens (ids: T) and its tokens between
 * the start and the end token; -1 when it does not fit in T (the tokenizer
 * would cut it), -2 out of memory. */
static int phrase_tokens(const prompt_learner *pl, const char *phrase, int32_t *ids) {
    int32_t *wide = malloc(sizeof(int32_t) * ((size_t)pl->T + 1));
    if (!wide) return -2;
    pl->tok->encode(pl->tok->impl, phrase, wide, pl->T + 1); /* one more: a cut shows as no end in T */
    int eot = pl->m->cfg.text.vocab_size - 1, k = 1;
    while (k < pl->T && wide[k] != eot) k++;
    memcpy(ids, wide, sizeof(int32_t) * pl->T);
    free(wide);
    return k < pl->T ? k - 1 : -1;
}

static void free_names(char **names, int C) {
    for (int c = 0; names && c < C; c++) free(names[c]);
    free(names);
}

/* The classes' names (copied) and prompts, "<init> <name>." or
 * "X X .. X <name>." with the context at tokens 1..n; names must be
 * non-empty and distinct, and each prompt must fit the model's tokens. */
static vlp_err class_prompts(const prompt_learner *pl, const char *const *classes, int C, char ***names_out,
                             int32_t **ids_out, vlp_error *err) {
    VLP_CHECK_ARG(classes && C > 0, err, "prompt learning needs classes (got %d)", C);
    for (int c = 0; c < C; c++) {
        VLP_CHECK_ARG(classes[c] && classes[c][0], err, "class %d has no name", c);
        for (int d = 0; d < c; d++)
            VLP_CHECK_ARG(strcmp(classes[c], classes[d]), err, "class \"%s\" is given twice (%d and %d)", classes[c],
                          d, c);
    }
    char **names = calloc((size_t)C, sizeof(char *));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)C * pl->T);
    size_t cap = strlen(pl->init) + 2 * (size_t)pl->n + 8;
    vlp_err rc = names && ids ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the prompts of %d "
                                                       "classes", C);
    for (int c = 0; rc == VLP_OK && c < C; c++) {
        names[c] = strdup(classes[c]);
        char *text = malloc(cap + strlen(classes[c]));
        if (!names[c] || !text) {
            free(text);
            rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the prompt of class %d", c);
            break;
        }
        text[0] = 0;
        if (pl->init[0]) strcat(text, pl->init), strcat(text, " ");
        else
            for (int k = 0; k < pl->n; k++) strcat(text, "X ");
        strcat(text, classes[c]);
        strcat(text, ".");
        int k = phrase_tokens(pl, text, ids + (size_t)c * pl->T);
        free(text);
        if (k == -2) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "tokenizing class %d", c);
        else if (k < 0 || k <= pl->n)
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "class %d (\"%s\"): its prompt (%d context "
                               "tokens, the name and \".\") does not fit the model's %d text tokens", c, classes[c],
                               pl->n, pl->T);
    }
    if (rc != VLP_OK) {
        free_names(names, C);
        free(ids);
        return rc;
    }
    *names_out = names, *ids_out = ids;
    return VLP_OK;
}

static void free_classes(prompt_learner *pl) {
    free_names(pl->classes, pl->C);
    free(pl->ids);
    pl->classes = NULL, pl->ids = NULL;
}

static vlp_err take_classes(prompt_learner *pl, const char *const *classes, int C, vlp_error *err) {
    VLP_TRY(class_prompts(pl, classes, C, &pl->classes, &pl->ids, err));
    pl->C = C;
    return VLP_OK;
}

/* ---- creation ---------------------------------------------------------------------------- */

void prompt_free(prompt_learner *pl) {
    if (!pl) return;
    prompt_detach(pl);
    free_classes(pl);
    free(pl->weights), free(pl->grads), free(pl->momentum);
    free(pl->tin), free(pl->dtin), free(pl->vin), free(pl->dvin), free(pl->vdeep), free(pl->dvdeep);
    free(pl->tfeat), free(pl->dtfeat), free(pl->img), free(pl->dimg), free(pl->logits);
    free(pl->bias), free(pl->dbias), free(pl->hid), free(pl->dhid);
    free(pl);
}

vlp_err prompt_attach(prompt_learner *pl, vlp_error *err) {
    int d = pl->method->deep ? pl->depth : 1;
    tower_prompts tp = {.n = pl->n, .count = pl->chunk, .depth = d, .in = pl->tin, .deep = pl->deep,
                        .din = pl->dtin, .ddeep = grad_of(pl, pl->deep)};
    tower_prompts vp = {.n = pl->method->deep ? pl->n : 0, .count = pl->batch, .depth = d, .in = pl->vin,
                        .deep = pl->vdeep,
                        .din = pl->dvin, .ddeep = pl->dvdeep};
    VLP_TRY(clip_set_prompts(pl->m, &vp, &tp, err));
    pl->text_c0 = -1;
    return clip_reserve(pl->m, pl->chunk, err);
}

void prompt_detach(prompt_learner *pl) {
    if (pl && pl->m) clip_set_prompts(pl->m, NULL, NULL, NULL);
}

/* the context's count and start: the phrase's tokens, or placeholders */
static vlp_err context_shape(prompt_learner *pl, const prompt_cfg *cfg, vlp_error *err) {
    const prompt_method *me = pl->method;
    const char *init = me->fit ? "" : cfg->init ? cfg->init : me->init ? me->init : "";
    VLP_CHECK_ARG(strlen(init) < sizeof pl->init, err, "the context's phrase is longer than %zu bytes",
                  sizeof pl->init - 1);
    snprintf(pl->init, sizeof pl->init, "%s", init);
    int32_t *ids = malloc(sizeof(int32_t) * pl->T);
    VLP_CHECK_ALLOC(ids, err, sizeof(int32_t) * pl->T);
    int k = init[0] ? phrase_tokens(pl, init, ids) : 0;
    free(ids);
    VLP_CHECK(k != -2, err, VLP_ERR_NOMEM, "tokenizing the context's phrase");
    if (init[0]) {
        VLP_CHECK_ARG(k != -1, err, "the context's phrase \"%s\" does not fit the model's %d text tokens", init, pl->T);
        VLP_CHECK_ARG(k > 0, err, "the context's phrase \"%s\" has no tokens", init);
        /* MaPLe learns the phrase's first n tokens and keeps the rest as words */
        pl->n = cfg->n_ctx < 0 ? (me->n_ctx < k && me->deep ? me->n_ctx : k) : cfg->n_ctx;
        VLP_CHECK_ARG(pl->n <= k, err, "%d context tokens, but the phrase \"%s\" has %d tokens to start them from",
                      pl->n, init, k);
    } else pl->n = cfg->n_ctx < 0 ? me->n_ctx : cfg->n_ctx;
    VLP_CHECK_ARG(pl->n >= 0 && pl->n <= pl->T - 3, err, "%d context tokens: the model's %d text tokens take at "
                  "most %d beside the start, a word and the end", pl->n, pl->T, pl->T - 3);
    VLP_CHECK_ARG(!me->fit || !pl->n, err, "%s has no context tokens", me->name);
    VLP_CHECK_ARG(pl->n > 0 || me == &prompt_coop || me->fit, err, "%s needs at least one context token", me->name);
    return VLP_OK;
}

/* the first n token embeddings of the phrase, as the context's start */
static void init_context(prompt_learner *pl, rng64 *r) {
    size_t nW = (size_t)pl->n * pl->W;
    int sets = pl->csc ? pl->C : 1;
    if (!pl->init[0]) {
        init_normal(r, pl->ctx, nW * sets, 0.02f);
        return;
    }
    const int32_t *ids = pl->ids; /* class 0's prompt starts with the phrase */
    for (int s = 0; s < sets; s++)
        for (int k = 0; k < pl->n; k++)
            memcpy(pl->ctx + s * nW + (size_t)k * pl->W,
                   pl->m->views.txt.token_embedding + (size_t)ids[1 + k] * pl->W, sizeof(float) * pl->W);
}

static vlp_err allocate(prompt_learner *pl, int batch, vlp_error *err) {
    const prompt_method *me = pl->method;
    if (pl->csc) pl_reg_per_class(pl, "prompt_learner.ctx", &pl->ctx, 3, pl->n, pl->W);
    else if (pl->n) pl_reg(pl, "prompt_learner.ctx", &pl->ctx, 2, pl->n, pl->W, 0);
    if (me->layout) me->layout(pl);
    size_t n = pl->nfloats ? pl->nfloats : 1, nW = (size_t)pl->n * pl->W, nWv = (size_t)pl->n * pl->Wv;
    size_t dp = pl->depth > 1 ? (size_t)pl->depth - 1 : 1;
    pl->batch = batch;
    pl->weights = calloc(n, sizeof(float)), pl->grads = calloc(n, sizeof(float));
    pl->momentum = calloc(n, sizeof(float));
    pl->tin = calloc((size_t)pl->chunk * nW + 1, sizeof(float));
    pl->dtin = calloc((size_t)pl->chunk * nW + 1, sizeof(float));
    pl->vin = calloc((size_t)batch * nWv + 1, sizeof(float));
    pl->dvin = calloc((size_t)batch * nWv + 1, sizeof(float));
    pl->vdeep = calloc(dp * nWv + 1, sizeof(float));
    pl->dvdeep = calloc(dp * nWv + 1, sizeof(float));
    pl->tfeat = calloc((size_t)pl->C * pl->E, sizeof(float));
    pl->dtfeat = calloc((size_t)pl->C * pl->E, sizeof(float));
    pl->img = calloc((size_t)batch * pl->E, sizeof(float));
    pl->dimg = calloc((size_t)batch * pl->E, sizeof(float));
    pl->logits = calloc((size_t)batch * pl->C, sizeof(float));
    pl->bias = calloc((size_t)batch * pl->W, sizeof(float));
    pl->dbias = calloc((size_t)batch * pl->W, sizeof(float));
    pl->hid = calloc((size_t)batch * (pl->hidden + 1), sizeof(float));
    pl->dhid = calloc((size_t)pl->hidden + 1, sizeof(float));
    VLP_CHECK_ALL_ALLOC(pl->weights && pl->grads && pl->momentum && pl->tin && pl->dtin && pl->vin && pl->dvin &&
                        pl->vdeep && pl->dvdeep && pl->tfeat && pl->dtfeat && pl->img && pl->dimg &&
                        pl->logits && pl->bias && pl->dbias && pl->hid && pl->dhid,
                    err, sizeof(float) * n);
    for (int i = 0; i < pl->nparams; i++)
        if (pl->slots[i]) *pl->slots[i] = pl->weights + pl->params[i].offset;
    return VLP_OK;
}

static vlp_err create(prompt_learner **out, const prompt_method *me, const prompt_cfg *cfg, clip_model *m,
                      const text_tokenizer *tok, const char *const *classes, int C, vlp_error *err) {
    *out = NULL;
    VLP_CHECK_ARG(me && cfg && m && tok, err, "prompt learning: no method, model or tokenizer");
    VLP_CHECK_ARG(!cfg->csc || me->csc, err, "%s has no class-specific context (--csc is CoOp's)", me->name);
    VLP_CHECK_ARG(cfg->batch >= 1, err, "prompt learning: batch %d", cfg->batch);
    VLP_CHECK_ARG(tok->vocab_size == m->cfg.text.vocab_size, err, "the tokenizer gives %d ids, the model's vocab_size "
                  "is %d", tok->vocab_size, m->cfg.text.vocab_size);
    prompt_learner *pl = calloc(1, sizeof *pl);
    VLP_CHECK_ALLOC(pl, err, sizeof *pl);
    *out = pl;
    pl->method = me, pl->m = m, pl->tok = tok, pl->csc = cfg->csc;
    pl->W = m->cfg.text.width, pl->Wv = m->cfg.vision.width, pl->E = m->cfg.embed_dim;
    pl->T = m->cfg.text.context_length;
    pl->hidden = pl->E / 16 > 0 ? pl->E / 16 : 1;
    int layers = m->cfg.vision.layers < m->cfg.text.layers ? m->cfg.vision.layers : m->cfg.text.layers;
    pl->depth = me->deep ? (cfg->depth > 0 ? cfg->depth : layers < 9 ? layers : 9) : 1;
    VLP_CHECK_ARG(pl->depth <= layers && pl->depth <= PROMPT_MAX_DEPTH, err,
                  "prompt depth %d: the towers have %d and %d layers (at most %d)", pl->depth,
                  m->cfg.vision.layers, m->cfg.text.layers, layers < PROMPT_MAX_DEPTH ? layers : PROMPT_MAX_DEPTH);
    VLP_TRY(context_shape(pl, cfg, err));
    /* a trained learner forwards up to 128 prompts at once (more are recomputed
     * in the backward); one that only scores needs no more than its batch */
    int most = m->inference ? cfg->batch : 128;
    pl->chunk = C < most ? C : most;
    if (pl->chunk < cfg->batch) pl->chunk = cfg->batch;
    VLP_TRY(take_classes(pl, classes, C, err));
    VLP_TRY(allocate(pl, cfg->batch, err));
    return prompt_attach(pl, err);
}

vlp_err prompt_create(prompt_learner **out, const prompt_method *me, const prompt_cfg *cfg, clip_model *m,
                      const text_tokenizer *tok, const char *const *classes, int C, vlp_error *err) {
    *out = NULL;
    /* the file keeps the class names as JSON, which holds only UTF-8: said
     * now, not after the training */
    for (int c = 0; c < C; c++)
        VLP_CHECK_ARG(utf8_valid(classes[c]), err,
                      "class '%s' is not UTF-8 text, and a prompt file keeps its classes' names as JSON; "
                      "rename its folder or label", classes[c]);
    VLP_CHECK_ARG(!cfg->init || utf8_valid(cfg->init), err,
                  "--init '%s' is not UTF-8 text, and a prompt file keeps the phrase as JSON", cfg->init);
    vlp_err rc = create(out, me, cfg, m, tok, classes, C, err);
    if (rc != VLP_OK) {
        prompt_free(*out);
        *out = NULL;
        return rc;
    }
    prompt_learner *pl = *out;
    rng64 r = {cfg->seed ^ 0xC0C0A7ull};
    if (pl->n) init_context(pl, &r);
    if (me->init_params) me->init_params(pl, &r);
    return VLP_OK;
}

/* where each new class's row comes from in the old order; every name must be
 * one the rows were learnt for */
static vlp_err rows_from(const prompt_learner *pl, const char *const *classes, int C, int *from, vlp_error *err) {
    VLP_CHECK_ARG(C == pl->C, err, "the %s was learnt for %d classes, not %d",
                  pl->csc ? "class-specific context" : "classifier", pl->C, C);
    for (int c = 0; c < C; c++) {
        int k = 0;
        while (k < pl->C && strcmp(pl->classes[k], classes[c])) k++;
        VLP_CHECK_ARG(k < pl->C, err, "class \"%s\": the %s was learnt for other classes (%d: \"%s\", ...)",
                      classes[c], pl->csc ? "class-specific context" : "classifier", pl->C, pl->classes[0]);
        from[c] = k;
    }
    return VLP_OK;
}

/* the rows of every per-class parameter (and their momentum) into the new order */
static vlp_err reorder_rows(prompt_learner *pl, const int *from, int C, vlp_error *err) {
    for (int i = 0; i < pl->nparams; i++) {
        if (!pl->per_class[i]) continue;
        const clip_param *p = &pl->params[i];
        size_t row = p->numel / (size_t)C;
        float *old = malloc(sizeof(float) * p->numel);
        VLP_CHECK_ALLOC(old, err, sizeof(float) * p->numel);
        float *bufs[2] = {pl->weights + p->offset, pl->momentum + p->offset};
        for (int b = 0; b < 2; b++) {
            memcpy(old, bufs[b], sizeof(float) * p->numel);
            for (int c = 0; c < C; c++) memcpy(bufs[b] + c * row, old + from[c] * row, sizeof(float) * row);
        }
        free(old);
    }
    return VLP_OK;
}

/* buf grown to n floats (kept as it is when it already holds them) */
static vlp_err grow(float **buf, size_t have, size_t n, vlp_error *err) {
    if (n <= have) return VLP_OK;
    float *b = realloc(*buf, sizeof(float) * n);
    VLP_CHECK_ALLOC(b, err, sizeof(float) * n);
    *buf = b;
    return VLP_OK;
}

static vlp_err set_classes(prompt_learner *pl, const char *const *classes, int C, vlp_error *err) {
    bool rows = false;
    for (int i = 0; i < pl->nparams; i++) rows |= pl->per_class[i];
    char **names;
    int32_t *ids;
    VLP_TRY(class_prompts(pl, classes, C, &names, &ids, err)); /* checks every name first */
    int *from = rows ? malloc(sizeof(int) * (size_t)C) : NULL;
    vlp_err rc = rows && !from ? vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "class order") : VLP_OK;
    if (rc == VLP_OK && rows) rc = rows_from(pl, classes, C, from, err);
    /* the buffers for more classes; a failure leaves them larger, and the learner as it was */
    int chunk = C < 128 ? C : 128, old = pl->C > 0 ? pl->C : 0;
    size_t nW = (size_t)pl->n * pl->W;
    if (rc == VLP_OK) rc = grow(&pl->tfeat, (size_t)old * pl->E, (size_t)C * pl->E, err);
    if (rc == VLP_OK) rc = grow(&pl->dtfeat, (size_t)old * pl->E, (size_t)C * pl->E, err);
    if (rc == VLP_OK) rc = grow(&pl->logits, (size_t)pl->batch * old, (size_t)pl->batch * C, err);
    if (rc == VLP_OK && chunk > pl->chunk) rc = grow(&pl->tin, (size_t)pl->chunk * nW + 1, (size_t)chunk * nW + 1, err);
    if (rc == VLP_OK && chunk > pl->chunk) rc = grow(&pl->dtin, (size_t)pl->chunk * nW + 1, (size_t)chunk * nW + 1, err);
    if (rc == VLP_OK && rows) rc = reorder_rows(pl, from, C, err);
    free(from);
    if (rc != VLP_OK) {
        free_names(names, C);
        free(ids);
        return rc;
    }
    free_classes(pl);
    pl->classes = names, pl->ids = ids, pl->C = C;
    if (chunk > pl->chunk) pl->chunk = chunk;
    pl->tfeat_fresh = false;
    return VLP_OK;
}

vlp_err prompt_set_classes(prompt_learner *pl, const char *const *classes, int C, vlp_error *err) {
    vlp_err rc = set_classes(pl, classes, C, err);
    vlp_err at = prompt_attach(pl, rc == VLP_OK ? err : NULL); /* the model points at the buffers as they are now */
    return rc != VLP_OK ? rc : at;
}

/* ---- the text tower in chunks ------------------------------------------------------------- */

/* classes c0..c0+nc's text prompts: their context (+ the shift), forwarded */
static vlp_err text_chunk_forward(prompt_learner *pl, int c0, int nc, const float *bias, vlp_error *err) {
    size_t nW = (size_t)pl->n * pl->W;
    for (int c = 0; nW && c < nc; c++) {
        float *dst = pl->tin + c * nW;
        memcpy(dst, pl->ctx + (pl->csc ? (size_t)(c0 + c) * nW : 0), sizeof(float) * nW);
        for (int k = 0; bias && k < pl->n; k++)
            for (int i = 0; i < pl->W; i++) dst[(size_t)k * pl->W + i] += bias[i];
    }
    VLP_TRY(clip_text_forward(pl->m, pl->ids + (size_t)c0 * pl->T, nc, err));
    pl->text_c0 = c0;
    return VLP_OK;
}

vlp_err pl_text_features(prompt_learner *pl, const float *bias, vlp_error *err) {
    for (int c0 = 0; c0 < pl->C; c0 += pl->chunk) {
        int nc = pl->C - c0 < pl->chunk ? pl->C - c0 : pl->chunk;
        VLP_TRY(text_chunk_forward(pl, c0, nc, bias, err));
        memcpy(pl->tfeat + (size_t)c0 * pl->E, pl->m->text_acts.emb, sizeof(float) * nc * pl->E);
    }
    return VLP_OK;
}

vlp_err pl_text_backward(prompt_learner *pl, const float *bias, const float *dfeat, float *dbias, vlp_error *err) {
    if (!pl->n) return VLP_OK;
    size_t nW = (size_t)pl->n * pl->W;
    float *dctx = grad_of(pl, pl->ctx);
    int last = (pl->C - 1) / pl->chunk * pl->chunk;
    for (int c0 = last; c0 >= 0; c0 -= pl->chunk) { /* the last chunk's activations are still there */
        int nc = pl->C - c0 < pl->chunk ? pl->C - c0 : pl->chunk;
        if (pl->text_c0 != c0) VLP_TRY(text_chunk_forward(pl, c0, nc, bias, err));
        clip_text_backward(pl->m, dfeat + (size_t)c0 * pl->E, nc);
        pl->text_c0 = -1; /* the backward used the scratch; a later chunk forwards again anyway */
        for (int c = 0; c < nc; c++) {
            const float *g = pl->dtin + c * nW;
            float *d = dctx + (pl->csc ? (size_t)(c0 + c) * nW : 0);
            for (size_t i = 0; i < nW; i++) d[i] += g[i];
            for (int k = 0; dbias && k < pl->n; k++)
                for (int i = 0; i < pl->W; i++) dbias[i] += g[(size_t)k * pl->W + i];
        }
    }
    return VLP_OK;
}

/* ---- the loss and the pieces of the methods ---------------------------------------------- */

float pl_logit_scale(const prompt_learner *pl) { return expf(*pl->m->views.logit_scale); }

float pl_cross_entropy(const float *scores, const int *labels, int B, int C, float scale, float *dscores,
                       int *correct) {
    double total = 0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *s = scores + (size_t)b * C;
        int best = 0;
        float mx = s[0];
        for (int c = 1; c < C; c++)
            if (s[c] > mx) mx = s[c], best = c;
        double z = 0;
        for (int c = 0; c < C; c++) z += exp((double)scale * (s[c] - mx));
        total += log(z) - (double)scale * (s[labels[b]] - mx);
        hits += best == labels[b];
        for (int c = 0; dscores && c < C; c++) { /* d mean / d score = scale (p - y) / B */
            double p = exp((double)scale * (s[c] - mx)) / z;
            dscores[(size_t)b * C + c] = (float)(scale * (p - (c == labels[b])) / B);
        }
    }
    if (correct) *correct = hits;
    return (float)(total / B);
}

vlp_err pl_plain_images(prompt_learner *pl, const float *images, int B, float *out, vlp_error *err) {
    VLP_TRY(clip_image_forward(pl->m, images, B, err));
    memcpy(out, pl->m->image_acts.emb, sizeof(float) * (size_t)B * pl->E);
    return VLP_OK;
}

void pl_scores_from_features(const prompt_learner *pl, const float *img, int B, float *out) {
    vlp_sgemm(false, true, B, pl->C, pl->E, 1.0f, img, pl->E, pl->tfeat, pl->E, 0.0f, out, pl->C);
}

vlp_err pl_scores_cached(prompt_learner *pl, const float *img, int B, float *out, vlp_error *err) {
    if (!pl->tfeat_fresh) VLP_TRY(pl_text_features(pl, NULL, err));
    pl->tfeat_fresh = true;
    pl_scores_from_features(pl, img, B, out);
    return VLP_OK;
}

/* ---- training ----------------------------------------------------------------------------- */

float prompt_lr(double lr, int epoch, int epochs) {
    if (epoch < 1 && epochs > 1) return 1e-5f; /* Dassl's constant warm-up epoch */
    return (float)(0.5 * lr * (1.0 + cos(M_PI * epoch / (epochs > 0 ? epochs : 1))));
}

int prompt_default_epochs(const prompt_method *me, int shots) {
    int i = shots <= 1 ? 0 : shots <= 2 ? 1 : shots <= 4 ? 2 : shots <= 8 ? 3 : 4;
    return me->epochs[i];
}

vlp_err prompt_train_step(prompt_learner *pl, const float *images, const int *labels, int B, float lr, float wd,
                          float *loss, int *correct, vlp_error *err) {
    VLP_CHECK_ARG(B >= 1 && B <= pl->batch, err, "batch %d: the learner holds 1..%d", B, pl->batch);
    VLP_CHECK_ARG(pl->method->step, err, "%s is fitted at once, not stepped", pl->method->name);
    VLP_CHECK_ARG(!pl->m->inference, err, "the model was loaded for inference only: its backward needs every "
                  "layer's activations (load it trainable)");
    VLP_CHECK_ARG(pl->nfloats > 0, err, "%s with %d context tokens has nothing to learn", pl->method->name, pl->n);
    for (int b = 0; b < B; b++)
        VLP_CHECK_ARG(labels[b] >= 0 && labels[b] < pl->C, err, "image %d: label %d outside 0..%d", b, labels[b],
                      pl->C - 1);
    memset(pl->grads, 0, sizeof(float) * pl->nfloats);
    VLP_TRY(pl->method->step(pl, images, labels, B, loss, correct, err));
    VLP_CHECK(isfinite(*loss), err, VLP_ERR_NUMERIC, "the prompt loss is %f", *loss);
    /* SGD with momentum 0.9 and weight decay, as torch.optim.SGD */
    for (size_t i = 0; i < pl->nfloats; i++) {
        float g = pl->grads[i] + wd * pl->weights[i];
        pl->momentum[i] = 0.9f * pl->momentum[i] + g;
        pl->weights[i] -= lr * pl->momentum[i];
    }
    pl->tfeat_fresh = false;
    return VLP_OK;
}

/* ---- the file ----------------------------------------------------------------------------- */

void prompt_model_hash(const clip_model *m, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(m->weights, sizeof(float) * m->nfloats));
}

vlp_err prompt_save(const prompt_learner *pl, const char *path, const st_meta *extra, int nextra, vlp_error *err) {
    st_tensor *t = calloc((size_t)pl->nparams + 1, sizeof *t);
    st_meta *meta = calloc((size_t)nextra + 9, sizeof *meta);
    json_t *cls = json_array();
    for (int c = 0; cls && c < pl->C; c++)
        if (json_array_append_new(cls, json_string(pl->classes[c])) != 0) json_decref(cls), cls = NULL;
    char *classes = cls ? json_dumps(cls, JSON_COMPACT) : NULL;
    json_decref(cls);
    if (!t || !meta || !classes) {
        free(t), free(meta), free(classes);
        VLP_FAIL(err, VLP_ERR_NOMEM, "the prompt file's header");
    }
    for (int i = 0; i < pl->nparams; i++) {
        const clip_param *p = &pl->params[i];
        t[i] = (st_tensor){.name = p->name, .dtype = ST_F32, .ndim = p->ndim, .numel = p->numel,
                           .data = pl->weights + p->offset};
        for (int d = 0; d < p->ndim; d++) t[i].shape[d] = p->shape[d];
    }
    char n[16], depth[16], hash[17];
    snprintf(n, sizeof n, "%d", pl->n);
    snprintf(depth, sizeof depth, "%d", pl->depth);
    prompt_model_hash(pl->m, hash);
    int k = 0;
    meta[k++] = (st_meta){"format", PROMPT_FORMAT};
    meta[k++] = (st_meta){"version", PROMPT_FORMAT_VERSION};
    meta[k++] = (st_meta){"method", pl->method->name};
    meta[k++] = (st_meta){"n_ctx", n};
    meta[k++] = (st_meta){"csc", pl->csc ? "true" : "false"};
    meta[k++] = (st_meta){"depth", depth};
    meta[k++] = (st_meta){"init", pl->init};
    meta[k++] = (st_meta){"classes", classes};
    meta[k++] = (st_meta){"model_hash", hash};
    for (int i = 0; i < nextra; i++) meta[k++] = extra[i];
    vlp_err rc = st_write(path, t, pl->nparams, meta, k, err);
    free(t), free(meta), free(classes);
    return rc;
}

static vlp_err meta_int(const st_file *f, const char *key, int lo, int hi, int *out, vlp_error *err) {
    const char *v = st_meta_get(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    VLP_CHECK_FORMAT(v && *v && !*end && x >= lo && x <= hi, err, "%s: metadata \"%s\" is %s%s%s, not a number in "
                     "%d..%d", st_path(f), key, v ? "\"" : "", v ? v : "missing", v ? "\"" : "", lo, hi);
    *out = (int)x;
    return VLP_OK;
}

/* the file's classes (JSON array of strings) */
static vlp_err meta_classes(const st_file *f, char ***out, int *C, vlp_error *err) {
    const char *v = st_meta_get(f, "classes");
    json_error_t je;
    json_t *a = v ? json_loads(v, 0, &je) : NULL;
    int n = json_is_array(a) ? (int)json_array_size(a) : 0;
    if (!n) {
        json_decref(a);
        VLP_FAIL(err, VLP_ERR_FORMAT, "%s: metadata \"classes\" is not a list of class names", st_path(f));
    }
    char **c = calloc((size_t)n, sizeof(char *));
    for (int i = 0; c && i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        c[i] = s && *s ? strdup(s) : NULL;
        if (!c[i]) {
            for (int j = 0; j < i; j++) free(c[j]);
            free(c), c = NULL;
        }
    }
    json_decref(a);
    VLP_CHECK_FORMAT(c, err, "%s: metadata \"classes\" holds an empty or non-string name", st_path(f));
    *out = c, *C = n;
    return VLP_OK;
}

static vlp_err load(prompt_learner **out, st_file *f, clip_model *m, const text_tokenizer *tok, int batch,
                    char **classes, int C, vlp_error *err) {
    const char *path = st_path(f);
    const char *method = st_meta_get(f, "method"), *csc = st_meta_get(f, "csc"), *hash = st_meta_get(f, "model_hash");
    const prompt_method *me = prompt_method_find(method);
    VLP_CHECK_FORMAT(me, err, "%s: method \"%s\" is not one of %s", path, method ? method : "missing",
                     prompt_method_names());
    char mine[17];
    prompt_model_hash(m, mine);
    VLP_CHECK_ARG(hash && !strcmp(hash, mine), err, "%s was learnt on the model with weights hash %s; this model's is "
                  "%s: prompts belong to the model they were learnt on%s", path, hash ? hash : "(none)", mine,
                  m->q8 ? " (this is an int8 model: use the fp32 model the prompts were learnt on)" : "");
    prompt_cfg cfg = {.csc = csc && !strcmp(csc, "true"), .init = st_meta_get(f, "init"), .batch = batch};
    VLP_CHECK_FORMAT(cfg.init, err, "%s: no metadata \"init\"", path);
    VLP_TRY(meta_int(f, "n_ctx", 0, m->cfg.text.context_length, &cfg.n_ctx, err));
    VLP_TRY(meta_int(f, "depth", 1, PROMPT_MAX_DEPTH, &cfg.depth, err));
    vlp_err rc = prompt_create(out, me, &cfg, m, tok, (const char *const *)classes, C, err);
    if (rc != VLP_OK && err) { /* the settings are the file's: name it */
        char msg[sizeof err->message + 4096];
        int n = snprintf(msg, sizeof msg, "%s: %s", path, err->message);
        size_t keep = n < 0 ? 0 : (size_t)n < sizeof err->message ? (size_t)n : sizeof err->message - 1;
        memcpy(err->message, msg, keep);
        err->message[keep] = 0;
    }
    VLP_TRY(rc);
    prompt_learner *pl = *out;
    VLP_CHECK_FORMAT(st_count(f) == pl->nparams, err, "%s holds %d tensors; %s with these settings has %d", path,
                     st_count(f), me->name, pl->nparams);
    for (int i = 0; i < pl->nparams; i++) {
        const clip_param *p = &pl->params[i];
        const st_tensor *t = st_find(f, p->name);
        VLP_CHECK_FORMAT(t, err, "%s: no tensor %s", path, p->name);
        bool same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        VLP_CHECK_SHAPE(same && t->numel == p->numel, err, "%s: tensor %s has %zu values; this model and the "
                        "file's settings give it %zu (shape %lld x %lld x %lld)", path, p->name, t->numel, p->numel,
                        (long long)p->shape[0], (long long)(p->ndim > 1 ? p->shape[1] : 1),
                        (long long)(p->ndim > 2 ? p->shape[2] : 1));
        VLP_TRY(st_read_f32(f, t, pl->weights + p->offset, err));
        for (size_t k = 0; k < p->numel; k++)
            VLP_CHECK(isfinite(pl->weights[p->offset + k]), err, VLP_ERR_NUMERIC, "%s: tensor %s has a non-finite "
                      "value at %zu", path, p->name, k);
    }
    return VLP_OK;
}

vlp_err prompt_load(prompt_learner **out, const char *path, clip_model *m, const text_tokenizer *tok, int batch,
                    vlp_error *err) {
    VLP_CHECK_ARG(out && path && m && tok, err, "prompt_load: bad arguments");
    *out = NULL;
    st_file *f;
    VLP_TRY(st_open(path, &f, err));
    char **classes = NULL;
    int C = 0;
    const char *fmt = st_meta_get(f, "format"), *ver = st_meta_get(f, "version");
    vlp_err rc = VLP_OK;
    if (!fmt || strcmp(fmt, PROMPT_FORMAT))
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: not a prompt file (metadata format \"%s\", "
                           "not \"%s\")", path, fmt ? fmt : "missing", PROMPT_FORMAT);
    else if (!ver || strcmp(ver, PROMPT_FORMAT_VERSION))
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s: prompt file version %s; this vlp reads %s",
                           path, ver ? ver : "missing", PROMPT_FORMAT_VERSION);
    if (rc == VLP_OK) rc = meta_classes(f, &classes, &C, err);
    if (rc == VLP_OK) rc = load(out, f, m, tok, batch, classes, C, err);
    for (int c = 0; c < C; c++) free(classes[c]);
    free(classes);
    st_close(f);
    if (rc != VLP_OK) prompt_free(*out), *out = NULL;
    return rc;
}
