/* relu6_sigmoid.c - ReLU6 and sigmoid loops (see relu6_sigmoid.h). */
#include "common/nn/relu6_sigmoid.h"

#include <math.h>

#define EW_GRAIN 32768 /* as activation.c: a worker's wake-up must pay off */

typedef struct ew_ctx {
    const float *a, *b;
    float *y;
} ew_ctx;

static void relu6_fwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++) {
        float x = c->a[i];
        /* comparisons false for NaN: it passes through, as in PyTorch */
        c->y[i] = x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    }
}

static void relu6_bwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++) {
        float y = c->a[i], g = c->b[i];
        c->y[i] = (y > 0.0f && y < 6.0f) ? g : 0.0f;
    }
}

static void sigmoid_fwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++)
        c->y[i] = 1.0f / (1.0f + expf(-c->a[i]));
}

static void sigmoid_bwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++) {
        float y = c->a[i];
        c->y[i] = c->b[i] * y * (1.0f - y);
    }
}

void kdc_relu6_forward(size_t n, const float *x, float *y, kdc_pool *pool)
{
    ew_ctx c = {.a = x, .y = y};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, relu6_fwd_task, &c);
}

void kdc_relu6_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool)
{
    ew_ctx c = {.a = y, .b = dy, .y = dx};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, relu6_bwd_task, &c);
}

void kdc_sigmoid_forward(size_t n, const float *x, float *y, kdc_pool *pool)
{
    ew_ctx c = {.a = x, .y = y};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, sigmoid_fwd_task, &c);
}

void kdc_sigmoid_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool)
{
    ew_ctx c = {.a = y, .b = dy, .y = dx};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, sigmoid_bwd_task, &c);
}
