/*
 * MetaCLIP's balancing ("Demystifying CLIP Data", Xu et al. 2023): metadata
 * entries are matched as whole-word substrings of each caption (MetaCLIP's
 * spacing, an Aho-Corasick automaton); pass 1 counts, for each entry, the
 * samples whose caption matches it (c); pass 2 keeps a sample when any of
 * its entries passes a draw of probability min(1, t / c). An entry's
 * expected kept count is min(c, t) for samples matching it alone: the head
 * is flattened to t, the tail kept whole.
 *
 * The draw for (sample index, entry) is a hash of (seed, index, entry), not a
 * sequential random stream: the same seed keeps the same samples whatever
 * the order the pool is read in or split across workers.
 */
#ifndef VLP_CURATE_BALANCE_H
#define VLP_CURATE_BALANCE_H
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef struct balance balance;

/* entries: the metadata, one entry each (empty ones are an error naming the
 * line, 1-based, as entry_lines gives it; NULL: i + 1) */
vlp_err balance_create(balance **out, const char *const *entries, int n, const int *entry_lines, vlp_error *err);
void balance_free(balance *b);
int balance_entries(const balance *b);

/* The entries a caption matches (ids ascending, each once), valid until the
 * next call; *n their count. NULL only when out of memory. */
const int32_t *balance_match(balance *b, const char *caption, int *n);
/* pass 1: counts the caption's entries; returns how many it matched */
int balance_count(balance *b, const char *caption);
/* the pass-1 count of entry e */
int64_t balance_count_of(const balance *b, int e);
/* pass 2: true when the sample is kept; its kept entries' counts go to the
 * "after" counts. keep_unmatched: a sample with no entry is kept (MetaCLIP
 * drops it). *matched (may be NULL): whether it matched any entry. */
bool balance_keep(balance *b, const char *caption, int64_t index, double t, uint64_t seed, bool keep_unmatched,
                  bool *matched);
int64_t balance_kept_of(const balance *b, int e);
/* the draw's uniform number in [0, 1) for (seed, sample index, entry) */
double balance_draw(uint64_t seed, int64_t index, int entry);
#endif
