/*
 * vlp — vision-language pre-training in C.
 *
 * Public API. Conventions:
 *   - every call that can fail returns a vlp_err (VLP_OK == 0) and, when the
 *     caller passes a non-NULL vlp_error*, fills it with the code, the source
 *     location that detected the fault and a message meant for a human;
 *   - the library never exits, never prints on its own and keeps no global
 *     mutable state: all state lives in handles or caller-owned buffers;
 *   - output buffers are owned by the caller.
 */
#ifndef VLP_H
#define VLP_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VLP_VERSION_MAJOR 0
#define VLP_VERSION_MINOR 1
#define VLP_VERSION_PATCH 0
#define VLP_VERSION_STRING "0.1.0"

#include "vlp_error.h"

/* ---- system ------------------------------------------------------------ */

/* VLP_VERSION_STRING of the library that runs (a program may have been
 * built against another's header) */
const char *vlp_version(void);

typedef struct vlp_sysinfo {
    int threads;          /* OpenMP threads the library will use */
    bool avx2, fma, avx512f, avx512bf16; /* what the kernels may use (VLP_CPU can lower it) */
    char isa[24];         /* the level the kernels run at: "avx2", "avx512-bf16", "neon", ... */
    char cpu_isa[24];     /* the CPU's own level (differs when VLP_CPU lowered it) */
    char kernels[192];    /* each kernel family's level: "gelu=avx512 attention=avx2 ..." */
    char blas_name[32];   /* "OpenBLAS 0.3.21", or "cblas" */
    char blas_kernel[32]; /* OpenBLAS core name, e.g. "Cooperlake" */
    char blas_threading[16]; /* "openmp", "pthreads", "sequential" */
    int blas_threads;
    /* true when the BLAS runs kernels weaker than the CPU allows because
     * OPENBLAS_CORETYPE in the environment forced them */
    bool blas_kernel_forced_weaker;
    char forced_coretype[32];
} vlp_sysinfo;

void vlp_sysinfo_get(vlp_sysinfo *out);

/* One line, whisper.cpp style: version, threads, SIMD, BLAS kernel. */
const char *vlp_sysinfo_format(const vlp_sysinfo *s, char *buf, size_t n);

/* The kernels run at the CPU's instruction-set level, or the lower one the
 * environment variable VLP_CPU names (portable, avx2, avx2-vnni, avx512,
 * avx512-vnni, avx512-bf16; on arm64 portable, neon, dotprod, i8mm), read
 * once per process. VLP_ERR_ARG for a name that is no level,
 * VLP_ERR_UNSUPPORTED for a level above the CPU's: the kernels then run
 * their portable paths, and a program should stop with the message. */
vlp_err vlp_cpu_check(vlp_error *err);

/* Set the thread count of the library's OpenMP loops and of the BLAS.
 * n <= 0 picks the number of cores. */
void vlp_set_threads(int n);

/* ---- the data vlp ships -------------------------------------------------- */

/* The path of a file vlp ships, by its name under the data directory:
 * "configs/ViT-B-16.json", "vocab/bpe_simple_vocab_16e6.txt.gz",
 * "templates/openai-imagenet.txt". Looked up in $VLP_DATA_DIR when set, else
 * next to the library as installed (<prefix>/share/vlp), else in the source
 * tree the library was built in, else in the data directory of the prefix it
 * was built for; never in the working directory. */
vlp_err vlp_data_file(const char *name, char *out, size_t n, vlp_error *err);

/* ---- models: load pretrained or vlp-trained CLIP weights and embed ------- */

typedef struct vlp_model vlp_model;

typedef struct vlp_model_opts {
    /* BPE merges file. NULL: "tokenizer.merges" next to the weights (a vlp
     * run directory), else $VLP_BPE_MERGES, else OpenAI's merges that vlp
     * ships (vlp_data_file "vocab/bpe_simple_vocab_16e6.txt.gz") */
    const char *vocab;
    int quick_gelu; /* -1: the config's (given or the file's), QuickGELU (OpenAI's) when inferred; 0/1 forced */
    int batch;      /* encoder batch (default 32) */
    bool normalize; /* L2-normalise embeddings (default true) */
    /* the transformer blocks' matmuls with bf16 inputs and fp32 accumulation
     * (default false: fp32, PyTorch's numbers). Faster where the CPU has
     * AVX512-BF16; embeddings then differ from fp32 by bf16 rounding (cosine
     * ~0.999). Without AVX512-BF16 the model stays fp32 (vlp_model_describe
     * says which). */
    bool bf16;
    /* The architecture: an open_clip model name ("ViT-B-16", "ViT-H-14",
     * "tiny"; vlp_data_file "configs/NAME.json") or a JSON file in open_clip's
     * fields (a name has no '/' and does not end in .json). NULL: the config
     * in the file's metadata, else inferred from the tensor shapes with head
     * width 64 (vlp_model_warning says so). Tensors that disagree with it are
     * an error naming the tensor and both shapes. */
    const char *model_config;
    /* Keep what the towers' backward needs (activations, a gradient buffer):
     * for learning prompts on the frozen model (vlp adapt). Default false:
     * forward passes only, in a fraction of the memory. */
    bool trainable;
    /* What transparent pixels become: VLP_ALPHA_MODEL (0, the default) as
     * the model's config says (its vision_cfg.image_background: "white" when
     * it was trained with --white-background), VLP_ALPHA_WHITE composited on
     * white, VLP_ALPHA_DROP dropped (PIL's convert('RGB'), open_clip's). */
    int alpha;
} vlp_model_opts;
enum { VLP_ALPHA_MODEL = 0, VLP_ALPHA_WHITE = 1, VLP_ALPHA_DROP = 2 };

vlp_model_opts vlp_model_opts_default(void);

/* Weights in safetensors: open_clip / OpenAI naming or HF CLIPModel naming;
 * the architecture comes from vlp's metadata or is inferred from the shapes. */
vlp_err vlp_model_load(vlp_model **out, const char *path, const vlp_model_opts *opts, vlp_error *err);
void vlp_model_free(vlp_model *m);

int vlp_model_embed_dim(const vlp_model *m);
int vlp_model_image_size(const vlp_model *m);
int vlp_model_context_length(const vlp_model *m);
/* The model's parameters (weights, as a count of floats). */
size_t vlp_model_parameter_count(const vlp_model *m);
/* Its architecture as JSON in open_clip's config fields, into buf (n bytes);
 * VLP_ERR_ARG when it does not fit (the message says how many it needs). */
vlp_err vlp_model_config_json(const vlp_model *m, char *buf, size_t n, vlp_error *err);
/* NULL, or a warning about the load meant for the user: the architecture
 * was inferred from the shapes (head width 64 assumed). Owned by the model. */
const char *vlp_model_warning(const vlp_model *m);
/* A one-line description: widths, layers, patch, context, activation. */
const char *vlp_model_describe(const vlp_model *m, char *buf, size_t n);

/* int8 inference (what `vlp quantize` does): the four matrices of every
 * transformer block of both towers become int8, one scale per output
 * channel; activations are quantized per token as each layer runs
 * (AVX512-VNNI where the CPU has it, else a portable kernel with the same
 * results). From then on the model encodes in int8; a model loaded from an
 * int8 file already does. Embeddings stay within ~1% of fp32's (cosine
 * ≥ 0.99 on the models we measured). */
vlp_err vlp_model_quantize(vlp_model *m, vlp_error *err);
/* Writes an int8 model (quantizing it first when it is not): a safetensors
 * file vlp_model_load reads back. The model stays int8 afterwards, also when
 * the write fails. */
vlp_err vlp_model_save_int8(vlp_model *m, const char *path, vlp_error *err);
/* Whether the model runs int8 layers. */
bool vlp_model_is_int8(const vlp_model *m);

/* n preprocessed images (n, 3, S, S) → out (n, embed_dim). */
vlp_err vlp_encode_images(vlp_model *m, const float *pixels, int n, float *out, vlp_error *err);
/* Image files (JPEG/PNG/WebP/GIF/TIFF/BMP), open_clip's eval preprocessing
 * (Pillow-exact: the resize of the short side and the center crop in the
 * image's own mode, then RGB, the model's mean/std) → out (n, embed_dim).
 * The first image that cannot be read fails the call. */
vlp_err vlp_encode_image_files(vlp_model *m, const char *const *paths, int n, float *out, vlp_error *err);
/* The same, but an image that cannot be read or decoded is skipped: out
 * gets one row for each image that could be, in order (*rows of them), and
 * ok[i] (n of them) says whether paths[i] has one; skipped (n of them, or
 * NULL) gets each skipped image's error. Only what is not the image's fault
 * (out of memory, the model) fails the call. */
vlp_err vlp_encode_image_files_skipping(vlp_model *m, const char *const *paths, int n, float *out, bool *ok,
                                        int *rows, vlp_error *skipped, vlp_error *err);
/* An image in memory, in one of the modes Pillow holds images in (what
 * numpy.asarray(pil_image) gives, with the palette of a P image): the model's
 * eval transform then resizes it in its mode, as open_clip's preprocess does
 * to a PIL image (RGBA and LA premultiplied, P and 1 by nearest neighbour). */
enum {
    VLP_IMAGE_RGB = 0, /* 3 bytes a pixel */
    VLP_IMAGE_RGBA,    /* 4, alpha not premultiplied */
    VLP_IMAGE_L,       /* 1, grey */
    VLP_IMAGE_LA,      /* 2 */
    VLP_IMAGE_1,       /* 1, 0 or 255 */
    VLP_IMAGE_P,       /* 1, an index into palette */
    VLP_IMAGE_CMYK,    /* 4 */
    VLP_IMAGE_I,       /* 4: an int32 a pixel (16-bit grey) */
};
typedef struct vlp_image {
    int width, height;
    int mode;                     /* VLP_IMAGE_* */
    const unsigned char *pixels;  /* (height, width, bytes a pixel of the mode), rows packed */
    const unsigned char *palette; /* VLP_IMAGE_P: 256 entries of RGBA; else NULL */
} vlp_image;
/* The model's eval preprocessing of one image → out (3, S, S), S =
 * vlp_model_image_size: what vlp_encode_images takes. */
vlp_err vlp_preprocess_image(vlp_model *m, const vlp_image *img, float *out, vlp_error *err);
/* The same from an image file (what vlp_encode_image_files does to each). */
vlp_err vlp_preprocess_image_file(vlp_model *m, const char *path, float *out, vlp_error *err);
/* Texts → out (n, embed_dim). */
vlp_err vlp_encode_texts(vlp_model *m, const char *const *texts, int n, float *out, vlp_error *err);
/* Zero-shot classifier: for each class, the templates with "{}" replaced by
 * the class name (or the name appended when a template has no "{}"), embedded,
 * averaged and renormalised, as CLIP's prompt ensembles → out (C, embed_dim). */
vlp_err vlp_encode_classes(vlp_model *m, const char *const *classes, int C, const char *const *templates,
                           int nt, float *out, vlp_error *err);
/* Zero-shot templates by name or file, as the commands' --templates: a set
 * vlp ships ("default": "a photo of a {}."; "openai-imagenet": the CLIP
 * paper's 80) or a file, a template a line. *out receives n malloc'd lines;
 * free them with vlp_templates_free. */
vlp_err vlp_templates_load(const char *name_or_file, char ***out, int *n, vlp_error *err);
void vlp_templates_free(char **templates, int n);
/* ---- captioning: models with CoCa's text decoder (config multimodal_cfg) ---- */
bool vlp_model_has_decoder(const vlp_model *m);
/* Captions of n preprocessed images (n, 3, S, S): texts[i] receives a
 * malloc'd string (free() it), scores[i] (scores may be NULL) the mean
 * log-probability of its tokens. beam 1: greedy; else beam search with
 * length-normalised scores, beam at most the model's batch. On failure
 * every texts[i] is NULL. */
vlp_err vlp_caption_images(vlp_model *m, const float *pixels, int n, int beam, char **texts,
                           float *scores, vlp_error *err);
/* The captions' negative log-likelihood under the decoder: *nll the sum of
 * −log p over every token after the start token up to the end token, and
 * *targets their number (perplexity: exp(nll / targets)). pixels NULL: the
 * decoder without its image (a text-only LM, PRIOR's reference). */
vlp_err vlp_caption_nll(vlp_model *m, const float *pixels, const char *const *captions, int n,
                        double *nll, long *targets, vlp_error *err);

/* ---- image-text matching: models with a fusion encoder (config fusion_cfg) ----
 * ALBEF/BLIP's ITM head over cross-attention from the text to the image's
 * tokens: the probability (its 2-way softmax) that an image and a text match. */
bool vlp_model_has_fusion(const vlp_model *m);
/* n_images preprocessed images (n_images, 3, S, S) and n_texts texts: pairs
 * NULL scores every pair, out (n_images, n_texts); else n_pairs pairs
 * (image, text) of indices, pairs (n_pairs, 2), out (n_pairs). Both towers
 * run once an item; their outputs are held for the call (Tv·E floats an
 * image, T·W a text). */
vlp_err vlp_itm_scores(vlp_model *m, const float *pixels, int n_images, const char *const *texts, int n_texts,
                       const int *pairs, long n_pairs, float *out, vlp_error *err);

/* ---- learnt prompts: classifiers adapted by `vlp adapt` ----------------------
 * CoOp, CoCoOp and MaPLe prompts (or a linear probe) learnt on a model from
 * a few labelled images. A prompt file belongs to the model it was learnt on
 * (its weights' hash is checked). The model keeps encoding as before between
 * these calls; free the prompts before their model. */
typedef struct vlp_prompts vlp_prompts;

vlp_err vlp_prompts_load(vlp_prompts **out, vlp_model *m, const char *path, vlp_error *err);
void vlp_prompts_free(vlp_prompts *p);
/* "coop: 16 context tokens, 9 classes" */
const char *vlp_prompts_describe(const vlp_prompts *p, char *buf, size_t n);
int vlp_prompts_class_count(const vlp_prompts *p);
const char *vlp_prompts_class_name(const vlp_prompts *p, int c);
/* Classify into other classes: a shared context takes any names (CoOp's
 * base-to-new); a class-specific context or a probe only its own, in any
 * order. */
vlp_err vlp_prompts_set_classes(vlp_prompts *p, const char *const *classes, int C, vlp_error *err);
/* n preprocessed images (n, 3, S, S) → their features under the prompts
 * (n, embed_dim), normalised (MaPLe's image prompts; the plain embedding for
 * the others). */
vlp_err vlp_prompts_encode_images(vlp_prompts *p, const float *pixels, int n, float *out, vlp_error *err);
/* The same from image files (JPEG/PNG/WebP), CLIP's eval preprocessing. */
vlp_err vlp_prompts_encode_image_files(vlp_prompts *p, const char *const *paths, int n, float *out, vlp_error *err);
/* Those features → logits (n, C): the model's logit scale times the cosine
 * with each class's prompt (CoCoOp's conditioned on the image), or the
 * probe's; their softmax is the classes' probabilities, the arg-max the
 * class. */
vlp_err vlp_prompts_scores(vlp_prompts *p, const float *features, int n, float *scores, vlp_error *err);

/* ---- training: the run `vlp train` makes, from a program ---------------------
 * The same options (by the key of run/latest.state and run/data.json, "lr",
 * "train_data", or by the flag of `vlp train --help`, "--lr"), defaults,
 * checks, run directory, resume rule and metrics as the command; nothing is
 * printed: what a person should read goes to the message callback. One
 * process (the command runs under mpirun for several). */
typedef struct vlp_train_opts vlp_train_opts;
typedef struct vlp_train vlp_train;
/* a line for a person (no newline); warnings about skipped samples may come
 * from the data loader's threads */
typedef void (*vlp_message_fn)(void *user, const char *line);

vlp_err vlp_train_opts_new(vlp_train_opts **out, vlp_error *err);
void vlp_train_opts_free(vlp_train_opts *o);
/* One option from text as the command line gives it (a switch: "on"/"off",
 * NULL: on); an objective's options once or after "objective" alike. The
 * message of a refusal names the option and its range. */
vlp_err vlp_train_opts_set(vlp_train_opts *o, const char *key, const char *value, vlp_error *err);
/* Its value now, as text ("0.0005", "on", "clip"). */
vlp_err vlp_train_opts_get(const vlp_train_opts *o, const char *key, char *buf, size_t n, vlp_error *err);
void vlp_train_opts_set_messages(vlp_train_opts *o, vlp_message_fn fn, void *user);

typedef struct vlp_train_progress {
    long step, steps;       // steps done (after this one), of the run's
    float loss, lr, logit_scale; // logit_scale as the multiplier
    double grad_norm;       // before clipping
    double seconds, data_seconds; // this step's wall time, of which waiting for data
    long long epoch;        // the data's epoch now
    int skipped;            // not finite and skipped (option skip_nonfinite)
} vlp_train_progress;

typedef struct vlp_train_eval {
    long step;
    int has_val, has_zeroshot;  // which sets were evaluated (val_data, zeroshot_data)
    int images, texts;          // the validation set's
    double loss;                // InfoNCE over batches of the run's batch; NaN with one pair
    double i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5, t2i_r10;
    int zs_images, classes;
    double top1, balanced, majority; // zero-shot accuracy, class-balanced, the majority class's share
} vlp_train_eval;

/* A new run in the option "out", or the run there with "resume" on. The
 * options are read now; o may be freed after. */
vlp_err vlp_train_open(vlp_train **out, const vlp_train_opts *o, vlp_error *err);
/* One optimizer step, with the checkpoints and evaluations its schedule
 * ("save_every", "eval_every") puts after it. */
vlp_err vlp_train_step(vlp_train *t, vlp_train_progress *p, vlp_error *err);
bool vlp_train_done(const vlp_train *t);
long vlp_train_step_count(const vlp_train *t);
/* A checkpoint and training state now (a run resumes from the last);
 * path (may be NULL) receives the checkpoint's file. */
vlp_err vlp_train_save(vlp_train *t, char *path, size_t n, vlp_error *err);
/* Validation and zero-shot on the run's sets now (none given: nothing, and
 * both has_ flags 0); the result is also a line of run/metrics.jsonl. */
vlp_err vlp_train_evaluate(vlp_train *t, vlp_train_eval *out, vlp_error *err);
/* Ends the run without saving (save first to keep the steps since the last
 * checkpoint). */
void vlp_train_close(vlp_train *t);

/* ---- evaluation: what `vlp eval` measures, on a set ---------------------------
 * The set in its file order (a .tsv/.csv, a folder of class folders or
 * WebDataset shards), each image through the model's eval transform: zero-shot
 * classification (each class the normalised mean of its templates'
 * embeddings, or learnt prompts), retrieval both ways over the distinct
 * captions, a linear probe (L-BFGS logistic regression on a random held-out
 * part), and the caption perplexity of a model with a decoder. */
typedef struct vlp_eval_opts {
    const char *data;             /* the set */
    const char *image_key;        /* NULL: "filepath" */
    const char *caption_key;      /* NULL: "title" */
    const char *label_key;        /* NULL: no labels: retrieval only */
    bool zeroshot, retrieval, linear_probe; /* none: retrieval, and with labels zero-shot and the probe */
    const char *const *templates; /* zero-shot's (n_templates of them; NULL: the shipped "default" set) */
    int n_templates;
    const char *const *classes;   /* zero-shot over these (NULL: the set's labels); images of others left out */
    int n_classes;
    vlp_prompts *prompts;         /* learnt prompts in place of the templates; zero-shot only */
    bool text_only;               /* a model with a decoder: caption perplexity without the image */
    double probe_test_fraction;   /* 0.5 */
    double probe_l2;              /* 1e-3 */
    unsigned long long seed;      /* the probe's split */
    bool stop_on_bad;             /* an image that does not decode fails the call (else: skipped, counted) */
    vlp_message_fn warn;          /* a skipped row or image, for a person (may be NULL) */
    /* images embedded so far (may be NULL); a nonzero return stops the pass
     * after its batch: vlp_eval then fails with "stopped by the caller" */
    int (*progress)(void *user, long long images);
    void *user;
    /* retrieval, a model with a fusion encoder: each query's top `rerank` by
     * cosine re-ordered by the ITM probability, both ways (0: none); the
     * set's image tokens and captions' rows are kept for it */
    int rerank;
    /* ITM pairs scored so far of total (may be NULL); nonzero stops, as progress */
    int (*rerank_progress)(void *user, long long pairs, long long total);
} vlp_eval_opts;
vlp_eval_opts vlp_eval_opts_default(void);
/* The tasks when none is asked for: retrieval, and zero-shot and the probe
 * when there are labels (learnt prompts: zero-shot). vlp_eval applies it. */
void vlp_eval_opts_resolve(vlp_eval_opts *o);

typedef struct vlp_eval_result {
    int images;                    /* the set's images evaluated */
    long long undecodable;         /* images that did not decode, skipped */
    char first_undecodable[512];
    long long skipped_rows;        /* rows the reader skipped (no image, no caption, ...) */
    char first_skipped[512];
    bool has_caption;              /* caption perplexity: exp(caption_nll / caption_tokens) */
    bool caption_image;            /* ... given the image (else text only) */
    double caption_nll;
    long caption_tokens;
    bool has_zeroshot;
    int zs_images, classes;
    double top1, top5, balanced, majority;
    const char **class_names;      /* (classes): owned by the result */
    int *class_images, *class_correct; /* (classes) */
    bool has_retrieval;
    int texts;                     /* distinct captions */
    double i2t_r1, i2t_r5, i2t_r10, i2t_mean_rank, i2t_median_rank;
    double t2i_r1, t2i_r5, t2i_r10, t2i_mean_rank, t2i_median_rank;
    bool has_probe;
    int probe_classes, probe_iterations;
    double probe_test_acc, probe_train_acc, probe_loss;
    int rerank;                    /* retrieval re-ranked by ITM: the top K of each query (0: not) */
    double rr_i2t_r1, rr_i2t_r5, rr_i2t_r10, rr_i2t_mean_rank, rr_i2t_median_rank;
    double rr_t2i_r1, rr_t2i_r5, rr_t2i_r10, rr_t2i_mean_rank, rr_t2i_median_rank;
} vlp_eval_result;
/* The set evaluated as o says. *out is to be freed with vlp_eval_result_free
 * whatever the return: after a failure it still holds the counts of the
 * pass over the set and the tasks done before it (their has_ flags). The
 * progress callback is first called with 0 once the set has opened. */
vlp_err vlp_eval(vlp_model *m, const vlp_eval_opts *o, vlp_eval_result *out, vlp_error *err);
void vlp_eval_result_free(vlp_eval_result *r);

/* ---- search: the rows of an index most like each query ------------------------
 * Exact: cosine similarity (queries and rows normalised here) through vlp's
 * GEMM, the index read in blocks. For each of nq queries the k best rows,
 * best first, ties by lower row: ids (nq, k) and scores (nq, k); k larger
 * than rows leaves ids -1 and scores -INFINITY past the rows. A zero row
 * scores 0. */
vlp_err vlp_search(const float *index, long rows, int dim, const float *queries, int nq, int k, long *ids,
                   float *scores, vlp_error *err);

/* The ids the model's tokenizer gives text, padded to ctx as open_clip does. */
void vlp_tokenize(const vlp_model *m, const char *text, int *ids, int ctx);

#ifdef __cplusplus
}
#endif
#endif /* VLP_H */
