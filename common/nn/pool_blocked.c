/* TEMPORARY naive fallback */
#include "common/nn/pool_blocked.h"
#include "common/nn/pool.h"
#include <stdlib.h>
static float *cv(const float *x, size_t N, int C, int HW, int B, int to_blk)
{
    float *o = malloc(N * C * HW * sizeof *o);
    for (size_t n = 0; n < N; n++) for (int c = 0; c < C; c++) for (int p = 0; p < HW; p++) {
        size_t a = (n * C + c) * HW + p, b = ((n * (C / B) + c / B) * HW + p) * B + c % B;
        if (to_blk) o[b] = x[a]; else o[a] = x[b];
    }
    return o;
}
static void put(float *dst, const float *src, size_t n) { for (size_t i = 0; i < n; i++) dst[i] = src[i]; }
kdc_status kdc_maxpool2d_forward_blk(const kdc_pool2d_desc *d, const float *x, float *y, kdc_pool *pool, kdc_error *err)
{
    kdc_pool2d_desc p = *d; p.blk = 0;
    int hi = d->h_in * d->w_in, ho = d->h_out * d->w_out;
    float *xn = cv(x, d->n, d->c, hi, d->blk, 0), *yn = malloc((size_t)d->n * d->c * ho * 4);
    kdc_status st = kdc_maxpool2d_forward(&p, xn, yn, pool, err);
    float *yb = cv(yn, d->n, d->c, ho, d->blk, 1); put(y, yb, (size_t)d->n * d->c * ho);
    free(xn); free(yn); free(yb); return st;
}
static kdc_status bwd(const kdc_pool2d_desc *d, const float *x, const float *dy, float *dx, int S, kdc_pool *pool, kdc_error *err)
{
    kdc_pool2d_desc p = *d; p.blk = 0;
    int hi = d->h_in * d->w_in, ho = d->h_out * d->w_out;
    float *xn = cv(x, d->n, d->c, hi, d->blk, 0), *dyn = cv(dy, (size_t)S * d->n, d->c, ho, d->blk, 0);
    float *dxn = malloc((size_t)S * d->n * d->c * hi * 4);
    kdc_status st = S == 1 ? kdc_maxpool2d_backward(&p, xn, dyn, dxn, pool, err) : kdc_maxpool2d_backward_dual(&p, xn, dyn, dxn, pool, err);
    float *dxb = cv(dxn, (size_t)S * d->n, d->c, hi, d->blk, 1); put(dx, dxb, (size_t)S * d->n * d->c * hi);
    free(xn); free(dyn); free(dxn); free(dxb); return st;
}
kdc_status kdc_maxpool2d_backward_blk(const kdc_pool2d_desc *d, const float *x, const float *dy, float *dx, kdc_pool *pool, kdc_error *err)
{ return bwd(d, x, dy, dx, 1, pool, err); }
kdc_status kdc_maxpool2d_backward_dual_blk(const kdc_pool2d_desc *d, const float *x, const float *dy2, float *dx2, kdc_pool *pool, kdc_error *err)
{ return bwd(d, x, dy2, dx2, 2, pool, err); }
