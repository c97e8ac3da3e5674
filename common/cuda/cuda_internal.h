/* cuda_internal.h - what the CUDA C++ files of common/ share and nobody else
 * sees: the backend's private state, status checks that turn CUDA / cuDNN /
 * cuBLAS failures into kdc_error lines, the caching allocator and the own
 * kernels' launchers. Included only by *.cu files (it is C++). */
#ifndef KDC_CUDA_INTERNAL_H
#define KDC_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "common/nn/backend.h"
#include "common/cuda/cuda_backend.h"
#include "common/base/error.h"
}
/* cuDNN and cuBLAS are not linked but loaded at run time: every cudnn* /
 * cublas* function called anywhere must be in the list of cuda_libs.cu (one
 * line; the link fails otherwise). */
#include "common/cuda/cuda_libs.h"

/* ---- status checks: every call's status is checked, one line on failure ---- */

#define KDC_CUDA_TRY(err, call)                                                              \
    do {                                                                                     \
        cudaError_t kdc_e_ = (call);                                                         \
        if (kdc_e_ != cudaSuccess)                                                           \
            return kdc_fail((err), KDC_EDEVICE, "cuda: %s failed: %s (%s:%d)", #call,        \
                            cudaGetErrorString(kdc_e_), __FILE__, __LINE__);                 \
    } while (0)

#define KDC_CUDNN_TRY(err, call)                                                             \
    do {                                                                                     \
        cudnnStatus_t kdc_s_ = (call);                                                       \
        if (kdc_s_ != CUDNN_STATUS_SUCCESS)                                                  \
            return kdc_fail((err), KDC_EDEVICE, "cudnn: %s failed: %s (%s:%d)", #call,       \
                            cudnnGetErrorString(kdc_s_), __FILE__, __LINE__);                \
    } while (0)

#define KDC_CUBLAS_TRY(err, call)                                                            \
    do {                                                                                     \
        cublasStatus_t kdc_b_ = (call);                                                      \
        if (kdc_b_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return kdc_fail((err), KDC_EDEVICE, "cublas: %s failed: %s (%s:%d)", #call,      \
                            cublasGetStatusString(kdc_b_), __FILE__, __LINE__);              \
    } while (0)

/* After every kernel launch: a bad launch configuration shows up here, not
 * at the next unrelated call. */
#define KDC_CUDA_CHECK_LAUNCH(err, what)                                                     \
    do {                                                                                     \
        cudaError_t kdc_l_ = cudaGetLastError();                                             \
        if (kdc_l_ != cudaSuccess)                                                           \
            return kdc_fail((err), KDC_EDEVICE, "cuda: kernel %s: %s", (what),                \
                            cudaGetErrorString(kdc_l_));                                     \
    } while (0)

/* ---- caching allocator (cuda_alloc.cu) ----
 * Blocks freed by the backend go to a size-sorted cache and are handed out
 * again, without cudaFree/cudaMalloc (which synchronise the device). Reuse is
 * stream-ordered: every op of a backend runs on its one compute stream, so a
 * block freed after an op was enqueued is only reused by ops enqueued later.
 * Memory used on another stream (the uploader) is never freed into it while
 * that stream may still touch it. */
struct kdc_cuda_allocator;

kdc_status kdc_cuda_allocator_create(kdc_cuda_allocator **out, kdc_error *err);
kdc_status kdc_cuda_allocator_alloc(kdc_cuda_allocator *a, size_t bytes, void **out,
                                    kdc_error *err);
void kdc_cuda_allocator_free(kdc_cuda_allocator *a, void *ptr);
/* cudaFree of every cached block; the caller has synchronised the device. */
void kdc_cuda_allocator_release_cached(kdc_cuda_allocator *a);
void kdc_cuda_allocator_stats(const kdc_cuda_allocator *a, kdc_cuda_mem_stats *out);
/* Frees everything, cached and in use. */
void kdc_cuda_allocator_destroy(kdc_cuda_allocator *a);

/* ---- own kernels (cuda_kernels.cu); all take element counts as size_t,
 * are grid-stride and bounds-checked, and are checked after launch ---- */
kdc_status kdc_cuda_add(cudaStream_t s, size_t n, const float *a, const float *b, float *y,
                        kdc_error *err);
kdc_status kdc_cuda_fill(cudaStream_t s, size_t n, float value, float *y, kdc_error *err);
kdc_status kdc_cuda_f32_to_f16(cudaStream_t s, size_t n, const float *x, uint16_t *y,
                               kdc_error *err);
kdc_status kdc_cuda_f16_to_f32(cudaStream_t s, size_t n, const uint16_t *x, float *y,
                               kdc_error *err);

/* ---- the backend's private state (backend_cuda.cu) ---- */
struct kdc_cuda_conv_cache; /* plans per conv shape */

typedef struct kdc_cuda_impl {
    int device;
    char name[16];
    cudaStream_t stream; /* every op runs here */
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    kdc_cuda_allocator *alloc;
    kdc_precision precision;

    /* cuDNN workspace, grown on demand, shared by all conv calls (they are
     * ordered on one stream). */
    void *workspace;
    size_t workspace_bytes;

    /* Device constants for "no affine" batch norm and bias/GEMV sums:
     * `consts_len` ones followed by `consts_len` zeros. */
    float *consts;
    size_t consts_len;

    kdc_cuda_conv_cache *convs;

    /* Descriptors re-set by each non-conv op (cheap host-side calls); a
     * backend is used by one thread at a time, as the op table says. */
    cudnnTensorDescriptor_t td_x, td_y, td_p;
    cudnnPoolingDescriptor_t pool;
    cudnnActivationDescriptor_t relu;
} kdc_cuda_impl;

/* Makes the backend's GPU current for the calling thread (the CUDA runtime
 * keeps the current device per thread). */
kdc_status kdc_cuda_bind(kdc_cuda_impl *im, kdc_error *err);

/* cuda_zoo_ops.cu: fills the op table entries of MobileNetV2 / ShuffleNet /
 * RegNetY (ReLU6, sigmoid, channel scale, copy and shuffle, average pool). */
void kdc_cuda_fill_zoo_ops(kdc_backend *be);

/* The impl of a CUDA backend, or NULL (with err) for any other backend. */
kdc_cuda_impl *kdc_cuda_impl_of(kdc_backend *be, kdc_error *err);

#endif
