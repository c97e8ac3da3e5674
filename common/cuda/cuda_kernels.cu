/* cuda_kernels.cu - the CUDA backend's own elementwise kernels: the few ops
 * that cuDNN and cuBLAS have no primitive for (y = a + b with aliasing, a
 * constant fill, float16 packing for the cache writer and unpacking for the
 * fp16 teacher path).
 *
 * Every kernel is grid-stride over a size_t count and touches only indices
 * below it, so any n works with a bounded grid and compute-sanitizer finds no
 * out-of-bounds access; every launch is followed by a cudaGetLastError check.
 * The CPU functions of half.c are the specification of the conversions
 * (round-to-nearest-even, as __float2half_rn). */
#include <cuda_fp16.h>

#include "common/cuda/cuda_internal.h"

/* 256 threads x at most 65535 x 4 blocks covers a GPU many times over; the
 * grid-stride loop does the rest. */
static const int kThreads = 256;
static const size_t kMaxBlocks = 4 * 65535;

static unsigned grid_for(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    if (b > kMaxBlocks)
        b = kMaxBlocks;
    return (unsigned)(b ? b : 1);
}

__global__ void add_kernel(size_t n, const float *a, const float *b, float *y)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = a[i] + b[i];
}

__global__ void fill_kernel(size_t n, float v, float *y)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = v;
}

__global__ void f32_to_f16_kernel(size_t n, const float *x, uint16_t *y)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = __half_as_ushort(__float2half_rn(x[i]));
}

__global__ void f16_to_f32_kernel(size_t n, const uint16_t *x, float *y)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = __half2float(__ushort_as_half(x[i]));
}

kdc_status kdc_cuda_add(cudaStream_t s, size_t n, const float *a, const float *b, float *y,
                        kdc_error *err)
{
    if (n == 0)
        return KDC_OK;
    add_kernel<<<grid_for(n), kThreads, 0, s>>>(n, a, b, y);
    KDC_CUDA_CHECK_LAUNCH(err, "add");
    return KDC_OK;
}

kdc_status kdc_cuda_fill(cudaStream_t s, size_t n, float value, float *y, kdc_error *err)
{
    if (n == 0)
        return KDC_OK;
    fill_kernel<<<grid_for(n), kThreads, 0, s>>>(n, value, y);
    KDC_CUDA_CHECK_LAUNCH(err, "fill");
    return KDC_OK;
}

kdc_status kdc_cuda_f32_to_f16(cudaStream_t s, size_t n, const float *x, uint16_t *y,
                               kdc_error *err)
{
    if (n == 0)
        return KDC_OK;
    f32_to_f16_kernel<<<grid_for(n), kThreads, 0, s>>>(n, x, y);
    KDC_CUDA_CHECK_LAUNCH(err, "f32_to_f16");
    return KDC_OK;
}

kdc_status kdc_cuda_f16_to_f32(cudaStream_t s, size_t n, const uint16_t *x, float *y,
                               kdc_error *err)
{
    if (n == 0)
        return KDC_OK;
    f16_to_f32_kernel<<<grid_for(n), kThreads, 0, s>>>(n, x, y);
    KDC_CUDA_CHECK_LAUNCH(err, "f16_to_f32");
    return KDC_OK;
}
