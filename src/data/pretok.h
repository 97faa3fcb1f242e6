/* CLIP's text normalisation and pre-tokenizer, shared by the BPE encoder and
 * the BPE trainer: clean (sanitize UTF-8, html-unescape twice, whitespace,
 * lower-case) then split with
 *   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (PCRE2, Unicode properties, caseless). */
#ifndef VLP_DATA_PRETOK_H
#define VLP_DATA_PRETOK_H
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct pretok pretok;

vlp_err pretok_create(pretok **out, vlp_error *err);
void pretok_free(pretok *p);

/* The cleaned text (malloc'd), or NULL when out of memory. */
char *pretok_clean(const char *text);

/* Iterates over the pieces of a cleaned text: start with *off = 0; returns
 * false at the end (or when out of memory). */
typedef struct pretok_iter {
    void *match; // PCRE2 match data
    size_t off;
} pretok_iter;
bool pretok_begin(const pretok *p, pretok_iter *it);
bool pretok_next(const pretok *p, pretok_iter *it, const char *clean, size_t len, size_t *start,
                 size_t *end);
void pretok_end(pretok_iter *it);
#endif
