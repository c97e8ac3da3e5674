/* pool_blocked.c - max pooling in the blocked layout (see pool_blocked.h).
 *
 * A task is one (n, channel block): an h x w plane of B-float vectors, lane l
 * being channel cb * B + l. Each step that pool.c does on one float of a plane
 * is done here on the B lanes of a vector, in the same order, so every lane
 * goes through exactly the float operations of its NCHW plane: the forward's
 * column maxima and their fold along the row (max_fwd_plane), or its window
 * scan for wide rows; the backward's row-major argmax (window_argmax) and its
 * additions into dx output by output (max_bwd_task). */
#include "common/nn/pool_blocked.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES_MAX 16
/* The forward's stack buffer of column maxima: 256 columns of 16 lanes. Rows
 * wider than that go through it in chunks of columns. */
#define COL_FLOATS 4096

/* The lane loops get B as a constant: each kernel is inlined into a B = 8 and
 * a B = 16 copy, whose lane loops GCC turns into whole vectors. */
#define KERNEL static inline __attribute__((always_inline)) POOL_VECTORISE

typedef struct blk_ctx {
    const kdc_pool2d_desc *d;
    const float *x, *dy;
    float *y, *dx;
    int streams;                  /* backward: 1, or 2 stacked gradient streams */
    size_t stream_in, stream_out; /* their offsets in dx and dy (floats) */
} blk_ctx;

/* col[(j - ja) * B + l] = the maximum of column j over rows [i0, i1): row i0,
 * then each next row folded in with max_fwd_plane's rule (a NaN wins). The
 * columns of a row are contiguous vectors, so this is one flat loop. */
KERNEL void col_max(const float *restrict xb, int w, int i0, int i1, int ja, int jb,
                    float *restrict col, const int B)
{
    size_t n = (size_t)(jb - ja) * B;
    memcpy(col, xb + ((size_t)i0 * w + ja) * B, n * sizeof(float));
    for (int i = i0 + 1; i < i1; i++) {
        const float *row = xb + ((size_t)i * w + ja) * B;
        POOL_IVDEP
        for (size_t e = 0; e < n; e++) {
            float v = row[e], m = col[e];
            col[e] = (v > m || v != v) ? v : m;
        }
    }
}

/* Folds ncols column maxima into the output vector yo, left to right as
 * max_fwd_plane does; first starts the fold, otherwise it continues the one
 * that yo holds (a window cut by a chunk boundary). */
KERNEL void col_fold(float *restrict yo, const float *restrict colp, int ncols, int first,
                     const int B)
{
    int jj = 0;
    if (first) {
        for (int l = 0; l < B; l++)
            yo[l] = colp[l];
        jj = 1;
    }
    for (; jj < ncols; jj++) {
        const float *cv = colp + (size_t)jj * B;
        for (int l = 0; l < B; l++) {
            float v = cv[l], m = yo[l];
            yo[l] = (v > m || v != v) ? v : m;
        }
    }
}

/* max_fwd_plane for a block: per output row, the column maxima of its clipped
 * rows, then each output's fold over its clipped columns. Needs pad < k (every
 * window meets the plane). */
KERNEL void fwd_separable(const kdc_pool2d_desc *d, const float *restrict xb, float *restrict yb,
                          const int B)
{
    float col[COL_FLOATS];
    const int w = d->w_in, cols = COL_FLOATS / B;
    for (int ho = 0; ho < d->h_out; ho++) {
        int h0 = ho * d->stride - d->pad;
        int i0 = h0 < 0 ? 0 : h0, i1 = h0 + d->k < d->h_in ? h0 + d->k : d->h_in;
        float *yr = yb + (size_t)ho * d->w_out * B;
        int wa = 0; /* outputs before wa have all their columns folded */
        for (int ja = 0; ja < w && wa < d->w_out; ja += cols) {
            int jc = ja + cols < w ? ja + cols : w;
            col_max(xb, w, i0, i1, ja, jc, col, B);
            for (int wo = wa; wo < d->w_out; wo++) {
                int w0 = wo * d->stride - d->pad;
                int j0 = w0 < 0 ? 0 : w0, j1 = w0 + d->k < w ? w0 + d->k : w;
                if (j0 >= jc)
                    break;
                /* wo >= wa, so its window reaches past ja: hi > lo */
                int lo = j0 > ja ? j0 : ja, hi = j1 < jc ? j1 : jc;
                col_fold(yr + (size_t)wo * B, col + (size_t)(lo - ja) * B, hi - lo, lo == j0, B);
                if (j1 <= jc)
                    wa = wo + 1;
            }
        }
    }
}

/* window_argmax for the B lanes of window (ho, wo): per lane the first maximum
 * in row-major order (the first tap, then strictly greater or NaN replaces),
 * its value in m and its index in the plane in idx. Returns 0 (m = -inf) for
 * a window of padding only. */
KERNEL int window_argmax_blk(const kdc_pool2d_desc *d, const float *restrict xb, int ho, int wo,
                             float *restrict m, int32_t *restrict idx, const int B)
{
    int h0 = ho * d->stride - d->pad, w0 = wo * d->stride - d->pad;
    int i0 = h0 < 0 ? 0 : h0, i1 = h0 + d->k < d->h_in ? h0 + d->k : d->h_in;
    int j0 = w0 < 0 ? 0 : w0, j1 = w0 + d->k < d->w_in ? w0 + d->k : d->w_in;
    if (i0 >= i1 || j0 >= j1) {
        for (int l = 0; l < B; l++)
            m[l] = -INFINITY;
        return 0;
    }
    int32_t t0 = (int32_t)i0 * d->w_in + j0;
    for (int l = 0; l < B; l++) {
        m[l] = xb[(size_t)t0 * B + l];
        idx[l] = t0;
    }
    for (int i = i0; i < i1; i++)
        for (int j = i == i0 ? j0 + 1 : j0; j < j1; j++) {
            int32_t tap = (int32_t)i * d->w_in + j;
            const float *xv = xb + (size_t)tap * B;
            for (int l = 0; l < B; l++) {
                float v = xv[l];
                int up = v > m[l] || v != v;
                m[l] = up ? v : m[l];
                idx[l] = up ? tap : idx[l];
            }
        }
    return 1;
}

/* max_fwd_task's choice of method, on block t */
KERNEL void fwd_block(const blk_ctx *c, size_t t, const int B)
{
    const kdc_pool2d_desc *d = c->d;
    const float *xb = c->x + t * (size_t)d->h_in * d->w_in * B;
    float *yb = c->y + t * (size_t)d->h_out * d->w_out * B;
    if (d->w_in <= KDC_POOL_ROW_MAX && d->pad < d->k) {
        fwd_separable(d, xb, yb, B);
        return;
    }
    int32_t idx[LANES_MAX];
    for (int ho = 0; ho < d->h_out; ho++)
        for (int wo = 0; wo < d->w_out; wo++)
            window_argmax_blk(d, xb, ho, wo, yb + ((size_t)ho * d->w_out + wo) * B, idx, B);
}

/* max_bwd_task on block t: every stream's dx block zeroed, then each output's
 * gradient added at its argmax, outputs in row-major order, so each dx float
 * sums the same terms in the same order as in NCHW. Lanes never collide. */
KERNEL void bwd_block(const blk_ctx *c, size_t t, const int B)
{
    const kdc_pool2d_desc *d = c->d;
    size_t pin = (size_t)d->h_in * d->w_in * B, pout = (size_t)d->h_out * d->w_out * B;
    const float *xb = c->x + t * pin;
    for (int s = 0; s < c->streams; s++)
        memset(c->dx + s * c->stream_in + t * pin, 0, sizeof(float) * pin);
    float m[LANES_MAX];
    int32_t idx[LANES_MAX];
    for (int ho = 0; ho < d->h_out; ho++)
        for (int wo = 0; wo < d->w_out; wo++) {
            if (!window_argmax_blk(d, xb, ho, wo, m, idx, B)) /* once for every stream */
                continue;
            size_t o = ((size_t)ho * d->w_out + wo) * B;
            for (int s = 0; s < c->streams; s++) {
                float *dxb = c->dx + s * c->stream_in + t * pin;
                const float *dyo = c->dy + s * c->stream_out + t * pout + o;
                for (int l = 0; l < B; l++)
                    dxb[(size_t)idx[l] * B + l] += dyo[l];
            }
        }
}

/* The B = 8 and B = 16 instances of the kernels. */
POOL_VECTORISE static void fwd_block8(const blk_ctx *c, size_t t)
{
    fwd_block(c, t, 8);
}
POOL_VECTORISE static void fwd_block16(const blk_ctx *c, size_t t)
{
    fwd_block(c, t, 16);
}
POOL_VECTORISE static void bwd_block8(const blk_ctx *c, size_t t)
{
    bwd_block(c, t, 8);
}
POOL_VECTORISE static void bwd_block16(const blk_ctx *c, size_t t)
{
    bwd_block(c, t, 16);
}

static void fwd_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    for (size_t t = begin; t < end; t++)
        if (c->d->blk == 16)
            fwd_block16(c, t);
        else
            fwd_block8(c, t);
}

static void bwd_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    for (size_t t = begin; t < end; t++)
        if (c->d->blk == 16)
            bwd_block16(c, t);
        else
            bwd_block8(c, t);
}

/* pool.c has validated d (kdc_blk_valid); what is left is what these kernels
 * add: a block size they were instantiated for, and plane indices in int32
 * (the per-lane argmax vectorises beside the floats only at that width). */
static kdc_status check_blk(const kdc_pool2d_desc *d, kdc_error *err)
{
    if (d->blk != 8 && d->blk != 16)
        return kdc_fail(err, KDC_EINVAL, "maxpool2d: layout block %d (8 or 16)", d->blk);
    if ((size_t)d->h_in * d->w_in > INT32_MAX)
        return kdc_fail(err, KDC_EUNSUPPORTED, "maxpool2d: blocked plane %dx%d over 2^31 floats",
                        d->h_in, d->w_in);
    return KDC_OK;
}

static size_t blocks(const kdc_pool2d_desc *d)
{
    return (size_t)d->n * (size_t)(d->c / d->blk);
}

kdc_status kdc_maxpool2d_forward_blk(const kdc_pool2d_desc *d, const float *x, float *y,
                                     kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_blk(d, err);
    if (st)
        return st;
    blk_ctx c = {.d = d, .x = x, .y = y};
    kdc_pool_parallel_for(pool, blocks(d), 1, fwd_task, &c);
    return KDC_OK;
}

kdc_status kdc_maxpool2d_backward_blk(const kdc_pool2d_desc *d, const float *x, const float *dy,
                                      float *dx, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_blk(d, err);
    if (st)
        return st;
    blk_ctx c = {.d = d, .x = x, .dy = dy, .dx = dx, .streams = 1};
    kdc_pool_parallel_for(pool, blocks(d), 1, bwd_task, &c);
    return KDC_OK;
}

kdc_status kdc_maxpool2d_backward_dual_blk(const kdc_pool2d_desc *d, const float *x,
                                           const float *dy2, float *dx2, kdc_pool *pool,
                                           kdc_error *err)
{
    kdc_status st = check_blk(d, err);
    if (st)
        return st;
    /* the streams are whole blocked tensors, so their offsets are NCHW's */
    size_t planes = (size_t)d->n * d->c;
    blk_ctx c = {.d = d,
                 .x = x,
                 .dy = dy2,
                 .dx = dx2,
                 .streams = 2,
                 .stream_in = planes * d->h_in * d->w_in,
                 .stream_out = planes * d->h_out * d->w_out};
    kdc_pool_parallel_for(pool, blocks(d), 1, bwd_task, &c);
    return KDC_OK;
}
