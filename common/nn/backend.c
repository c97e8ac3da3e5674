/* backend.c - device-independent helpers around the kdc_backend table:
 * destruction and tensor allocation. */
#include "common/nn/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
