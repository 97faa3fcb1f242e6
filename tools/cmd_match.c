/* vlp match: the fusion encoder's image-text matching probability (ALBEF /
 * BLIP's ITM head) of images and texts, every pair or line by line, beside
 * the dual encoder's cosine; a TSV on stdout around the library's
 * vlp_itm_scores (src/api/itm_api.c). Images are read a chunk at a time
 * and texts scored a chunk at a time, so memory stays bounded however many
 * images there are (texts: their embeddings, E floats each). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "model_args.h"
#include "progress.h"
#include "vlp.h"

typedef struct match_args {
    model_args m;
    const char *images, *texts, *on_error;
    bool pairs;
} match_args;

static const opt_desc match_opts[] = {
    {NULL, "-i", "--images", "LIST", &opt_string, offsetof(match_args, images), 0, 0, OPT_REQUIRED, HELP_IMAGE_LIST,
     NULL},
    {NULL, "-T", "--texts", "FILE", &opt_string, offsetof(match_args, texts), 0, 0, OPT_REQUIRED, HELP_TEXT_LIST,
     NULL},
    {NULL, NULL, "--pairs", NULL, &opt_switch, offsetof(match_args, pairs), 0, 0, 0,
     "score line i of the images with line i of the texts (as many of each) instead of every pair", NULL},
    ON_ERROR_OPT(match_args, on_error),
};

/* images preprocessed and scored a call, with at most TEXT_CHUNK texts: the
 * towers' rows the fusion encoder reads stay bounded (texts run their tower
 * once per chunk of images: 1/32 of the fusion encoder's pairs) */
enum { CHUNK = 32, TEXT_CHUNK = 1024 };

/* one chunk's images preprocessed into px (slot by slot, the ones that
 * decode); ok[j] whether image j did; false after a message with stop */
static int read_chunk(vlp_model *m, char **paths, int k, bool stop, float *px, bool *ok, int *got, int *skipped,
                      progress *pr) {
    int S = vlp_model_image_size(m);
    char buf[1024];
    *got = 0;
    for (int j = 0; j < k; j++) {
        vlp_error e = {0};
        ok[j] = vlp_preprocess_image_file(m, paths[j], px + (size_t)*got * 3 * S * S, &e) == VLP_OK;
        if (ok[j]) {
            (*got)++;
            continue;
        }
        progress_break(pr);
        (*skipped)++;
        fprintf(stderr, "vlp match: %s%s\n", stop ? "" : "skipped: ", tool_error_text(&e, buf, sizeof buf));
        if (stop || e.code == VLP_ERR_NOMEM) return 1;
    }
    return 0;
}

/* the chunk's lines: every (image, text) or image j with text first + j */
static void print_chunk(char **paths, const bool *ok, int k, char **texts, int nt, int first, bool pairs,
                        const float *p, const float *ie, const float *te, int E) {
    for (int j = 0, row = 0; j < k; j++) {
        if (!ok[j]) continue;
        for (int t = pairs ? first + j : 0; t < (pairs ? first + j + 1 : nt); t++) {
            double c = 0;
            for (int e = 0; e < E; e++) c += (double)ie[(size_t)row * E + e] * te[(size_t)t * E + e];
            printf("%s\t%s\t%.6f\t%.6f\n", paths[j], texts[t], p[pairs ? (size_t)row : (size_t)row * nt + t], c);
        }
        row++;
    }
}

int cmd_match(int argc, char **argv) {
    match_args a = {.m = model_args_default()};
    const opt_group groups[] = {{match_opts, (int)(sizeof match_opts / sizeof *match_opts), &a}, MODEL_GROUP(&a.m)};
    const cmd_spec spec = {
        .name = "match",
        .usage = "vlp match --model FILE --images LIST --texts FILE [--pairs]",
        .about = "Image-text matching with a model's fusion encoder (one with fusion_cfg, e.g. trained\n"
                 "with --objective itc-itm-mlm): the probability that an image and a text match, the\n"
                 "softmax of its ITM head, for every image with every text (or line by line with\n"
                 "--pairs). Prints a TSV on stdout: image, text, match probability, and the dual\n"
                 "encoder's cosine of the two for comparison; a header line first.",
        .groups = groups, .ngroups = 2};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    int stop = on_error_stop(a.on_error, "match");
    if (stop < 0) return 2;
    if (!strcmp(a.images, "-") && !strcmp(a.texts, "-")) {
        fprintf(stderr, "vlp match: --images and --texts cannot both be read from stdin\n");
        return 2;
    }
    int ni = 0, nt = 0;
    char **paths = read_lines(a.images, false, &ni);
    if (!paths) return 1;
    if (!paths_beside(a.images, paths, ni)) return free_lines(paths, ni), 1;
    char **texts = read_lines(a.texts, false, &nt);
    if (!texts) return free_lines(paths, ni), 1;
    int rc = 0;
    if (!ni || !nt) rc = 1, fprintf(stderr, "vlp match: %s holds no %s (one a line)\n", ni ? a.texts : a.images,
                                    ni ? "text" : "image path");
    else if (a.pairs && ni != nt)
        rc = 2, fprintf(stderr, "vlp match: --pairs scores line by line, but %s has %d images and %s %d texts\n",
                        a.images, ni, a.texts, nt);
    vlp_model *m = rc ? NULL : open_model(&a.m, "match");
    if (!rc && !m) rc = 1;
    if (!rc && !vlp_model_has_fusion(m))
        rc = 1, fprintf(stderr, "vlp match: %s has no fusion encoder (its config has no fusion_cfg): no image-text "
                                "matching head; train one with --objective itc-itm-mlm\n", a.m.model);
    int S = m ? vlp_model_image_size(m) : 0, E = m ? vlp_model_embed_dim(m) : 0;
    float *px = rc ? NULL : malloc(sizeof(float) * CHUNK * 3 * (size_t)S * S);
    float *p = rc ? NULL : malloc(sizeof(float) * CHUNK * (size_t)(a.pairs ? 1 : nt));
    float *ie = rc ? NULL : malloc(sizeof(float) * CHUNK * (size_t)E), *te = rc ? NULL : malloc(sizeof(float) * (size_t)nt * E);
    int *pairs = rc ? NULL : malloc(sizeof(int) * 2 * CHUNK);
    float *part = rc ? NULL : malloc(sizeof(float) * CHUNK * (size_t)(nt < TEXT_CHUNK ? nt : TEXT_CHUNK));
    bool ok[CHUNK];
    if (!rc && (!px || !p || !ie || !te || !pairs || !part)) rc = 1, fprintf(stderr, "vlp match: out of memory\n");
    vlp_error err = {0};
    if (!rc && vlp_encode_texts(m, (const char *const *)texts, nt, te, &err) != VLP_OK) rc = 1;
    progress pr = {0};
    int skipped = 0;
    /* stop: every image read first, so that nothing is printed before the one that stops it */
    if (!rc && stop) progress_begin(&pr, stderr, "images read", ni);
    for (int i = 0; !rc && stop && i < ni; i += CHUNK) {
        int got;
        rc = read_chunk(m, paths + i, ni - i < CHUNK ? ni - i : CHUNK, true, px, ok, &got, &skipped, &pr);
        if (!rc) progress_update(&pr, i + (ni - i < CHUNK ? ni - i : CHUNK));
    }
    if (!rc && stop) progress_end(&pr, ni);
    if (!rc) printf("image\ttext\tmatch\tcosine\n"), progress_begin(&pr, stderr, "images", ni);
    for (int i = 0; !rc && i < ni; i += CHUNK) {
        int k = ni - i < CHUNK ? ni - i : CHUNK, got = 0;
        rc = read_chunk(m, paths + i, k, stop, px, ok, &got, &skipped, &pr);
        if (rc || !got) continue;
        if (a.pairs) { /* the images read with their own lines' texts: texts + i */
            for (int j = 0, row = 0; j < k; j++)
                if (ok[j]) pairs[2 * row] = row, pairs[2 * row + 1] = j, row++;
            rc = vlp_itm_scores(m, px, got, (const char *const *)texts + i, k, pairs, got, p, &err) != VLP_OK;
        }
        for (int t0 = 0; !rc && !a.pairs && t0 < nt; t0 += TEXT_CHUNK) { /* every text, TEXT_CHUNK a call */
            int tk = nt - t0 < TEXT_CHUNK ? nt - t0 : TEXT_CHUNK;
            rc = vlp_itm_scores(m, px, got, (const char *const *)texts + t0, tk, NULL, 0, part, &err) != VLP_OK;
            for (int r = 0; !rc && r < got; r++) memcpy(p + (size_t)r * nt + t0, part + (size_t)r * tk, sizeof(float) * tk);
        }
        if (!rc) rc = vlp_encode_images(m, px, got, ie, &err) != VLP_OK;
        progress_break(&pr);
        if (rc) break;
        print_chunk(paths + i, ok, k, texts, nt, i, a.pairs, p, ie, te, E);
        fflush(stdout);
        progress_update(&pr, i + k);
    }
    if (err.code) {
        char buf[1024];
        progress_break(&pr);
        fprintf(stderr, "vlp match: %s\n", tool_error_text(&err, buf, sizeof buf));
    }
    if (!rc && m) progress_end(&pr, ni);
    if (!rc && skipped)
        fprintf(stderr, "matched %d of %d images; skipped %d that could not be read (named above)\n", ni - skipped, ni,
                skipped),
            rc = ni == skipped ? 1 : ON_ERROR_SKIPPED_EXIT;
    free(px), free(p), free(ie), free(te), free(pairs), free(part);
    free_lines(paths, ni), free_lines(texts, nt);
    vlp_model_free(m);
    return rc;
}
