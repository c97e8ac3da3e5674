/* conv2d.c - im2col + GEMM convolution, and a direct depthwise kernel (see conv2d.h).
 *
 * Layout of one "chunk" of nb images (P = h_out * w_out, K = c_in/groups*kh*kw):
 *   col [c_in*kh*kw, nb*P]   the unfolded input; group g owns rows g*K .. g*K+K-1
 *   out [c_out, nb*P]        the GEMM result, scattered to y[b, c, :] afterwards
 * With nb == 1 the GEMM writes y (or reads dy) in place and out is not needed. */
#include "common/nn/conv2d.h"

#include <string.h>

#include "common/nn/gemm.h"

/* Columns per GEMM that keep OpenBLAS's kernels busy on 2..16 cores; wider
 * costs workspace for little gain (tune with build/bench/bench_layers). */
#define CONV_TARGET_COLS 2048
/* Upper bound of a chunk's workspace (floats): 32 Mi floats = 128 MiB. */
#define CONV_MAX_WORK (32u << 20)

static int is_depthwise(const kdc_conv2d_desc *d)
{
    return d->groups > 1 && d->groups == d->c_in && d->c_out == d->c_in;
}

static int is_pointwise(const kdc_conv2d_desc *d)
{
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* Images per chunk: enough columns for a wide GEMM, bounded workspace. */
static int chunk_images(const kdc_conv2d_desc *d)
{
    size_t p = (size_t)d->h_out * d->w_out;
    size_t rows = (size_t)d->c_in * d->kh * d->kw + (size_t)d->c_out;
    size_t nb = (CONV_TARGET_COLS + p - 1) / p;
    if (nb > (size_t)d->n)
        nb = (size_t)d->n;
    while (nb > 1 && rows * nb * p > CONV_MAX_WORK)
        nb--;
    return nb < 1 ? 1 : (int)nb;
}

size_t kdc_conv2d_workspace_floats(const kdc_conv2d_desc *d)
{
    /* Uninitialised or invalid descriptors need nothing; the op refuses them. */
    if (is_depthwise(d) || d->h_out <= 0 || d->w_out <= 0 || d->n <= 0 || d->c_in <= 0 ||
        d->c_out <= 0 || d->kh <= 0 || d->kw <= 0)
        return 0;
    size_t p = (size_t)d->h_out * d->w_out;
    int nb = chunk_images(d);
    if (nb == 1 && is_pointwise(d))
        return 0;
    size_t col = (size_t)d->c_in * d->kh * d->kw * nb * p;
    return col + (nb > 1 ? (size_t)d->c_out * nb * p : 0);
}

/* ---------------------------------------------------------------- im2col */

typedef struct cols_ctx {
    const kdc_conv2d_desc *d;
    const float *x; /* first image of the chunk */
    float *col;     /* [c_in*kh*kw, nb*P] */
    float *dx;      /* col2im target, first image of the chunk */
    int nb;
} cols_ctx;

/* Unfolds channel c of image b: rows c*kh*kw .. , columns b*P .. b*P+P-1. */
static void im2col_plane(const kdc_conv2d_desc *d, const float *xp, float *col, size_t ld)
{
    const int h = d->h_in, w = d->w_in, ho_n = d->h_out, wo_n = d->w_out;
    const int s = d->stride, pad = d->pad;
    for (int i = 0; i < d->kh; i++)
        for (int j = 0; j < d->kw; j++) {
            float *row = col + (size_t)(i * d->kw + j) * ld;
            /* Valid output columns: 0 <= wo*s - pad + j < w. */
            int lo = pad - j > 0 ? (pad - j + s - 1) / s : 0;
            int hi = (w - 1 + pad - j) >= 0 ? (w - 1 + pad - j) / s + 1 : 0;
            if (hi > wo_n)
                hi = wo_n;
            if (lo > hi)
                lo = hi;
            for (int ho = 0; ho < ho_n; ho++) {
                float *r = row + (size_t)ho * wo_n;
                int hi_in = ho * s - pad + i;
                if (hi_in < 0 || hi_in >= h) {
                    memset(r, 0, sizeof(float) * (size_t)wo_n);
                    continue;
                }
                const float *xr = xp + (size_t)hi_in * w - pad + j;
                for (int wo = 0; wo < lo; wo++)
                    r[wo] = 0.0f;
                if (s == 1) {
                    memcpy(r + lo, xr + lo, sizeof(float) * (size_t)(hi - lo));
                } else {
                    for (int wo = lo; wo < hi; wo++)
                        r[wo] = xr[wo * s];
                }
                for (int wo = hi; wo < wo_n; wo++)
                    r[wo] = 0.0f;
            }
        }
}

/* Adds the unfolded gradient rows of channel c back into its input plane. */
static void col2im_plane(const kdc_conv2d_desc *d, const float *col, size_t ld, float *dxp)
{
    const int h = d->h_in, w = d->w_in, ho_n = d->h_out, wo_n = d->w_out;
    const int s = d->stride, pad = d->pad;
    memset(dxp, 0, sizeof(float) * (size_t)h * w);
    for (int i = 0; i < d->kh; i++)
        for (int j = 0; j < d->kw; j++) {
            const float *row = col + (size_t)(i * d->kw + j) * ld;
            int lo = pad - j > 0 ? (pad - j + s - 1) / s : 0;
            int hi = (w - 1 + pad - j) >= 0 ? (w - 1 + pad - j) / s + 1 : 0;
            if (hi > wo_n)
                hi = wo_n;
            for (int ho = 0; ho < ho_n; ho++) {
                int hi_in = ho * s - pad + i;
                if (hi_in < 0 || hi_in >= h)
                    continue;
                const float *r = row + (size_t)ho * wo_n;
                float *xr = dxp + (size_t)hi_in * w - pad + j;
                if (s == 1) {
                    for (int wo = lo; wo < hi; wo++)
                        xr[wo] += r[wo];
                } else {
                    for (int wo = lo; wo < hi; wo++)
                        xr[wo * s] += r[wo];
                }
            }
        }
}

static void im2col_task(void *vctx, size_t begin, size_t end)
{
    const cols_ctx *c = vctx;
    const kdc_conv2d_desc *d = c->d;
    size_t p = (size_t)d->h_out * d->w_out, ld = p * (size_t)c->nb;
    size_t khw = (size_t)d->kh * d->kw, plane = (size_t)d->h_in * d->w_in;
    for (size_t t = begin; t < end; t++) {
        size_t b = t / (size_t)d->c_in, ch = t % (size_t)d->c_in;
        im2col_plane(d, c->x + (b * d->c_in + ch) * plane, c->col + ch * khw * ld + b * p, ld);
    }
}

static void col2im_task(void *vctx, size_t begin, size_t end)
{
    const cols_ctx *c = vctx;
    const kdc_conv2d_desc *d = c->d;
    size_t p = (size_t)d->h_out * d->w_out, ld = p * (size_t)c->nb;
    size_t khw = (size_t)d->kh * d->kw, plane = (size_t)d->h_in * d->w_in;
    for (size_t t = begin; t < end; t++) {
        size_t b = t / (size_t)d->c_in, ch = t % (size_t)d->c_in;
        col2im_plane(d, c->col + ch * khw * ld + b * p, ld, c->dx + (b * d->c_in + ch) * plane);
    }
}

/* ------------------------------------------- [c, nb*P] <-> [nb, c, P] copies */

typedef struct scatter_ctx {
    float *nchw;      /* [nb, c, P] */
    float *wide;      /* [c, nb*P] */
    const float *bias; /* added while scattering (forward), may be NULL */
    size_t c, p;
    int nb;
    int to_nchw;
} scatter_ctx;

static void scatter_task(void *vctx, size_t begin, size_t end)
{
    const scatter_ctx *s = vctx;
    size_t ld = s->p * (size_t)s->nb;
    for (size_t t = begin; t < end; t++) {
        size_t b = t / s->c, ch = t % s->c;
        float *a = s->nchw + (b * s->c + ch) * s->p;
        float *w = s->wide + ch * ld + b * s->p;
        if (s->to_nchw) {
            if (s->bias) {
                float bv = s->bias[ch];
                for (size_t i = 0; i < s->p; i++)
                    a[i] = w[i] + bv;
            } else {
                memcpy(a, w, sizeof(float) * s->p);
            }
        } else {
            memcpy(w, a, sizeof(float) * s->p);
        }
    }
}

typedef struct bias_ctx {
    float *y;
    const float *bias;
    size_t c, p;
} bias_ctx;

static void bias_add_task(void *vctx, size_t begin, size_t end)
{
    const bias_ctx *b = vctx;
    for (size_t t = begin; t < end; t++) {
        float bv = b->bias[t % b->c], *y = b->y + t * b->p;
        for (size_t i = 0; i < b->p; i++)
            y[i] += bv;
    }
}

/* dbias[c] = sum over n, P of dy; y field holds dy here. */
typedef struct dbias_ctx {
    const float *dy;
    float *dbias;
    size_t n, c, p;
} dbias_ctx;

static void dbias_task(void *vctx, size_t begin, size_t end)
{
    const dbias_ctx *b = vctx;
    for (size_t ch = begin; ch < end; ch++) {
        double s = 0;
        for (size_t i = 0; i < b->n; i++) {
            const float *g = b->dy + (i * b->c + ch) * b->p;
            float part = 0.0f;
            for (size_t k = 0; k < b->p; k++)
                part += g[k];
            s += part;
        }
        b->dbias[ch] = (float)s;
    }
}

/* ------------------------------------------------------------- depthwise */

typedef struct dw_ctx {
    const kdc_conv2d_desc *d;
    const float *x, *w, *bias, *dy;
    float *y, *dx, *dw;
} dw_ctx;

/* Valid output-column range for kernel column j (see im2col_plane). */
static void col_range(const kdc_conv2d_desc *d, int j, int *lo, int *hi)
{
    int s = d->stride, pad = d->pad;
    int l = pad - j > 0 ? (pad - j + s - 1) / s : 0;
    int h = (d->w_in - 1 + pad - j) >= 0 ? (d->w_in - 1 + pad - j) / s + 1 : 0;
    if (h > d->w_out)
        h = d->w_out;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

static void dw_forward_task(void *vctx, size_t begin, size_t end)
{
    const dw_ctx *c = vctx;
    const kdc_conv2d_desc *d = c->d;
    const int s = d->stride, pad = d->pad;
    size_t plane_in = (size_t)d->h_in * d->w_in, plane_out = (size_t)d->h_out * d->w_out;
    for (size_t t = begin; t < end; t++) {
        size_t ch = t % (size_t)d->c_in;
        const float *xp = c->x + t * plane_in, *wp = c->w + ch * (size_t)d->kh * d->kw;
        float *yp = c->y + t * plane_out;
        float b0 = c->bias ? c->bias[ch] : 0.0f;
        for (int ho = 0; ho < d->h_out; ho++) {
            float *yr = yp + (size_t)ho * d->w_out;
            for (int wo = 0; wo < d->w_out; wo++)
                yr[wo] = b0;
            for (int i = 0; i < d->kh; i++) {
                int hi_in = ho * s - pad + i;
                if (hi_in < 0 || hi_in >= d->h_in)
                    continue;
                for (int j = 0; j < d->kw; j++) {
                    int lo, hi;
                    col_range(d, j, &lo, &hi);
                    float wv = wp[i * d->kw + j];
                    const float *xr = xp + (size_t)hi_in * d->w_in - pad + j;
                    if (s == 1)
                        for (int wo = lo; wo < hi; wo++)
                            yr[wo] += wv * xr[wo];
                    else
                        for (int wo = lo; wo < hi; wo++)
                            yr[wo] += wv * xr[wo * s];
                }
            }
        }
    }
}

static void dw_backward_dx_task(void *vctx, size_t begin, size_t end)
{
    const dw_ctx *c = vctx;
    const kdc_conv2d_desc *d = c->d;
    const int s = d->stride, pad = d->pad;
    size_t plane_in = (size_t)d->h_in * d->w_in, plane_out = (size_t)d->h_out * d->w_out;
    for (size_t t = begin; t < end; t++) {
        size_t ch = t % (size_t)d->c_in;
        const float *gp = c->dy + t * plane_out, *wp = c->w + ch * (size_t)d->kh * d->kw;
        float *dxp = c->dx + t * plane_in;
        memset(dxp, 0, sizeof(float) * plane_in);
        for (int ho = 0; ho < d->h_out; ho++) {
            const float *gr = gp + (size_t)ho * d->w_out;
            for (int i = 0; i < d->kh; i++) {
                int hi_in = ho * s - pad + i;
                if (hi_in < 0 || hi_in >= d->h_in)
                    continue;
                for (int j = 0; j < d->kw; j++) {
                    int lo, hi;
                    col_range(d, j, &lo, &hi);
                    float wv = wp[i * d->kw + j];
                    float *xr = dxp + (size_t)hi_in * d->w_in - pad + j;
                    if (s == 1)
                        for (int wo = lo; wo < hi; wo++)
                            xr[wo] += wv * gr[wo];
                    else
                        for (int wo = lo; wo < hi; wo++)
                            xr[wo * s] += wv * gr[wo];
                }
            }
        }
    }
}

/* dw[c, i, j] = sum_n sum_ho sum_wo dy[n, c, ho, wo] * x[n, c, ho*s-pad+i, wo*s-pad+j] */
static void dw_backward_dw_task(void *vctx, size_t begin, size_t end)
{
    const dw_ctx *c = vctx;
    const kdc_conv2d_desc *d = c->d;
    const int s = d->stride, pad = d->pad, khw = d->kh * d->kw;
    size_t plane_in = (size_t)d->h_in * d->w_in, plane_out = (size_t)d->h_out * d->w_out;
    double acc[64 * 64];
    for (size_t ch = begin; ch < end; ch++) {
        for (int k = 0; k < khw; k++)
            acc[k] = 0.0;
        for (int n = 0; n < d->n; n++) {
            size_t t = (size_t)n * d->c_in + ch;
            const float *xp = c->x + t * plane_in, *gp = c->dy + t * plane_out;
            for (int ho = 0; ho < d->h_out; ho++) {
                const float *gr = gp + (size_t)ho * d->w_out;
                for (int i = 0; i < d->kh; i++) {
                    int hi_in = ho * s - pad + i;
                    if (hi_in < 0 || hi_in >= d->h_in)
                        continue;
                    for (int j = 0; j < d->kw; j++) {
                        int lo, hi;
                        col_range(d, j, &lo, &hi);
                        const float *xr = xp + (size_t)hi_in * d->w_in - pad + j;
                        float sum = 0.0f;
                        if (s == 1)
                            for (int wo = lo; wo < hi; wo++)
                                sum += gr[wo] * xr[wo];
                        else
                            for (int wo = lo; wo < hi; wo++)
                                sum += gr[wo] * xr[wo * s];
                        acc[i * d->kw + j] += sum;
                    }
                }
            }
        }
        for (int k = 0; k < khw; k++)
            c->dw[ch * (size_t)khw + k] = (float)acc[k];
    }
}

/* --------------------------------------------------------------- checks */

static kdc_status check_args(const kdc_conv2d_desc *d, size_t work_floats, kdc_error *err)
{
    if (d->h_out <= 0 || d->w_out <= 0 || d->n <= 0 || d->groups <= 0 ||
        d->c_in % d->groups || d->c_out % d->groups)
        return kdc_fail(err, KDC_EINVAL, "conv2d: descriptor not initialised "
                                         "(call kdc_conv2d_desc_init)");
    if (is_depthwise(d) && d->kh * d->kw > 64 * 64)
        return kdc_fail(err, KDC_EUNSUPPORTED, "conv2d: depthwise kernel %dx%d too large",
                        d->kh, d->kw);
    size_t k = (size_t)d->c_in / d->groups * d->kh * d->kw;
    size_t p = (size_t)d->h_out * d->w_out;
    if (k > 0x7fffffff || p * (size_t)d->n > 0x7fffffff || (size_t)d->c_out > 0x7fffffff)
        return kdc_fail(err, KDC_EUNSUPPORTED, "conv2d: layer too large for 32-bit GEMM sizes");
    size_t need = kdc_conv2d_workspace_floats(d);
    if (work_floats < need)
        return kdc_fail(err, KDC_EINVAL, "conv2d: workspace of %zu floats, need %zu",
                        work_floats, need);
    return KDC_OK;
}

/* ------------------------------------------------------------ forward */

kdc_status kdc_conv2d_forward(const kdc_conv2d_desc *d, const float *x, const float *w,
                              const float *bias, float *y, float *work, size_t work_floats,
                              kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_args(d, work_floats, err);
    if (st)
        return st;
    size_t p = (size_t)d->h_out * d->w_out, plane_in = (size_t)d->h_in * d->w_in;
    if (is_depthwise(d)) {
        dw_ctx c = {.d = d, .x = x, .w = w, .bias = bias, .y = y};
        kdc_pool_parallel_for(pool, (size_t)d->n * d->c_in, 1, dw_forward_task, &c);
        return KDC_OK;
    }
    const int g_n = d->groups, cout_g = d->c_out / g_n;
    const size_t k = (size_t)d->c_in / g_n * d->kh * d->kw;
    const int nb_max = chunk_images(d);
    const int direct = nb_max == 1 && is_pointwise(d);
    for (int n0 = 0; n0 < d->n; n0 += nb_max) {
        int nb = d->n - n0 < nb_max ? d->n - n0 : nb_max;
        const float *xn = x + (size_t)n0 * d->c_in * plane_in;
        float *yn = y + (size_t)n0 * d->c_out * p;
        const float *col = xn; /* [c_in*kh*kw, nb*P] */
        size_t ld_col = p * nb;
        if (!direct) {
            cols_ctx c = {.d = d, .x = xn, .col = work, .nb = nb};
            kdc_pool_parallel_for(pool, (size_t)nb * d->c_in, 1, im2col_task, &c);
            col = work;
        }
        float *out = nb_max == 1 ? yn : work + (size_t)d->c_in * d->kh * d->kw * ld_col;
        for (int g = 0; g < g_n; g++)
            kdc_sgemm(0, 0, cout_g, (int)ld_col, (int)k, 1.0f, w + (size_t)g * cout_g * k,
                      (int)k, col + (size_t)g * k * ld_col, (int)ld_col, 0.0f,
                      out + (size_t)g * cout_g * ld_col, (int)ld_col);
        if (nb_max > 1) {
            scatter_ctx s = {.nchw = yn, .wide = out, .bias = bias, .c = (size_t)d->c_out,
                             .p = p, .nb = nb, .to_nchw = 1};
            kdc_pool_parallel_for(pool, (size_t)nb * d->c_out, 1, scatter_task, &s);
        } else if (bias) {
            bias_ctx b = {.y = yn, .bias = bias, .c = (size_t)d->c_out, .p = p};
            kdc_pool_parallel_for(pool, (size_t)d->c_out, 1, bias_add_task, &b);
        }
    }
    return KDC_OK;
}

/* ----------------------------------------------------------- backward */

kdc_status kdc_conv2d_backward(const kdc_conv2d_desc *d, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *dbias, float *work,
                               size_t work_floats, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_args(d, work_floats, err);
    if (st)
        return st;
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    size_t p = (size_t)d->h_out * d->w_out, plane_in = (size_t)d->h_in * d->w_in;
    if (dbias) {
        dbias_ctx b = {.dy = dy, .dbias = dbias, .n = (size_t)d->n, .c = (size_t)d->c_out,
                       .p = p};
        kdc_pool_parallel_for(pool, (size_t)d->c_out, 1, dbias_task, &b);
    }
    if (is_depthwise(d)) {
        dw_ctx c = {.d = d, .x = x, .w = w, .dy = dy, .dx = dx, .dw = dw};
        kdc_pool_parallel_for(pool, (size_t)d->c_in, 1, dw_backward_dw_task, &c);
        if (dx)
            kdc_pool_parallel_for(pool, (size_t)d->n * d->c_in, 1, dw_backward_dx_task, &c);
        return KDC_OK;
    }
    const int g_n = d->groups, cout_g = d->c_out / g_n;
    const size_t k = (size_t)d->c_in / g_n * d->kh * d->kw;
    const int nb_max = chunk_images(d);
    const int direct = nb_max == 1 && is_pointwise(d);
    for (int n0 = 0; n0 < d->n; n0 += nb_max) {
        int nb = d->n - n0 < nb_max ? d->n - n0 : nb_max;
        const float *xn = x + (size_t)n0 * d->c_in * plane_in;
        const float *gn = dy + (size_t)n0 * d->c_out * p;
        float *dxn = dx ? dx + (size_t)n0 * d->c_in * plane_in : NULL;
        size_t ld = p * nb;
        float *col = work;
        const float *colr = xn;
        if (!direct) {
            cols_ctx c = {.d = d, .x = xn, .col = col, .nb = nb};
            kdc_pool_parallel_for(pool, (size_t)nb * d->c_in, 1, im2col_task, &c);
            colr = col;
        }
        const float *g_wide = gn; /* dy as [c_out, nb*P] */
        if (nb_max > 1) {
            float *wide = work + (size_t)d->c_in * d->kh * d->kw * ld;
            scatter_ctx s = {.nchw = (float *)gn, .wide = wide, .c = (size_t)d->c_out, .p = p,
                             .nb = nb, .to_nchw = 0};
            kdc_pool_parallel_for(pool, (size_t)nb * d->c_out, 1, scatter_task, &s);
            g_wide = wide;
        }
        for (int g = 0; g < g_n; g++) {
            const float *gg = g_wide + (size_t)g * cout_g * ld;
            /* dW_g (+)= dY_g [cout_g, nb*P] . col_g^T [nb*P, k] */
            kdc_sgemm(0, 1, cout_g, (int)k, (int)ld, 1.0f, gg, (int)ld,
                      colr + (size_t)g * k * ld, (int)ld, n0 == 0 ? 0.0f : 1.0f,
                      dw + (size_t)g * cout_g * k, (int)k);
            if (!dx)
                continue;
            /* dcol_g = W_g^T [k, cout_g] . dY_g [cout_g, nb*P]; col_g is dead now. */
            float *dcol = direct ? dxn + (size_t)g * (d->c_in / g_n) * p : col + (size_t)g * k * ld;
            kdc_sgemm(1, 0, (int)k, (int)ld, cout_g, 1.0f, w + (size_t)g * cout_g * k, (int)k,
                      gg, (int)ld, 0.0f, dcol, (int)ld);
        }
        if (dx && !direct) {
            cols_ctx c = {.d = d, .col = col, .dx = dxn, .nb = nb};
            kdc_pool_parallel_for(pool, (size_t)nb * d->c_in, 1, col2im_task, &c);
        }
    }
    return KDC_OK;
}
