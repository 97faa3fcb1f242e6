/* vlp's fuzz targets: each tests/fuzz/fuzz_NAME.c is one libFuzzer entry
 * point over the library's real parser for one kind of untrusted input.
 * `make fuzz` links them with libFuzzer (clang); every build links them with
 * replay.c instead, a plain main that runs each committed corpus input
 * through its target (tests/test_fuzz_replay.sh), so a regression fails
 * `make test` under ASan/UBSan too. */
#ifndef VLP_FUZZ_H
#define VLP_FUZZ_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file with this suffix (the parsers that take a path): one
 * path per process, rewritten each call; NULL if it cannot be written. */
const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix);
/* The input as a NUL-terminated string (malloc'd; free it) */
char *fuzz_text(const uint8_t *data, size_t size);
#endif
