/* batchnorm_blocked.c - batch norm in the blocked layout (see batchnorm_blocked.h).
 *
 * Each function here is batchnorm.c's per-channel code with a loop over the
 * B channels of a block moved innermost: lane l of an array such as a0[l] is
 * batchnorm.c's scalar of the same name for channel cb * B + l, with the same
 * type, operations and order, which is what makes the results the same bits.
 * In this layout those B values of one pixel are contiguous, so GCC
 * vectorises the lane loops (no reordering: a lane is its own chain).
 * batchnorm.c's arithmetic and this file change together;
 * tests/nn/test_bn_blocked.c compares the bits. */
#include "common/nn/batchnorm_blocked.h"

#include <math.h>
#include <stddef.h>

#define BMAX 16 /* the largest block (kdc_blk_valid) */

#if defined(__GNUC__) && !defined(__clang__)
/* batchnorm.c's BN_VECTORISE; on every function here, since GCC inlines only
 * between functions of the same optimisation options */
#define BLK_VECTORISE __attribute__((optimize("vect-cost-model=cheap")))
#else
#define BLK_VECTORISE
#endif
#if defined(__GNUC__)
/* the kernels are inlined with B (and the stream count) constant, so that the
 * lane loops have a fixed trip count */
#define BLK_INLINE inline __attribute__((always_inline))
#else
#define BLK_INLINE inline
#endif

typedef struct blk_ctx {
    const kdc_bn_desc *d;
    const float *x, *dy, *gamma, *beta;
    const float *rmean_in, *rvar_in, *save_mean_in, *save_invstd_in;
    float *running_mean, *running_var, *save_mean, *save_invstd, *y, *dx;
    int streams; /* backward: 1, or 2 stacked n*c*hw floats apart (dy, dx) */
    float *dgamma[2], *dbeta[2];
} blk_ctx;

/* Offset of plane (n, cb): hw pixels of B lanes. */
static size_t plane_off(const kdc_bn_desc *d, int n, size_t cb)
{
    size_t nb = (size_t)(d->c / d->blk);
    return ((size_t)n * nb + cb) * (size_t)d->hw * (size_t)d->blk;
}

/* s[l] += sum_f(lane l of one plane) */
BLK_VECTORISE static BLK_INLINE void sum_f_blk(const float *x, size_t hw, const int B, double *s)
{
    double a0[BMAX], a1[BMAX], a2[BMAX], a3[BMAX];
    for (int l = 0; l < B; l++)
        a0[l] = a1[l] = a2[l] = a3[l] = 0;
    size_t i = 0;
    for (; i + 4 <= hw; i += 4) {
        const float *p = x + i * B;
        for (int l = 0; l < B; l++) {
            a0[l] += p[l];
            a1[l] += p[B + l];
            a2[l] += p[2 * B + l];
            a3[l] += p[3 * B + l];
        }
    }
    for (; i < hw; i++)
        for (int l = 0; l < B; l++)
            a0[l] += x[i * B + l];
    for (int l = 0; l < B; l++)
        s[l] += (a0[l] + a1[l]) + (a2[l] + a3[l]);
}

/* ss[l] += sum_sq_dev(lane l of one plane, mean[l]) */
BLK_VECTORISE static BLK_INLINE void sum_sq_dev_blk(const float *x, size_t hw, const int B,
                                                    const double *mean, double *ss)
{
    double a0[BMAX], a1[BMAX], a2[BMAX], a3[BMAX];
    for (int l = 0; l < B; l++)
        a0[l] = a1[l] = a2[l] = a3[l] = 0;
    size_t i = 0;
    for (; i + 4 <= hw; i += 4) {
        const float *p = x + i * B;
        for (int l = 0; l < B; l++) {
            double t0 = p[l] - mean[l], t1 = p[B + l] - mean[l], t2 = p[2 * B + l] - mean[l],
                   t3 = p[3 * B + l] - mean[l];
            a0[l] += t0 * t0;
            a1[l] += t1 * t1;
            a2[l] += t2 * t2;
            a3[l] += t3 * t3;
        }
    }
    for (; i < hw; i++)
        for (int l = 0; l < B; l++) {
            double t = x[i * B + l] - mean[l];
            a0[l] += t * t;
        }
    for (int l = 0; l < B; l++)
        ss[l] += (a0[l] + a1[l]) + (a2[l] + a3[l]);
}

/* batchnorm.c's normalise_channel for the B channels of block cb. */
BLK_VECTORISE static BLK_INLINE void normalise_block(const blk_ctx *c, size_t cb, const int B,
                                                     const double *mean, const double *var,
                                                     double m)
{
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw;
    const double mom = d->momentum;
    float scale[BMAX], shift[BMAX];
    for (int l = 0; l < B; l++) {
        size_t ch = cb * B + l;
        double invstd = 1.0 / sqrt(var[l] + (double)d->eps);
        float g = c->gamma ? c->gamma[ch] : 1.0f, b = c->beta ? c->beta[ch] : 0.0f;
        scale[l] = (float)(invstd * g);
        shift[l] = (float)(b - mean[l] * invstd * g);
        if (c->save_mean)
            c->save_mean[ch] = (float)mean[l];
        if (c->save_invstd)
            c->save_invstd[ch] = (float)invstd;
        if (c->running_mean)
            c->running_mean[ch] = (float)((1.0 - mom) * c->running_mean[ch] + mom * mean[l]);
        if (c->running_var)
            c->running_var[ch] =
                (float)((1.0 - mom) * c->running_var[ch] + mom * var[l] * m / (m - 1.0));
    }
    for (int n = 0; n < d->n; n++) {
        const float *xp = c->x + plane_off(d, n, cb);
        float *yp = c->y + plane_off(d, n, cb);
        for (size_t i = 0; i < hw; i++)
            for (int l = 0; l < B; l++)
                yp[i * B + l] = xp[i * B + l] * scale[l] + shift[l];
    }
}

/* batchnorm.c's train_task for block cb. */
BLK_VECTORISE static BLK_INLINE void train_block(const blk_ctx *c, size_t cb, const int B)
{
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw;
    const double m = (double)d->n * hw;
    double s[BMAX], mean[BMAX], ss[BMAX], var[BMAX];
    for (int l = 0; l < B; l++)
        s[l] = 0;
    for (int n = 0; n < d->n; n++)
        sum_f_blk(c->x + plane_off(d, n, cb), hw, B, s);
    for (int l = 0; l < B; l++) {
        mean[l] = s[l] / m;
        ss[l] = 0;
    }
    for (int n = 0; n < d->n; n++)
        sum_sq_dev_blk(c->x + plane_off(d, n, cb), hw, B, mean, ss);
    for (int l = 0; l < B; l++)
        var[l] = ss[l] / m;
    normalise_block(c, cb, B, mean, var, m);
}

BLK_VECTORISE static void train_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    for (size_t cb = begin; cb < end; cb++) {
        if (c->d->blk == 16)
            train_block(c, cb, 16);
        else
            train_block(c, cb, 8);
    }
}

kdc_status kdc_batchnorm_forward_train_blk(const kdc_bn_desc *d, const float *x, const float *gamma,
                                           const float *beta, float *running_mean,
                                           float *running_var, float *save_mean, float *save_invstd,
                                           float *y, kdc_pool *pool, kdc_error *err)
{
    (void)err;
    blk_ctx c = {.d = d,
                 .x = x,
                 .gamma = gamma,
                 .beta = beta,
                 .running_mean = running_mean,
                 .running_var = running_var,
                 .save_mean = save_mean,
                 .save_invstd = save_invstd,
                 .y = y};
    kdc_pool_parallel_for(pool, (size_t)(d->c / d->blk), 1, train_task, &c);
    return KDC_OK;
}

/* batchnorm.c's eval_task for plane t = n * (c / B) + cb. */
BLK_VECTORISE static BLK_INLINE void eval_plane(const blk_ctx *c, size_t t, const int B)
{
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cb = t % (size_t)(d->c / B);
    float scale[BMAX], shift[BMAX];
    for (int l = 0; l < B; l++) {
        size_t ch = cb * B + l;
        double invstd = 1.0 / sqrt((double)c->rvar_in[ch] + (double)d->eps);
        float g = c->gamma ? c->gamma[ch] : 1.0f, b = c->beta ? c->beta[ch] : 0.0f;
        scale[l] = (float)(invstd * g);
        shift[l] = (float)(b - c->rmean_in[ch] * invstd * g);
    }
    const float *xp = c->x + t * hw * B;
    float *yp = c->y + t * hw * B;
    for (size_t i = 0; i < hw; i++)
        for (int l = 0; l < B; l++)
            yp[i * B + l] = xp[i * B + l] * scale[l] + shift[l];
}

BLK_VECTORISE static void eval_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    for (size_t t = begin; t < end; t++) {
        if (c->d->blk == 16)
            eval_plane(c, t, 16);
        else
            eval_plane(c, t, 8);
    }
}

kdc_status kdc_batchnorm_forward_eval_blk(const kdc_bn_desc *d, const float *x, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, float *y, kdc_pool *pool,
                                          kdc_error *err)
{
    (void)err;
    blk_ctx c = {.d = d,
                 .x = x,
                 .gamma = gamma,
                 .beta = beta,
                 .rmean_in = running_mean,
                 .rvar_in = running_var,
                 .y = y};
    size_t planes = (size_t)d->n * (size_t)(d->c / d->blk), plane = (size_t)d->hw * d->blk;
    kdc_pool_parallel_for(pool, planes, plane >= 4096 ? 1 : 4096 / plane, eval_task, &c);
    return KDC_OK;
}

/* sg[s][l] += sum(g_s), sgx[s][l] += sum(g_s * (x - mean[l])) over lane l of
 * one plane, for the S streams g0 (and g1): batchnorm.c's sum_g_gx, x read
 * once for both. */
BLK_VECTORISE static BLK_INLINE void sum_g_gx_blk(const float *x, const float *g0, const float *g1,
                                                  size_t hw, const int B, const int S,
                                                  const double *mean, double (*sg)[BMAX],
                                                  double (*sgx)[BMAX])
{
    double a0[2][BMAX], a1[2][BMAX], b0[2][BMAX], b1[2][BMAX];
    for (int s = 0; s < S; s++)
        for (int l = 0; l < B; l++)
            a0[s][l] = a1[s][l] = b0[s][l] = b1[s][l] = 0;
    size_t i = 0;
    for (; i + 2 <= hw; i += 2) {
        const float *xq = x + i * B, *p0 = g0 + i * B, *p1 = g1 + i * B;
        for (int l = 0; l < B; l++) {
            double t0 = xq[l] - mean[l], t1 = xq[B + l] - mean[l];
            a0[0][l] += p0[l];
            a1[0][l] += p0[B + l];
            b0[0][l] += (double)p0[l] * t0;
            b1[0][l] += (double)p0[B + l] * t1;
            if (S == 2) {
                a0[1][l] += p1[l];
                a1[1][l] += p1[B + l];
                b0[1][l] += (double)p1[l] * t0;
                b1[1][l] += (double)p1[B + l] * t1;
            }
        }
    }
    for (; i < hw; i++)
        for (int l = 0; l < B; l++) {
            double t = x[i * B + l] - mean[l];
            a0[0][l] += g0[i * B + l];
            b0[0][l] += (double)g0[i * B + l] * t;
            if (S == 2) {
                a0[1][l] += g1[i * B + l];
                b0[1][l] += (double)g1[i * B + l] * t;
            }
        }
    for (int s = 0; s < S; s++)
        for (int l = 0; l < B; l++) {
            sg[s][l] += a0[s][l] + a1[s][l];
            sgx[s][l] += b0[s][l] + b1[s][l];
        }
}

/* batchnorm.c's backward_channel for the B channels of block cb and S streams. */
BLK_VECTORISE static BLK_INLINE void backward_block(const blk_ctx *c, size_t cb, const int B,
                                                    const int S)
{
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, soff = (size_t)d->n * d->c * hw;
    const double m = (double)d->n * hw;
    float mean[BMAX], invstd[BMAX];
    double mean_d[BMAX], sdy[2][BMAX], sdyx[2][BMAX];
    for (int l = 0; l < B; l++) {
        mean[l] = c->save_mean_in[cb * B + l];
        invstd[l] = c->save_invstd_in[cb * B + l];
        mean_d[l] = mean[l];
        for (int s = 0; s < S; s++)
            sdy[s][l] = sdyx[s][l] = 0;
    }
    /* stream 1 stands in for itself only when S == 2 (no NULL arithmetic) */
    const float *dy1 = S == 2 ? c->dy + soff : c->dy;
    for (int n = 0; n < d->n; n++) {
        size_t off = plane_off(d, n, cb);
        sum_g_gx_blk(c->x + off, c->dy + off, dy1 + off, hw, B, S, mean_d, sdy, sdyx);
    }
    for (int s = 0; s < S; s++)
        for (int l = 0; l < B; l++) {
            sdyx[s][l] *= invstd[l]; /* sum(dy * xhat) */
            if (c->dgamma[s])
                c->dgamma[s][cb * B + l] = (float)sdyx[s][l];
            if (c->dbeta[s])
                c->dbeta[s][cb * B + l] = (float)sdy[s][l];
        }
    if (!c->dx)
        return;
    float k[BMAX], mdy[2][BMAX], mdyx[2][BMAX];
    for (int l = 0; l < B; l++) {
        float g = c->gamma ? c->gamma[cb * B + l] : 1.0f;
        k[l] = (float)(g * invstd[l]);
        for (int s = 0; s < S; s++) {
            mdy[s][l] = (float)(sdy[s][l] / m);
            mdyx[s][l] = (float)(sdyx[s][l] / m) * invstd[l];
        }
    }
    float *dx1 = S == 2 ? c->dx + soff : c->dx;
    for (int n = 0; n < d->n; n++) {
        size_t off = plane_off(d, n, cb);
        const float *xp = c->x + off, *gp0 = c->dy + off, *gp1 = dy1 + off;
        float *dxp0 = c->dx + off, *dxp1 = dx1 + off;
        for (size_t i = 0; i < hw; i++)
            for (int l = 0; l < B; l++) {
                size_t e = i * B + l;
                float xm = xp[e] - mean[l];
                dxp0[e] = k[l] * (gp0[e] - mdy[0][l] - xm * mdyx[0][l]);
                if (S == 2)
                    dxp1[e] = k[l] * (gp1[e] - mdy[1][l] - xm * mdyx[1][l]);
            }
    }
}

BLK_VECTORISE static void backward_task(void *vctx, size_t begin, size_t end)
{
    const blk_ctx *c = vctx;
    for (size_t cb = begin; cb < end; cb++) {
        if (c->d->blk == 16) {
            if (c->streams == 2)
                backward_block(c, cb, 16, 2);
            else
                backward_block(c, cb, 16, 1);
        } else {
            if (c->streams == 2)
                backward_block(c, cb, 8, 2);
            else
                backward_block(c, cb, 8, 1);
        }
    }
}

/* One or two gradient streams: the single backward is the dual's stream 0. */
static void run_backward(const kdc_bn_desc *d, const float *x, const float *dy,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         float *dx, int streams, float *dgamma0, float *dbeta0, float *dgamma1,
                         float *dbeta1, kdc_pool *pool)
{
    blk_ctx c = {.d = d,
                 .x = x,
                 .dy = dy,
                 .gamma = gamma,
                 .save_mean_in = save_mean,
                 .save_invstd_in = save_invstd,
                 .dx = dx,
                 .streams = streams,
                 .dgamma = {dgamma0, dgamma1},
                 .dbeta = {dbeta0, dbeta1}};
    kdc_pool_parallel_for(pool, (size_t)(d->c / d->blk), 1, backward_task, &c);
}

kdc_status kdc_batchnorm_backward_blk(const kdc_bn_desc *d, const float *x, const float *dy,
                                      const float *gamma, const float *save_mean,
                                      const float *save_invstd, float *dx, float *dgamma,
                                      float *dbeta, kdc_pool *pool, kdc_error *err)
{
    (void)err;
    run_backward(d, x, dy, gamma, save_mean, save_invstd, dx, 1, dgamma, dbeta, NULL, NULL, pool);
    return KDC_OK;
}

kdc_status kdc_batchnorm_backward_dual_blk(const kdc_bn_desc *d, const float *x, const float *dy2,
                                           const float *gamma, const float *save_mean,
                                           const float *save_invstd, float *dx2, float *dgamma0,
                                           float *dbeta0, float *dgamma1, float *dbeta1,
                                           kdc_pool *pool, kdc_error *err)
{
    (void)err;
    run_backward(d, x, dy2, gamma, save_mean, save_invstd, dx2, 2, dgamma0, dbeta0, dgamma1,
                 dbeta1, pool);
    return KDC_OK;
}
