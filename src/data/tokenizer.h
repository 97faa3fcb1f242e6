/* What the trainer needs from a tokenizer: text → ids padded to a context
 * length, open_clip's layout [start, tokens…, end, 0…] with the end token the
 * largest id (the text tower pools at the argmax id). data/bpe.h implements
 * it (CLIP's byte-level BPE). */
#ifndef VLP_DATA_TOKENIZER_H
#define VLP_DATA_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct text_tokenizer {
    void *impl;
    int vocab_size;
    /* Writes exactly ctx ids; over-long text keeps ctx ids, the last one the end token. */
    void (*encode)(const void *impl, const char *text, int32_t *ids, int ctx);
    /* The text of n ids (start/end tokens and padding skipped), NUL-terminated
     * in out (cap bytes, truncated); returns the full length. The text is the
     * cleaned, lower-cased form the encoder saw (open_clip's decode). */
    size_t (*decode)(const void *impl, const int32_t *ids, int n, char *out, size_t cap);
    void (*free)(void *impl);
} text_tokenizer;

static inline void tokenizer_free(text_tokenizer *t) {
    if (t && t->free) t->free(t->impl);
}
#endif
