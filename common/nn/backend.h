/* backend.h - the set of compute ops that every device implements.
 *
 * A kdc_backend is a table of function pointers plus the device it runs on
 * (the ggml/llama.cpp shape). backend_cpu.c fills it with the CPU reference
 * functions of conv2d.c, batchnorm.c, ...; backend_cuda.cu fills it with
 * cuDNN / cuBLAS calls and a few own kernels. Models and trainers call ops
 * only through this table, so the same model code runs on either device, and
 * tests can run every op on every backend and compare with the CPU.
 *
 * Conventions for every op:
 *   - all float pointers are memory of this backend's device, float32, dense,
 *     NCHW for activations and OIHW (out, in/groups, kh, kw) for conv weights,
 *     [out, in] for linear weights (PyTorch layouts, so weights load as is);
 *   - outputs are overwritten, never accumulated (a graph that needs a sum
 *     calls add_inplace); optional outputs may be NULL and are then skipped;
 *   - ops may run asynchronously on devices: results are visible to the host
 *     after copy_d2h or synchronize;
 *   - the return value is KDC_OK or an error with err filled.
 * Exception to NCHW: a backend with act_blk != 0 also takes activations in the
 * blocked layout of op_desc.h wherever a desc's blk field says so (conv, batch
 * norm, max pool, the *_blk global pool); the elementwise ops (ReLU, add,
 * axpy, copies) are the same on either layout. */
#ifndef KDC_BACKEND_H
#define KDC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/tensor.h"
#include "common/nn/op_desc.h"

typedef struct kdc_backend kdc_backend;

struct kdc_backend {
    const char *name; /* "cpu", "cuda:0" */
    kdc_device device;
    void *impl;       /* backend-private state */
    int act_blk;      /* block size of the blocked activation layout its ops take, 0: NCHW only */
    int conv_relu;    /* conv2d_forward honours desc.relu (op_desc.h); 0: it must be 0 */

    void (*destroy)(kdc_backend *be);

    /* ---- memory ---- */
    kdc_status (*alloc)(kdc_backend *be, size_t bytes, void **out, kdc_error *err);
    void (*free)(kdc_backend *be, void *ptr);
    kdc_status (*copy_h2d)(kdc_backend *be, void *dst, const void *src, size_t bytes,
                           kdc_error *err);
    kdc_status (*copy_d2h)(kdc_backend *be, void *dst, const void *src, size_t bytes,
                           kdc_error *err);
    kdc_status (*copy_d2d)(kdc_backend *be, void *dst, const void *src, size_t bytes,
                           kdc_error *err);
    kdc_status (*fill_zero)(kdc_backend *be, void *dst, size_t bytes, kdc_error *err);
    kdc_status (*synchronize)(kdc_backend *be, kdc_error *err);

    /* ---- convolution: y = conv(x, w) (+ bias when bias != NULL) ---- */
    kdc_status (*conv2d_forward)(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                 const float *w, const float *bias, float *y, kdc_error *err);
    /* dx, dbias may be NULL (first layer, no bias). dw is required. */
    kdc_status (*conv2d_backward)(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *dbias, kdc_error *err);

    /* ---- batch norm; gamma/beta NULL means no affine (weight 1, bias 0) ---- */
    /* Train mode: normalises with batch statistics, writes save_mean and
     * save_invstd (1 / sqrt(biased_var + eps)) for backward, and updates the
     * running statistics when running_mean/running_var are not NULL. */
    kdc_status (*batchnorm_forward_train)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                          const float *gamma, const float *beta,
                                          float *running_mean, float *running_var,
                                          float *save_mean, float *save_invstd, float *y,
                                          kdc_error *err);
    kdc_status (*batchnorm_forward_eval)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         float *y, kdc_error *err);
    /* dgamma/dbeta may be NULL (no affine). */
    kdc_status (*batchnorm_backward)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                     const float *dy, const float *gamma,
                                     const float *save_mean, const float *save_invstd,
                                     float *dx, float *dgamma, float *dbeta, kdc_error *err);

    /* Batch norm in phases for statistics over several processes (batchnorm.h,
     * SyncBatchNorm): `sums` are 2 x c doubles in host memory, which the
     * caller sums over the processes between the phases. NULL on a backend
     * without them (the executor then refuses synchronised statistics). */
    kdc_status (*batchnorm_stats)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                  double *sums, kdc_error *err);
    kdc_status (*batchnorm_apply)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                  const float *gamma, const float *beta, const double *sums,
                                  double count, float *running_mean, float *running_var,
                                  float *save_mean, float *save_invstd, float *y,
                                  kdc_error *err);
    kdc_status (*batchnorm_backward_sums)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                          const float *dy, const float *save_mean,
                                          const float *save_invstd, double *sums, float *dgamma,
                                          float *dbeta, kdc_error *err);
    kdc_status (*batchnorm_backward_apply)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                           const float *dy, const float *gamma,
                                           const float *save_mean, const float *save_invstd,
                                           const double *sums, double count, float *dx,
                                           kdc_error *err);

    /* ---- elementwise ---- */
    kdc_status (*relu_forward)(kdc_backend *be, size_t n, const float *x, float *y,
                               kdc_error *err);
    /* Uses the forward output y (y > 0 <=> x > 0), so x need not be kept. */
    kdc_status (*relu_backward)(kdc_backend *be, size_t n, const float *y, const float *dy,
                                float *dx, kdc_error *err);
    /* y = a + b (y may alias a or b) */
    kdc_status (*add)(kdc_backend *be, size_t n, const float *a, const float *b, float *y,
                      kdc_error *err);
    /* y += alpha * x */
    kdc_status (*axpy)(kdc_backend *be, size_t n, float alpha, const float *x, float *y,
                       kdc_error *err);

    /* ---- pooling ---- */
    kdc_status (*maxpool2d_forward)(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                    float *y, kdc_error *err);
    /* Gradient goes to the first maximum in scan order, as PyTorch's CPU kernel. */
    kdc_status (*maxpool2d_backward)(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                     const float *y, const float *dy, float *dx,
                                     kdc_error *err);
    /* x: N x C x HW -> y: N x C */
    kdc_status (*avgpool_global_forward)(kdc_backend *be, int n, int c, int hw, const float *x,
                                         float *y, kdc_error *err);
    kdc_status (*avgpool_global_backward)(kdc_backend *be, int n, int c, int hw,
                                          const float *dy, float *dx, kdc_error *err);

    /* ---- linear: y[n, out] = x[n, in] . w[out, in]^T + b[out] (b may be NULL) ---- */
    kdc_status (*linear_forward)(kdc_backend *be, int n, int in, int out, const float *x,
                                 const float *w, const float *b, float *y, kdc_error *err);
    /* dx and db may be NULL. */
    kdc_status (*linear_backward)(kdc_backend *be, int n, int in, int out, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *db, kdc_error *err);

    /* ---- conversions (cache writer) ---- */
    kdc_status (*f32_to_f16)(kdc_backend *be, size_t n, const float *x, uint16_t *y,
                             kdc_error *err);

    /* ---- two gradient streams through one backward pass (DOT) ----
     * dy2 / dx2 hold two gradients of the same forward activation, stream 0 then
     * stream 1, each the size of the single-stream tensor (together a batch of 2n
     * in NCHW); the forward tensors (x, y, w) are the single-stream ones. Each
     * stream's parameter gradients go to their own buffers. Per stream, the
     * result equals the single-stream op to float rounding. A backend may leave
     * these NULL: the executor then runs two single backward passes. Global
     * average pooling, add and copies need no dual op (they are the same op on
     * a batch of 2n). */
    kdc_status (*conv2d_backward_dual)(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                       const float *w, const float *dy2, float *dx2, float *dw0,
                                       float *dw1, kdc_error *err);
    kdc_status (*batchnorm_backward_dual)(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                          const float *dy2, const float *gamma,
                                          const float *save_mean, const float *save_invstd,
                                          float *dx2, float *dgamma0, float *dbeta0,
                                          float *dgamma1, float *dbeta1, kdc_error *err);
    kdc_status (*relu_backward_dual)(kdc_backend *be, size_t n, const float *y, const float *dy2,
                                     float *dx2, kdc_error *err);
    kdc_status (*maxpool2d_backward_dual)(kdc_backend *be, const kdc_pool2d_desc *d,
                                          const float *x, const float *y, const float *dy2,
                                          float *dx2, kdc_error *err);
    kdc_status (*linear_backward_dual)(kdc_backend *be, int n, int in, int out, const float *x,
                                       const float *w, const float *dy2, float *dx2, float *dw0,
                                       float *db0, float *dw1, float *db1, kdc_error *err);
    /* ---- ops of MobileNetV2, ShuffleNet V1/V2 and RegNetY ---- */
    /* y = min(max(x, 0), 6); backward from the output: dx = dy where 0 < y < 6
     * (PyTorch's hardtanh_backward, which zeroes at the bounds). y may alias x. */
    kdc_status (*relu6_forward)(kdc_backend *be, size_t n, const float *x, float *y,
                                kdc_error *err);
    kdc_status (*relu6_backward)(kdc_backend *be, size_t n, const float *y, const float *dy,
                                 float *dx, kdc_error *err);
    /* y = 1 / (1 + exp(-x)); backward dx = dy * y * (1 - y). */
    kdc_status (*sigmoid_forward)(kdc_backend *be, size_t n, const float *x, float *y,
                                  kdc_error *err);
    kdc_status (*sigmoid_backward)(kdc_backend *be, size_t n, const float *y, const float *dy,
                                   float *dx, kdc_error *err);
    /* Squeeze-excitation scale: y[n, c, :] = x[n, c, :] * s[n, c]. Backward:
     * dx = dy * s, ds[n, c] = sum over hw of dy * x; dx or ds may be NULL. */
    kdc_status (*channel_scale_forward)(kdc_backend *be, int n, int c, int hw, const float *x,
                                        const float *s, float *y, kdc_error *err);
    kdc_status (*channel_scale_backward)(kdc_backend *be, int n, int c, int hw, const float *x,
                                         const float *s, const float *dy, float *dx, float *ds,
                                         kdc_error *err);
    /* Channel range copy (op_desc.h); the other channels of y are left as they
     * are, the one exception to "outputs are overwritten". */
    kdc_status (*channel_copy)(kdc_backend *be, const kdc_chan_copy_desc *d, const float *x,
                               float *y, kdc_error *err);
    /* Channel shuffle of c channels in `groups` groups:
     * y[:, j * groups + i] = x[:, i * (c / groups) + j]; its backward is the
     * shuffle with c / groups groups. y must not alias x. */
    kdc_status (*channel_shuffle)(kdc_backend *be, int n, int c, int groups, int hw,
                                  const float *x, float *y, kdc_error *err);
    /* Average pool with a window, zero padding counted in the divisor (k * k),
     * as PyTorch's default count_include_pad=True. */
    kdc_status (*avgpool2d_forward)(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                    float *y, kdc_error *err);
    kdc_status (*avgpool2d_backward)(kdc_backend *be, const kdc_pool2d_desc *d,
                                     const float *dy, float *dx, kdc_error *err);

    /* ---- global average pool of a blocked x (blk != 0, op_desc.h): y is n x c ---- */
    kdc_status (*avgpool_global_forward_blk)(kdc_backend *be, int n, int c, int hw, int blk,
                                             const float *x, float *y, kdc_error *err);
    kdc_status (*avgpool_global_backward_blk)(kdc_backend *be, int n, int c, int hw, int blk,
                                              const float *dy, float *dx, kdc_error *err);
};

void kdc_backend_destroy(kdc_backend *be);

/* Tensor allocation on a backend's device (zero-filled). */
kdc_status kdc_backend_tensor_alloc(kdc_backend *be, kdc_tensor *t, kdc_dtype dt, int ndim,
                                    const int64_t *shape, kdc_error *err);
void kdc_backend_tensor_free(kdc_backend *be, kdc_tensor *t);

#endif
