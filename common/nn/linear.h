/* linear.h - fully connected layer on the CPU: y = x . w^T + b (PyTorch's nn.Linear).
 *
 * x is [n, in], w is [out, in], b is [out] or NULL. The products are OpenBLAS
 * GEMMs (gemm.h) called from the caller thread. Not here: activations. */
#ifndef KDC_LINEAR_H
#define KDC_LINEAR_H

#include "common/base/error.h"

kdc_status kdc_linear_forward(int n, int in, int out, const float *x, const float *w,
                              const float *b, float *y, kdc_error *err);

/* dx = dy . w (may be NULL), dw = dy^T . x, db = sum over n of dy (may be NULL). */
kdc_status kdc_linear_backward(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *db,
                               kdc_error *err);

/* Two gradient streams of one forward (DOT): dy2 [2n, out] and dx2 [2n, in]
 * hold stream 0 then stream 1; dx2 in one GEMM, the parameter gradients per
 * stream (db0/db1 may be NULL). */
kdc_status kdc_linear_backward_dual(int n, int in, int out, const float *x, const float *w,
                                    const float *dy2, float *dx2, float *dw0, float *db0,
                                    float *dw1, float *db1, kdc_error *err);

#endif
