/* avgpool.c - windowed average pooling (see avgpool.h). */
#include "common/nn/avgpool.h"

#include <string.h>

typedef struct avg_ctx {
    const kdc_pool2d_desc *d;
    const float *in;
    float *out;
} avg_ctx;

static void fwd_task(void *v, size_t b, size_t e)
{
    const avg_ctx *c = v;
    const kdc_pool2d_desc *d = c->d;
    size_t in_plane = (size_t)d->h_in * d->w_in, out_plane = (size_t)d->h_out * d->w_out;
    float inv = 1.0f / (float)(d->k * d->k);
    for (size_t p = b; p < e; p++) {
        const float *x = c->in + p * in_plane;
        float *y = c->out + p * out_plane;
        for (int oh = 0; oh < d->h_out; oh++)
            for (int ow = 0; ow < d->w_out; ow++) {
                float s = 0.0f;
                for (int i = 0; i < d->k; i++) {
                    int ih = oh * d->stride - d->pad + i;
                    if (ih < 0 || ih >= d->h_in)
                        continue;
                    for (int j = 0; j < d->k; j++) {
                        int iw = ow * d->stride - d->pad + j;
                        if (iw >= 0 && iw < d->w_in)
                            s += x[(size_t)ih * d->w_in + iw];
                    }
                }
                y[(size_t)oh * d->w_out + ow] = s * inv;
            }
    }
}

static void bwd_task(void *v, size_t b, size_t e)
{
    const avg_ctx *c = v;
    const kdc_pool2d_desc *d = c->d;
    size_t in_plane = (size_t)d->h_in * d->w_in, out_plane = (size_t)d->h_out * d->w_out;
    float inv = 1.0f / (float)(d->k * d->k);
    for (size_t p = b; p < e; p++) {
        const float *dy = c->in + p * out_plane;
        float *dx = c->out + p * in_plane;
        memset(dx, 0, in_plane * sizeof(float));
        for (int oh = 0; oh < d->h_out; oh++)
            for (int ow = 0; ow < d->w_out; ow++) {
                float g = dy[(size_t)oh * d->w_out + ow] * inv;
                for (int i = 0; i < d->k; i++) {
                    int ih = oh * d->stride - d->pad + i;
                    if (ih < 0 || ih >= d->h_in)
                        continue;
                    for (int j = 0; j < d->k; j++) {
                        int iw = ow * d->stride - d->pad + j;
                        if (iw >= 0 && iw < d->w_in)
                            dx[(size_t)ih * d->w_in + iw] += g;
                    }
                }
            }
    }
}

static kdc_status check(const kdc_pool2d_desc *d, kdc_error *err)
{
    kdc_pool2d_desc chk = *d;
    kdc_status st = kdc_pool2d_desc_init(&chk, err);
    if (st)
        return kdc_error_prefix(err, "avgpool: ");
    if (chk.h_out != d->h_out || chk.w_out != d->w_out)
        return kdc_fail(err, KDC_EINVAL, "avgpool: descriptor output %dx%d, expected %dx%d",
                        d->h_out, d->w_out, chk.h_out, chk.w_out);
    if (d->blk)
        return kdc_fail(err, KDC_EUNSUPPORTED, "avgpool: windowed pooling takes NCHW only");
    return KDC_OK;
}

kdc_status kdc_avgpool2d_forward(const kdc_pool2d_desc *d, const float *x, float *y, kdc_pool *pool,
                                 kdc_error *err)
{
    kdc_status st = check(d, err);
    if (st)
        return st;
    avg_ctx c = {d, x, y};
    kdc_pool_parallel_for(pool, (size_t)d->n * (size_t)d->c, 4, fwd_task, &c);
    return KDC_OK;
}

kdc_status kdc_avgpool2d_backward(const kdc_pool2d_desc *d, const float *dy, float *dx,
                                  kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check(d, err);
    if (st)
        return st;
    avg_ctx c = {d, dy, dx};
    kdc_pool_parallel_for(pool, (size_t)d->n * (size_t)d->c, 4, bwd_task, &c);
    return KDC_OK;
}
