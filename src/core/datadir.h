/* Where vlp finds the data it ships (model configs, the BPE merges, zero-shot
 * templates): never the working directory. The places tried, in order:
 *   1. $VLP_DATA_DIR when set (and then only it: an override is not a hint);
 *   2. next to the binary holding the library — the shared library or the
 *      program it is linked into — as installed: <bin or lib>/../share/vlp;
 *   3. the source tree the binary was built in (build/<mode>/… two or three
 *      levels below it), recognised by src/core/datadir.c in it;
 *   4. the data directory of the prefix the library was built for
 *      (PREFIX/share/vlp, compiled in).
 * Relative names look like "configs/tiny.json" or
 * "vocab/bpe_simple_vocab_16e6.txt.gz". */
#ifndef VLP_CORE_DATADIR_H
#define VLP_CORE_DATADIR_H
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define VLP_DEFAULT_VOCAB "vocab/bpe_simple_vocab_16e6.txt.gz"

/* The data directories that exist, canonical, in the order they are tried
 * (at most `max`); returns how many. vlp_data_file (vlp.h) looks a name up
 * in them. */
int vlp_data_dirs(char dirs[][4096], int max);
/* One rule for every argument that takes a shipped file or a path (configs,
 * templates): a name has no '/' and does not end in `ext` (".json").
 * vlp_data_resolve gives `dir`/NAME`ext` from the data directories for a
 * name, the argument itself for a path or for a file of that name in the
 * working directory (a user's file "tmpl" is theirs, not a shipped name);
 * a name vlp does not ship is an error listing those it does. */
bool vlp_data_is_name(const char *arg, const char *ext);
vlp_err vlp_data_resolve(const char *dir, const char *ext, const char *arg, char *out, size_t n,
                         vlp_error *err);
/* The names of vlp's files sub/NAME`ext` in the data directories, sorted
 * (free with vlp_data_names_free); NULL with *count 0 when there are none. */
char **vlp_data_names(const char *sub, const char *ext, int *count);
void vlp_data_names_free(char **names, int count);
/* the same names joined by ", " into buf (cut at cap); returns how many there are */
int vlp_data_names_text(const char *sub, const char *ext, char *buf, size_t cap);
/* dir/tokenizer.merges for a model file dir/x: the tokenizer a model's
 * directory gives it (a vlp run directory) when the caller names none */
void vocab_beside(const char *weights, char *out, size_t n);
#endif
