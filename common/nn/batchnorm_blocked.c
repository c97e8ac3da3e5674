/* TEMPORARY naive fallback: convert to NCHW, run the NCHW kernel, convert back */
#include "common/nn/batchnorm_blocked.h"
#include "common/nn/batchnorm.h"
#include <stdlib.h>
#include <string.h>
static float *tonchw(const kdc_bn_desc *d, const float *x, size_t mult)
{
    if (!x) return NULL;
    int B = d->blk, C = d->c, HW = d->hw;
    size_t N = (size_t)d->n * mult;
    float *o = malloc(N * C * HW * sizeof *o);
    for (size_t n = 0; n < N; n++) for (int c = 0; c < C; c++) for (int p = 0; p < HW; p++)
        o[(n * C + c) * HW + p] = x[((n * (C / B) + c / B) * HW + p) * B + c % B];
    return o;
}
static void toblk(const kdc_bn_desc *d, const float *x, float *o, size_t mult)
{
    int B = d->blk, C = d->c, HW = d->hw;
    size_t N = (size_t)d->n * mult;
    for (size_t n = 0; n < N; n++) for (int c = 0; c < C; c++) for (int p = 0; p < HW; p++)
        o[((n * (C / B) + c / B) * HW + p) * B + c % B] = x[(n * C + c) * HW + p];
}
kdc_status kdc_batchnorm_forward_train_blk(const kdc_bn_desc *d, const float *x, const float *gamma, const float *beta, float *rm, float *rv, float *sm, float *si, float *y, kdc_pool *pool, kdc_error *err)
{
    kdc_bn_desc p = *d; p.blk = 0;
    float *xn = tonchw(d, x, 1), *yn = malloc((size_t)d->n * d->c * d->hw * 4);
    kdc_status st = kdc_batchnorm_forward_train(&p, xn, gamma, beta, rm, rv, sm, si, yn, pool, err);
    toblk(d, yn, y, 1); free(xn); free(yn); return st;
}
kdc_status kdc_batchnorm_forward_eval_blk(const kdc_bn_desc *d, const float *x, const float *gamma, const float *beta, const float *rm, const float *rv, float *y, kdc_pool *pool, kdc_error *err)
{
    kdc_bn_desc p = *d; p.blk = 0;
    float *xn = tonchw(d, x, 1), *yn = malloc((size_t)d->n * d->c * d->hw * 4);
    kdc_status st = kdc_batchnorm_forward_eval(&p, xn, gamma, beta, rm, rv, yn, pool, err);
    toblk(d, yn, y, 1); free(xn); free(yn); return st;
}
kdc_status kdc_batchnorm_backward_blk(const kdc_bn_desc *d, const float *x, const float *dy, const float *gamma, const float *sm, const float *si, float *dx, float *dg, float *db, kdc_pool *pool, kdc_error *err)
{
    kdc_bn_desc p = *d; p.blk = 0;
    float *xn = tonchw(d, x, 1), *dyn = tonchw(d, dy, 1), *dxn = malloc((size_t)d->n * d->c * d->hw * 4);
    kdc_status st = kdc_batchnorm_backward(&p, xn, dyn, gamma, sm, si, dx ? dxn : NULL, dg, db, pool, err);
    if (dx) toblk(d, dxn, dx, 1);
    free(xn); free(dyn); free(dxn); return st;
}
kdc_status kdc_batchnorm_backward_dual_blk(const kdc_bn_desc *d, const float *x, const float *dy2, const float *gamma, const float *sm, const float *si, float *dx2, float *dg0, float *db0, float *dg1, float *db1, kdc_pool *pool, kdc_error *err)
{
    kdc_bn_desc p = *d; p.blk = 0;
    float *xn = tonchw(d, x, 1), *dyn = tonchw(d, dy2, 2), *dxn = malloc(2 * (size_t)d->n * d->c * d->hw * 4);
    kdc_status st = kdc_batchnorm_backward_dual(&p, xn, dyn, gamma, sm, si, dx2 ? dxn : NULL, dg0, db0, dg1, db1, pool, err);
    if (dx2) toblk(d, dxn, dx2, 2);
    free(xn); free(dyn); free(dxn); return st;
}
