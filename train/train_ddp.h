/* train_ddp.h - kd-train's data-parallel rules, as PyTorch's
 * DistributedDataParallel applies them (docs/DISTRIBUTED.md):
 *
 *   - the global batch B is split in R contiguous slices, rank r takes the
 *     r-th (train_data.h does the split);
 *   - every rank starts from rank 0's weights, buffers and optimiser state
 *     (DDP's broadcast at construction; here also a resumed run's state);
 *   - gradients are divided by R and summed over the ranks, in buckets of
 *     KD_DDP_BUCKET_BYTES taken from the last parameter backwards (DDP's
 *     Reducer: bucket.div_(world) then all-reduce sum); DOT's task and
 *     distillation gradients and the projector's are separate reductions;
 *   - every rank keeps rank 0's BatchNorm running statistics
 *     (broadcast_buffers: rank 0's buffers are the ones that survive; they are
 *     broadcast before evaluation and before each save).
 *
 * With one rank every function returns at once and changes nothing, so a
 * one-rank run is bit for bit the plain run. */
#ifndef KD_TRAIN_DDP_H
#define KD_TRAIN_DDP_H

#include <stddef.h>

#include "common/base/error.h"
#include "common/base/params.h"
#include "common/dist/dist.h"
#include "common/nn/backend.h"

/* DDP's default bucket_cap_mb (25 MiB). */
#define KD_DDP_BUCKET_BYTES ((size_t)25 << 20)

/* The mean over the ranks of a host gradient vector, in place. */
kdc_status kd_ddp_mean_grads(kdc_dist *d, float *grad, size_t n, kdc_error *err);
/* Rank 0's tensors of a table (buffers_only: the running statistics) to every
 * rank. The tensors may live on a device (be's memory); they go through a host
 * copy. */
kdc_status kd_ddp_bcast_table(kdc_dist *d, kdc_param_table *t, kdc_backend *be, int buffers_only,
                              kdc_error *err);
/* kdc_model_sum_fn over the ranks (ctx: the kdc_dist): --sync-bn's batch
 * statistics, summed in double. */
kdc_status kd_ddp_sum_f64(void *dist, double *buf, size_t n, kdc_error *err);
/* Rank 0's n floats of device memory (be's) to every rank. */
kdc_status kd_ddp_bcast_device(kdc_dist *d, float *buf, size_t n, kdc_backend *be, kdc_error *err);
#endif
