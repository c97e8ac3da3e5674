/* batchnorm_blocked.h - batch norm on activations in the blocked layout
 * (op_desc.h: nChw{B}c, B = d->blk), for batchnorm.c, which dispatches here
 * when d->blk != 0 after validating d and the pointers.
 *
 * Contract: every output float equals, bit for bit, what the NCHW function
 * of batchnorm.h gives for the same tensors in NCHW (per channel the same
 * operations in the same order; the B channels of a block are computed side by
 * side, which is what makes the layout fast). Threaded over channel blocks. */
#ifndef KDC_BATCHNORM_BLOCKED_H
#define KDC_BATCHNORM_BLOCKED_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

kdc_status kdc_batchnorm_forward_train_blk(const kdc_bn_desc *d, const float *x,
                                           const float *gamma, const float *beta,
                                           float *running_mean, float *running_var,
                                           float *save_mean, float *save_invstd, float *y,
                                           kdc_pool *pool, kdc_error *err);
kdc_status kdc_batchnorm_forward_eval_blk(const kdc_bn_desc *d, const float *x, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, float *y, kdc_pool *pool,
                                          kdc_error *err);
kdc_status kdc_batchnorm_backward_blk(const kdc_bn_desc *d, const float *x, const float *dy,
                                      const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta, kdc_pool *pool, kdc_error *err);
kdc_status kdc_batchnorm_backward_dual_blk(const kdc_bn_desc *d, const float *x, const float *dy2,
                                           const float *gamma, const float *save_mean,
                                           const float *save_invstd, float *dx2, float *dgamma0,
                                           float *dbeta0, float *dgamma1, float *dbeta1,
                                           kdc_pool *pool, kdc_error *err);

#endif
