/* channel.h - channel-wise ops on NCHW tensors, on the CPU: range copy
 * (concatenation and split), shuffle (ShuffleNet), and the per-channel scale
 * of squeeze-excitation (RegNetY). The specification of their CUDA twins.
 * Threaded over (n, c) planes; pool may be NULL. */
#ifndef KDC_CHANNEL_H
#define KDC_CHANNEL_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

/* Copies the channel range of d (validated by kdc_chan_copy_desc_check). */
kdc_status kdc_channel_copy(const kdc_chan_copy_desc *d, const float *x, float *y, kdc_pool *pool,
                            kdc_error *err);
/* y[:, j * g + i] = x[:, i * (c / g) + j] for i < g, j < c / g (x viewed as
 * g x c/g, transposed); y must not alias x. */
kdc_status kdc_channel_shuffle(int n, int c, int groups, int hw, const float *x, float *y,
                               kdc_pool *pool, kdc_error *err);
/* y[n, c, :] = x[n, c, :] * s[n, c] (y may alias x). */
kdc_status kdc_channel_scale_forward(int n, int c, int hw, const float *x, const float *s, float *y,
                                     kdc_pool *pool, kdc_error *err);
/* dx = dy * s (dx may alias dy), ds[n, c] = sum_hw dy * x (summed in double);
 * either may be NULL. */
kdc_status kdc_channel_scale_backward(int n, int c, int hw, const float *x, const float *s,
                                      const float *dy, float *dx, float *ds, kdc_pool *pool,
                                      kdc_error *err);

#endif
