/* step_stats_cuda.h - what kd-train logs about one step, computed on the GPU
 * so that only a few dozen bytes come back per step: the sums of the loss
 * kernels' per-row losses (losses_cuda.h's row_loss arrays) and the number of
 * samples whose label is the top-1 / among the top-5 logits, by the rule of
 * kd_count_correct (metrics.h: a class ranks above the label when its logit
 * is strictly larger, or equal with a lower index; an out-of-range label
 * counts nowhere).
 *
 * Only in builds with CUDA (KDC_HAVE_CUDA). Pointers are device memory of
 * `be`, a CUDA backend. The sums run in row order on one thread, so they are
 * the same on every run. Not the losses themselves (losses_cuda.h). */
#ifndef KD_STEP_STATS_CUDA_H
#define KD_STEP_STATS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/backend.h"

typedef struct kd_cuda_step_stats {
    double ce_sum;   /* sum of row_ce (0 when NULL) */
    double kd_sum;   /* sum of row_kd (0 when NULL) */
    double proj;     /* *proj_loss (0 when NULL) */
    int64_t top1, top5;
} kd_cuda_step_stats;

/* Enqueues the statistics of one batch into *out (device). rank is a device
 * workspace of B int32 (each row's count of classes ranked above its label).
 * row_ce, row_kd (B doubles) and proj_loss (1 double) may be NULL. */
kdc_status kd_cuda_step_stats_compute(kdc_backend *be, const float *logits, const int32_t *labels,
                                      size_t B, size_t C, const double *row_ce,
                                      const double *row_kd, const double *proj_loss,
                                      int32_t *rank, kd_cuda_step_stats *out, kdc_error *err);

#endif
