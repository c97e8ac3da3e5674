/* backend.c - device-independent helpers around the kdc_backend table:
 * descriptor validation, "cpu" / "cuda:i" parsing, tensor allocation. */
#include "common/nn/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

kdc_status kdc_conv2d_desc_init(kdc_conv2d_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c_in <= 0 || d->h_in <= 0 || d->w_in <= 0 || d->c_out <= 0 ||
        d->kh <= 0 || d->kw <= 0 || d->stride <= 0 || d->pad < 0 || d->groups <= 0)
        return kdc_fail(err, KDC_EINVAL, "conv2d: non-positive size in descriptor");
    if (d->c_in % d->groups || d->c_out % d->groups)
        return kdc_fail(err, KDC_EINVAL, "conv2d: channels %d -> %d not divisible by groups %d",
                        d->c_in, d->c_out, d->groups);
    int hp = d->h_in + 2 * d->pad - d->kh, wp = d->w_in + 2 * d->pad - d->kw;
    if (hp < 0 || wp < 0)
        return kdc_fail(err, KDC_EINVAL, "conv2d: input %dx%d smaller than kernel %dx%d",
                        d->h_in, d->w_in, d->kh, d->kw);
    d->h_out = hp / d->stride + 1;
    d->w_out = wp / d->stride + 1;
    return KDC_OK;
}

kdc_status kdc_pool2d_desc_init(kdc_pool2d_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c <= 0 || d->h_in <= 0 || d->w_in <= 0 || d->k <= 0 ||
        d->stride <= 0 || d->pad < 0 || 2 * d->pad > d->k)
        return kdc_fail(err, KDC_EINVAL, "pool2d: bad descriptor");
    int hp = d->h_in + 2 * d->pad - d->k, wp = d->w_in + 2 * d->pad - d->k;
    if (hp < 0 || wp < 0)
        return kdc_fail(err, KDC_EINVAL, "pool2d: input %dx%d smaller than window %d",
                        d->h_in, d->w_in, d->k);
    d->h_out = hp / d->stride + 1;
    d->w_out = wp / d->stride + 1;
    return KDC_OK;
}

kdc_status kdc_backend_create(const char *device, int threads, kdc_backend **out,
                              kdc_error *err)
{
    *out = NULL;
    if (!device || strcmp(device, "cpu") == 0)
        return kdc_backend_cpu_create(threads, out, err);
    if (strncmp(device, "cuda", 4) == 0) {
        int index = 0;
        if (device[4] == ':') {
            char *end;
            errno = 0;
            long v = strtol(device + 5, &end, 10);
            if (errno || *end || end == device + 5 || v < 0 || v > 1024)
                return kdc_fail(err, KDC_EINVAL, "bad device '%s' (expected cuda or cuda:N)",
                                device);
            index = (int)v;
        } else if (device[4] != '\0') {
            return kdc_fail(err, KDC_EINVAL, "bad device '%s' (expected cpu, cuda or cuda:N)",
                            device);
        }
        return kdc_backend_cuda_create(index, out, err);
    }
    return kdc_fail(err, KDC_EINVAL, "unknown device '%s' (expected cpu, cuda or cuda:N)",
                    device);
}

void kdc_backend_destroy(kdc_backend *be)
{
    if (be && be->destroy)
        be->destroy(be);
}

kdc_status kdc_backend_tensor_alloc(kdc_backend *be, kdc_tensor *t, kdc_dtype dt, int ndim,
                                    const int64_t *shape, kdc_error *err)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > KDC_MAX_DIMS)
        return kdc_fail(err, KDC_EINVAL, "tensor rank %d is outside 0..%d", ndim, KDC_MAX_DIMS);
    size_t bytes = kdc_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !kdc_size_mul(bytes, (size_t)shape[i], &bytes))
            return kdc_fail(err, KDC_ENOMEM, "bad or overflowing tensor shape");
        t->shape[i] = shape[i];
    }
    t->ndim = ndim;
    t->dtype = dt;
    t->device = be->device;
    kdc_status st = be->alloc(be, bytes ? bytes : 1, &t->data, err);
    if (st)
        return st;
    return be->fill_zero(be, t->data, bytes, err);
}

void kdc_backend_tensor_free(kdc_backend *be, kdc_tensor *t)
{
    if (t && t->data) {
        be->free(be, t->data);
        t->data = NULL;
    }
}
