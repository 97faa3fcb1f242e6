/* The CLIP BPE tokenizer on arbitrary bytes (invalid UTF-8, HTML entities,
 * huge words), with the shipped merges ($VLP_FUZZ_VOCAB, default the
 * repository's vocab/) */
#include <stdlib.h>

#include "data/bpe.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static text_tokenizer tok; /* loaded once: the fuzzer's own state */
    static int loaded;
    if (!loaded) {
        const char *v = getenv("VLP_FUZZ_VOCAB");
        if (bpe_load(v ? v : "vocab/bpe_simple_vocab_16e6.txt.gz", 0, &tok, NULL) != VLP_OK) abort();
        loaded = 1;
    }
    char *text = fuzz_text(data, size);
    int32_t ids[77];
    if (text) tok.encode(tok.impl, text, ids, 77);
    free(text);
    return 0;
}
