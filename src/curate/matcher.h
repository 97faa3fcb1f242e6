/*
 * Many patterns found in one pass over a text: an Aho-Corasick automaton
 * over bytes (MetaCLIP matches 500,000 metadata entries against every
 * caption of the pool; one substring search per entry would be 500,000
 * passes). No Debian package offers one to C, so it is written here.
 *
 * The trie's children are kept sorted per node in one array (binary search),
 * so memory is ~24 bytes a trie node, whatever the alphabet. Patterns are
 * byte strings; identical patterns share one node and are all reported.
 */
#ifndef VLP_CURATE_MATCHER_H
#define VLP_CURATE_MATCHER_H
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct matcher matcher;

/* n patterns (none empty); the automaton copies what it needs */
vlp_err matcher_create(matcher **out, const char *const *patterns, int n, vlp_error *err);
void matcher_free(matcher *m);
int64_t matcher_nodes(const matcher *m);

/* The ids of the patterns that occur in text[0..len), each once, in
 * increasing order, into ids (room for cap; *n the count, which may exceed
 * cap: then cap of them are there, the first found — call again with more
 * room).
 * scratch: a caller-owned stamp array of n_patterns uint32 zeros on first use
 * and `*stamp` a counter the call advances (so no per-call clearing). */
void matcher_find(const matcher *m, const char *text, size_t len, int32_t *ids, int cap, int *n,
                  uint32_t *scratch, uint32_t *stamp);

/* MetaCLIP's spacing of a caption before matching: " text " with each of
 * , . ; : ? ! ` wrapped in spaces and tab, CR and LF turned into spaces.
 * Metadata entries are matched as " entry ", so an entry matches whole words
 * only. Returns a malloc'd string (NULL when out of memory), *len its length. */
char *metaclip_spacing(const char *text, size_t *len);
/* " entry " for an entry (malloc'd) */
char *metaclip_entry(const char *entry);
#endif
