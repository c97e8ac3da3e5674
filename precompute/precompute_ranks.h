/* precompute_ranks.h - kd-precompute as one rank of R (mpirun, srun,
 * torchrun-style variables; common/dist/dist.h).
 *
 * Rank r runs `--shard r/R` into OUT.shard-r-of-R (beside OUT, so the folder
 * must be shared by the ranks); when every rank has finished, rank 0 joins
 * the shards into OUT with cache_merge (formats/cache_merge.h: chunks copied
 * in stored form, so OUT holds the bits one process writes) and removes them.
 * A rank that fails makes every rank fail (kdc_dist_agree: every error
 * return is agreed, so a caller may print and exit on each rank without
 * MPI_Abort); OUT is never written then. The failed rank's shard stays
 * as OUT.shard-r-of-R.partial and the same command with --resume completes
 * it. With one rank this is kd_precompute_run. */
#ifndef KD_PRECOMPUTE_RANKS_H
#define KD_PRECOMPUTE_RANKS_H

#include "common/dist/dist.h"
#include "precompute/precompute_run.h"

/* stats: this rank's shard. *merged is set to 1 on rank 0 once OUT is written
 * from the shards. */
kdc_status kd_precompute_run_ranks(const kd_precompute_options *o, kdc_dist *d,
                                   const kd_precompute_hooks *hooks, kd_precompute_stats *stats,
                                   int *merged, kdc_error *err);

#endif
