/* conv2d_dnnl.h - 2-D convolution forward and backward through oneDNN (Intel's
 * CPU deep-learning primitives, the library PyTorch's CPU convolutions use).
 *
 * The CPU backend's fast path; conv2d.c (im2col + GEMM) stays the reference
 * that defines the result, and the tests run both against PyTorch. The API
 * boundary is the backend's: NCHW activations, OIHW weights, float32, dense.
 * Inside, each primitive picks its own layout (blocked nChw16c etc. on AVX-512)
 * and the arguments are reordered in and out through a workspace, since the
 * direct blocked kernels beat plain-layout ones by far more than the reorders
 * cost (docs/PERFORMANCE.md, "CPU layers").
 *
 * Primitives are created once per (descriptor, bias) and kept in a small cache
 * owned by a kdc_dnnl context; a context is used by one thread at a time.
 * Threads: Debian's libdnnl2 runs on OpenMP (libgomp); the context sets the
 * OpenMP thread count of the calling thread before each primitive runs, and
 * the library is loaded at run time with OpenMP's threads set to sleep when
 * idle (dnnl_load.h explains why).
 * Determinism: at a fixed thread count, oneDNN's reductions (backward weights
 * and bias) are run-to-run bit-identical (tests/nn/test_layers.c checks it).
 * Not here: the im2col reference (conv2d.c), the backend table (backend_cpu.c). */
#ifndef KDC_CONV2D_DNNL_H
#define KDC_CONV2D_DNNL_H

#include "common/nn/op_desc.h"

typedef struct kdc_dnnl kdc_dnnl;

/* A oneDNN CPU engine, stream and empty primitive cache; threads > 0. Loads
 * the library on first use (KDC_EUNSUPPORTED with the reason if it cannot). */
kdc_status kdc_dnnl_create(int threads, kdc_dnnl **out, kdc_error *err);
void kdc_dnnl_destroy(kdc_dnnl *ctx);

/* "oneDNN 2.6.3 (OpenMP)". */
const char *kdc_dnnl_version(void);

/* y = conv(x, w) (+ bias when bias != NULL); d must have been through
 * kdc_conv2d_desc_init. Same contract as kdc_conv2d_forward. */
kdc_status kdc_dnnl_conv2d_forward(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                   const float *w, const float *bias, float *y,
                                   kdc_error *err);

/* dx (may be NULL), dw (required), dbias (may be NULL); all overwritten. */
kdc_status kdc_dnnl_conv2d_backward(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                    const float *w, const float *dy, float *dx, float *dw,
                                    float *dbias, kdc_error *err);

/* Two gradient streams of one forward (DOT's task and distillation gradients):
 * dy2 and dx2 hold stream 0 then stream 1, each the size of one output / input.
 * dx2 (may be NULL) comes from one backward-data of a 2n batch (grouped: one
 * per stream, measured faster for depthwise); for groups 1,
 * dw0 and dw1 (required) from one backward-weights with the two gradients side
 * by side as 2*c_out output channels against the same x (grouped convolutions:
 * one per stream). No bias. Per stream, equal to kdc_dnnl_conv2d_backward to
 * float rounding (the reduction is another primitive's). */
kdc_status kdc_dnnl_conv2d_backward_dual(kdc_dnnl *ctx, const kdc_conv2d_desc *d, const float *x,
                                         const float *w, const float *dy2, float *dx2,
                                         float *dw0, float *dw1, kdc_error *err);

#endif
