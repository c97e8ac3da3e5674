/* pool_blocked.c - max pooling in the blocked layout (see pool_blocked.h). */
#include "common/nn/pool_blocked.h"

static kdc_status not_yet(kdc_error *err)
{
    return kdc_fail(err, KDC_EUNSUPPORTED, "maxpool2d: the blocked layout is not implemented");
}

kdc_status kdc_maxpool2d_forward_blk(const kdc_pool2d_desc *d, const float *x, float *y,
                                     kdc_pool *pool, kdc_error *err)
{
    (void)d, (void)x, (void)y, (void)pool;
    return not_yet(err);
}

kdc_status kdc_maxpool2d_backward_blk(const kdc_pool2d_desc *d, const float *x, const float *dy,
                                      float *dx, kdc_pool *pool, kdc_error *err)
{
    (void)d, (void)x, (void)dy, (void)dx, (void)pool;
    return not_yet(err);
}

kdc_status kdc_maxpool2d_backward_dual_blk(const kdc_pool2d_desc *d, const float *x,
                                           const float *dy2, float *dx2, kdc_pool *pool,
                                           kdc_error *err)
{
    (void)d, (void)x, (void)dy2, (void)dx2, (void)pool;
    return not_yet(err);
}
