/* backend_cuda_stub.c - kdc_backend_cuda_create for builds made without nvcc.
 * It only says why there is no GPU backend; backend_cuda.cu replaces it when
 * the Makefile finds nvcc (CUDA=1). */
#include "backend.h"

kdc_status kdc_backend_cuda_create(int index, kdc_backend **out, kdc_error *err)
{
    *out = NULL;
    return kdc_fail(err, KDC_EDEVICE,
                    "cuda:%d requested but this build has no CUDA backend (rebuild with "
                    "nvcc on PATH or `make CUDA=1`)",
                    index);
}
