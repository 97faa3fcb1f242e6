/* The k-th largest of n float scores held in a file (raw little-endian
 * float32, in pool order), found exactly in two reads of the file and
 * 2 x 65,536 counters: a radix select on the scores' order-preserving 32-bit
 * keys, the high 16 bits first. NaN ranks below every number. Keeping "the
 * top k" is then: every score above the threshold, and of the scores equal to
 * it the first `ties` in file order. */
#ifndef VLP_CURATE_SELECT_H
#define VLP_CURATE_SELECT_H
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

/* k in 1..n. *threshold the k-th largest; *ties how many scores equal to it
 * the top k takes (the rest of the top k is above it). */
vlp_err select_top_k(FILE *scores, int64_t n, int64_t k, float *threshold, int64_t *ties, vlp_error *err);
/* the order-preserving key of a score (NaN lowest) */
uint32_t select_key(float x);
#endif
