/* pool_blocked.h - max pooling on activations in the blocked layout
 * (op_desc.h: nChw{B}c, B = d->blk), for pool.c, which dispatches here when
 * d->blk != 0 after validating d.
 *
 * Contract: every output float equals, bit for bit, what the NCHW function of
 * pool.h gives for the same tensors in NCHW, ties and NaNs included (each
 * gradient goes to the same first maximum of its window); the B channels of a
 * block are computed side by side. Threaded over (n, channel block). */
#ifndef KDC_POOL_BLOCKED_H
#define KDC_POOL_BLOCKED_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

/* Widest input row that the forward's separable method takes (pool.c keeps a
 * row of column maxima on the stack); wider rows scan each window as
 * window_argmax does. Both layouts switch at this width, because the two
 * methods can give differently signed zero maxima (pool.c, max_fwd_plane). */
#define KDC_POOL_ROW_MAX 2048

/* The lane loops vectorise at -O2 only under GCC's "cheap" cost model (activation.c). */
#if defined(__GNUC__) && !defined(__clang__)
#define POOL_VECTORISE __attribute__((optimize("vect-cost-model=cheap")))
#define POOL_IVDEP _Pragma("GCC ivdep")
#else
#define POOL_VECTORISE
#define POOL_IVDEP
#endif

kdc_status kdc_maxpool2d_forward_blk(const kdc_pool2d_desc *d, const float *x, float *y,
                                     kdc_pool *pool, kdc_error *err);
kdc_status kdc_maxpool2d_backward_blk(const kdc_pool2d_desc *d, const float *x, const float *dy,
                                      float *dx, kdc_pool *pool, kdc_error *err);
kdc_status kdc_maxpool2d_backward_dual_blk(const kdc_pool2d_desc *d, const float *x,
                                           const float *dy2, float *dx2, kdc_pool *pool,
                                           kdc_error *err);

#endif
