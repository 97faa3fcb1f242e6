/* Learns CLIP-style BPE merges from captions: the same normalisation,
 * pre-tokenizer and byte alphabet as the encoder, words counted, then the
 * most frequent adjacent pair merged until `merges` merges are learnt or no
 * pair occurs `min_count` times. Ties go to the pair whose symbols compare
 * smallest (byte order), so the result does not depend on hash order. The
 * file has the OpenAI layout ("#version: 0.2" header, "a b" lines), so
 * bpe_load() and open_clip read it; vocab = 512 + merges + 2. */
#ifndef VLP_DATA_BPE_TRAIN_H
#define VLP_DATA_BPE_TRAIN_H
#include "core/error.h"

/* *learnt (may be NULL) receives how many merges were written. */
vlp_err bpe_train(const char *const *texts, int n, int merges, int min_count, const char *out_path,
                  int *learnt, vlp_error *err);
#endif
