/* dist_nccl.h - NCCL between the GPU ranks of a data-parallel job, loaded at
 * run time (dlopen), like cuDNN and cuBLAS (common/cuda/cuda_libs.cu): every
 * program links and starts without NCCL, and only a job of GPU ranks needs it.
 *
 * kdc_nccl_init bootstraps one communicator over the job's ranks through the
 * job's own transport (dist.h): rank 0 makes the ncclUniqueId, kdc_dist_bcast
 * gives it to every rank, and each joins (ncclCommInitRank) on the CUDA device
 * that is current on the calling thread, so the caller selects the rank's GPU
 * first (kd-train: --device cuda -> cuda:<local rank>). One rank per GPU: NCCL
 * refuses two ranks on one device.
 *
 * No CUDA header is needed here (the few NCCL types are restated with the
 * values of nccl.h), so a build without CUDA has these functions too; they
 * fail with KDC_EUNSUPPORTED when the library is missing. Library: $KDC_NCCL_LIB,
 * else libnccl.so.2 from the loader's path (the bundle's ../lib), else the CUDA
 * toolkit's folders ($CUDA_HOME, /usr/local/cuda). */
#ifndef KDC_DIST_NCCL_H
#define KDC_DIST_NCCL_H

#include <stddef.h>

#include "common/base/error.h"
#include "common/dist/dist.h"

typedef struct kdc_nccl kdc_nccl;

/* Whether libnccl can be loaded; *version (may be NULL) gets ncclGetVersion's
 * code (e.g. 22703 for 2.27.3). Never fails: why (may be NULL) says why not. */
int kdc_nccl_available(int *version, char *why, size_t why_len);

/* A communicator of every rank of d (NULL: a job of one rank). Collective:
 * every rank calls it. */
kdc_status kdc_nccl_init(kdc_dist *d, kdc_nccl **out, kdc_error *err);
void kdc_nccl_free(kdc_nccl *c);
int kdc_nccl_size(const kdc_nccl *c);

/* In place, over the ranks, n floats of device memory, enqueued on `stream`
 * (a cudaStream_t; NULL: the legacy default stream) and not waited for:
 * the sum, or the mean (ncclAvg: the sum times 1/R, as DDP's
 * division by the world size). */
kdc_status kdc_nccl_sum_f32(kdc_nccl *c, float *dev, size_t n, void *stream, kdc_error *err);
kdc_status kdc_nccl_mean_f32(kdc_nccl *c, float *dev, size_t n, void *stream, kdc_error *err);

#endif
