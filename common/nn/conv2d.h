/* conv2d.h - 2-D convolution forward and backward on the CPU (NCHW, OIHW weights).
 *
 * Regular and grouped convolutions are im2col + GEMM (gemm.h): several images
 * are unfolded side by side so that small feature maps (CIFAR, late ResNet
 * stages) still give GEMMs wide enough for OpenBLAS's kernels. A 1x1 stride-1
 * unpadded convolution of a large map is a plain GEMM on the input. Depthwise
 * convolutions (groups == c_in == c_out, MobileNet) use a direct kernel, since
 * their GEMMs would be 1 x k*k x HW.
 *
 * Plain functions in the llm.c style: every buffer and shape is an argument.
 * The caller provides a workspace of kdc_conv2d_workspace_floats(d) floats,
 * allocated once and reused. pool may be NULL (single-threaded loops). GEMMs are
 * called from the caller thread and use OpenBLAS's threads (kdc_gemm_set_threads).
 * This is the reference implementation (STYLE.md: the plain CPU function is the
 * specification): the CPU backend runs oneDNN (conv2d_dnnl.h) unless KDC_CONV=ref,
 * and tests/nn/test_layers.c checks both against PyTorch.
 * Not here: dilation, non-square kernels, the backend table (backend_cpu.c). */
#ifndef KDC_CONV2D_H
#define KDC_CONV2D_H

#include <stddef.h>

#include "common/nn/op_desc.h"
#include "common/base/threadpool.h"

/* Floats of workspace that forward and backward need for this descriptor (0 for
 * depthwise and for 1x1 stride-1 convolutions of large maps). */
size_t kdc_conv2d_workspace_floats(const kdc_conv2d_desc *d);

/* y[n, c_out, h_out, w_out] = conv(x, w) + bias (bias may be NULL).
 * d must have been through kdc_conv2d_desc_init. */
kdc_status kdc_conv2d_forward(const kdc_conv2d_desc *d, const float *x, const float *w,
                              const float *bias, float *y, float *work, size_t work_floats,
                              kdc_pool *pool, kdc_error *err);

/* Gradients of conv2d_forward: dx (may be NULL), dw (required), dbias (may be
 * NULL). All are overwritten. */
kdc_status kdc_conv2d_backward(const kdc_conv2d_desc *d, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *dbias, float *work,
                               size_t work_floats, kdc_pool *pool, kdc_error *err);

#endif
