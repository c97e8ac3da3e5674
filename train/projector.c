/* projector.c - Linear(Ds -> Dt) with bias through the backend's linear op. */
#include "train/projector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/rng.h"

#define PROJECTOR_INIT_TAG 0x50524f4aull /* "PROJ": its own Philox key */

void kd_projector_free(kd_projector *p)
{
    if (!p || !p->be)
        return;
    p->be->free(p->be, p->flat);
    p->be->free(p->be, p->grad);
    p->be->free(p->be, p->out);
    p->be->free(p->be, p->dinput);
    memset(p, 0, sizeof *p);
}

kdc_status kd_projector_init(kd_projector *p, kdc_backend *be, int ds, int dt, int max_b,
                             uint64_t seed, kdc_error *err)
{
    memset(p, 0, sizeof *p);
    if (ds < 1 || dt < 1 || max_b < 1)
        return kdc_fail(err, KDC_EINVAL, "projector %d -> %d, batch %d", ds, dt, max_b);
    p->be = be;
    p->ds = ds;
    p->dt = dt;
    p->max_b = max_b;
    p->numel = (size_t)dt * (size_t)ds + (size_t)dt;
    size_t fb = p->numel * sizeof(float);
    kdc_status st;
    if ((st = be->alloc(be, fb, (void **)&p->flat, err)) ||
        (st = be->alloc(be, fb, (void **)&p->grad, err)) ||
        (st = be->alloc(be, (size_t)max_b * (size_t)dt * sizeof(float), (void **)&p->out, err)) ||
        (st = be->alloc(be, (size_t)max_b * (size_t)ds * sizeof(float), (void **)&p->dinput,
                        err))) {
        kd_projector_free(p);
        return st;
    }
    /* torch.nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) on the weight is
     * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the same bound. */
    float *host = malloc(fb);
    if (!host) {
        kd_projector_free(p);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    double bound = 1.0 / sqrt((double)ds);
    kdc_philox_stream r;
    kdc_philox_init(&r, seed ^ (PROJECTOR_INIT_TAG << 24), 0, 0);
    for (size_t i = 0; i < p->numel; i++)
        host[i] = (float)((2.0 * kdc_philox_uniform(&r) - 1.0) * bound);
    st = be->copy_h2d(be, p->flat, host, fb, err);
    free(host);
    if (st) {
        kd_projector_free(p);
        return st;
    }
    kdc_param *w = &p->items[0], *b = &p->items[1];
    w->name = "projector.weight";
    w->kind = KDC_PARAM_WEIGHT;
    w->value = (kdc_tensor){.data = p->flat, .dtype = KDC_F32, .device = be->device, .ndim = 2,
                            .shape = {dt, ds}};
    b->name = "projector.bias";
    b->kind = KDC_PARAM_WEIGHT;
    b->value = (kdc_tensor){.data = p->flat + (size_t)dt * (size_t)ds, .dtype = KDC_F32,
                            .device = be->device, .ndim = 1, .shape = {dt}};
    p->table.items = p->items;
    p->table.count = 2;
    return KDC_OK;
}

kdc_status kd_projector_forward(kd_projector *p, const float *z, int n, kdc_error *err)
{
    if (n < 1 || n > p->max_b)
        return kdc_fail(err, KDC_EINVAL, "projector batch %d not in 1..%d", n, p->max_b);
    return p->be->linear_forward(p->be, n, p->ds, p->dt, z, p->flat,
                                 p->flat + (size_t)p->dt * (size_t)p->ds, p->out, err);
}

kdc_status kd_projector_backward(kd_projector *p, const float *z, const float *dout, int n,
                                 kdc_error *err)
{
    if (n < 1 || n > p->max_b)
        return kdc_fail(err, KDC_EINVAL, "projector batch %d not in 1..%d", n, p->max_b);
    return p->be->linear_backward(p->be, n, p->ds, p->dt, z, p->flat, dout, p->dinput, p->grad,
                                  p->grad + (size_t)p->dt * (size_t)p->ds, err);
}
