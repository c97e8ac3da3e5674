/* backend_cuda_stub.c - kdc_backend_cuda_create and the cuda_backend.h
 * extras for builds made without nvcc. They only say why there is no GPU
 * backend (a CPU backend still accepts precision fp32); backend_cuda.cu and
 * cuda_upload.cu replace this file when the Makefile finds nvcc (CUDA=1). */
#include <stdio.h>

#include "common/nn/backend.h"
#include "common/cuda/cuda_backend.h"
#include "common/cuda/cuda_libs.h"

#define NO_CUDA "this build has no CUDA backend (rebuild with nvcc on PATH or `make CUDA=1`)"

kdc_status kdc_backend_cuda_create(int index, kdc_backend **out, kdc_error *err)
{
    *out = NULL;
    return kdc_fail(err, KDC_EDEVICE,
                    "cuda:%d requested but this build has no CUDA backend (rebuild with "
                    "nvcc on PATH or `make CUDA=1`)",
                    index);
}

kdc_status kdc_backend_set_precision(kdc_backend *be, kdc_precision p, kdc_error *err)
{
    if (p != KDC_PREC_FP32 && p != KDC_PREC_TF32 && p != KDC_PREC_FP16)
        return kdc_fail(err, KDC_EINVAL, "unknown precision %d", (int)p);
    if (!be)
        return kdc_fail(err, KDC_EINVAL, "set_precision: no backend");
    if (p == KDC_PREC_FP32 && be->device.type != KDC_DEVICE_CUDA)
        return KDC_OK;
    return kdc_fail(err, KDC_EUNSUPPORTED, "precision %s needs a cuda device; " NO_CUDA,
                    kdc_precision_name(p));
}

kdc_status kdc_cuda_mem_stats_get(kdc_backend *be, kdc_cuda_mem_stats *out, kdc_error *err)
{
    (void)be;
    *out = (kdc_cuda_mem_stats){0};
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kdc_cuda_mem_release_cached(kdc_backend *be, kdc_error *err)
{
    (void)be;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kdc_cuda_host_alloc(kdc_backend *be, size_t bytes, void **out, kdc_error *err)
{
    (void)be;
    (void)bytes;
    *out = NULL;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kdc_cuda_stream(kdc_backend *be, void **stream, kdc_error *err)
{
    (void)be;
    *stream = NULL;
    return kdc_fail(err, KDC_EDEVICE, "this build has no CUDA");
}

void kdc_cuda_host_free(kdc_backend *be, void *ptr)
{
    (void)be;
    (void)ptr; /* nothing can have been allocated */
}

kdc_status kdc_cuda_uploader_create(kdc_backend *be, size_t bytes, kdc_cuda_uploader **out,
                                    kdc_error *err)
{
    (void)be;
    (void)bytes;
    *out = NULL;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kdc_cuda_uploader_host_slot(kdc_cuda_uploader *u, void **host, kdc_error *err)
{
    (void)u;
    *host = NULL;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kdc_cuda_uploader_submit(kdc_cuda_uploader *u, size_t bytes, void **device,
                                    kdc_error *err)
{
    (void)u;
    (void)bytes;
    *device = NULL;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

void kdc_cuda_uploader_destroy(kdc_cuda_uploader *u)
{
    (void)u;
}

kdc_status kdc_cuda_libs_load(kdc_error *err)
{
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

size_t kdc_cuda_libs_report(char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "cuda-runtime: none (%s)\n", NO_CUDA);
}
