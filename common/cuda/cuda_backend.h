/* cuda_backend.h - what the CUDA backend offers beyond the op table of
 * backend.h: compute precision for the teacher forward, memory statistics of
 * the caching allocator, pinned host buffers and a double-buffered uploader
 * that overlaps host-to-device copies with compute.
 *
 * These are plain C functions so that the tools (C11) can call them. Every
 * build has them: backend_cuda.cu / cuda_upload.cu define them when the
 * Makefile finds nvcc, backend_cuda_stub.c otherwise (they then fail with
 * KDC_EDEVICE, except that a CPU backend accepts precision fp32). This is
 * not the op table: models and trainers still call ops through backend.h. */
#ifndef KDC_CUDA_BACKEND_H
#define KDC_CUDA_BACKEND_H

#include <stddef.h>
#include <string.h>

#include "common/nn/backend.h"

/* The CUDA backend on GPU `index`; KDC_EDEVICE with a one-line reason when the
 * build has no CUDA, no driver or no such GPU. Defined in backend_cuda.cu, or
 * in backend_cuda_stub.c for builds without nvcc. */
kdc_status kdc_backend_cuda_create(int index, kdc_backend **out, kdc_error *err);

/* Arithmetic of conv2d_forward and linear_forward (the teacher's forward).
 * Every other op, and every backward, stays float32 whatever is set here.
 *   FP32: strict float32 (cuDNN FMA math, cuBLAS without tensor-op downconversion)
 *   TF32: float32 storage, products in TF32 on tensor cores (sm_80+)
 *   FP16: inputs and weights rounded to float16, float32 accumulation
 * The expected logit difference to FP32 is recorded in docs/GPU.md. */
typedef enum kdc_precision { KDC_PREC_FP32 = 0, KDC_PREC_TF32 = 1, KDC_PREC_FP16 = 2 } kdc_precision;

static inline const char *kdc_precision_name(kdc_precision p)
{
    return p == KDC_PREC_TF32 ? "tf32" : p == KDC_PREC_FP16 ? "fp16" : "fp32";
}

/* Parses "fp32" | "tf32" | "fp16" (the --precision flag). */
static inline kdc_status kdc_precision_parse(const char *s, kdc_precision *out, kdc_error *err)
{
    if (s && strcmp(s, "fp32") == 0)
        *out = KDC_PREC_FP32;
    else if (s && strcmp(s, "tf32") == 0)
        *out = KDC_PREC_TF32;
    else if (s && strcmp(s, "fp16") == 0)
        *out = KDC_PREC_FP16;
    else
        return kdc_fail(err, KDC_EINVAL, "bad precision '%s' (expected fp32, tf32 or fp16)",
                        s ? s : "(null)");
    return KDC_OK;
}

/* Sets the precision of be's conv2d_forward / linear_forward. A CPU backend
 * accepts FP32 only (KDC_EUNSUPPORTED otherwise). */
kdc_status kdc_backend_set_precision(kdc_backend *be, kdc_precision p, kdc_error *err);

typedef struct kdc_cuda_mem_stats {
    size_t bytes_in_use;    /* handed out by alloc and not yet freed */
    size_t bytes_cached;    /* freed, kept for reuse */
    size_t device_mallocs;  /* cudaMalloc calls so far (reuse keeps this flat) */
    size_t cache_hits;      /* allocations served from the cache */
    size_t bad_frees;       /* free() of a pointer this backend did not allocate */
} kdc_cuda_mem_stats;

/* Statistics of a CUDA backend's caching allocator. */
kdc_status kdc_cuda_mem_stats_get(kdc_backend *be, kdc_cuda_mem_stats *out, kdc_error *err);

/* Gives every cached (free) block back to the driver. */
kdc_status kdc_cuda_mem_release_cached(kdc_backend *be, kdc_error *err);

/* The backend's compute stream (a cudaStream_t: every op of be runs on it),
 * with be's device made current on the calling thread, for a library that
 * enqueues its own work in the backend's order (NCCL; common/dist/dist_nccl.h). */
kdc_status kdc_cuda_stream(kdc_backend *be, void **stream, kdc_error *err);

/* Page-locked host memory (cudaHostAlloc), the source of asynchronous copies. */
kdc_status kdc_cuda_host_alloc(kdc_backend *be, size_t bytes, void **out, kdc_error *err);
void kdc_cuda_host_free(kdc_backend *be, void *ptr);

/* Double buffering between the loader and the model.
 *
 * Two slots, each a pinned host buffer and a device buffer of `bytes`. Per
 * batch the loader calls host_slot (fills the pinned buffer it gets, e.g. by
 * decoding straight into it), then submit: the copy runs on a separate copy
 * stream while the compute stream still works on the previous batch, and the
 * compute stream waits (on the GPU, not the host) until the copy is done
 * before it runs anything enqueued after submit. The device pointer that
 * submit returns stays valid until the second submit after it; the uploader
 * makes the copy into a slot wait until the compute that read that slot two
 * batches earlier has finished. */
typedef struct kdc_cuda_uploader kdc_cuda_uploader;

kdc_status kdc_cuda_uploader_create(kdc_backend *be, size_t bytes, kdc_cuda_uploader **out,
                                    kdc_error *err);
/* Waits (host) until the next slot's pinned buffer is no longer being read by
 * an earlier copy, and returns it. */
kdc_status kdc_cuda_uploader_host_slot(kdc_cuda_uploader *u, void **host, kdc_error *err);
/* Starts copying the first `bytes` of the slot handed out by host_slot. */
kdc_status kdc_cuda_uploader_submit(kdc_cuda_uploader *u, size_t bytes, void **device,
                                    kdc_error *err);
void kdc_cuda_uploader_destroy(kdc_cuda_uploader *u);

#endif
