/* vlp_eval (include/vlp.h): what `vlp eval` measures on a set, for the
 * command and the Python package alike. One pass embeds the set (embed_set:
 * the model's eval transform, captions and labels kept, undecodable images
 * skipped and counted, the caption perplexity of a model with a decoder
 * summed batch by batch); then zero-shot, retrieval and the probe on those
 * embeddings. Nothing is printed: warnings and progress go to the caller's
 * callbacks, the figures to the result. */
#include "api/model_access.h"
#include "core/error.h"
#include "core/hashmap.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "eval/embed_set.h"
#include "eval/eval.h"
#include "eval/itm.h"
#include "eval/linear_probe.h"
#include "vlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vlp_eval_opts vlp_eval_opts_default(void) {
    return (vlp_eval_opts){.image_key = "filepath", .caption_key = "title", .probe_test_fraction = 0.5,
                           .probe_l2 = 1e-3};
}

void vlp_eval_opts_resolve(vlp_eval_opts *o) {
    if (o->prompts) o->zeroshot = true;
    else if (!o->zeroshot && !o->retrieval && !o->linear_probe)
        o->retrieval = true, o->zeroshot = o->linear_probe = o->label_key != NULL;
}

void vlp_eval_result_free(vlp_eval_result *r) {
    if (!r) return;
    for (int c = 0; r->class_names && c < r->classes; c++) free((char *)r->class_names[c]);
    free(r->class_names), free(r->class_images), free(r->class_correct);
    r->class_names = NULL, r->class_images = r->class_correct = NULL;
}

/* the pass over the set: the encoder (the model or its prompts), the
 * perplexity, the caller's callbacks */
typedef struct set_pass {
    vlp_model *m;
    const vlp_eval_opts *o;
    bool ppl, ppl_image;
    double nll;
    long targets;
    bool stop; // the caller's progress asked to stop
    itm_store *keep; // re-ranking: the images' fusion encoder input, kept
} set_pass;

static vlp_err pass_encode(void *ctx, const float *pixels, int n, float *out, vlp_error *err) {
    set_pass *p = ctx;
    VLP_CHECK_ARG(!p->stop, err, "stopped by the caller"); /* asked after the last batch: no more encoding */
    return p->o->prompts ? vlp_prompts_encode_images(p->o->prompts, pixels, n, out, err)
                         : model_encode_images_keeping(p->m, pixels, n, out, p->keep, err);
}

static vlp_err pass_batch(void *ctx, const float *pixels, char *const *captions, int first, int n, vlp_error *err) {
    set_pass *p = ctx;
    VLP_CHECK_ARG(!p->stop, err, "stopped by the caller after %d images", first);
    if (!p->ppl) return VLP_OK;
    double nll;
    long nt;
    VLP_TRY(vlp_caption_nll(p->m, p->ppl_image ? pixels : NULL, (const char *const *)captions, n, &nll, &nt, err));
    p->nll += nll, p->targets += nt;
    return VLP_OK;
}

static void pass_progress(void *ctx, int64_t done) {
    set_pass *p = ctx;
    if (p->o->progress && p->o->progress(p->o->user, (long long)done)) p->stop = true;
}

static void pass_warn(void *ctx, const char *msg) {
    const vlp_eval_opts *o = ctx;
    if (o->warn) o->warn(o->user, msg);
}

/* each label's index in the given classes (-1: not one of them): the number
 * of images that have one */
static vlp_err classes_of_labels(const embedded_set *s, const char *const *given, int C, int *y, int *used,
                                 vlp_error *err) {
    str_map index;
    VLP_CHECK(str_map_init(&index, (size_t)C), err, VLP_ERR_NOMEM, "the index of %d classes", C);
    for (int c = 0; c < C; c++) /* a name given twice: its first line */
        if (str_map_get(&index, given[c], strlen(given[c])) < 0 && !str_map_put(&index, given[c], strlen(given[c]), c)) {
            str_map_free(&index);
            VLP_FAIL(err, VLP_ERR_NOMEM, "the classes' index");
        }
    *used = 0;
    for (int i = 0; i < s->n; i++) {
        y[i] = s->label[i] ? str_map_get(&index, s->label[i], strlen(s->label[i])) : -1;
        *used += y[i] >= 0;
    }
    str_map_free(&index);
    return VLP_OK;
}

static vlp_err zeroshot(vlp_model *m, const vlp_eval_opts *o, const embedded_set *s, vlp_eval_result *r,
                        vlp_error *err) {
    int E = vlp_model_embed_dim(m), C = o->n_classes, *y = malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
    VLP_CHECK_ALLOC(y, err, sizeof(int) * (size_t)s->n);
    const char **cls = o->classes ? malloc(sizeof(char *) * (size_t)C)
                                  : distinct_strings((const char *const *)s->label, s->n, &C, y);
    vlp_err rc = cls ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the set's classes");
    if (rc == VLP_OK && o->classes) {
        memcpy(cls, o->classes, sizeof(char *) * (size_t)C);
        int used = 0;
        rc = classes_of_labels(s, o->classes, C, y, &used, err);
        if (rc == VLP_OK && !used)
            rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "no image of the set has one of the %d classes "
                               "given", C);
    }
    if (rc == VLP_OK && C == 0)
        rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "no image of the set has a label (key '%s')",
                           o->label_key);
    float *scores = rc ? NULL : malloc(sizeof(float) * (size_t)(o->prompts ? s->n : C) * (o->prompts ? C : E));
    r->class_images = rc ? NULL : calloc((size_t)C + 1, sizeof(int));
    r->class_correct = rc ? NULL : calloc((size_t)C + 1, sizeof(int));
    if (rc == VLP_OK && (!scores || !r->class_images || !r->class_correct))
        rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "zero-shot over %d classes", C);
    if (rc == VLP_OK && o->prompts)
        rc = vlp_prompts_set_classes(o->prompts, cls, C, err);
    if (rc == VLP_OK && o->prompts) rc = vlp_prompts_scores(o->prompts, s->emb, s->n, scores, err);
    if (rc == VLP_OK && !o->prompts) {
        char **shipped = NULL; /* no templates given: the set vlp ships as "default" */
        int ns = 0;
        if (!o->templates) rc = templates_load("default", &shipped, &ns, err);
        if (rc == VLP_OK)
            rc = vlp_encode_classes(m, cls, C, o->templates ? o->templates : (const char *const *)shipped,
                                    o->templates ? o->n_templates : ns, scores, err);
        vlp_templates_free(shipped, ns);
    }
    zeroshot_result z;
    const char **names = rc ? NULL : calloc((size_t)C + 1, sizeof(char *)); /* the result's own copies */
    for (int c = 0; names && c < C; c++)
        if (!(names[c] = strdup(cls[c]))) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "class names");
    if (rc == VLP_OK && !names) rc = vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "class names");
    r->class_names = names, r->classes = C; /* freed with the result, whatever follows */
    if (rc == VLP_OK)
        rc = o->prompts ? zeroshot_eval_scores(scores, y, s->n, C, &z, r->class_images, r->class_correct, err)
                        : zeroshot_eval_per_class(s->emb, scores, y, s->n, C, E, &z, r->class_images,
                                                  r->class_correct, err);
    if (rc == VLP_OK) {
        r->has_zeroshot = true, r->zs_images = z.n;
        r->top1 = z.top1, r->top5 = z.top5, r->balanced = z.balanced, r->majority = z.majority;
    }
    free(cls), free(y), free(scores);
    return rc;
}

typedef struct rerank_line {
    const vlp_eval_opts *o;
    long long total;
} rerank_line;

static int rerank_progress(void *ctx, long done) {
    const rerank_line *l = ctx;
    return l->o->rerank_progress ? l->o->rerank_progress(l->o->user, done, l->total) : 0;
}

/* each query's top K by cosine (vlp_search), pairs (image, text) of them
 * into img_of / txt_of from `at` on; top (nq, K) the items */
static vlp_err top_pairs(const float *gallery, int ng, const float *query, int nq, int E, int K, bool query_is_image,
                         int *top, int *img_of, int *txt_of, vlp_error *err) {
    long *ids = malloc(sizeof(long) * (size_t)nq * K);
    float *cos = malloc(sizeof(float) * (size_t)nq * K);
    vlp_err rc = ids && cos ? vlp_search(gallery, ng, E, query, nq, K, ids, cos, err)
                            : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the top %d of %d queries", K, nq);
    for (size_t i = 0; rc == VLP_OK && i < (size_t)nq * K; i++) {
        int q = (int)(i / (size_t)K);
        top[i] = (int)ids[i];
        img_of[i] = query_is_image ? q : top[i], txt_of[i] = query_is_image ? top[i] : q;
    }
    free(ids), free(cos);
    return rc;
}

/* Both directions' top K re-ordered by the fusion encoder's ITM (ALBEF's
 * and BLIP's second stage): by its margin, in the order of the probability
 * without its rounding to 1. */
static vlp_err rerank(vlp_model *m, const vlp_eval_opts *o, const embedded_set *s, const float *T, int nt,
                      const int *cap_of, const itm_store *keep, vlp_eval_result *r, vlp_error *err) {
    int E = vlp_model_embed_dim(m), Ki = o->rerank < nt ? o->rerank : nt, Kt = o->rerank < s->n ? o->rerank : s->n;
    size_t Pi = (size_t)s->n * Ki, P = Pi + (size_t)nt * Kt;
    int *top = malloc(sizeof(int) * P), *img_of = malloc(sizeof(int) * P), *txt_of = malloc(sizeof(int) * P);
    float *score = malloc(sizeof(float) * P);
    vlp_err rc = top && img_of && txt_of && score
                     ? VLP_OK
                     : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "%zu pairs to re-rank", P);
    if (rc == VLP_OK) rc = top_pairs(T, nt, s->emb, s->n, E, Ki, true, top, img_of, txt_of, err);
    if (rc == VLP_OK) rc = top_pairs(s->emb, s->n, T, nt, E, Kt, false, top + Pi, img_of + Pi, txt_of + Pi, err);
    rerank_line line = {o, (long long)P};
    if (rc == VLP_OK)
        rc = itm_pair_scores(model_clip(m), keep, img_of, txt_of, (long)P, score, rerank_progress, &line, err);
    retrieval_result i2t, t2i;
    if (rc == VLP_OK) rc = retrieval_eval_reranked(s->emb, T, cap_of, NULL, s->n, nt, E, top, score, Ki, &i2t, err);
    if (rc == VLP_OK)
        rc = retrieval_eval_reranked(T, s->emb, NULL, cap_of, nt, s->n, E, top + Pi, score + Pi, Kt, &t2i, err);
    if (rc == VLP_OK) {
        r->rerank = o->rerank;
        r->rr_i2t_r1 = i2t.r1, r->rr_i2t_r5 = i2t.r5, r->rr_i2t_r10 = i2t.r10;
        r->rr_i2t_mean_rank = i2t.mean_rank, r->rr_i2t_median_rank = i2t.median_rank;
        r->rr_t2i_r1 = t2i.r1, r->rr_t2i_r5 = t2i.r5, r->rr_t2i_r10 = t2i.r10;
        r->rr_t2i_mean_rank = t2i.mean_rank, r->rr_t2i_median_rank = t2i.median_rank;
    }
    free(top), free(img_of), free(txt_of), free(score);
    return rc;
}

static vlp_err retrieval(vlp_model *m, const vlp_eval_opts *o, const embedded_set *s, itm_store *keep,
                         vlp_eval_result *r, vlp_error *err) {
    int E = vlp_model_embed_dim(m), nt = 0, *cap_of = malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
    const char **caps = cap_of ? distinct_strings((const char *const *)s->caption, s->n, &nt, cap_of) : NULL;
    float *T = caps ? malloc(sizeof(float) * (size_t)(nt ? nt : 1) * E) : NULL;
    vlp_err rc = T ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "retrieval's captions");
    if (rc == VLP_OK) rc = model_encode_texts_keeping(m, caps, nt, T, keep, err);
    retrieval_result i2t, t2i;
    if (rc == VLP_OK) rc = retrieval_eval(s->emb, T, cap_of, s->n, nt, E, &i2t, err);
    if (rc == VLP_OK) rc = retrieval_eval_multi(T, s->emb, cap_of, nt, s->n, E, &t2i, err);
    if (rc == VLP_OK) {
        r->has_retrieval = true, r->texts = nt;
        r->i2t_r1 = i2t.r1, r->i2t_r5 = i2t.r5, r->i2t_r10 = i2t.r10;
        r->i2t_mean_rank = i2t.mean_rank, r->i2t_median_rank = i2t.median_rank;
        r->t2i_r1 = t2i.r1, r->t2i_r5 = t2i.r5, r->t2i_r10 = t2i.r10;
        r->t2i_mean_rank = t2i.mean_rank, r->t2i_median_rank = t2i.median_rank;
    }
    if (rc == VLP_OK && keep) rc = rerank(m, o, s, T, nt, cap_of, keep, r, err);
    free(cap_of), free(caps), free(T);
    return rc;
}

static vlp_err probe(vlp_model *m, const vlp_eval_opts *o, const embedded_set *s, vlp_eval_result *r,
                     vlp_error *err) {
    int E = vlp_model_embed_dim(m), C = 0, *y = malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
    const char **cls = y ? distinct_strings((const char *const *)s->label, s->n, &C, y) : NULL;
    bool *is_test = malloc(sizeof(bool) * (size_t)(s->n ? s->n : 1));
    float *x = malloc(sizeof(float) * (size_t)(s->n ? s->n : 1) * E);
    vlp_err rc = cls && is_test && x ? VLP_OK : vlp_error_set(err, VLP_ERR_NOMEM, __FILE__, __LINE__, "the probe");
    int n = 0;
    rng64 rg = {o->seed ^ 0x5EEDull};
    for (int i = 0; rc == VLP_OK && i < s->n; i++) { /* labelled rows only */
        if (y[i] < 0) continue;
        memcpy(x + (size_t)n * E, s->emb + (size_t)i * E, sizeof(float) * E);
        y[n] = y[i], is_test[n] = rng64_uniform(&rg) < o->probe_test_fraction;
        n++;
    }
    probe_result pr;
    if (rc == VLP_OK) rc = linear_probe(x, y, is_test, n, E, C, o->probe_l2, 1000, &pr, err);
    if (rc == VLP_OK) {
        r->has_probe = true, r->probe_classes = C, r->probe_iterations = pr.iterations;
        r->probe_test_acc = pr.test_acc, r->probe_train_acc = pr.train_acc, r->probe_loss = pr.final_loss;
    }
    free(x), free(y), free(cls), free(is_test);
    return rc;
}

vlp_err vlp_eval(vlp_model *m, const vlp_eval_opts *given, vlp_eval_result *out, vlp_error *err) {
    if (out) memset(out, 0, sizeof *out); /* freeable whatever follows */
    VLP_CHECK_ARG(m && given && given->data && out, err, "vlp_eval needs a model, a set and a result");
    vlp_eval_opts o = *given;
    vlp_eval_opts_resolve(&o);
    if (!o.image_key) o.image_key = "filepath";
    if (!o.caption_key) o.caption_key = "title";
    VLP_CHECK_ARG(!o.prompts || (!o.retrieval && !o.linear_probe), err,
                  "learnt prompts evaluate their classifier (zero-shot) only; evaluate retrieval and the probe "
                  "without them");
    VLP_CHECK_ARG(!(o.zeroshot || o.linear_probe) || o.label_key, err,
                  "zero-shot and the linear probe need the labels' key (--label-key)");
    VLP_CHECK_ARG(!o.classes || (o.zeroshot && o.n_classes > 0), err,
                  "classes are zero-shot's: ask for zero-shot, with at least one class");
    VLP_CHECK_ARG(!o.templates || o.n_templates > 0, err, "no templates");
    VLP_CHECK_ARG(o.rerank >= 0 && (!o.rerank || o.retrieval), err,
                  "re-ranking (%d) is retrieval's: ask for retrieval, with a top K of at least 1", o.rerank);
    VLP_CHECK_ARG(!o.rerank || vlp_model_has_fusion(m), err,
                  "re-ranking needs a model with a fusion encoder (its config's fusion_cfg: an ITM head); this one "
                  "has none");
    VLP_CHECK_ARG(o.probe_test_fraction > 0 && o.probe_test_fraction < 1 && o.probe_l2 >= 0, err,
                  "the probe's held-out fraction is %g (0..1) and its L2 %g (>= 0)", o.probe_test_fraction,
                  o.probe_l2);
    dataset_opts d = dataset_opts_default();
    d.shuffle = false, d.image_key = o.image_key, d.caption_key = o.caption_key, d.alt_caption_key = o.label_key;
    d.warn = pass_warn, d.warn_ctx = &o;
    sample_stream *st;
    VLP_TRY(stream_open(&st, o.data, &d, err));
    if (o.progress && o.progress(o.user, 0)) { /* the set opened: the caller's progress starts */
        stream_free(st);
        VLP_FAIL(err, VLP_ERR_ARG, "stopped by the caller before the first image");
    }
    itm_store keep = {0};
    set_pass p = {.m = m, .o = &o, .ppl = vlp_model_has_decoder(m), .ppl_image = !o.text_only,
                  .keep = o.rerank ? &keep : NULL};
    embed_set_opts eo = {.image_size = vlp_model_image_size(m), .embed_dim = vlp_model_embed_dim(m), .batch = 32,
                         .pre = &model_clip(m)->cfg.vision.pre, .warn = pass_warn, .warn_ctx = &o,
                         .stop_on_bad = o.stop_on_bad, .batch_done = pass_batch, .progress = pass_progress, .ctx = &p};
    embedded_set s;
    vlp_err rc = embed_set(st, pass_encode, &eo, &s, err);
    const char *why;
    out->skipped_rows = stream_skipped(st, &why);
    if (out->skipped_rows && why) snprintf(out->first_skipped, sizeof out->first_skipped, "%s", why);
    stream_free(st);
    if (rc != VLP_OK) return itm_store_free(&keep), rc;
    out->images = s.n, out->undecodable = s.undecodable;
    memcpy(out->first_undecodable, s.first_undecodable, sizeof out->first_undecodable);
    if (p.stop) rc = vlp_error_set(err, VLP_ERR_ARG, __FILE__, __LINE__, "stopped by the caller after %d images", s.n);
    else if (s.n == 0)
        rc = vlp_error_set(err, VLP_ERR_FORMAT, __FILE__, __LINE__, "%s holds no usable samples", o.data);
    if (rc == VLP_OK && p.ppl && p.targets > 0)
        out->has_caption = true, out->caption_image = p.ppl_image, out->caption_nll = p.nll,
        out->caption_tokens = p.targets;
    if (rc == VLP_OK && o.zeroshot) rc = zeroshot(m, &o, &s, out, err);
    if (rc == VLP_OK && o.retrieval) rc = retrieval(m, &o, &s, p.keep, out, err);
    if (rc == VLP_OK && o.linear_probe) rc = probe(m, &o, &s, out, err);
    itm_store_free(&keep);
    embedded_set_free(&s); /* on failure, the tasks done before keep their results (has_*) */
    return rc;
}
