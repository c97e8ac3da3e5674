/* cuda_upload.cu - pinned host buffers and the double-buffered uploader of
 * cuda_backend.h: host-to-device copies of the next batch on a copy stream
 * while the compute stream works on the current one.
 *
 * Ordering, per slot s (batches alternate slots 0, 1, 0, ...):
 *   copied[s]   recorded on the copy stream after the copy into slot s;
 *               the compute stream waits on it (GPU-side) in submit, and the
 *               host waits on it before refilling slot s's pinned buffer;
 *   released[s] recorded on the compute stream when the NEXT batch is
 *               submitted: by then every op that reads slot s has been
 *               enqueued, so the copy that next overwrites slot s waits on it.
 * The device buffers are plain cudaMalloc, not the caching allocator: they
 * are written on the copy stream, which the allocator's stream-ordered reuse
 * does not cover. Not thread-safe: one loader thread drives one uploader. */
#include <new>

#include "common/cuda/cuda_internal.h"

struct kdc_cuda_uploader {
    kdc_cuda_impl *im;
    size_t bytes;
    cudaStream_t copy;
    void *host[2];
    void *dev[2];
    cudaEvent_t copied[2];
    cudaEvent_t released[2];
    bool copied_pending[2];   /* copied[s] was recorded and not yet waited on by the host */
    bool released_valid[2];   /* released[s] was recorded */
    int next;                 /* slot handed out by the next host_slot */
    bool slot_out;            /* host_slot called, submit not yet */
};

kdc_status kdc_cuda_stream(kdc_backend *be, void **stream, kdc_error *err)
{
    *stream = NULL;
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = kdc_cuda_bind(im, err);
    if (!st)
        *stream = (void *)im->stream;
    return st;
}

kdc_status kdc_cuda_host_alloc(kdc_backend *be, size_t bytes, void **out, kdc_error *err)
{
    *out = NULL;
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    cudaError_t e = cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *out = NULL;
        return kdc_fail(err, KDC_ENOMEM, "cuda: cudaHostAlloc(%zu bytes) failed: %s", bytes,
                        cudaGetErrorString(e));
    }
    return KDC_OK;
}

void kdc_cuda_host_free(kdc_backend *be, void *ptr)
{
    (void)be;
    if (ptr)
        (void)cudaFreeHost(ptr);
}

void kdc_cuda_uploader_destroy(kdc_cuda_uploader *u)
{
    if (!u)
        return;
    (void)cudaSetDevice(u->im->device);
    if (u->copy)
        (void)cudaStreamSynchronize(u->copy);
    /* the compute stream may still read the device buffers */
    (void)cudaStreamSynchronize(u->im->stream);
    for (int s = 0; s < 2; s++) {
        if (u->host[s])
            (void)cudaFreeHost(u->host[s]);
        if (u->dev[s])
            (void)cudaFree(u->dev[s]);
        if (u->copied[s])
            (void)cudaEventDestroy(u->copied[s]);
        if (u->released[s])
            (void)cudaEventDestroy(u->released[s]);
    }
    if (u->copy)
        (void)cudaStreamDestroy(u->copy);
    delete u;
}

static kdc_status uploader_init(kdc_cuda_uploader *u, kdc_error *err)
{
    KDC_CUDA_TRY(err, cudaStreamCreateWithFlags(&u->copy, cudaStreamNonBlocking));
    for (int s = 0; s < 2; s++) {
        KDC_CUDA_TRY(err, cudaHostAlloc(&u->host[s], u->bytes, cudaHostAllocDefault));
        KDC_CUDA_TRY(err, cudaMalloc(&u->dev[s], u->bytes));
        KDC_CUDA_TRY(err, cudaEventCreateWithFlags(&u->copied[s], cudaEventDisableTiming));
        KDC_CUDA_TRY(err, cudaEventCreateWithFlags(&u->released[s], cudaEventDisableTiming));
    }
    return KDC_OK;
}

kdc_status kdc_cuda_uploader_create(kdc_backend *be, size_t bytes, kdc_cuda_uploader **out,
                                    kdc_error *err)
{
    *out = NULL;
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    if (bytes == 0)
        return kdc_fail(err, KDC_EINVAL, "uploader: zero-byte slots");
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    kdc_cuda_uploader *u = new (std::nothrow) kdc_cuda_uploader();
    if (!u)
        return kdc_fail(err, KDC_ENOMEM, "uploader: out of host memory");
    u->im = im;
    u->bytes = bytes;
    st = uploader_init(u, err);
    if (st) {
        (void)cudaGetLastError();
        kdc_cuda_uploader_destroy(u);
        return st;
    }
    *out = u;
    return KDC_OK;
}

kdc_status kdc_cuda_uploader_host_slot(kdc_cuda_uploader *u, void **host, kdc_error *err)
{
    *host = NULL;
    if (u->slot_out)
        return kdc_fail(err, KDC_EINVAL, "uploader: host_slot called twice without submit");
    kdc_status st = kdc_cuda_bind(u->im, err);
    if (st)
        return st;
    int s = u->next;
    if (u->copied_pending[s]) {
        KDC_CUDA_TRY(err, cudaEventSynchronize(u->copied[s]));
        u->copied_pending[s] = false;
    }
    u->slot_out = true;
    *host = u->host[s];
    return KDC_OK;
}

kdc_status kdc_cuda_uploader_submit(kdc_cuda_uploader *u, size_t bytes, void **device,
                                    kdc_error *err)
{
    *device = NULL;
    if (!u->slot_out)
        return kdc_fail(err, KDC_EINVAL, "uploader: submit without host_slot");
    if (bytes > u->bytes)
        return kdc_fail(err, KDC_EINVAL, "uploader: %zu bytes exceed the %zu-byte slots", bytes,
                        u->bytes);
    kdc_status st = kdc_cuda_bind(u->im, err);
    if (st)
        return st;
    int s = u->next, other = 1 - s;
    /* Everything enqueued on the compute stream so far includes all reads of
     * the other slot (the previous batch): mark that point. */
    KDC_CUDA_TRY(err, cudaEventRecord(u->released[other], u->im->stream));
    u->released_valid[other] = true;
    if (u->released_valid[s])
        KDC_CUDA_TRY(err, cudaStreamWaitEvent(u->copy, u->released[s], 0));
    if (bytes)
        KDC_CUDA_TRY(err, cudaMemcpyAsync(u->dev[s], u->host[s], bytes, cudaMemcpyHostToDevice,
                                          u->copy));
    KDC_CUDA_TRY(err, cudaEventRecord(u->copied[s], u->copy));
    u->copied_pending[s] = true;
    KDC_CUDA_TRY(err, cudaStreamWaitEvent(u->im->stream, u->copied[s], 0));
    u->slot_out = false;
    u->next = other;
    *device = u->dev[s];
    return KDC_OK;
}
