/* vlp quantize: an fp32 model → an int8 model for embedding (vlp_model_save_int8),
 * with a check of how far its embeddings moved. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/datadir.h"
#include "args.h"
#include "commands.h"
#include "core/rng.h"
#include "io/atomic.h"
#include "io/file.h"
#include "model_args.h"
#include "vlp.h"

/* the texts of the check: short captions, the kind zero-shot prompts are */
static const char *const CHECK_TEXTS[] = {
    "a photo of a dog.", "a photo of a cat.", "a red car parked on a street",
    "two people walking on the beach at sunset", "a bowl of fruit on a wooden table",
    "an emoji of a smiling face", "a diagram of a neural network", "snow on the mountains",
};
#define NCHECK_TEXTS (int)(sizeof CHECK_TEXTS / sizeof *CHECK_TEXTS)

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

/* images (random pixels, the check's inputs) and texts → emb (n_img + n_txt, E) */
static vlp_err encode_check(vlp_model *m, const float *pixels, int n_img, float *emb, vlp_error *err) {
    int E = vlp_model_embed_dim(m);
    if (n_img && vlp_encode_images(m, pixels, n_img, emb, err) != VLP_OK) return err->code;
    return vlp_encode_texts(m, CHECK_TEXTS, NCHECK_TEXTS, emb + (size_t)n_img * E, err);
}

/* The model's own tokenizer (--vocab, or tokenizer.merges beside it) goes
 * beside the int8 model too, where the loaders look for it. Another model's
 * tokenizer already there would be read with the int8 model (two models of
 * the same vocabulary size load without a word): that is refused before the
 * work. 0: nothing to copy or the same file there (*copy false) or none there
 * (*copy true); 1 after a message. */
static int tokenizer_plan(const char *model, const char *vocab, const char *out, char *src, char *dst, size_t n,
                          bool *copy) {
    *copy = false;
    if (vocab) snprintf(src, n, "%s", vocab);
    else vocab_beside(model, src, n);
    vocab_beside(out, dst, n);
    if (access(src, R_OK) != 0) return 0; /* OpenAI's, shipped with vlp: nothing to carry */
    if (access(dst, F_OK) != 0) return *copy = true, 0;
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    vlp_error err = {0};
    bool same = read_whole_file(src, (size_t)1 << 30, &a, &na, &err) == VLP_OK &&
                read_whole_file(dst, (size_t)1 << 30, &b, &nb, &err) == VLP_OK && na == nb && !memcmp(a, b, na);
    free(a), free(b);
    if (same) return 0;
    fprintf(stderr, "vlp quantize: %s holds another tokenizer than the model's (%s): the int8 model would be read "
                    "with it; write it into another folder\n", dst, src);
    return 1;
}

static void copy_tokenizer(const char *src, const char *dst) {
    uint8_t *a = NULL;
    size_t na = 0;
    vlp_error err = {0};
    atomic_file af;
    bool ok = read_whole_file(src, (size_t)1 << 30, &a, &na, &err) == VLP_OK && atomic_open(&af, dst, &err) == VLP_OK;
    if (ok && !atomic_write(&af, a, na)) atomic_abort(&af), ok = false;
    if (ok && atomic_commit(&af, &err) != VLP_OK) ok = false;
    free(a);
    if (ok) fprintf(stderr, "copied the model's tokenizer to %s\n", dst);
    else
        fprintf(stderr, "warning: could not write %s (%s): give --vocab %s with the int8 model\n", dst,
                err.message[0] ? err.message : "write failed", src);
}

typedef struct quantize_args {
    model_args m;
    const char *out;
    long check;
} quantize_args;

static const opt_desc quantize_opts[] = {
    {NULL, "-o", "--out", "FILE", &opt_string, offsetof(quantize_args, out), 0, 0, OPT_REQUIRED,
     "the int8 model to write", NULL},
    {NULL, NULL, "--check", "N", &opt_long, offsetof(quantize_args, check), 0, 256, 0,
     "random images in the check", NULL},
};

int cmd_quantize(int argc, char **argv) {
    quantize_args q = {.m = model_args_default(), .check = 8};
    const opt_group groups[] = {{quantize_opts, (int)(sizeof quantize_opts / sizeof *quantize_opts), &q},
                                MODEL_GROUP(&q.m)};
    char about[1024];
    snprintf(about, sizeof about,
             "Writes an int8 model for embedding (embed, search, classify, eval, caption load\n"
             "it as any model): the four matrices of every transformer block of both towers\n"
             "in int8 with one scale per output channel; activations are quantized per token\n"
             "as each layer runs (AVX512-VNNI, else a portable kernel). The rest stays fp32.\n"
             "Then it embeds --check random images and %d captions with both models and\n"
             "prints the cosine of each int8 embedding to its fp32 one.", NCHECK_TEXTS);
    const cmd_spec spec = {.name = "quantize",
                           .usage = "vlp quantize --model FILE --out FILE.int8.safetensors [options]",
                           .about = about, .groups = groups, .ngroups = 2};
    int prc = opts_parse(&spec, argc, argv, NULL, NULL);
    if (prc) return prc == 1 ? 0 : 2;
    if (!output_writable(q.out, "quantize")) return 1; /* before the work */
    char tok_src[4096], tok_dst[4096];
    bool copy_tok = false;
    if (q.m.model && tokenizer_plan(q.m.model, q.m.o.vocab, q.out, tok_src, tok_dst, sizeof tok_src, &copy_tok)) return 1;
    model_args a = q.m;
    const char *out = q.out;
    long check = q.check;
    vlp_model *m = open_model(&a, "quantize");
    if (!m) return 1;
    int rc = 1, E = vlp_model_embed_dim(m), S = vlp_model_image_size(m), n = (int)check + NCHECK_TEXTS;
    float *pixels = malloc(sizeof(float) * (size_t)(check ? check : 1) * 3 * S * S);
    float *before = malloc(sizeof(float) * (size_t)n * E), *after = malloc(sizeof(float) * (size_t)n * E);
    vlp_error err = {0};
    char buf[1024];
    if (!pixels || !before || !after) {
        fprintf(stderr, "vlp quantize: out of memory for the check\n");
        goto done;
    }
    if (vlp_model_is_int8(m)) {
        fprintf(stderr, "vlp quantize: %s is an int8 model already\n", a.model);
        goto done;
    }
    rng64 r = {1};
    for (size_t i = 0; i < (size_t)check * 3 * S * S; i++) pixels[i] = rng64_normal(&r);
    if (encode_check(m, pixels, (int)check, before, &err) != VLP_OK ||
        vlp_model_save_int8(m, out, &err) != VLP_OK ||
        encode_check(m, pixels, (int)check, after, &err) != VLP_OK) {
        fprintf(stderr, "vlp quantize: %s\n", tool_error_text(&err, buf, sizeof buf));
        goto done;
    }
    if (copy_tok) copy_tokenizer(tok_src, tok_dst);
    struct stat in_st, out_st;
    if (stat(a.model, &in_st) == 0 && stat(out, &out_st) == 0)
        fprintf(stderr, "wrote %s: %.1f MiB (the fp32 file: %.1f MiB)\n", out, out_st.st_size / 1048576.0,
                in_st.st_size / 1048576.0);
    int from[2] = {0, (int)check}, to[2] = {(int)check, n};
    for (int k = 0; k < 2; k++) {
        if (from[k] == to[k]) continue;
        double lo = 1.0, sum = 0.0;
        for (int i = from[k]; i < to[k]; i++) {
            double c = cosine(before + (size_t)i * E, after + (size_t)i * E, E);
            lo = c < lo ? c : lo, sum += c;
        }
        printf("int8 vs fp32 embedding cosine, %d %s: mean %.5f, min %.5f\n", to[k] - from[k],
               k == 0 ? "random images" : "captions", sum / (to[k] - from[k]), lo);
    }
    rc = 0;
done:
    free(pixels), free(before), free(after);
    vlp_model_free(m);
    return rc;
}
