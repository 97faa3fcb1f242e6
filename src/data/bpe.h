/*
 * The CLIP byte-level BPE tokenizer, id for id as open_clip's
 * SimpleTokenizer (without ftfy): text → html-unescape twice → whitespace
 * collapse → lower-case → the pre-tokenizer regex (PCRE2, Unicode classes) →
 * bytes mapped to printable characters (bytes_to_unicode) → merges by rank.
 * Vocabulary: 256 byte symbols, the same with "</w>", one per merge, then
 * <start_of_text> and <end_of_text> (the two largest ids).
 * The merges file: a header line, then "a b" per line; gzip'd or plain.
 */
#ifndef VLP_DATA_BPE_H
#define VLP_DATA_BPE_H
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "core/error.h"

/* open_clip reads at most this many merges of any file (49152 - 256 - 2). */
#define BPE_CLIP_MERGES 48894

/* Loads up to max_merges merges; max_merges <= 0: BPE_CLIP_MERGES, as open_clip. */
vlp_err bpe_load(const char *merges_path, int max_merges, text_tokenizer *out, vlp_error *err);

/* bytes_to_unicode: the code point of each byte symbol id (0..255) and the
 * id of each byte; and a code point < 0x800 as UTF-8 (returns its length). */
void bpe_byte_symbols(int32_t cp_of_id[256], int32_t id_of_byte[256]);
size_t bpe_symbol_utf8(char *out, int32_t cp);

/* The ids of text without start/end tokens or padding; returns how many
 * there are (may exceed cap: only cap are written), or -1 when out of memory. */
int bpe_encode_ids(const text_tokenizer *t, const char *text, int32_t *ids, int cap);
#endif
