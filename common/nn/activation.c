/* activation.c - threaded elementwise loops (see activation.h). */
#include "common/nn/activation.h"

#include "common/base/half.h"

/* Items per chunk: large enough that waking a worker (~10 us) pays off. */
#define EW_GRAIN 32768

/* GCC 12 at -O2 vectorises only loops whose trip count needs no scalar
 * epilogue ("very cheap" cost model), i.e. none of these; and the pointers in
 * a context struct may alias. The loops are elementwise (same index read, then
 * written, so aliasing y == a is harmless): ivdep plus the "cheap" cost model
 * vectorise them (measured: the ReLU and SGD-update loops were ~14% of a
 * resnet18 32 px train step, docs/PERFORMANCE.md). */
#if defined(__GNUC__) && !defined(__clang__)
#define EW_VECTORISE __attribute__((optimize("vect-cost-model=cheap")))
#define EW_IVDEP _Pragma("GCC ivdep")
#else
#define EW_VECTORISE
#define EW_IVDEP
#endif

typedef struct ew_ctx {
    const float *a, *b;
    float *y;
    size_t n; /* relu_bwd2_task: the stream size */
    uint16_t *h;
    float alpha;
} ew_ctx;

EW_VECTORISE static void relu_fwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    const float *a = c->a;
    float *y = c->y;
    EW_IVDEP
    for (size_t i = b; i < e; i++)
        y[i] = a[i] < 0.0f ? 0.0f : a[i];
}

EW_VECTORISE static void relu_bwd_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v; /* a = y, b = dy */
    const float *a = c->a, *g = c->b;
    float *y = c->y;
    EW_IVDEP
    for (size_t i = b; i < e; i++) {
        float gi = g[i]; /* loaded unconditionally, so the select vectorises */
        y[i] = a[i] > 0.0f ? gi : 0.0f;
    }
}

/* Both streams per chunk, one plain masked loop each (as relu_bwd_task, which
 * vectorises; one loop with two selects did not): the chunk of the mask y is
 * read from memory once and from cache for the second stream. */
EW_VECTORISE static void relu_bwd2_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v; /* a = y, b = dy2, y = dx2 */
    const float *a = c->a;
    for (size_t s = 0; s < 2; s++) {
        const float *g = c->b + s * c->n;
        float *y = c->y + s * c->n;
        EW_IVDEP
        for (size_t i = b; i < e; i++) {
            float gi = g[i];
            y[i] = a[i] > 0.0f ? gi : 0.0f;
        }
    }
}

EW_VECTORISE static void add_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    const float *a = c->a, *p = c->b;
    float *y = c->y;
    EW_IVDEP
    for (size_t i = b; i < e; i++)
        y[i] = a[i] + p[i];
}

EW_VECTORISE static void axpy_task(void *v, size_t b, size_t e)
{
    const ew_ctx *c = v;
    const float *a = c->a, alpha = c->alpha;
    float *y = c->y;
    EW_IVDEP
    for (size_t i = b; i < e; i++)
        y[i] += alpha * a[i];
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

void kdc_relu_backward_dual(size_t n, const float *y, const float *dy2, float *dx2,
                            kdc_pool *pool)
{
    ew_ctx c = {.a = y, .b = dy2, .y = dx2, .n = n};
    kdc_pool_parallel_for(pool, n, EW_GRAIN / 2, relu_bwd2_task, &c);
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
