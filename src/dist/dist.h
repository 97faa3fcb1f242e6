/* Data-parallel communication: MPI when vlp is built with it (OpenMPI from
 * Debian, found by scripts/probe.sh) and the process was started by mpirun,
 * else one process alone (rank 0 of 1, every collective a copy).
 *
 * Errors come back as vlp_err (the communicator's handler is
 * MPI_ERRORS_RETURN); the library never aborts the job itself. A rank that
 * dies is mpirun's business: it stops the others and says which rank. */
#ifndef VLP_DIST_DIST_H
#define VLP_DIST_DIST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dist_group dist_group;

/* Joins the job the environment describes (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
 * PMIX_RANK: set by mpirun / srun); without one, a single process. Asking
 * for a job (an MPI environment with more than one process) from a build
 * without MPI is an error that says how to get it. */
vlp_err dist_init(dist_group **out, vlp_error *err);
/* Leaves the job (MPI_Finalize when dist_init initialised MPI). */
void dist_free(dist_group *d);

int dist_rank(const dist_group *d);
int dist_world(const dist_group *d);
bool dist_have_mpi(void); /* compiled with MPI */

/* global (world · n) = the ranks' local (n) in rank order */
vlp_err dist_allgather(dist_group *d, const float *local, float *global, size_t n, vlp_error *err);
vlp_err dist_allgather_i32(dist_group *d, const int32_t *local, int32_t *global, size_t n,
                           vlp_error *err);
/* local (n) = Σ over ranks of global[rank · n, (rank+1) · n) */
vlp_err dist_reduce_scatter_sum(dist_group *d, const float *global, float *local, size_t n,
                                vlp_error *err);
/* buf (n) = Σ over ranks of buf, in place; every rank gets the same bits */
vlp_err dist_allreduce_sum(dist_group *d, float *buf, size_t n, vlp_error *err);
vlp_err dist_allreduce_sum_f64(dist_group *d, double *buf, size_t n, vlp_error *err);
/* buf (n bytes) from rank `root` to every rank */
vlp_err dist_broadcast(dist_group *d, void *buf, size_t n, int root, vlp_error *err);
vlp_err dist_barrier(dist_group *d, vlp_error *err);
/* Stops every rank of the job (MPI_Abort). For tools that hit an error on
 * one rank while the others wait in a collective; the library never calls
 * it. Does nothing in a one-process run. */
void dist_abort(dist_group *d, int code);
#endif
