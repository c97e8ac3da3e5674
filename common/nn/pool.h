/* pool.h - max pooling and global average pooling on the CPU (NCHW).
 *
 * Max pooling pads with -inf and, in backward, sends each output's gradient to
 * the first maximum of its window in row-major scan order (strictly greater
 * replaces; a NaN replaces), as PyTorch's CPU kernel does, so ties resolve the same
 * way. The argmax is recomputed from x instead of stored. Threaded over (n, c)
 * planes. A desc with blk != 0 means x, y, dy and dx are in the blocked layout
 * (op_desc.h); the results are the same floats as in NCHW. Not here: average pooling with a window (no model needs it). */
#ifndef KDC_POOL_H
#define KDC_POOL_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

kdc_status kdc_maxpool2d_forward(const kdc_pool2d_desc *d, const float *x, float *y,
                                 kdc_pool *pool, kdc_error *err);
kdc_status kdc_maxpool2d_backward(const kdc_pool2d_desc *d, const float *x, const float *dy,
                                  float *dx, kdc_pool *pool, kdc_error *err);
/* Two gradient streams of one forward (DOT): dy2 / dx2 hold stream 0 then
 * stream 1; each window's argmax is found once for both. */
kdc_status kdc_maxpool2d_backward_dual(const kdc_pool2d_desc *d, const float *x,
                                       const float *dy2, float *dx2, kdc_pool *pool,
                                       kdc_error *err);

/* y[n, c] = mean of x[n, c, :] over hw values; backward spreads dy / hw. */
kdc_status kdc_avgpool_global_forward(int n, int c, int hw, const float *x, float *y,
                                      kdc_pool *pool, kdc_error *err);
kdc_status kdc_avgpool_global_backward(int n, int c, int hw, const float *dy, float *dx,
                                       kdc_pool *pool, kdc_error *err);
/* The same with x / dx in the blocked layout of block blk (op_desc.h); y / dy
 * stay n x c. The same floats as the NCHW functions. */
kdc_status kdc_avgpool_global_forward_blk(int n, int c, int hw, int blk, const float *x,
                                          float *y, kdc_pool *pool, kdc_error *err);
kdc_status kdc_avgpool_global_backward_blk(int n, int c, int hw, int blk, const float *dy,
                                           float *dx, kdc_pool *pool, kdc_error *err);

#endif
