/* tensor.c - tensor descriptor helpers and CPU tensor allocation. */
#include "common/base/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t kdc_dtype_size(kdc_dtype dt)
{
    switch (dt) {
    case KDC_F32: return 4;
    case KDC_F16: return 2;
    case KDC_I64: return 8;
    }
    return 0;
}

const char *kdc_dtype_name(kdc_dtype dt)
{
    switch (dt) {
    case KDC_F32: return "float32";
    case KDC_F16: return "float16";
    case KDC_I64: return "int64";
    }
    return "?";
}

size_t kdc_tensor_numel(const kdc_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

size_t kdc_tensor_nbytes(const kdc_tensor *t)
{
    return kdc_tensor_numel(t) * kdc_dtype_size(t->dtype);
}

int kdc_tensor_same_shape(const kdc_tensor *a, const kdc_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

void kdc_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t used = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

kdc_status kdc_tensor_alloc_cpu(kdc_tensor *t, kdc_dtype dt, int ndim, const int64_t *shape,
                                kdc_error *err)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > KDC_MAX_DIMS)
        return kdc_fail(err, KDC_EINVAL, "tensor rank %d is outside 0..%d", ndim, KDC_MAX_DIMS);
    size_t bytes = kdc_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return kdc_fail(err, KDC_EINVAL, "negative tensor dimension %lld",
                            (long long)shape[i]);
        if (!kdc_size_mul(bytes, (size_t)shape[i], &bytes))
            return kdc_fail(err, KDC_ENOMEM, "tensor size overflows");
        t->shape[i] = shape[i];
    }
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return kdc_fail(err, KDC_ENOMEM, "tensor size overflows");
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p)
        return kdc_fail(err, KDC_ENOMEM, "cannot allocate %zu bytes for a tensor", bytes);
    memset(p, 0, rounded ? rounded : 64);
    t->data = p;
    t->dtype = dt;
    t->device.type = KDC_DEVICE_CPU;
    t->device.index = 0;
    t->ndim = ndim;
    return KDC_OK;
}

void kdc_tensor_free_cpu(kdc_tensor *t)
{
    if (t && t->device.type == KDC_DEVICE_CPU) {
        free(t->data);
        t->data = NULL;
    }
}
