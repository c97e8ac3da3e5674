/* activation.h - elementwise ops on the CPU: ReLU, add, axpy, float32 -> float16.
 *
 * Each splits the array into large contiguous chunks over the pool (pool may
 * be NULL); small arrays run on the caller. Not here: losses and softmax (train/). */
#ifndef KDC_ACTIVATION_H
#define KDC_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/threadpool.h"

/* y = max(x, 0); NaN stays NaN, as torch.relu. y may alias x. */
void kdc_relu_forward(size_t n, const float *x, float *y, kdc_pool *pool);
/* dx = dy where y > 0, else 0 (y is the forward output). dx may alias dy. */
void kdc_relu_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool);
/* The same for two gradient streams of one forward (DOT): dy2 and dx2 hold 2n
 * floats, stream 0 then stream 1; y (n floats) is read once. dx2 may alias dy2. */
void kdc_relu_backward_dual(size_t n, const float *y, const float *dy2, float *dx2,
                            kdc_pool *pool);
/* y = a + b; y may alias a or b. */
void kdc_add(size_t n, const float *a, const float *b, float *y, kdc_pool *pool);
/* y += alpha * x */
void kdc_axpy(size_t n, float alpha, const float *x, float *y, kdc_pool *pool);
/* Round-to-nearest-even binary16 (half.h). */
void kdc_f32_to_f16_par(size_t n, const float *x, uint16_t *y, kdc_pool *pool);

#endif
