/* activation.c - threaded elementwise loops (see activation.h). */
#include "activation.h"

#include "half.h"

/* Items per chunk: large enough that waking a worker (~10 us) pays off. */
#define EW_GRAIN 32768

typedef struct ew_ctx {
    const float *a, *b;
    float *y;
    uint16_t *h;
    float alpha;
} ew_ctx;

static void relu_fwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++)
        c->y[i] = c->a[i] < 0.0f ? 0.0f : c->a[i];
}

static void relu_bwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v; /* a = y, b = dy */
    for (size_t i = b; i < e; i++)
        c->y[i] = c->a[i] > 0.0f ? c->b[i] : 0.0f;
}

static void add_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++)
        c->y[i] = c->a[i] + c->b[i];
}

static void axpy_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    for (size_t i = b; i < e; i++)
        c->y[i] += c->alpha * c->a[i];
}

static void f16_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    kdc_f32_to_f16_array(c->a + b, c->h + b, e - b);
}

void kdc_relu_forward(size_t n, const float *x, float *y, kdc_pool *pool)
{
    ew_ctx c = {.a = x, .y = y};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, relu_fwd_task, &c);
}

void kdc_relu_backward(size_t n, const float *y, const float *dy, float *dx, kdc_pool *pool)
{
    ew_ctx c = {.a = y, .b = dy, .y = dx};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, relu_bwd_task, &c);
}

void kdc_add(size_t n, const float *a, const float *b, float *y, kdc_pool *pool)
{
    ew_ctx c = {.a = a, .b = b, .y = y};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, add_task, &c);
}

void kdc_axpy(size_t n, float alpha, const float *x, float *y, kdc_pool *pool)
{
    ew_ctx c = {.a = x, .y = y, .alpha = alpha};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, axpy_task, &c);
}

void kdc_f32_to_f16_par(size_t n, const float *x, uint16_t *y, kdc_pool *pool)
{
    ew_ctx c = {.a = x, .h = y};
    kdc_pool_parallel_for(pool, n, EW_GRAIN, f16_task, &c);
}
