#include "dist/dist.h"
#include "core/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef VLP_HAVE_MPI
#include <mpi.h>
#endif

struct dist_group {
    int rank, world;
    bool mpi_owned; /* dist_init called MPI_Init */
#ifdef VLP_HAVE_MPI
    bool has_comm;
    MPI_Comm comm; /* a duplicate of MPI_COMM_WORLD, errors returned */
#endif
};

bool dist_have_mpi(void) {
#ifdef VLP_HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* the job size the launcher announced, or 0 */
static int env_world(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return getenv("PMIX_RANK") || getenv("OMPI_COMM_WORLD_RANK") ? 1 : 0;
}

vlp_err dist_init(dist_group **out, vlp_error *err) {
    VLP_CHECK_ARG(out, err, "dist_init needs an output handle");
    *out = NULL;
    dist_group *d = calloc(1, sizeof *d);
    VLP_CHECK_ALLOC(d, err, sizeof *d);
    d->world = 1;
    int launched = env_world();
    /* SLURM_NTASKS alone (an sbatch script's shell) is not a launched rank */
    bool under_mpirun = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") ||
                        getenv("PMIX_RANK") || getenv("PMI_RANK");
#ifdef VLP_HAVE_MPI
    if (under_mpirun) {
        int inited = 0, finalized = 0;
        MPI_Initialized(&inited);
        MPI_Finalized(&finalized);
        if (finalized) {
            free(d);
            VLP_FAIL(err, VLP_ERR_ARG, "MPI was finalized already: one dist_init per process");
        }
        if (!inited) {
            /* only the main thread talks to MPI; OpenMP, BLAS and loader threads do not */
            int provided = 0;
            if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
                free(d);
                VLP_FAIL(err, VLP_ERR_IO, "MPI_Init failed (launched as one of %d ranks)", launched);
            }
            d->mpi_owned = true;
        }
        if (MPI_Comm_dup(MPI_COMM_WORLD, &d->comm) != MPI_SUCCESS) {
            if (d->mpi_owned) MPI_Finalize();
            free(d);
            VLP_FAIL(err, VLP_ERR_IO, "MPI_Comm_dup failed");
        }
        d->has_comm = true;
        MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(d->comm, &d->rank);
        MPI_Comm_size(d->comm, &d->world);
    }
#else
    if (under_mpirun && launched > 1) {
        free(d);
        VLP_FAIL(err, VLP_ERR_ARG,
                 "started as one of %d MPI ranks, but this vlp was built without MPI: install "
                 "libopenmpi-dev (scripts/deps.sh does), then rm build/config.mk && make",
                 launched);
    }
#endif
    *out = d;
    return VLP_OK;
}

void dist_free(dist_group *d) {
    if (!d) return;
#ifdef VLP_HAVE_MPI
    if (d->has_comm) MPI_Comm_free(&d->comm);
    if (d->mpi_owned) MPI_Finalize();
#endif
    free(d);
}

int dist_rank(const dist_group *d) { return d ? d->rank : 0; }
int dist_world(const dist_group *d) { return d ? d->world : 1; }

#ifdef VLP_HAVE_MPI
static vlp_err mpi_fail(int rc, const char *what, const dist_group *d, vlp_error *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return vlp_error_set(err, VLP_ERR_IO, __FILE__, __LINE__, "%s on rank %d of %d: %s", what,
                         d->rank, d->world, msg);
}
#define MPI_TRY(call, what)                                                                       \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what, d, err);                               \
    } while (0)
#endif

/* counts go to MPI as int: refuse what does not fit rather than truncate */
#define CHECK_COUNT(n, what)                                                                      \
    VLP_CHECK_ARG((n) <= (size_t)INT_MAX / 2, err, "%s of %zu elements is too large for one call", \
                  what, (size_t)(n))

vlp_err dist_allgather(dist_group *d, const float *local, float *global, size_t n, vlp_error *err) {
    CHECK_COUNT(n * (size_t)dist_world(d), "allgather");
    if (dist_world(d) == 1) {
        if (global != local) memmove(global, local, n * sizeof(float));
        return VLP_OK;
    }
#ifdef VLP_HAVE_MPI
    MPI_TRY(MPI_Allgather(local, (int)n, MPI_FLOAT, global, (int)n, MPI_FLOAT, d->comm),
            "MPI_Allgather");
#endif
    return VLP_OK;
}

vlp_err dist_allgather_i32(dist_group *d, const int32_t *local, int32_t *global, size_t n,
                           vlp_error *err) {
    CHECK_COUNT(n * (size_t)dist_world(d), "allgather");
    if (dist_world(d) == 1) {
        if (global != local) memmove(global, local, n * sizeof(int32_t));
        return VLP_OK;
    }
#ifdef VLP_HAVE_MPI
    MPI_TRY(MPI_Allgather(local, (int)n, MPI_INT32_T, global, (int)n, MPI_INT32_T, d->comm),
            "MPI_Allgather");
#endif
    return VLP_OK;
}

vlp_err dist_reduce_scatter_sum(dist_group *d, const float *global, float *local, size_t n,
                                vlp_error *err) {
    CHECK_COUNT(n * (size_t)dist_world(d), "reduce-scatter");
    if (dist_world(d) == 1) {
        if (global != local) memmove(local, global, n * sizeof(float));
        return VLP_OK;
    }
#ifdef VLP_HAVE_MPI
    MPI_TRY(MPI_Reduce_scatter_block(global, local, (int)n, MPI_FLOAT, MPI_SUM, d->comm),
            "MPI_Reduce_scatter_block");
#endif
    return VLP_OK;
}

vlp_err dist_allreduce_sum(dist_group *d, float *buf, size_t n, vlp_error *err) {
    if (dist_world(d) == 1) return VLP_OK;
#ifdef VLP_HAVE_MPI
    /* in chunks: a ViT-L has more parameters than an int counts */
    const size_t chunk = (size_t)1 << 28;
    for (size_t i = 0; i < n; i += chunk) {
        size_t c = n - i < chunk ? n - i : chunk;
        MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)c, MPI_FLOAT, MPI_SUM, d->comm),
                "MPI_Allreduce");
    }
#endif
    return VLP_OK;
}

vlp_err dist_allreduce_sum_f64(dist_group *d, double *buf, size_t n, vlp_error *err) {
    CHECK_COUNT(n, "allreduce");
    if (dist_world(d) == 1) return VLP_OK;
#ifdef VLP_HAVE_MPI
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->comm),
            "MPI_Allreduce");
#endif
    return VLP_OK;
}

vlp_err dist_broadcast(dist_group *d, void *buf, size_t n, int root, vlp_error *err) {
    if (dist_world(d) == 1) return VLP_OK;
#ifdef VLP_HAVE_MPI
    const size_t chunk = (size_t)1 << 30;
    for (size_t i = 0; i < n; i += chunk) {
        size_t c = n - i < chunk ? n - i : chunk;
        MPI_TRY(MPI_Bcast((char *)buf + i, (int)c, MPI_BYTE, root, d->comm), "MPI_Bcast");
    }
#endif
    return VLP_OK;
}

vlp_err dist_barrier(dist_group *d, vlp_error *err) {
    if (dist_world(d) == 1) return VLP_OK;
#ifdef VLP_HAVE_MPI
    MPI_TRY(MPI_Barrier(d->comm), "MPI_Barrier");
#endif
    return VLP_OK;
}

void dist_abort(dist_group *d, int code) {
    if (dist_world(d) == 1) return;
#ifdef VLP_HAVE_MPI
    MPI_Abort(d->comm, code);
#else
    (void)code;
#endif
}
