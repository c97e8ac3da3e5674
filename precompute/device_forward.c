/* device_forward.c - the GPU forward stage of kd-precompute (device_forward.h). */
#include "precompute/device_forward.h"

#include <stdlib.h>

#include "common/cuda/cuda_backend.h"
#ifdef KDC_HAVE_CUDA
#include "common/cuda/cuda_topk.h"
#endif

struct kd_device_forward {
    kdc_backend *be;
    kdc_model *m;
    kdc_cuda_uploader *up;
    int batch, size;
    cache_logit_storage storage;
    size_t C, K, D, index_size;
    int64_t V; /* rows per image in a chunk */
    /* device buffers of the stored form, batch rows each */
    uint16_t *logits16; /* float16 logits (CACHE_LOGITS_F16) */
    void *topk_index;   /* top-k (CACHE_LOGITS_TOPK) */
    uint16_t *topk_value;
    uint16_t *features16; /* D > 0 */
    /* the batch between submit and run / run and download */
    const float *x; /* submitted pixels on the device */
    int n_submitted, n_run;
    const float *logits32; /* the teacher's float32 logits (CACHE_LOGITS_F32) */
};

static kdc_status topk_rows(kd_device_forward *d, const float *logits, size_t rows, kdc_error *err)
{
#ifdef KDC_HAVE_CUDA
    return kdc_cuda_topk_rows(d->be, logits, rows, d->C, d->K, d->topk_index, d->index_size,
                              d->topk_value, err);
#else
    (void)d;
    (void)logits;
    (void)rows;
    return kdc_fail(err, KDC_EDEVICE, "top-k on the device needs a build with CUDA");
#endif
}

static kdc_status dev_alloc(kdc_backend *be, size_t n, size_t elem, void **out, kdc_error *err)
{
    size_t bytes;
    if (!kdc_size_mul(n, elem, &bytes))
        return kdc_fail(err, KDC_ENOMEM, "device output buffers: size overflow");
    return be->alloc(be, bytes, out, err);
}

kdc_status kd_device_forward_create(kdc_backend *be, kdc_model *m, const cache_header *h, int batch,
                                    int size, kd_device_forward **out, kdc_error *err)
{
    *out = NULL;
    if (be->device.type != KDC_DEVICE_CUDA)
        return kdc_fail(err, KDC_EDEVICE, "device forward: %s is not a CUDA device", be->name);
    if (batch < 1 || size < 1)
        return kdc_fail(err, KDC_EINVAL, "device forward: batch %d, size %d", batch, size);
    kd_device_forward *d = calloc(1, sizeof *d);
    if (!d)
        return kdc_fail(err, KDC_ENOMEM, "device forward: out of memory");
    d->be = be;
    d->m = m;
    d->batch = batch;
    d->size = size;
    d->storage = h->logit_storage;
    d->C = (size_t)h->num_classes;
    d->K = (size_t)h->topk;
    d->D = (size_t)h->feature_dim;
    d->V = h->views_per_image;
    size_t B = (size_t)batch, px;
    kdc_status st = KDC_OK;
    if (!kdc_size_mul(B * 3, (size_t)size * (size_t)size, &px) ||
        !kdc_size_mul(px, sizeof(float), &px))
        st =
            kdc_fail(err, KDC_ENOMEM, "device forward: batch of %d x %d px too large", batch, size);
    if (!st)
        st = kdc_cuda_uploader_create(be, px, &d->up, err);
    if (!st && d->storage == CACHE_LOGITS_F16)
        st = dev_alloc(be, B * d->C, 2, (void **)&d->logits16, err);
    if (!st && d->storage == CACHE_LOGITS_TOPK) {
        d->index_size = cache_topk_index_size(h);
        if (!(st = dev_alloc(be, B * d->K, d->index_size, &d->topk_index, err)))
            st = dev_alloc(be, B * d->K, 2, (void **)&d->topk_value, err);
    }
    if (!st && d->D)
        st = dev_alloc(be, B * d->D, 2, (void **)&d->features16, err);
    if (st) {
        kd_device_forward_free(d);
        return st;
    }
    *out = d;
    return KDC_OK;
}

kdc_status kd_device_forward_host_slot(kd_device_forward *d, float **pixels, kdc_error *err)
{
    void *p;
    kdc_status st = kdc_cuda_uploader_host_slot(d->up, &p, err);
    *pixels = st ? NULL : p;
    return st;
}

kdc_status kd_device_forward_submit(kd_device_forward *d, int n, kdc_error *err)
{
    if (n < 0 || n > d->batch)
        return kdc_fail(err, KDC_EINVAL, "device forward: %d images in a batch of %d", n, d->batch);
    size_t bytes = (size_t)n * 3 * (size_t)d->size * (size_t)d->size * sizeof(float);
    void *x;
    kdc_status st = kdc_cuda_uploader_submit(d->up, bytes, &x, err);
    if (st)
        return st;
    d->x = x;
    d->n_submitted = n;
    return KDC_OK;
}

kdc_status kd_device_forward_run(kd_device_forward *d, kdc_error *err)
{
    if (d->n_run)
        return kdc_fail(err, KDC_EINVAL, "device forward: the previous batch was not downloaded");
    int n = d->n_submitted;
    if (n == 0)
        return KDC_OK;
    const float *logits, *feats;
    kdc_status st = kdc_model_infer(d->m, d->x, n, d->size, d->size, &logits, &feats, err);
    if (st)
        return st;
    size_t rows = (size_t)n;
    switch (d->storage) {
    case CACHE_LOGITS_F32: d->logits32 = logits; break;
    case CACHE_LOGITS_F16:
        st = d->be->f32_to_f16(d->be, rows * d->C, logits, d->logits16, err);
        break;
    case CACHE_LOGITS_TOPK: st = topk_rows(d, logits, rows, err); break;
    }
    if (!st && d->D)
        st = d->be->f32_to_f16(d->be, rows * d->D, feats, d->features16, err);
    if (st)
        return st;
    d->n_submitted = 0;
    d->n_run = n;
    return KDC_OK;
}

int kd_device_forward_pending(const kd_device_forward *d)
{
    return d->n_run > 0;
}

kdc_status kd_device_forward_download(kd_device_forward *d, cache_chunk *c, int64_t row,
                                      kdc_error *err)
{
    size_t n = (size_t)d->n_run, r = (size_t)row;
    if (!n)
        return KDC_OK;
    if (row < 0 || (int64_t)(r + n) > c->capacity * d->V)
        return kdc_fail(err, KDC_EINVAL, "device forward: rows [%lld, +%zu) outside the chunk",
                        (long long)row, n);
    kdc_backend *be = d->be;
    kdc_status st = KDC_OK;
    /* The first copy waits for the teacher (copy_d2h synchronises the compute
     * stream); the rest are already-finished device buffers. */
    switch (d->storage) {
    case CACHE_LOGITS_F32:
        st = be->copy_d2h(be, (float *)c->logits + r * d->C, d->logits32, n * d->C * 4, err);
        break;
    case CACHE_LOGITS_F16:
        st = be->copy_d2h(be, (uint16_t *)c->logits + r * d->C, d->logits16, n * d->C * 2, err);
        break;
    case CACHE_LOGITS_TOPK:
        st = be->copy_d2h(be, (char *)c->topk_index + r * d->K * d->index_size, d->topk_index,
                          n * d->K * d->index_size, err);
        if (!st)
            st = be->copy_d2h(be, c->topk_value + r * d->K, d->topk_value, n * d->K * 2, err);
        break;
    }
    if (!st && d->D)
        st = be->copy_d2h(be, c->features + r * d->D, d->features16, n * d->D * 2, err);
    if (st)
        return st;
    d->n_run = 0;
    return KDC_OK;
}

void kd_device_forward_free(kd_device_forward *d)
{
    if (!d)
        return;
    /* The uploader waits for its copies and the compute stream before freeing. */
    kdc_cuda_uploader_destroy(d->up);
    kdc_backend *be = d->be;
    if (d->logits16)
        be->free(be, d->logits16);
    if (d->topk_index)
        be->free(be, d->topk_index);
    if (d->topk_value)
        be->free(be, d->topk_value);
    if (d->features16)
        be->free(be, d->features16);
    free(d);
}
