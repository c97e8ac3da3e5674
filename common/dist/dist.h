/* dist.h - the ranks of a data-parallel job and the collectives between them.
 *
 * kdc_dist_init reads how the process was launched:
 *   - mpirun / srun (Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK, PMI's
 *     PMI_SIZE): MPI, loaded at run time (dist_mpi.c), so the tools start and
 *     run as one process on machines without MPI;
 *   - torchrun-style RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and
 *     LOCAL_RANK): a TCP star around rank 0 (dist_tcp.c);
 *   - neither: one rank, every collective a no-op.
 * KDC_DIST=none|mpi|env overrides the detection.
 *
 * Collectives are host memory and blocking. Sums are reduced in rank order
 * where the transport lets us choose (the TCP star), so every rank receives the
 * same bits; MPI's sum is the library's, and its result is the same on every
 * rank (Open MPI reduces each element once and distributes it).
 *
 * A NULL kdc_dist is a job of one rank: every function accepts it.
 * Not the models, not the files: callers decide what to reduce. */
#ifndef KDC_DIST_H
#define KDC_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef struct kdc_dist kdc_dist;

typedef enum kdc_dist_kind {
    KDC_DIST_SINGLE = 0, /* launched alone */
    KDC_DIST_MPI = 1,
    KDC_DIST_ENV = 2 /* torchrun-style environment, TCP */
} kdc_dist_kind;

/* From the environment (above). A single-rank launch gives *out == a job of one
 * rank (never fails for want of MPI). */
kdc_status kdc_dist_init(kdc_dist **out, kdc_error *err);
/* Leaves the job cleanly (MPI_Finalize); d may be NULL. */
void kdc_dist_finish(kdc_dist *d);
/* Ends every rank of the job now with a non-zero status (MPI_Abort; the TCP
 * star closes its sockets, so the other ranks' next collective fails). Does
 * not return. */
void kdc_dist_abort(kdc_dist *d, int code);

kdc_dist_kind kdc_dist_get_kind(const kdc_dist *d);
const char *kdc_dist_kind_name(const kdc_dist *d);
int kdc_dist_rank(const kdc_dist *d);
int kdc_dist_size(const kdc_dist *d);
/* The rank among those on this machine (OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID, LOCAL_RANK; else the rank): which GPU a rank takes. */
int kdc_dist_local_rank(const kdc_dist *d);

/* In-place sums over the ranks; every rank ends with the same values. */
kdc_status kdc_dist_sum_f32(kdc_dist *d, float *buf, size_t n, kdc_error *err);
kdc_status kdc_dist_sum_f64(kdc_dist *d, double *buf, size_t n, kdc_error *err);
/* In-place maximum of int64 values (e.g. a failure flag). */
kdc_status kdc_dist_max_i64(kdc_dist *d, int64_t *buf, size_t n, kdc_error *err);
/* Rank `root`'s bytes to every rank. */
kdc_status kdc_dist_bcast(kdc_dist *d, void *buf, size_t bytes, int root, kdc_error *err);
kdc_status kdc_dist_barrier(kdc_dist *d, kdc_error *err);
/* Every rank says whether it failed (st != KDC_OK); when one did, every rank
 * returns an error (its own, or "<what> failed on rank R"), so that no rank
 * goes on alone. Returns st on a rank that failed. */
kdc_status kdc_dist_agree(kdc_dist *d, kdc_status st, const char *what, kdc_error *err);

#endif
