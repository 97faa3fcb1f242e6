/* The merges-file loader (plain or gzip) and an encode with what it loaded */
#include "data/bpe.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".merges");
    text_tokenizer tok;
    if (!path || bpe_load(path, 0, &tok, NULL) != VLP_OK) return 0;
    int32_t ids[16];
    tok.encode(tok.impl, "a photo of a cat, a dog!", ids, 16);
    tokenizer_free(&tok);
    return 0;
}
