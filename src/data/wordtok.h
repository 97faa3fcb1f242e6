/* A word-level tokenizer learnt from a caption list: lower-cased runs of
 * letters and digits, most frequent first. Ids: 0 pad, 1 unknown, words,
 * then start and end (the largest id). A stand-in for the CLIP BPE.
 * File: "vlp-wordtok 1\n" then one word per line, in id order from 2. */
#ifndef VLP_DATA_WORDTOK_H
#define VLP_DATA_WORDTOK_H
#include "data/tokenizer.h"
#include "vlp.h"

#define WORDTOK_PAD 0
#define WORDTOK_UNK 1

/* Learns the words occurring at least min_count times in texts. */
vlp_err wordtok_build(const char *const *texts, int n, int min_count, vlp_tokenizer *out,
                      vlp_error *err);
vlp_err wordtok_save(const vlp_tokenizer *t, const char *path, vlp_error *err);
vlp_err wordtok_load(const char *path, vlp_tokenizer *out, vlp_error *err);
#endif
