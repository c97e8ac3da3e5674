/* batchnorm_blocked.c - batch norm in the blocked layout (see batchnorm_blocked.h). */
#include "common/nn/batchnorm_blocked.h"

static kdc_status not_yet(kdc_error *err)
{
    return kdc_fail(err, KDC_EUNSUPPORTED, "batchnorm: the blocked layout is not implemented");
}

kdc_status kdc_batchnorm_forward_train_blk(const kdc_bn_desc *d, const float *x,
                                           const float *gamma, const float *beta,
                                           float *running_mean, float *running_var,
                                           float *save_mean, float *save_invstd, float *y,
                                           kdc_pool *pool, kdc_error *err)
{
    (void)d, (void)x, (void)gamma, (void)beta, (void)running_mean, (void)running_var;
    (void)save_mean, (void)save_invstd, (void)y, (void)pool;
    return not_yet(err);
}

kdc_status kdc_batchnorm_forward_eval_blk(const kdc_bn_desc *d, const float *x, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, float *y, kdc_pool *pool,
                                          kdc_error *err)
{
    (void)d, (void)x, (void)gamma, (void)beta, (void)running_mean, (void)running_var, (void)y;
    (void)pool;
    return not_yet(err);
}

kdc_status kdc_batchnorm_backward_blk(const kdc_bn_desc *d, const float *x, const float *dy,
                                      const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta, kdc_pool *pool, kdc_error *err)
{
    (void)d, (void)x, (void)dy, (void)gamma, (void)save_mean, (void)save_invstd, (void)dx;
    (void)dgamma, (void)dbeta, (void)pool;
    return not_yet(err);
}

kdc_status kdc_batchnorm_backward_dual_blk(const kdc_bn_desc *d, const float *x, const float *dy2,
                                           const float *gamma, const float *save_mean,
                                           const float *save_invstd, float *dx2, float *dgamma0,
                                           float *dbeta0, float *dgamma1, float *dbeta1,
                                           kdc_pool *pool, kdc_error *err)
{
    (void)d, (void)x, (void)dy2, (void)gamma, (void)save_mean, (void)save_invstd, (void)dx2;
    (void)dgamma0, (void)dbeta0, (void)dgamma1, (void)dbeta1, (void)pool;
    return not_yet(err);
}
