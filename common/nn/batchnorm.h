/* batchnorm.h - 2-D batch normalisation on the CPU, forward (train, eval) and backward.
 *
 * x is N x C x HW (HW = 1 for a feature matrix). Formulas follow PyTorch
 * (torch.nn.functional.batch_norm; Ioffe & Szegedy 2015, Alg. 1 and 2):
 * train mode normalises with the biased batch variance, updates
 *   running_mean = (1 - momentum) * running_mean + momentum * mean
 *   running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)
 * (M = N * HW) and saves mean and invstd = 1 / sqrt(var + eps) for backward.
 * gamma/beta NULL means no affine transform; running stats NULL means not
 * tracked. Channel statistics are accumulated in double. Threaded over channels.
 * Not here: the backend table (backend_cpu.c). */
#ifndef KDC_BATCHNORM_H
#define KDC_BATCHNORM_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

/* save_mean / save_invstd may be NULL when no backward follows. Needs M >= 2
 * (as PyTorch: the unbiased variance of one value is undefined). */
kdc_status kdc_batchnorm_forward_train(const kdc_bn_desc *d, const float *x, const float *gamma,
                                       const float *beta, float *running_mean,
                                       float *running_var, float *save_mean,
                                       float *save_invstd, float *y, kdc_pool *pool,
                                       kdc_error *err);

/* y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta. */
kdc_status kdc_batchnorm_forward_eval(const kdc_bn_desc *d, const float *x, const float *gamma,
                                      const float *beta, const float *running_mean,
                                      const float *running_var, float *y, kdc_pool *pool,
                                      kdc_error *err);

/* Gradients of the train-mode forward (batch statistics): dx (may be NULL),
 * dgamma and dbeta (may be NULL). */
kdc_status kdc_batchnorm_backward(const kdc_bn_desc *d, const float *x, const float *dy,
                                  const float *gamma, const float *save_mean,
                                  const float *save_invstd, float *dx, float *dgamma,
                                  float *dbeta, kdc_pool *pool, kdc_error *err);

/* Two gradient streams of the same forward (DOT's task and distillation
 * gradients): dy2 and dx2 hold stream 0 then stream 1, each n*c*hw floats; each
 * stream gets its own dgamma/dbeta (may be NULL). Per stream, the same floats as
 * kdc_batchnorm_backward; x is read once per channel for both. */
kdc_status kdc_batchnorm_backward_dual(const kdc_bn_desc *d, const float *x, const float *dy2,
                                       const float *gamma, const float *save_mean,
                                       const float *save_invstd, float *dx2, float *dgamma0,
                                       float *dbeta0, float *dgamma1, float *dbeta1,
                                       kdc_pool *pool, kdc_error *err);

/* ---- the same in phases, for statistics over several processes ----
 * (PyTorch's SyncBatchNorm; the caller sums the double arrays over the
 * processes between the phases, so this file knows nothing of them.)
 * A `sums` array holds 2c doubles: c per-channel sums, then c more. */

/* sums = [sum(x), sum(x * x)] per channel over this call's n * hw values. */
kdc_status kdc_batchnorm_stats(const kdc_bn_desc *d, const float *x, double *sums, kdc_pool *pool,
                               kdc_error *err);
/* Train-mode forward with the statistics of `sums` over `count` values (every
 * process's): mean = s / count, biased var = q / count - mean^2 normalises;
 * running_var is updated with var * count / (count - 1). As
 * kdc_batchnorm_forward_train otherwise (which is this with one process,
 * to rounding: it sums squared deviations instead). */
kdc_status kdc_batchnorm_apply(const kdc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, const double *sums, double count,
                               float *running_mean, float *running_var, float *save_mean,
                               float *save_invstd, float *y, kdc_pool *pool, kdc_error *err);
/* sums = [sum(dy), sum(dy * xhat)] per channel over this call's values, and
 * this process's dbeta / dgamma from them (may be NULL): SyncBatchNorm's
 * parameter gradients are local, the data-parallel mean reduces them. */
kdc_status kdc_batchnorm_backward_sums(const kdc_bn_desc *d, const float *x, const float *dy,
                                       const float *save_mean, const float *save_invstd,
                                       double *sums, float *dgamma, float *dbeta, kdc_pool *pool,
                                       kdc_error *err);
/* dx = gamma * invstd * (dy - s / count - xhat * q / count) with the summed
 * [s, q] of every process (batch_norm_backward_elemt). */
kdc_status kdc_batchnorm_backward_apply(const kdc_bn_desc *d, const float *x, const float *dy,
                                        const float *gamma, const float *save_mean,
                                        const float *save_invstd, const double *sums,
                                        double count, float *dx, kdc_pool *pool, kdc_error *err);

#endif
