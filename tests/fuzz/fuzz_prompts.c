/* A prompt file of vlp adapt (safetensors with the method, its settings and
 * the classes in the metadata) loaded for a small fixed model, then used:
 * scores of a batch of images, and other classes. A file that loads is also
 * a round trip: saved, loaded again, it must hold the same method, settings,
 * classes and weights, and score the images the same, bit for bit, or the
 * target aborts (issue 31: a class whose name was not UTF-8 vanished). The seeds are valid files
 * of every method for that model (its weights' hash matches), written by
 * this file's own main when built with -DPROMPT_SEEDS (see below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "adapt/prompt.h"

/* a test tool's one model and tokenizer, built once */
static clip_model model;
static text_tokenizer tok;
static int vocab = 40;
static bool ready;

/* a token a word, between the start and the end token, cut as open_clip cuts */
static void words_encode(const void *impl, const char *text, int32_t *ids, int ctx) {
    int V = *(const int *)impl, words = 0;
    for (const char *p = text; *p; p++) words += *p != ' ' && (p == text || p[-1] == ' ');
    int n = words < ctx - 2 ? words : ctx - 2;
    memset(ids, 0, sizeof(int32_t) * ctx);
    ids[0] = V - 2;
    for (int i = 1; i <= n; i++) ids[i] = 1 + i % (V - 3);
    ids[n + 1] = V - 1;
}

/* the weights from integers only: the same floats, so the same hash, in every build */
static bool setup(void) {
    if (ready) return true;
    clip_config c = {.embed_dim = 16,
                     .vision = {.image_size = 16, .patch_size = 8, .width = 16, .layers = 2, .heads = 2,
                                .mlp_width = 32},
                     .text = {.context_length = 10, .vocab_size = vocab, .width = 16, .layers = 2, .heads = 2,
                              .mlp_width = 32}};
    if (clip_init_inference(&model, &c, NULL) != VLP_OK) return false;
    for (size_t i = 0; i < model.nfloats; i++) model.weights[i] = (float)((int)(i * 7919 % 201) - 100) / 512.0f;
    tok = (text_tokenizer){.impl = &vocab, .vocab_size = vocab, .encode = words_encode};
    return ready = clip_reserve(&model, 4, NULL) == VLP_OK;
}

/* the learner's scores of a fixed batch (malloc'd, 4 x C), or NULL when it cannot score */
static float *scores_of(prompt_learner *pl) {
    float images[4 * 3 * 16 * 16], img[4 * 16], *scores = malloc(sizeof(float) * 4 * (size_t)pl->C);
    for (int i = 0; i < 4 * 3 * 16 * 16; i++) images[i] = (float)(i % 13) / 13.0f - 0.5f;
    if (scores && pl->method->embed_images(pl, images, 4, img, NULL) == VLP_OK &&
        pl->method->scores(pl, img, 4, scores, NULL) == VLP_OK)
        return scores;
    free(scores);
    return NULL;
}

/* saved and loaded again: the same learner, the same scores */
static void round_trip(const prompt_learner *pl, const float *scores) {
    char out[96];
    snprintf(out, sizeof out, "/tmp/vlp-fuzz-prompts-%d.safetensors", (int)getpid());
    prompt_learner *back;
    if (prompt_save(pl, out, NULL, 0, NULL) != VLP_OK || prompt_load(&back, out, &model, &tok, 4, NULL) != VLP_OK)
        abort();
    unlink(out);
    bool same = back->method == pl->method && back->C == pl->C && back->n == pl->n && back->depth == pl->depth &&
                back->csc == pl->csc && !strcmp(back->init, pl->init) && back->nfloats == pl->nfloats &&
                !memcmp(back->weights, pl->weights, sizeof(float) * pl->nfloats);
    for (int c = 0; same && c < pl->C; c++) same = !strcmp(back->classes[c], pl->classes[c]);
    float *again = same && scores ? scores_of(back) : NULL;
    if (!same || (scores && (!again || memcmp(again, scores, sizeof(float) * 4 * (size_t)pl->C)))) abort();
    free(again);
    prompt_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!setup()) return 0;
    const char *path = fuzz_file(data, size, ".safetensors");
    prompt_learner *pl;
    if (!path || prompt_load(&pl, path, &model, &tok, 4, NULL) != VLP_OK) return 0;
    float *scores = scores_of(pl);
    round_trip(pl, scores);
    const char *other[] = {"emu", "a b"};
    prompt_set_classes(pl, other, 2, NULL);
    free(scores);
    prompt_free(pl);
    return 0;
}

#ifdef PROMPT_SEEDS
/* cc -DPROMPT_SEEDS -Isrc -Iinclude -Itests/fuzz tests/fuzz/fuzz_prompts.c tests/fuzz/fuzz_support.c
 *    build/release/libvlp.a $(libs) -o seeds && ./seeds tests/fuzz/corpus/prompts */
int main(int argc, char **argv) {
    if (argc != 2 || !setup()) return 2;
    const char *names[] = {"cat", "red dog", "tree"};
    struct { const char *method, *file; prompt_cfg cfg; } seeds[] = {
        {"coop", "coop", {.n_ctx = 2, .init = "", .batch = 4, .seed = 1}},
        {"coop", "coop_csc", {.n_ctx = 2, .csc = true, .init = "", .batch = 4, .seed = 2}},
        {"cocoop", "cocoop", {.n_ctx = -1, .init = "a photo", .batch = 4, .seed = 3}},
        {"maple", "maple", {.n_ctx = 2, .depth = 2, .init = "", .batch = 4, .seed = 4}},
        {"linear-probe", "probe", {.n_ctx = -1, .batch = 4, .seed = 5}},
    };
    for (size_t k = 0; k < sizeof seeds / sizeof *seeds; k++) {
        prompt_learner *pl;
        vlp_error err = {0};
        char out[512];
        snprintf(out, sizeof out, "%s/%s", argv[1], seeds[k].file);
        if (prompt_create(&pl, prompt_method_find(seeds[k].method), &seeds[k].cfg, &model, &tok, names, 3, &err) ||
            prompt_save(pl, out, NULL, 0, &err))
            return fprintf(stderr, "%s: %s\n", out, err.message), 1;
        prompt_free(pl);
    }
    return 0;
}
#endif
