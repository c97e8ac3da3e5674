/* batchnorm.c - batch norm forward/backward, one channel per task (see batchnorm.h). */
#include "common/nn/batchnorm.h"
#include "common/nn/batchnorm_blocked.h"

#include <math.h>
#include <stddef.h>

typedef struct bn_ctx {
    const kdc_bn_desc *d;
    const float *x, *dy, *gamma, *beta;
    float *running_mean, *running_var;
    const float *rmean_in, *rvar_in, *save_mean_in, *save_invstd_in;
    float *save_mean, *save_invstd, *y, *dx, *dgamma, *dbeta;
    /* backward: `streams` gradients stacked at `stream_off` floats apart (1 or 2);
     * stream 1's parameter gradients */
    int streams;
    size_t stream_off;
    float *dgamma1, *dbeta1;
} bn_ctx;

static kdc_status check_desc(const kdc_bn_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c <= 0 || d->hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "batchnorm: non-positive size n=%d c=%d hw=%d", d->n,
                        d->c, d->hw);
    if (!(d->eps > 0.0f))
        return kdc_fail(err, KDC_EINVAL, "batchnorm: eps must be positive");
    if (!kdc_blk_valid(d->blk, d->c))
        return kdc_fail(err, KDC_EINVAL, "batchnorm: layout block %d for %d channels", d->blk,
                        d->c);
    return KDC_OK;
}

/* The phases of synchronised statistics take NCHW only. */
static kdc_status check_desc_nchw(const kdc_bn_desc *d, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (!st && d->blk)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "batchnorm: synchronised statistics take NCHW, not a blocked layout");
    return st;
}

/* Double sums with four interleaved accumulators, combined in a fixed order:
 * the same result every run (deterministic), and four independent add chains
 * instead of one latency-bound chain (~4x faster). */
static double sum_f(const float *x, size_t n)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += x[i];
        a1 += x[i + 1];
        a2 += x[i + 2];
        a3 += x[i + 3];
    }
    for (; i < n; i++)
        a0 += x[i];
    return (a0 + a1) + (a2 + a3);
}

static double sum_sq_dev(const float *x, size_t n, double mean)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double t0 = x[i] - mean, t1 = x[i + 1] - mean, t2 = x[i + 2] - mean,
               t3 = x[i + 3] - mean;
        a0 += t0 * t0;
        a1 += t1 * t1;
        a2 += t2 * t2;
        a3 += t3 * t3;
    }
    for (; i < n; i++) {
        double t = x[i] - mean;
        a0 += t * t;
    }
    return (a0 + a1) + (a2 + a3);
}

/* *sg += sum(g), *sgx += sum(g * (x - mean)) */
static void sum_g_gx(const float *g, const float *x, size_t n, double mean, double *sg,
                     double *sgx)
{
    double a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        a0 += g[i];
        a1 += g[i + 1];
        b0 += (double)g[i] * (x[i] - mean);
        b1 += (double)g[i + 1] * (x[i + 1] - mean);
    }
    for (; i < n; i++) {
        a0 += g[i];
        b0 += (double)g[i] * (x[i] - mean);
    }
    *sg += a0 + a1;
    *sgx += b0 + b1;
}

#if defined(__GNUC__) && !defined(__clang__)
/* the elementwise y / dx loops vectorise with GCC's "cheap" model (activation.c) */
#define BN_VECTORISE __attribute__((optimize("vect-cost-model=cheap")))
#else
#define BN_VECTORISE
#endif

/* Where one channel's normalised output and statistics go (any may be NULL
 * but x and y): the train forward and the synchronised apply share it. */
typedef struct bn_out {
    const float *x, *gamma, *beta;
    float *y, *save_mean, *save_invstd, *running_mean, *running_var;
} bn_out;

/* y = (x - mean) * invstd * gamma + beta over channel ch, the saved mean and
 * invstd, and the running statistics (unbiased variance over m values). */
BN_VECTORISE static void normalise_channel(const kdc_bn_desc *d, const bn_out *o, size_t ch,
                                           double mean, double var, double m)
{
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    double invstd = 1.0 / sqrt(var + (double)d->eps);
    float g = o->gamma ? o->gamma[ch] : 1.0f, b = o->beta ? o->beta[ch] : 0.0f;
    float scale = (float)(invstd * g), shift = (float)(b - mean * invstd * g);
    for (int n = 0; n < d->n; n++) {
        const float *xp = o->x + n * cs + ch * hw;
        float *yp = o->y + n * cs + ch * hw;
        for (size_t i = 0; i < hw; i++)
            yp[i] = xp[i] * scale + shift;
    }
    if (o->save_mean)
        o->save_mean[ch] = (float)mean;
    if (o->save_invstd)
        o->save_invstd[ch] = (float)invstd;
    double mom = d->momentum;
    if (o->running_mean)
        o->running_mean[ch] = (float)((1.0 - mom) * o->running_mean[ch] + mom * mean);
    if (o->running_var)
        o->running_var[ch] = (float)((1.0 - mom) * o->running_var[ch] + mom * var * m / (m - 1.0));
}

BN_VECTORISE static void train_task(void *vctx, size_t begin, size_t end)
{
    const bn_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    const double m = (double)d->n * hw;
    const bn_out o = {c->x, c->gamma, c->beta, c->y, c->save_mean, c->save_invstd,
                      c->running_mean, c->running_var};
    for (size_t ch = begin; ch < end; ch++) {
        /* Two passes (mean, then squared deviations): no cancellation. */
        double s = 0;
        for (int n = 0; n < d->n; n++)
            s += sum_f(c->x + n * cs + ch * hw, hw);
        double mean = s / m, ss = 0;
        for (int n = 0; n < d->n; n++)
            ss += sum_sq_dev(c->x + n * cs + ch * hw, hw, mean);
        double var = ss / m;
        normalise_channel(d, &o, ch, mean, var, m);
    }
}

kdc_status kdc_batchnorm_forward_train(const kdc_bn_desc *d, const float *x, const float *gamma,
                                       const float *beta, float *running_mean,
                                       float *running_var, float *save_mean,
                                       float *save_invstd, float *y, kdc_pool *pool,
                                       kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if ((size_t)d->n * d->hw < 2)
        return kdc_fail(err, KDC_EINVAL,
                        "batchnorm: train mode needs more than 1 value per channel (n=%d hw=%d)",
                        d->n, d->hw);
    if (d->blk)
        return kdc_batchnorm_forward_train_blk(d, x, gamma, beta, running_mean, running_var,
                                               save_mean, save_invstd, y, pool, err);
    bn_ctx c = {.d = d, .x = x, .gamma = gamma, .beta = beta, .running_mean = running_mean,
                .running_var = running_var, .save_mean = save_mean, .save_invstd = save_invstd,
                .y = y};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, train_task, &c);
    return KDC_OK;
}

BN_VECTORISE static void eval_task(void *vctx, size_t begin, size_t end)
{
    const bn_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, c_n = (size_t)d->c;
    /* items are (n, channel) planes */
    for (size_t t = begin; t < end; t++) {
        size_t ch = t % c_n;
        double invstd = 1.0 / sqrt((double)c->rvar_in[ch] + (double)d->eps);
        float g = c->gamma ? c->gamma[ch] : 1.0f, b = c->beta ? c->beta[ch] : 0.0f;
        float scale = (float)(invstd * g), shift = (float)(b - c->rmean_in[ch] * invstd * g);
        const float *xp = c->x + t * hw;
        float *yp = c->y + t * hw;
        for (size_t i = 0; i < hw; i++)
            yp[i] = xp[i] * scale + shift;
    }
}

kdc_status kdc_batchnorm_forward_eval(const kdc_bn_desc *d, const float *x, const float *gamma,
                                      const float *beta, const float *running_mean,
                                      const float *running_var, float *y, kdc_pool *pool,
                                      kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if (!running_mean || !running_var)
        return kdc_fail(err, KDC_EINVAL,
                        "batchnorm: eval mode needs running statistics (use train mode for a "
                        "layer that does not track them)");
    if (d->blk)
        return kdc_batchnorm_forward_eval_blk(d, x, gamma, beta, running_mean, running_var, y,
                                              pool, err);
    bn_ctx c = {.d = d, .x = x, .gamma = gamma, .beta = beta, .rmean_in = running_mean,
                .rvar_in = running_var, .y = y};
    size_t hw = (size_t)d->hw;
    kdc_pool_parallel_for(pool, (size_t)d->n * d->c, hw >= 4096 ? 1 : 4096 / hw, eval_task,
                          &c);
    return KDC_OK;
}

/* dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * dgamma = sum(dy * xhat), dbeta = sum(dy)  (Ioffe & Szegedy 2015, sec. 3). */
/* One channel of one gradient stream; x's channel slab is read again for each
 * stream while it is still in cache. */
BN_VECTORISE static void backward_channel(const bn_ctx *c, size_t ch, const float *dy, float *dx,
                                          float *dgamma, float *dbeta)
{
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    const double m = (double)d->n * hw;
    float mean = c->save_mean_in[ch], invstd = c->save_invstd_in[ch];
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < d->n; n++)
        sum_g_gx(dy + n * cs + ch * hw, c->x + n * cs + ch * hw, hw, mean, &sdy, &sdyx);
    sdyx *= invstd; /* sum(dy * xhat) */
    if (dgamma)
        dgamma[ch] = (float)sdyx;
    if (dbeta)
        dbeta[ch] = (float)sdy;
    if (!dx)
        return;
    float g = c->gamma ? c->gamma[ch] : 1.0f;
    float k = (float)(g * invstd);
    float mdy = (float)(sdy / m), mdyx = (float)(sdyx / m) * invstd;
    for (int n = 0; n < d->n; n++) {
        const float *xp = c->x + n * cs + ch * hw, *gp = dy + n * cs + ch * hw;
        float *dxp = dx + n * cs + ch * hw;
        for (size_t i = 0; i < hw; i++)
            dxp[i] = k * (gp[i] - mdy - (xp[i] - mean) * mdyx);
    }
}

/* dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * dgamma = sum(dy * xhat), dbeta = sum(dy)  (Ioffe & Szegedy 2015, sec. 3). */
static void backward_task(void *vctx, size_t begin, size_t end)
{
    const bn_ctx *c = vctx;
    for (size_t ch = begin; ch < end; ch++) {
        backward_channel(c, ch, c->dy, c->dx, c->dgamma, c->dbeta);
        if (c->streams == 2)
            backward_channel(c, ch, c->dy + c->stream_off, c->dx ? c->dx + c->stream_off : NULL,
                             c->dgamma1, c->dbeta1);
    }
}

kdc_status kdc_batchnorm_backward(const kdc_bn_desc *d, const float *x, const float *dy,
                                  const float *gamma, const float *save_mean,
                                  const float *save_invstd, float *dx, float *dgamma,
                                  float *dbeta, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if (!save_mean || !save_invstd)
        return kdc_fail(err, KDC_EINVAL, "batchnorm backward: save_mean/save_invstd missing");
    if (d->blk)
        return kdc_batchnorm_backward_blk(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                          dbeta, pool, err);
    bn_ctx c = {.d = d, .x = x, .dy = dy, .gamma = gamma, .save_mean_in = save_mean,
                .save_invstd_in = save_invstd, .dx = dx, .dgamma = dgamma, .dbeta = dbeta,
                .streams = 1};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, backward_task, &c);
    return KDC_OK;
}

kdc_status kdc_batchnorm_backward_dual(const kdc_bn_desc *d, const float *x, const float *dy2,
                                       const float *gamma, const float *save_mean,
                                       const float *save_invstd, float *dx2, float *dgamma0,
                                       float *dbeta0, float *dgamma1, float *dbeta1,
                                       kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_desc(d, err);
    if (st)
        return st;
    if (!save_mean || !save_invstd)
        return kdc_fail(err, KDC_EINVAL, "batchnorm backward: save_mean/save_invstd missing");
    if (d->blk)
        return kdc_batchnorm_backward_dual_blk(d, x, dy2, gamma, save_mean, save_invstd, dx2,
                                               dgamma0, dbeta0, dgamma1, dbeta1, pool, err);
    bn_ctx c = {.d = d, .x = x, .dy = dy2, .gamma = gamma, .save_mean_in = save_mean,
                .save_invstd_in = save_invstd, .dx = dx2, .dgamma = dgamma0, .dbeta = dbeta0,
                .streams = 2, .stream_off = (size_t)d->n * d->c * d->hw, .dgamma1 = dgamma1,
                .dbeta1 = dbeta1};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, backward_task, &c);
    return KDC_OK;
}

/* ---- batch norm in phases (SyncBatchNorm): sums, then apply with global sums ---- */

typedef struct bn_sync_ctx {
    const kdc_bn_desc *d;
    const float *x, *dy, *gamma, *beta, *mean_in, *invstd_in;
    const double *sums_in; /* global: sum then second sum, 2c */
    double *sums_out;      /* local: 2c */
    double count;
    float *running_mean, *running_var, *save_mean, *save_invstd, *y, *dx, *dgamma, *dbeta;
} bn_sync_ctx;

static double sum_sq(const float *x, size_t n)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) { /* a float's square is exact in double */
        a0 += (double)x[i] * x[i];
        a1 += (double)x[i + 1] * x[i + 1];
        a2 += (double)x[i + 2] * x[i + 2];
        a3 += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++)
        a0 += (double)x[i] * x[i];
    return (a0 + a1) + (a2 + a3);
}

static void stats_task(void *vctx, size_t begin, size_t end)
{
    const bn_sync_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    for (size_t ch = begin; ch < end; ch++) {
        double s = 0, q = 0;
        for (int n = 0; n < d->n; n++) {
            s += sum_f(c->x + n * cs + ch * hw, hw);
            q += sum_sq(c->x + n * cs + ch * hw, hw);
        }
        c->sums_out[ch] = s;
        c->sums_out[d->c + ch] = q;
    }
}

kdc_status kdc_batchnorm_stats(const kdc_bn_desc *d, const float *x, double *sums, kdc_pool *pool,
                               kdc_error *err)
{
    kdc_status st = check_desc_nchw(d, err);
    if (st)
        return st;
    bn_sync_ctx c = {.d = d, .x = x, .sums_out = sums};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, stats_task, &c);
    return KDC_OK;
}

static void apply_task(void *vctx, size_t begin, size_t end)
{
    const bn_sync_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const double m = c->count;
    const bn_out o = {c->x, c->gamma, c->beta, c->y, c->save_mean, c->save_invstd,
                      c->running_mean, c->running_var};
    for (size_t ch = begin; ch < end; ch++) {
        double mean = c->sums_in[ch] / m;
        double var = c->sums_in[d->c + ch] / m - mean * mean;
        var = var > 0 ? var : 0; /* rounding can leave -0.0.. for a constant channel */
        normalise_channel(d, &o, ch, mean, var, m);
    }
}

kdc_status kdc_batchnorm_apply(const kdc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, const double *sums, double count,
                               float *running_mean, float *running_var, float *save_mean,
                               float *save_invstd, float *y, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_desc_nchw(d, err);
    if (st)
        return st;
    if (!(count >= 2))
        return kdc_fail(err, KDC_EINVAL,
                        "batchnorm: train mode needs more than 1 value per channel (%g)", count);
    bn_sync_ctx c = {.d = d, .x = x, .gamma = gamma, .beta = beta, .sums_in = sums,
                     .count = count, .running_mean = running_mean, .running_var = running_var,
                     .save_mean = save_mean, .save_invstd = save_invstd, .y = y};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, apply_task, &c);
    return KDC_OK;
}

static void backward_sums_task(void *vctx, size_t begin, size_t end)
{
    const bn_sync_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    for (size_t ch = begin; ch < end; ch++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < d->n; n++)
            sum_g_gx(c->dy + n * cs + ch * hw, c->x + n * cs + ch * hw, hw, c->mean_in[ch],
                     &sdy, &sdyx);
        sdyx *= c->invstd_in[ch]; /* sum(dy * xhat) */
        c->sums_out[ch] = sdy;
        c->sums_out[d->c + ch] = sdyx;
        if (c->dgamma)
            c->dgamma[ch] = (float)sdyx;
        if (c->dbeta)
            c->dbeta[ch] = (float)sdy;
    }
}

kdc_status kdc_batchnorm_backward_sums(const kdc_bn_desc *d, const float *x, const float *dy,
                                       const float *save_mean, const float *save_invstd,
                                       double *sums, float *dgamma, float *dbeta, kdc_pool *pool,
                                       kdc_error *err)
{
    kdc_status st = check_desc_nchw(d, err);
    if (st)
        return st;
    if (!save_mean || !save_invstd)
        return kdc_fail(err, KDC_EINVAL, "batchnorm backward: save_mean/save_invstd missing");
    bn_sync_ctx c = {.d = d, .x = x, .dy = dy, .mean_in = save_mean, .invstd_in = save_invstd,
                     .sums_out = sums, .dgamma = dgamma, .dbeta = dbeta};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, backward_sums_task, &c);
    return KDC_OK;
}

BN_VECTORISE static void backward_apply_task(void *vctx, size_t begin, size_t end)
{
    const bn_sync_ctx *c = vctx;
    const kdc_bn_desc *d = c->d;
    const size_t hw = (size_t)d->hw, cs = (size_t)d->c * hw;
    for (size_t ch = begin; ch < end; ch++) {
        float mean = c->mean_in[ch], invstd = c->invstd_in[ch];
        float g = c->gamma ? c->gamma[ch] : 1.0f;
        float k = (float)(g * invstd);
        float mdy = (float)(c->sums_in[ch] / c->count);
        float mdyx = (float)(c->sums_in[d->c + ch] / c->count) * invstd;
        for (int n = 0; n < d->n; n++) {
            const float *xp = c->x + n * cs + ch * hw, *gp = c->dy + n * cs + ch * hw;
            float *dxp = c->dx + n * cs + ch * hw;
            for (size_t i = 0; i < hw; i++)
                dxp[i] = k * (gp[i] - mdy - (xp[i] - mean) * mdyx);
        }
    }
}

kdc_status kdc_batchnorm_backward_apply(const kdc_bn_desc *d, const float *x, const float *dy,
                                        const float *gamma, const float *save_mean,
                                        const float *save_invstd, const double *sums,
                                        double count, float *dx, kdc_pool *pool, kdc_error *err)
{
    kdc_status st = check_desc_nchw(d, err);
    if (st)
        return st;
    if (!save_mean || !save_invstd)
        return kdc_fail(err, KDC_EINVAL, "batchnorm backward: save_mean/save_invstd missing");
    if (!(count >= 1))
        return kdc_fail(err, KDC_EINVAL, "batchnorm backward: no values (%g)", count);
    bn_sync_ctx c = {.d = d, .x = x, .dy = dy, .gamma = gamma, .mean_in = save_mean,
                     .invstd_in = save_invstd, .sums_in = sums, .count = count, .dx = dx};
    kdc_pool_parallel_for(pool, (size_t)d->c, 1, backward_apply_task, &c);
    return KDC_OK;
}
