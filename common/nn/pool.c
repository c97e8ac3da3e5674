/* pool.c - max pooling (forward, backward via recomputed argmax) and global average pooling. */
#include "common/nn/pool.h"
#include "common/nn/pool_blocked.h"

#include <math.h>
#include <string.h>

typedef struct pool_ctx {
    const kdc_pool2d_desc *d;
    const float *x, *dy;
    float *y, *dx;
    size_t hw;
    int streams;                 /* max backward: 1, or 2 stacked gradient streams */
    size_t stream_in, stream_out; /* their offsets in dx and dy (floats) */
} pool_ctx;

/* Index in the input plane of the first maximum of window (ho, wo), or -1 when
 * the window holds only padding (cannot happen with pad <= k/2). Like PyTorch's
 * cpu_max_pool: strictly greater replaces, and every NaN replaces (the last NaN wins). */
static long window_argmax(const kdc_pool2d_desc *d, const float *xp, int ho, int wo, float *val)
{
    int h0 = ho * d->stride - d->pad, w0 = wo * d->stride - d->pad;
    /* clip the window to the plane once, so the scan has no per-tap bounds tests */
    int i0 = h0 < 0 ? 0 : h0, i1 = h0 + d->k < d->h_in ? h0 + d->k : d->h_in;
    int j0 = w0 < 0 ? 0 : w0, j1 = w0 + d->k < d->w_in ? w0 + d->k : d->w_in;
    long best = -1;
    float m = -INFINITY;
    for (int i = i0; i < i1; i++) {
        const float *row = xp + (size_t)i * d->w_in;
        for (int j = j0; j < j1; j++) {
            float v = row[j];
            if (best < 0 || v > m || isnan(v)) {
                m = v;
                best = (long)i * d->w_in + j;
            }
        }
    }
    *val = m;
    return best;
}

#define ROW_MAX KDC_POOL_ROW_MAX

/* (v > m || v != v) ? v : m below is window_argmax's rule: a NaN wins. The
 * elementwise pass needs GCC's "cheap" vectoriser model at -O2 (activation.c).
 * Forward values only, separably: per output row, the column maxima of its
 * (clipped) input rows (a contiguous, vectorisable pass), then each output's
 * max over its clipped columns. Same value as window_argmax: the maximum, NaN
 * if the window holds one (only the sign of a zero maximum can differ, where a
 * window ties -0 and +0). POOL_VECTORISE is in pool_blocked.h. */
POOL_VECTORISE static void max_fwd_plane(const kdc_pool2d_desc *d, const float *xp, float *yp)
{
    float col[ROW_MAX];
    const int w = d->w_in;
    for (int ho = 0; ho < d->h_out; ho++) {
        int h0 = ho * d->stride - d->pad;
        int i0 = h0 < 0 ? 0 : h0, i1 = h0 + d->k < d->h_in ? h0 + d->k : d->h_in;
        memcpy(col, xp + (size_t)i0 * w, (size_t)w * sizeof(float));
        for (int i = i0 + 1; i < i1; i++) {
            const float *row = xp + (size_t)i * w;
            POOL_IVDEP
            for (int j = 0; j < w; j++) {
                float v = row[j], m = col[j]; /* unconditional loads: the select vectorises */
                col[j] = (v > m || v != v) ? v : m;
            }
        }
        float *yr = yp + (size_t)ho * d->w_out;
        for (int wo = 0; wo < d->w_out; wo++) {
            int w0 = wo * d->stride - d->pad;
            int j0 = w0 < 0 ? 0 : w0, j1 = w0 + d->k < w ? w0 + d->k : w;
            float m = col[j0];
            for (int j = j0 + 1; j < j1; j++)
                m = (col[j] > m || col[j] != col[j]) ? col[j] : m;
            yr[wo] = m;
        }
    }
}

static void max_fwd_task(void *vctx, size_t begin, size_t end)
{
    const pool_ctx *c = vctx;
    const kdc_pool2d_desc *d = c->d;
    size_t pin = (size_t)d->h_in * d->w_in, pout = (size_t)d->h_out * d->w_out;
    /* every window must meet the plane (pad < k, as PyTorch requires) */
    if (d->w_in <= ROW_MAX && d->pad < d->k) {
        for (size_t t = begin; t < end; t++)
            max_fwd_plane(d, c->x + t * pin, c->y + t * pout);
        return;
    }
    for (size_t t = begin; t < end; t++) {
        const float *xp = c->x + t * pin;
        float *yp = c->y + t * pout;
        for (int ho = 0; ho < d->h_out; ho++)
            for (int wo = 0; wo < d->w_out; wo++) {
                float v;
                window_argmax(d, xp, ho, wo, &v);
                yp[(size_t)ho * d->w_out + wo] = v;
            }
    }
}

static void max_bwd_task(void *vctx, size_t begin, size_t end)
{
    const pool_ctx *c = vctx;
    const kdc_pool2d_desc *d = c->d;
    size_t pin = (size_t)d->h_in * d->w_in, pout = (size_t)d->h_out * d->w_out;
    for (size_t t = begin; t < end; t++) {
        const float *xp = c->x + t * pin;
        for (int s = 0; s < c->streams; s++)
            memset(c->dx + s * c->stream_in + t * pin, 0, sizeof(float) * pin);
        for (int ho = 0; ho < d->h_out; ho++)
            for (int wo = 0; wo < d->w_out; wo++) {
                float v;
                long idx = window_argmax(d, xp, ho, wo, &v); /* once for every stream */
                if (idx < 0)
                    continue;
                for (int s = 0; s < c->streams; s++)
                    c->dx[s * c->stream_in + t * pin + (size_t)idx] +=
                        c->dy[s * c->stream_out + t * pout + (size_t)ho * d->w_out + wo];
            }
    }
}

static kdc_status check_pool(const kdc_pool2d_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c <= 0 || d->h_out <= 0 || d->w_out <= 0 || d->k <= 0 ||
        d->stride <= 0)
        return kdc_fail(err, KDC_EINVAL,
                        "maxpool2d: descriptor not initialised (call kdc_pool2d_desc_init)");
    if (!kdc_blk_valid(d->blk, d->c))
        return kdc_fail(err, KDC_EINVAL, "maxpool2d: layout block %d for %d channels", d->blk,
                        d->c);
    return KDC_OK;
}

kdc_status kdc_maxpool2d_forward(const kdc_pool2d_desc *d, const float *x, float *y,
                                 kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_pool(d, err);
    if (st)
        return st;
    if (d->blk)
        return kdc_maxpool2d_forward_blk(d, x, y, pool, err);
    pool_ctx c = {.d = d, .x = x, .y = y};
    kdc_pool_parallel_for(pool, (size_t)d->n * d->c, 1, max_fwd_task, &c);
    return KDC_OK;
}

kdc_status kdc_maxpool2d_backward(const kdc_pool2d_desc *d, const float *x, const float *dy,
                                  float *dx, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_pool(d, err);
    if (st)
        return st;
    if (d->blk)
        return kdc_maxpool2d_backward_blk(d, x, dy, dx, pool, err);
    pool_ctx c = {.d = d, .x = x, .dy = dy, .dx = dx, .streams = 1};
    kdc_pool_parallel_for(pool, (size_t)d->n * d->c, 1, max_bwd_task, &c);
    return KDC_OK;
}

kdc_status kdc_maxpool2d_backward_dual(const kdc_pool2d_desc *d, const float *x,
                                       const float *dy2, float *dx2, kdc_pool *pool,
                                       kdc_error *err)
{
    kdc_status st = check_pool(d, err);
    if (st)
        return st;
    if (d->blk)
        return kdc_maxpool2d_backward_dual_blk(d, x, dy2, dx2, pool, err);
    size_t planes = (size_t)d->n * d->c;
    pool_ctx c = {.d = d, .x = x, .dy = dy2, .dx = dx2, .streams = 2,
                  .stream_in = planes * d->h_in * d->w_in,
                  .stream_out = planes * d->h_out * d->w_out};
    kdc_pool_parallel_for(pool, planes, 1, max_bwd_task, &c);
    return KDC_OK;
}

static void avg_fwd_task(void *vctx, size_t begin, size_t end)
{
    const pool_ctx *c = vctx;
    for (size_t t = begin; t < end; t++) {
        const float *xp = c->x + t * c->hw;
        double s = 0;
        for (size_t i = 0; i < c->hw; i++)
            s += xp[i];
        c->y[t] = (float)(s / (double)c->hw);
    }
}

static void avg_bwd_task(void *vctx, size_t begin, size_t end)
{
    const pool_ctx *c = vctx;
    float inv = 1.0f / (float)c->hw;
    for (size_t t = begin; t < end; t++) {
        float g = c->dy[t] * inv, *dxp = c->dx + t * c->hw;
        for (size_t i = 0; i < c->hw; i++)
            dxp[i] = g;
    }
}

kdc_status kdc_avgpool_global_forward(int n, int c, int hw, const float *x, float *y,
                                      kdc_pool *pool, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "avgpool: non-positive size n=%d c=%d hw=%d", n, c, hw);
    pool_ctx ctx = {.x = x, .y = y, .hw = (size_t)hw};
    size_t grain = hw >= 4096 ? 1 : 4096 / (size_t)hw;
    kdc_pool_parallel_for(pool, (size_t)n * c, grain, avg_fwd_task, &ctx);
    return KDC_OK;
}

kdc_status kdc_avgpool_global_backward(int n, int c, int hw, const float *dy, float *dx,
                                       kdc_pool *pool, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "avgpool: non-positive size n=%d c=%d hw=%d", n, c, hw);
    pool_ctx ctx = {.dy = dy, .dx = dx, .hw = (size_t)hw};
    size_t grain = hw >= 4096 ? 1 : 4096 / (size_t)hw;
    kdc_pool_parallel_for(pool, (size_t)n * c, grain, avg_bwd_task, &ctx);
    return KDC_OK;
}

/* ---- global average pool of a blocked x: tasks are (n, channel block) ---- */

typedef struct blk_ctx {
    const float *in;
    float *out;
    size_t hw, blk;
} blk_ctx;

POOL_VECTORISE static void avg_fwd_blk_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    const size_t B = c->blk;
    for (size_t t = begin; t < end; t++) {
        const float *xp = c->in + t * c->hw * B;
        double s[16] = {0};
        /* per lane the same additions, in the same order, as avg_fwd_task */
        for (size_t i = 0; i < c->hw; i++)
            for (size_t l = 0; l < B; l++)
                s[l] += xp[i * B + l];
        for (size_t l = 0; l < B; l++)
            c->out[t * B + l] = (float)(s[l] / (double)c->hw);
    }
}

POOL_VECTORISE static void avg_bwd_blk_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    const size_t B = c->blk;
    float inv = 1.0f / (float)c->hw;
    for (size_t t = begin; t < end; t++) {
        float g[16];
        for (size_t l = 0; l < B; l++)
            g[l] = c->in[t * B + l] * inv;
        float *dxp = c->out + t * c->hw * B;
        for (size_t i = 0; i < c->hw; i++)
            for (size_t l = 0; l < B; l++)
                dxp[i * B + l] = g[l];
    }
}

static kdc_status check_blk_gap(int n, int c, int hw, int blk, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "avgpool: non-positive size n=%d c=%d hw=%d", n, c, hw);
    if (blk == 0 || !kdc_blk_valid(blk, c))
        return kdc_fail(err, KDC_EINVAL, "avgpool: layout block %d for %d channels", blk, c);
    return KDC_OK;
}

kdc_status kdc_avgpool_global_forward_blk(int n, int c, int hw, int blk, const float *x,
                                          float *y, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_blk_gap(n, c, hw, blk, err);
    if (st)
        return st;
    /* (n, cb) blocks are consecutive in x and their outputs consecutive in y */
    blk_ctx ctx = {.in = x, .out = y, .hw = (size_t)hw, .blk = (size_t)blk};
    size_t per = (size_t)hw * blk, grain = per >= 4096 ? 1 : 4096 / per;
    kdc_pool_parallel_for(pool, (size_t)n * (c / blk), grain, avg_fwd_blk_task, &ctx);
    return KDC_OK;
}

kdc_status kdc_avgpool_global_backward_blk(int n, int c, int hw, int blk, const float *dy,
                                           float *dx, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_blk_gap(n, c, hw, blk, err);
    if (st)
        return st;
    blk_ctx ctx = {.in = dy, .out = dx, .hw = (size_t)hw, .blk = (size_t)blk};
    size_t per = (size_t)hw * blk, grain = per >= 4096 ? 1 : 4096 / per;
    kdc_pool_parallel_for(pool, (size_t)n * (c / blk), grain, avg_bwd_blk_task, &ctx);
    return KDC_OK;
}
