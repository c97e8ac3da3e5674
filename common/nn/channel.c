/* channel.c - channel copy, shuffle and scale (see channel.h). */
#include "common/nn/channel.h"

#include <string.h>

typedef struct copy_ctx {
    const kdc_chan_copy_desc *d;
    const float *x;
    float *y;
} copy_ctx;

/* One task per image: its channel range is one contiguous block in x and y. */
static void copy_task(void *v, size_t b, size_t e)
{
    const copy_ctx *c = v;
    const kdc_chan_copy_desc *d = c->d;
    size_t hw = (size_t)d->hw, len = (size_t)d->c * hw;
    for (size_t i = b; i < e; i++)
        memcpy(c->y + (i * (size_t)d->y_c + (size_t)d->y_off) * hw,
               c->x + (i * (size_t)d->x_c + (size_t)d->x_off) * hw, len * sizeof(float));
}

kdc_status kdc_channel_copy(const kdc_chan_copy_desc *d, const float *x, float *y, kdc_pool *pool,
                            kdc_error *err)
{
    kdc_status st = kdc_chan_copy_desc_check(d, err);
    if (st)
        return st;
    copy_ctx c = {d, x, y};
    kdc_pool_parallel_for(pool, (size_t)d->n, 1, copy_task, &c);
    return KDC_OK;
}

typedef struct plane_ctx {
    int c, g, hw;
    const float *x, *s, *dy;
    float *y, *dx, *ds;
} plane_ctx;

static void shuffle_task(void *v, size_t b, size_t e)
{
    const plane_ctx *p = v;
    size_t hw = (size_t)p->hw, per = (size_t)(p->c / p->g);
    for (size_t t = b; t < e; t++) { /* t = image * c + output channel */
        size_t img = t / (size_t)p->c, oc = t % (size_t)p->c;
        size_t i = oc % (size_t)p->g, j = oc / (size_t)p->g;
        memcpy(p->y + t * hw, p->x + (img * (size_t)p->c + i * per + j) * hw, hw * sizeof(float));
    }
}

kdc_status kdc_channel_shuffle(int n, int c, int groups, int hw, const float *x, float *y,
                               kdc_pool *pool, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups)
        return kdc_fail(err, KDC_EINVAL, "channel shuffle: %d channels in %d groups", c, groups);
    plane_ctx p = {.c = c, .g = groups, .hw = hw, .x = x, .y = y};
    kdc_pool_parallel_for(pool, (size_t)n * (size_t)c, 64, shuffle_task, &p);
    return KDC_OK;
}

static void scale_fwd_task(void *v, size_t b, size_t e)
{
    const plane_ctx *p = v;
    size_t hw = (size_t)p->hw;
    for (size_t t = b; t < e; t++) {
        float s = p->s[t];
        const float *x = p->x + t * hw;
        float *y = p->y + t * hw;
        for (size_t i = 0; i < hw; i++)
            y[i] = x[i] * s;
    }
}

static void scale_bwd_task(void *v, size_t b, size_t e)
{
    const plane_ctx *p = v;
    size_t hw = (size_t)p->hw;
    for (size_t t = b; t < e; t++) {
        const float *dy = p->dy + t * hw;
        if (p->ds) {
            const float *x = p->x + t * hw;
            double acc = 0.0;
            for (size_t i = 0; i < hw; i++)
                acc += (double)dy[i] * (double)x[i];
            p->ds[t] = (float)acc;
        }
        if (p->dx) {
            float s = p->s[t];
            float *dx = p->dx + t * hw;
            for (size_t i = 0; i < hw; i++)
                dx[i] = dy[i] * s;
        }
    }
}

static kdc_status scale_check(int n, int c, int hw, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "channel scale: bad size %d x %d x %d", n, c, hw);
    return KDC_OK;
}

kdc_status kdc_channel_scale_forward(int n, int c, int hw, const float *x, const float *s, float *y,
                                     kdc_pool *pool, kdc_error *err)
{
    kdc_status st = scale_check(n, c, hw, err);
    if (st)
        return st;
    plane_ctx p = {.c = c, .hw = hw, .x = x, .s = s, .y = y};
    kdc_pool_parallel_for(pool, (size_t)n * (size_t)c, 16, scale_fwd_task, &p);
    return KDC_OK;
}

kdc_status kdc_channel_scale_backward(int n, int c, int hw, const float *x, const float *s,
                                      const float *dy, float *dx, float *ds, kdc_pool *pool,
                                      kdc_error *err)
{
    kdc_status st = scale_check(n, c, hw, err);
    if (st)
        return st;
    plane_ctx p = {.c = c, .hw = hw, .x = x, .s = s, .dy = dy, .dx = dx, .ds = ds};
    kdc_pool_parallel_for(pool, (size_t)n * (size_t)c, 16, scale_bwd_task, &p);
    return KDC_OK;
}
