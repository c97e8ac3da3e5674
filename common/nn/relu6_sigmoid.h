/* relu6_sigmoid.h - the gates of MobileNetV2 (ReLU6) and squeeze-excitation
 * (sigmoid) on the CPU, elementwise and threaded like activation.h. Both
 * backward passes read the forward output, so the input need not be kept. */
#ifndef KDC_RELU6_SIGMOID_H
#define KDC_RELU6_SIGMOID_H

#include <stddef.h>

#include "common/base/threadpool.h"

/* y = min(max(x, 0), 6); NaN stays NaN (torch.nn.functional.relu6). y may alias x. */
void kdc_relu6_forward(size_t n, const float *x, float *y, kdc_pool *pool);
/* dx = dy where 0 < y < 6, else 0 (hardtanh_backward zeroes at both bounds). */
void kdc_relu6_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool);
/* y = 1 / (1 + exp(-x)) in float, as torch.sigmoid. */
void kdc_sigmoid_forward(size_t n, const float *x, float *y, kdc_pool *pool);
/* dx = dy * y * (1 - y) */
void kdc_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool);

#endif
