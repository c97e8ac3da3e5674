/* backend_cpu.c - the CPU kdc_backend: fills the op table of backend.h with the
 * layer functions of conv2d.c, batchnorm.c, pool.c, linear.c and activation.c.
 *
 * Threading: one kdc_pool of `threads` threads runs the data-parallel loops,
 * and OpenBLAS runs GEMMs with the same number of its own threads, called from
 * the caller thread. The two never run at the same time (each op returns when
 * done) and the pool's idle workers sleep, so they share the cores.
 * The conv workspace is grown when a larger layer comes and kept, so a model's
 * steady-state loop allocates nothing. A backend is used by one thread at a time.
 * Ops are synchronous; synchronize is a no-op.
 *
 * Convolutions run through oneDNN (conv2d_dnnl.c, 1.5-3x faster than im2col +
 * GEMM on 3x3 layers) unless KDC_CONV=ref at creation selects the reference
 * im2col + GEMM of conv2d.c; tests run both. On the oneDNN path, convolutions
 * of a 1x1 map (ResNets' last stage at 32 px) are GEMMs (conv2d_point.h). oneDNN's OpenMP threads, the pool
 * and OpenBLAS's threads take turns (one op at a time), never run together. */
#include <stdlib.h>
#include <string.h>

#include "common/nn/activation.h"
#include "common/nn/avgpool.h"
#include "common/nn/channel.h"
#include "common/nn/relu6_sigmoid.h"
#include "common/nn/backend_cpu.h"
#include "common/nn/batchnorm.h"
#include "common/nn/conv2d.h"
#include "common/nn/conv2d_dnnl.h"
#include "common/nn/conv2d_point.h"
#include "common/nn/gemm.h"
#include "common/base/half.h"
#include "common/nn/linear.h"
#include "common/nn/pool.h"
#include "common/base/threadpool.h"
#include "common/base/cpu_features.h"

typedef struct cpu_impl {
    kdc_pool *pool;
    int threads;
    kdc_dnnl *dnnl; /* NULL: reference convolutions (KDC_CONV=ref) */
    float *work;
    size_t work_floats;
    char name[160];
} cpu_impl;

static cpu_impl *impl_of(kdc_backend *be)
{
    return (cpu_impl *)be->impl;
}

static kdc_status ensure_work(cpu_impl *c, size_t floats, kdc_error *err)
{
    if (floats <= c->work_floats)
        return KDC_OK;
    size_t bytes;
    if (!kdc_size_mul(floats, sizeof(float), &bytes) || bytes > ((size_t)1 << 40))
        return kdc_fail(err, KDC_ENOMEM, "cpu backend: workspace of %zu floats overflows",
                        floats);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p)
        return kdc_fail(err, KDC_ENOMEM, "cpu backend: cannot allocate %zu bytes of workspace",
                        bytes);
    free(c->work);
    c->work = p;
    c->work_floats = floats;
    return KDC_OK;
}

static void cpu_destroy(kdc_backend *be)
{
    if (!be)
        return;
    cpu_impl *c = impl_of(be);
    if (c) {
        kdc_pool_destroy(c->pool);
        kdc_dnnl_destroy(c->dnnl);
        free(c->work);
        free(c);
    }
    free(be);
}

/* ------------------------------------------------------------- memory */

static kdc_status cpu_alloc(kdc_backend *be, size_t bytes, void **out, kdc_error *err)
{
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return kdc_fail(err, KDC_ENOMEM, "cpu alloc: %zu bytes overflows", bytes);
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out)
        return kdc_fail(err, KDC_ENOMEM, "cpu alloc: cannot allocate %zu bytes", bytes);
    return KDC_OK;
}

static void cpu_free(kdc_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

static kdc_status cpu_copy(kdc_backend *be, void *dst, const void *src, size_t bytes,
                           kdc_error *err)
{
    (void)be;
    (void)err;
    if (bytes)
        memmove(dst, src, bytes);
    return KDC_OK;
}

static kdc_status cpu_fill_zero(kdc_backend *be, void *dst, size_t bytes, kdc_error *err)
{
    (void)be;
    (void)err;
    if (bytes)
        memset(dst, 0, bytes);
    return KDC_OK;
}

static kdc_status cpu_synchronize(kdc_backend *be, kdc_error *err)
{
    (void)be;
    (void)err;
    return KDC_OK;
}

/* -------------------------------------------------------- convolution */

/* The activation block of oneDNN's f32 convolutions on this CPU (it computes
 * in nChw16c with AVX-512 and nChw8c with AVX2), so that the model keeps its
 * activations in that layout and no reorder runs around a convolution.
 * KDC_LAYOUT=nchw keeps every activation in NCHW (for comparisons); blocked,
 * the default, uses the block of this CPU. */
static int act_blk_of_cpu(void)
{
    const char *l = getenv("KDC_LAYOUT");
    if (l && !strcmp(l, "nchw"))
        return 0;
    kdc_cpu_features f = kdc_cpu_detect();
    return f.avx512 ? 16 : f.avx2 ? 8 : 0;
}

static kdc_status refuse_blocked(const kdc_conv2d_desc *d, kdc_error *err)
{
    return kdc_fail(err, KDC_EUNSUPPORTED,
                    "conv2d: the reference convolution takes NCHW, not blocks of %d",
                    d->x_blk ? d->x_blk : d->y_blk);
}

static kdc_status cpu_conv2d_forward(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                     const float *w, const float *bias, float *y,
                                     kdc_error *err)
{
    cpu_impl *c = impl_of(be);
    kdc_status st;
    if (c->dnnl && !kdc_conv2d_point_applies(d))
        return kdc_dnnl_conv2d_forward(c->dnnl, d, x, w, bias, y, err); /* ReLU as a post-op */
    if (c->dnnl) {
        if ((st = ensure_work(c, kdc_conv2d_point_workspace_floats(d), err)) ||
            (st = kdc_conv2d_point_forward(d, x, w, bias, y, c->work, c->work_floats, err)))
            return st;
    } else {
        if (d->x_blk || d->y_blk)
            return refuse_blocked(d, err);
        if ((st = ensure_work(c, kdc_conv2d_workspace_floats(d), err)) ||
            (st = kdc_conv2d_forward(d, x, w, bias, y, c->work, c->work_floats, c->pool, err)))
            return st;
    }
    if (d->relu)
        kdc_relu_forward((size_t)d->n * d->c_out * d->h_out * d->w_out, y, y, c->pool);
    return KDC_OK;
}

static kdc_status cpu_conv2d_backward(kdc_backend *be, const kdc_conv2d_desc *d,
                                      const float *x, const float *w, const float *dy,
                                      float *dx, float *dw, float *dbias, kdc_error *err)
{
    cpu_impl *c = impl_of(be);
    kdc_status st;
    if (c->dnnl && kdc_conv2d_point_applies(d)) {
        if ((st = ensure_work(c, kdc_conv2d_point_workspace_floats(d), err)))
            return st;
        return kdc_conv2d_point_backward(d, x, w, dy, dx, dw, dbias, c->work, c->work_floats,
                                         err);
    }
    if (c->dnnl)
        return kdc_dnnl_conv2d_backward(c->dnnl, d, x, w, dy, dx, dw, dbias, err);
    if (d->x_blk || d->y_blk)
        return refuse_blocked(d, err);
    st = ensure_work(c, kdc_conv2d_workspace_floats(d), err);
    if (st)
        return st;
    return kdc_conv2d_backward(d, x, w, dy, dx, dw, dbias, c->work, c->work_floats, c->pool,
                               err);
}

/* --------------------------------------------------------- batch norm */

static kdc_status cpu_bn_forward_train(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                       const float *gamma, const float *beta,
                                       float *running_mean, float *running_var,
                                       float *save_mean, float *save_invstd, float *y,
                                       kdc_error *err)
{
    return kdc_batchnorm_forward_train(d, x, gamma, beta, running_mean, running_var, save_mean,
                                       save_invstd, y, impl_of(be)->pool, err);
}

static kdc_status cpu_bn_forward_eval(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      float *y, kdc_error *err)
{
    return kdc_batchnorm_forward_eval(d, x, gamma, beta, running_mean, running_var, y,
                                      impl_of(be)->pool, err);
}

static kdc_status cpu_bn_backward(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                  const float *dy, const float *gamma, const float *save_mean,
                                  const float *save_invstd, float *dx, float *dgamma,
                                  float *dbeta, kdc_error *err)
{
    return kdc_batchnorm_backward(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta,
                                  impl_of(be)->pool, err);
}

static kdc_status cpu_bn_stats(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                               double *sums, kdc_error *err)
{
    return kdc_batchnorm_stats(d, x, sums, impl_of(be)->pool, err);
}

static kdc_status cpu_bn_apply(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                               const float *gamma, const float *beta, const double *sums,
                               double count, float *running_mean, float *running_var,
                               float *save_mean, float *save_invstd, float *y, kdc_error *err)
{
    return kdc_batchnorm_apply(d, x, gamma, beta, sums, count, running_mean, running_var,
                               save_mean, save_invstd, y, impl_of(be)->pool, err);
}

static kdc_status cpu_bn_backward_sums(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                       const float *dy, const float *save_mean,
                                       const float *save_invstd, double *sums, float *dgamma,
                                       float *dbeta, kdc_error *err)
{
    return kdc_batchnorm_backward_sums(d, x, dy, save_mean, save_invstd, sums, dgamma, dbeta,
                                       impl_of(be)->pool, err);
}

static kdc_status cpu_bn_backward_apply(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                        const float *dy, const float *gamma,
                                        const float *save_mean, const float *save_invstd,
                                        const double *sums, double count, float *dx,
                                        kdc_error *err)
{
    return kdc_batchnorm_backward_apply(d, x, dy, gamma, save_mean, save_invstd, sums, count, dx,
                                        impl_of(be)->pool, err);
}

/* -------------------------------------------------------- elementwise */

static kdc_status cpu_relu_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                   kdc_error *err)
{
    (void)err;
    kdc_relu_forward(n, x, y, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_relu_backward(kdc_backend *be, size_t n, const float *y, const float *dy,
                                    float *dx, kdc_error *err)
{
    (void)err;
    kdc_relu_backward(n, y, dy, dx, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_add(kdc_backend *be, size_t n, const float *a, const float *b, float *y,
                          kdc_error *err)
{
    (void)err;
    kdc_add(n, a, b, y, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_axpy(kdc_backend *be, size_t n, float alpha, const float *x, float *y,
                           kdc_error *err)
{
    (void)err;
    kdc_axpy(n, alpha, x, y, impl_of(be)->pool);
    return KDC_OK;
}

/* ------------------------------------------------------------ pooling */

static kdc_status cpu_maxpool_forward(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                      float *y, kdc_error *err)
{
    return kdc_maxpool2d_forward(d, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_maxpool_backward(kdc_backend *be, const kdc_pool2d_desc *d,
                                       const float *x, const float *y, const float *dy,
                                       float *dx, kdc_error *err)
{
    (void)y; /* the argmax is recomputed from x, which also settles ties */
    return kdc_maxpool2d_backward(d, x, dy, dx, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool_forward(kdc_backend *be, int n, int c, int hw, const float *x,
                                      float *y, kdc_error *err)
{
    return kdc_avgpool_global_forward(n, c, hw, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool_backward(kdc_backend *be, int n, int c, int hw, const float *dy,
                                       float *dx, kdc_error *err)
{
    return kdc_avgpool_global_backward(n, c, hw, dy, dx, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool_forward_blk(kdc_backend *be, int n, int c, int hw, int blk,
                                          const float *x, float *y, kdc_error *err)
{
    return kdc_avgpool_global_forward_blk(n, c, hw, blk, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool_backward_blk(kdc_backend *be, int n, int c, int hw, int blk,
                                           const float *dy, float *dx, kdc_error *err)
{
    return kdc_avgpool_global_backward_blk(n, c, hw, blk, dy, dx, impl_of(be)->pool, err);
}

/* ------------------------------------------------------------- linear */

static kdc_status cpu_linear_forward(kdc_backend *be, int n, int in, int out, const float *x,
                                     const float *w, const float *b, float *y, kdc_error *err)
{
    (void)be;
    return kdc_linear_forward(n, in, out, x, w, b, y, err);
}

static kdc_status cpu_linear_backward(kdc_backend *be, int n, int in, int out, const float *x,
                                      const float *w, const float *dy, float *dx, float *dw,
                                      float *db, kdc_error *err)
{
    (void)be;
    return kdc_linear_backward(n, in, out, x, w, dy, dx, dw, db, err);
}

static kdc_status cpu_f32_to_f16(kdc_backend *be, size_t n, const float *x, uint16_t *y,
                                 kdc_error *err)
{
    (void)err;
    kdc_f32_to_f16_par(n, x, y, impl_of(be)->pool);
    return KDC_OK;
}

/* ------------------------------------- two gradient streams (DOT) */

static kdc_status cpu_conv2d_backward_dual(kdc_backend *be, const kdc_conv2d_desc *d,
                                           const float *x, const float *w, const float *dy2,
                                           float *dx2, float *dw0, float *dw1, kdc_error *err)
{
    cpu_impl *c = impl_of(be);
    kdc_status st;
    if (c->dnnl && kdc_conv2d_point_applies(d)) {
        if ((st = ensure_work(c, kdc_conv2d_point_workspace_floats(d), err)))
            return st;
        return kdc_conv2d_point_backward_dual(d, x, w, dy2, dx2, dw0, dw1, c->work,
                                              c->work_floats, err);
    }
    if (c->dnnl)
        return kdc_dnnl_conv2d_backward_dual(c->dnnl, d, x, w, dy2, dx2, dw0, dw1, err);
    /* the reference path stays the plain definition: one pass per stream */
    size_t xs = (size_t)d->n * d->c_in * d->h_in * d->w_in,
           ys = (size_t)d->n * d->c_out * d->h_out * d->w_out;
    if ((st = cpu_conv2d_backward(be, d, x, w, dy2, dx2, dw0, NULL, err)))
        return st;
    return cpu_conv2d_backward(be, d, x, w, dy2 + ys, dx2 ? dx2 + xs : NULL, dw1, NULL, err);
}

static kdc_status cpu_bn_backward_dual(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                       const float *dy2, const float *gamma,
                                       const float *save_mean, const float *save_invstd,
                                       float *dx2, float *dgamma0, float *dbeta0,
                                       float *dgamma1, float *dbeta1, kdc_error *err)
{
    return kdc_batchnorm_backward_dual(d, x, dy2, gamma, save_mean, save_invstd, dx2, dgamma0,
                                       dbeta0, dgamma1, dbeta1, impl_of(be)->pool, err);
}

static kdc_status cpu_relu_backward_dual(kdc_backend *be, size_t n, const float *y,
                                         const float *dy2, float *dx2, kdc_error *err)
{
    (void)err;
    kdc_relu_backward_dual(n, y, dy2, dx2, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_maxpool_backward_dual(kdc_backend *be, const kdc_pool2d_desc *d,
                                            const float *x, const float *y, const float *dy2,
                                            float *dx2, kdc_error *err)
{
    (void)y;
    return kdc_maxpool2d_backward_dual(d, x, dy2, dx2, impl_of(be)->pool, err);
}

static kdc_status cpu_linear_backward_dual(kdc_backend *be, int n, int in, int out,
                                           const float *x, const float *w, const float *dy2,
                                           float *dx2, float *dw0, float *db0, float *dw1,
                                           float *db1, kdc_error *err)
{
    (void)be;
    return kdc_linear_backward_dual(n, in, out, x, w, dy2, dx2, dw0, db0, dw1, db1, err);
}

/* ------------------------------------------- MobileNetV2 / ShuffleNet / RegNetY */

static kdc_status cpu_relu6_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                    kdc_error *err)
{
    (void)err;
    kdc_relu6_forward(n, x, y, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_relu6_backward(kdc_backend *be, size_t n, const float *y, const float *dy,
                                     float *dx, kdc_error *err)
{
    (void)err;
    kdc_relu6_backward(n, y, dy, dx, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_sigmoid_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                      kdc_error *err)
{
    (void)err;
    kdc_sigmoid_forward(n, x, y, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_sigmoid_backward(kdc_backend *be, size_t n, const float *y,
                                       const float *dy, float *dx, kdc_error *err)
{
    (void)err;
    kdc_sigmoid_backward(n, y, dy, dx, impl_of(be)->pool);
    return KDC_OK;
}

static kdc_status cpu_channel_scale_forward(kdc_backend *be, int n, int c, int hw,
                                            const float *x, const float *s, float *y,
                                            kdc_error *err)
{
    return kdc_channel_scale_forward(n, c, hw, x, s, y, impl_of(be)->pool, err);
}

static kdc_status cpu_channel_scale_backward(kdc_backend *be, int n, int c, int hw,
                                             const float *x, const float *s, const float *dy,
                                             float *dx, float *ds, kdc_error *err)
{
    return kdc_channel_scale_backward(n, c, hw, x, s, dy, dx, ds, impl_of(be)->pool, err);
}

static kdc_status cpu_channel_copy(kdc_backend *be, const kdc_chan_copy_desc *d, const float *x,
                                   float *y, kdc_error *err)
{
    return kdc_channel_copy(d, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_channel_shuffle(kdc_backend *be, int n, int c, int groups, int hw,
                                      const float *x, float *y, kdc_error *err)
{
    return kdc_channel_shuffle(n, c, groups, hw, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool2d_forward(kdc_backend *be, const kdc_pool2d_desc *d,
                                        const float *x, float *y, kdc_error *err)
{
    return kdc_avgpool2d_forward(d, x, y, impl_of(be)->pool, err);
}

static kdc_status cpu_avgpool2d_backward(kdc_backend *be, const kdc_pool2d_desc *d,
                                         const float *dy, float *dx, kdc_error *err)
{
    return kdc_avgpool2d_backward(d, dy, dx, impl_of(be)->pool, err);
}

/* ------------------------------------------------------------- create */

kdc_status kdc_backend_cpu_create(int threads, kdc_backend **out, kdc_error *err)
{
    *out = NULL;
    kdc_status st = kdc_gemm_init(err);
    if (st)
        return kdc_error_prefix(err, "cpu backend: ");
    if (threads <= 0)
        threads = kdc_cpu_count();
    kdc_backend *be = calloc(1, sizeof *be);
    cpu_impl *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return kdc_fail(err, KDC_ENOMEM, "cpu backend: out of memory");
    }
    be->impl = c;
    st = kdc_pool_create(threads, &c->pool, err);
    if (st) {
        cpu_destroy(be);
        return st;
    }
    c->threads = threads;
    const char *conv = getenv("KDC_CONV");
    if (conv && *conv && strcmp(conv, "ref") && strcmp(conv, "dnnl")) {
        cpu_destroy(be);
        return kdc_fail(err, KDC_EINVAL, "cpu backend: KDC_CONV=%s (expected ref or dnnl)", conv);
    }
    const char *layout = getenv("KDC_LAYOUT");
    if (layout && *layout && strcmp(layout, "nchw") && strcmp(layout, "blocked")) {
        cpu_destroy(be);
        return kdc_fail(err, KDC_EINVAL, "cpu backend: KDC_LAYOUT=%s (expected nchw or blocked)",
                        layout);
    }
    if (!conv || strcmp(conv, "ref")) {
        st = kdc_dnnl_create(threads, &c->dnnl, err);
        if (st) {
            cpu_destroy(be);
            return kdc_error_prefix(err, "cpu backend: ");
        }
    }
    /* OpenBLAS's thread count is process-wide: the last backend created sets it. */
    kdc_gemm_set_threads(threads);
    be->name = "cpu";
    be->device.type = KDC_DEVICE_CPU;
    be->device.index = 0;
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_h2d = cpu_copy;
    be->copy_d2h = cpu_copy;
    be->copy_d2d = cpu_copy;
    be->fill_zero = cpu_fill_zero;
    be->synchronize = cpu_synchronize;
    be->conv2d_forward = cpu_conv2d_forward;
    be->conv2d_backward = cpu_conv2d_backward;
    be->batchnorm_forward_train = cpu_bn_forward_train;
    be->batchnorm_forward_eval = cpu_bn_forward_eval;
    be->batchnorm_stats = cpu_bn_stats;
    be->batchnorm_apply = cpu_bn_apply;
    be->batchnorm_backward_sums = cpu_bn_backward_sums;
    be->batchnorm_backward_apply = cpu_bn_backward_apply;
    be->batchnorm_backward = cpu_bn_backward;
    be->relu_forward = cpu_relu_forward;
    be->relu_backward = cpu_relu_backward;
    be->add = cpu_add;
    be->axpy = cpu_axpy;
    be->maxpool2d_forward = cpu_maxpool_forward;
    be->maxpool2d_backward = cpu_maxpool_backward;
    be->avgpool_global_forward = cpu_avgpool_forward;
    be->avgpool_global_backward = cpu_avgpool_backward;
    be->linear_forward = cpu_linear_forward;
    be->linear_backward = cpu_linear_backward;
    be->f32_to_f16 = cpu_f32_to_f16;
    be->conv2d_backward_dual = cpu_conv2d_backward_dual;
    be->batchnorm_backward_dual = cpu_bn_backward_dual;
    be->relu_backward_dual = cpu_relu_backward_dual;
    be->maxpool2d_backward_dual = cpu_maxpool_backward_dual;
    be->linear_backward_dual = cpu_linear_backward_dual;
    be->relu6_forward = cpu_relu6_forward;
    be->relu6_backward = cpu_relu6_backward;
    be->sigmoid_forward = cpu_sigmoid_forward;
    be->sigmoid_backward = cpu_sigmoid_backward;
    be->channel_scale_forward = cpu_channel_scale_forward;
    be->channel_scale_backward = cpu_channel_scale_backward;
    be->channel_copy = cpu_channel_copy;
    be->channel_shuffle = cpu_channel_shuffle;
    be->avgpool2d_forward = cpu_avgpool2d_forward;
    be->avgpool2d_backward = cpu_avgpool2d_backward;
    be->avgpool_global_forward_blk = cpu_avgpool_forward_blk;
    be->avgpool_global_backward_blk = cpu_avgpool_backward_blk;
    be->act_blk = c->dnnl ? act_blk_of_cpu() : 0;
    be->conv_relu = 1;
    *out = be;
    return KDC_OK;
}
