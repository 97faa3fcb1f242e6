/*
 * Semantic deduplication (SemDeDup, Abbas et al. 2023): unit embeddings are
 * clustered by spherical k-means; within a cluster the members are ordered
 * from the least similar to the centroid to the most, and a member is
 * removed when its cosine to a member kept before it exceeds 1 - eps. Of a
 * group of near-duplicates the one least similar to the centroid survives
 * (SemDeDup's "keep hard examples"). SemDeDup's code compares with every
 * earlier member, removed or not; this compares with the kept ones only, so
 * a chain a~b~c where a and c are not alike keeps a and c.
 */
#ifndef VLP_CURATE_SEMDEDUP_H
#define VLP_CURATE_SEMDEDUP_H
#include <stdint.h>

#include "core/error.h"

/* Spherical k-means of n unit rows x (n, d): centroids (k, d), unit; assign
 * (n) the nearest centroid by cosine. Starts from k rows drawn by seed
 * (k-means++ seeding up to 1,024 clusters, over at most 65,536 rows); stops after iters or when no assignment changes (*iters_run). An
 * emptied cluster keeps its centroid. Rows are read in blocks (x may be a
 * mapped file); memory: blocks of 1024 x k similarities and k x d sums. */
vlp_err kmeans_spherical(const float *x, int64_t n, int d, int k, int iters, uint64_t seed, float *centroids,
                         int32_t *assign, int *iters_run, vlp_error *err);

/* The members of one cluster (rows of x, any order) and its centroid (d):
 * removed[e * m + i] = 1 when member i is removed at eps[e] (neps values).
 * Memory: m x d for the members and 256 x m similarities. */
vlp_err semdedup_cluster(const float *x, int d, const int64_t *rows, int m, const float *centroid,
                         const double *eps, int neps, uint8_t *removed, vlp_error *err);
#endif
