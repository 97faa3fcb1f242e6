/* The learnt-prompts API of include/vlp.h over src/adapt: the prompts are on
 * the model only inside these calls. */
#include "adapt/prompt.h"
#include "api/model_internal.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vlp_prompts {
    vlp_model *model;
    prompt_learner *pl;
};

vlp_err vlp_prompts_load(vlp_prompts **out, vlp_model *m, const char *path, vlp_error *err) {
    VLP_CHECK_ARG(out && m && path, err, "vlp_prompts_load needs an output handle, a model and a path");
    *out = NULL;
    vlp_prompts *p = calloc(1, sizeof *p);
    VLP_CHECK_ALLOC(p, err, sizeof *p);
    p->model = m;
    vlp_err rc = prompt_load(&p->pl, path, &m->m, &m->tok, m->o.batch, err);
    if (rc != VLP_OK) {
        free(p);
        return rc;
    }
    prompt_detach(p->pl);
    *out = p;
    return VLP_OK;
}

void vlp_prompts_free(vlp_prompts *p) {
    if (!p) return;
    prompt_free(p->pl);
    free(p);
}

const char *vlp_prompts_describe(const vlp_prompts *p, char *buf, size_t n) {
    const prompt_learner *pl = p->pl;
    if (pl->method->fit) snprintf(buf, n, "%s: %d classes", pl->method->name, pl->C);
    else
        snprintf(buf, n, "%s: %d context tokens%s%s%s%s, %d classes", pl->method->name, pl->n,
                 pl->csc ? " per class" : "", pl->init[0] ? " from \"" : "", pl->init, pl->init[0] ? "\"" : "", pl->C);
    if (pl->method->deep && buf[0]) {
        size_t used = strlen(buf);
        if (used < n) snprintf(buf + used, n - used, ", prompt depth %d", pl->depth);
    }
    return buf;
}

int vlp_prompts_class_count(const vlp_prompts *p) { return p->pl->C; }

const char *vlp_prompts_class_name(const vlp_prompts *p, int c) {
    return c >= 0 && c < p->pl->C ? p->pl->classes[c] : NULL;
}

vlp_err vlp_prompts_set_classes(vlp_prompts *p, const char *const *classes, int C, vlp_error *err) {
    vlp_err rc = prompt_set_classes(p->pl, classes, C, err);
    prompt_detach(p->pl);
    return rc;
}

vlp_err vlp_prompts_encode_images(vlp_prompts *p, const float *pixels, int n, float *out, vlp_error *err) {
    VLP_CHECK_ARG(p && (pixels || !n) && (out || !n) && n >= 0, err, "vlp_prompts_encode_images: bad arguments");
    prompt_learner *pl = p->pl;
    int S = pl->m->cfg.vision.image_size;
    vlp_err rc = prompt_attach(pl, err);
    for (int i0 = 0; rc == VLP_OK && i0 < n; i0 += pl->batch) {
        int b = n - i0 < pl->batch ? n - i0 : pl->batch;
        rc = pl->method->embed_images(pl, pixels + (size_t)i0 * 3 * S * S, b, out + (size_t)i0 * pl->E, err);
    }
    prompt_detach(pl);
    return rc;
}

vlp_err vlp_prompts_scores(vlp_prompts *p, const float *features, int n, float *scores, vlp_error *err) {
    VLP_CHECK_ARG(p && (features || !n) && (scores || !n) && n >= 0, err, "vlp_prompts_scores: bad arguments");
    prompt_learner *pl = p->pl;
    vlp_err rc = prompt_attach(pl, err);
    for (int i0 = 0; rc == VLP_OK && i0 < n; i0 += pl->batch) {
        int b = n - i0 < pl->batch ? n - i0 : pl->batch;
        float *out = scores + (size_t)i0 * pl->C;
        rc = pl->method->scores(pl, features + (size_t)i0 * pl->E, b, out, err);
        float scale = pl->method->fit ? 1.0f : pl_logit_scale(pl); /* cosines to logits */
        for (size_t i = 0; rc == VLP_OK && i < (size_t)b * pl->C; i++) out[i] *= scale;
    }
    prompt_detach(pl);
    return rc;
}

vlp_err vlp_prompts_encode_image_files(vlp_prompts *p, const char *const *paths, int n, float *out, vlp_error *err) {
    VLP_CHECK_ARG(p && (paths || !n) && (out || !n) && n >= 0, err, "vlp_prompts_encode_image_files: bad arguments");
    vlp_model *v = p->model;
    int E = v->m.cfg.embed_dim;
    for (int i0 = 0; i0 < n; i0 += v->o.batch) {
        int b = n - i0 < v->o.batch ? n - i0 : v->o.batch;
        VLP_TRY(model_file_pixels(v, paths + i0, b, err)); /* as vlp_encode_image_files */
        VLP_TRY(vlp_prompts_encode_images(p, v->pixels, b, out + (size_t)i0 * E, err));
    }
    return VLP_OK;
}
