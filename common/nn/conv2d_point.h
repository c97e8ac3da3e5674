/* conv2d_point.h - convolutions of a 1x1 input map (groups 1), as matrix products.
 *
 * ResNets at CIFAR resolution (a torchvision resnet18 on 32 px images) reach
 * their last stage with 1x1 feature maps, where a 3x3 padded convolution only
 * ever multiplies its centre tap with data; the rest meets the zero border.
 * There the convolution is y[n, o] = sum_i w[o, i, p, p] x[n, i] (+ bias),
 * three small GEMMs (gemm.h) on the gathered centre taps instead of a blocked
 * direct convolution plus weight reorders (oneDNN spent ~16 ms per resnet18
 * train step in backward-weights of these layers alone). The CPU backend uses
 * it on its oneDNN path; the reference (conv2d.c) stays the plain im2col + GEMM.
 * Not here: any map larger than 1x1. */
#ifndef KDC_CONV2D_POINT_H
#define KDC_CONV2D_POINT_H

#include <stddef.h>

#include "common/nn/op_desc.h"

/* 1 when d (initialised) is a groups-1 convolution of a 1x1 map to a 1x1 map. */
int kdc_conv2d_point_applies(const kdc_conv2d_desc *d);

/* Floats of workspace forward and backward need (the centre taps). */
size_t kdc_conv2d_point_workspace_floats(const kdc_conv2d_desc *d);

/* Same contracts as kdc_conv2d_forward / kdc_conv2d_backward; KDC_EINVAL when
 * d does not apply or the workspace is too small. */
kdc_status kdc_conv2d_point_forward(const kdc_conv2d_desc *d, const float *x, const float *w,
                                    const float *bias, float *y, float *work,
                                    size_t work_floats, kdc_error *err);
kdc_status kdc_conv2d_point_backward(const kdc_conv2d_desc *d, const float *x, const float *w,
                                     const float *dy, float *dx, float *dw, float *dbias,
                                     float *work, size_t work_floats, kdc_error *err);
/* Two stacked gradient streams (conv2d_dnnl.h's kdc_dnnl_conv2d_backward_dual):
 * dx2 of both in one GEMM of 2n rows, then dw0 and dw1; no bias. */
kdc_status kdc_conv2d_point_backward_dual(const kdc_conv2d_desc *d, const float *x,
                                          const float *w, const float *dy2, float *dx2,
                                          float *dw0, float *dw1, float *work,
                                          size_t work_floats, kdc_error *err);

#endif
