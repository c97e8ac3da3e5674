/* avgpool.h - average pooling with a window on the CPU (NCHW), as PyTorch's
 * AvgPool2d / F.avg_pool2d with the defaults ceil_mode=False and
 * count_include_pad=True: every window divides by k * k, zero padding
 * included (ShuffleNetV1's 3x3 stride-2 shortcut). Threaded over planes.
 * The global pool of the classifier heads is pool.h's. */
#ifndef KDC_AVGPOOL_H
#define KDC_AVGPOOL_H

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

kdc_status kdc_avgpool2d_forward(const kdc_pool2d_desc *d, const float *x, float *y, kdc_pool *pool,
                                 kdc_error *err);
/* dx[i] = sum over the windows holding i of dy / (k * k) (overwrites dx). */
kdc_status kdc_avgpool2d_backward(const kdc_pool2d_desc *d, const float *dy, float *dx,
                                  kdc_pool *pool, kdc_error *err);

#endif
