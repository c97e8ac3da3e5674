/* bench_core.c - where a model step spends its time: the three issue-2 rows
 * (resnet18 batch 16 and resnet50 batch 8 inference at 224 px, a resnet18
 * train step at 32 px batch 64) with every backend op timed by kind.
 *
 *   build/bench/bench_core [--threads 2] [--reps 3]
 *
 * The CPU backend's table is wrapped by timing shims (a decorator over
 * kdc_backend, so the model code runs unchanged); each row prints images/s
 * from the best rep and, for that rep, the share of conv forward / conv
 * backward / batch norm / elementwise / pooling / linear / memory ops and
 * what is left (model executor overhead). Side-by-side throughput against
 * PyTorch is scripts/bench/bench_core.sh (bench_models_cpu + bench_models_torch.py).
 * Not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/nn/backend_cpu.h"
#include "common/models/model.h"

enum { K_CONV_F, K_CONV_B, K_BN, K_ELEM, K_POOL, K_LINEAR, K_MEM, K_COUNT };
static const char *KIND[K_COUNT] = {"conv fwd", "conv bwd", "batchnorm", "relu/add",
                                    "pooling",  "linear",   "memory"};
static double acc[K_COUNT];
static kdc_backend inner; /* the real table */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define SHIM(kind, fn, params, args)                                                          \
    static kdc_status shim_##fn params                                                        \
    {                                                                                         \
        double t0 = now();                                                                    \
        kdc_status st = inner.fn args;                                                        \
        acc[kind] += now() - t0;                                                              \
        return st;                                                                            \
    }

SHIM(K_CONV_F, conv2d_forward,
     (kdc_backend * be, const kdc_conv2d_desc *d, const float *x, const float *w,
      const float *b, float *y, kdc_error *err),
     (be, d, x, w, b, y, err))
SHIM(K_CONV_B, conv2d_backward,
     (kdc_backend * be, const kdc_conv2d_desc *d, const float *x, const float *w,
      const float *dy, float *dx, float *dw, float *db, kdc_error *err),
     (be, d, x, w, dy, dx, dw, db, err))
SHIM(K_BN, batchnorm_forward_train,
     (kdc_backend * be, const kdc_bn_desc *d, const float *x, const float *g, const float *b,
      float *rm, float *rv, float *sm, float *si, float *y, kdc_error *err),
     (be, d, x, g, b, rm, rv, sm, si, y, err))
SHIM(K_BN, batchnorm_forward_eval,
     (kdc_backend * be, const kdc_bn_desc *d, const float *x, const float *g, const float *b,
      const float *rm, const float *rv, float *y, kdc_error *err),
     (be, d, x, g, b, rm, rv, y, err))
SHIM(K_BN, batchnorm_backward,
     (kdc_backend * be, const kdc_bn_desc *d, const float *x, const float *dy, const float *g,
      const float *sm, const float *si, float *dx, float *dg, float *db, kdc_error *err),
     (be, d, x, dy, g, sm, si, dx, dg, db, err))
SHIM(K_ELEM, relu_forward, (kdc_backend * be, size_t n, const float *x, float *y, kdc_error *err),
     (be, n, x, y, err))
SHIM(K_ELEM, relu_backward,
     (kdc_backend * be, size_t n, const float *y, const float *dy, float *dx, kdc_error *err),
     (be, n, y, dy, dx, err))
SHIM(K_ELEM, add,
     (kdc_backend * be, size_t n, const float *a, const float *b, float *y, kdc_error *err),
     (be, n, a, b, y, err))
SHIM(K_ELEM, axpy,
     (kdc_backend * be, size_t n, float alpha, const float *x, float *y, kdc_error *err),
     (be, n, alpha, x, y, err))
SHIM(K_POOL, maxpool2d_forward,
     (kdc_backend * be, const kdc_pool2d_desc *d, const float *x, float *y, kdc_error *err),
     (be, d, x, y, err))
SHIM(K_POOL, maxpool2d_backward,
     (kdc_backend * be, const kdc_pool2d_desc *d, const float *x, const float *y,
      const float *dy, float *dx, kdc_error *err),
     (be, d, x, y, dy, dx, err))
SHIM(K_POOL, avgpool_global_forward,
     (kdc_backend * be, int n, int c, int hw, const float *x, float *y, kdc_error *err),
     (be, n, c, hw, x, y, err))
SHIM(K_POOL, avgpool_global_backward,
     (kdc_backend * be, int n, int c, int hw, const float *dy, float *dx, kdc_error *err),
     (be, n, c, hw, dy, dx, err))
SHIM(K_LINEAR, linear_forward,
     (kdc_backend * be, int n, int in, int out, const float *x, const float *w, const float *b,
      float *y, kdc_error *err),
     (be, n, in, out, x, w, b, y, err))
SHIM(K_LINEAR, linear_backward,
     (kdc_backend * be, int n, int in, int out, const float *x, const float *w, const float *dy,
      float *dx, float *dw, float *db, kdc_error *err),
     (be, n, in, out, x, w, dy, dx, dw, db, err))
SHIM(K_MEM, copy_d2d, (kdc_backend * be, void *dst, const void *src, size_t n, kdc_error *err),
     (be, dst, src, n, err))
SHIM(K_MEM, copy_h2d, (kdc_backend * be, void *dst, const void *src, size_t n, kdc_error *err),
     (be, dst, src, n, err))
SHIM(K_MEM, copy_d2h, (kdc_backend * be, void *dst, const void *src, size_t n, kdc_error *err),
     (be, dst, src, n, err))

SHIM(K_CONV_B, conv2d_backward_dual,
     (kdc_backend * be, const kdc_conv2d_desc *d, const float *x, const float *w,
      const float *dy, float *dx, float *dw0, float *dw1, kdc_error *err),
     (be, d, x, w, dy, dx, dw0, dw1, err))
SHIM(K_BN, batchnorm_backward_dual,
     (kdc_backend * be, const kdc_bn_desc *d, const float *x, const float *dy, const float *g,
      const float *sm, const float *si, float *dx, float *dg0, float *db0, float *dg1,
      float *db1, kdc_error *err),
     (be, d, x, dy, g, sm, si, dx, dg0, db0, dg1, db1, err))
SHIM(K_ELEM, relu_backward_dual,
     (kdc_backend * be, size_t n, const float *y, const float *dy, float *dx, kdc_error *err),
     (be, n, y, dy, dx, err))
SHIM(K_POOL, maxpool2d_backward_dual,
     (kdc_backend * be, const kdc_pool2d_desc *d, const float *x, const float *y,
      const float *dy, float *dx, kdc_error *err),
     (be, d, x, y, dy, dx, err))
SHIM(K_LINEAR, linear_backward_dual,
     (kdc_backend * be, int n, int in, int out, const float *x, const float *w, const float *dy,
      float *dx, float *dw0, float *db0, float *dw1, float *db1, kdc_error *err),
     (be, n, in, out, x, w, dy, dx, dw0, db0, dw1, db1, err))

static void wrap(kdc_backend *be)
{
    inner = *be;
#define W(fn) be->fn = shim_##fn
    W(conv2d_forward); W(conv2d_backward); W(batchnorm_forward_train);
    W(batchnorm_forward_eval); W(batchnorm_backward); W(relu_forward); W(relu_backward);
    W(add); W(axpy); W(maxpool2d_forward); W(maxpool2d_backward); W(avgpool_global_forward);
    W(avgpool_global_backward); W(linear_forward); W(linear_backward); W(copy_d2d);
    W(copy_h2d); W(copy_d2h); W(conv2d_backward_dual); W(batchnorm_backward_dual);
    W(relu_backward_dual); W(maxpool2d_backward_dual); W(linear_backward_dual);
#undef W
}

typedef struct row {
    const char *name, *arch;
    int batch, px, train; /* 0 infer, 1 train step, 2 DOT step (fused backward) */
} row;

static int run(kdc_backend *be, const row *r, int reps)
{
    kdc_error err;
    kdc_model *m;
    if (kdc_model_create(r->arch, 1000, be, 1, &m, &err)) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        return 1;
    }
    size_t nx = (size_t)r->batch * 3 * r->px * r->px, nl = (size_t)r->batch * 1000;
    float *x = malloc(nx * sizeof *x), *dl = malloc(2 * nl * sizeof *dl);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)sin(0.001 * (double)i);
    kdc_grad_set *g = NULL, *g2 = NULL;
    if ((r->train && kdc_model_grads_alloc(m, &g, &err)) ||
        (r->train == 2 && kdc_model_grads_alloc(m, &g2, &err))) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        return 1;
    }
    double best = INFINITY, best_acc[K_COUNT] = {0};
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up (allocations) */
        memset(acc, 0, sizeof acc);
        double t0 = now();
        const float *logits, *feats;
        kdc_status st;
        if (r->train) {
            st = kdc_model_forward(m, x, r->batch, r->px, r->px, 1, &logits, &feats, &err);
            for (int b = 0; !st && b < r->batch; b++) { /* mean CE gradient, label 0 */
                const float *z = logits + (size_t)b * 1000;
                double mx = z[0], s = 0;
                for (int j = 1; j < 1000; j++)
                    mx = z[j] > mx ? z[j] : mx;
                for (int j = 0; j < 1000; j++)
                    s += exp(z[j] - mx);
                for (int j = 0; j < 1000; j++)
                    dl[(size_t)b * 1000 + j] =
                        (float)((exp(z[j] - mx) / s - (j == 0)) / r->batch);
            }
            for (size_t j = 0; r->train == 2 && j < nl; j++) /* a second stream */
                dl[nl + j] = 0.5f * dl[(j + 7) % nl];
            if (!st)
                st = r->train == 2 ? kdc_model_backward_dual(m, dl, NULL, NULL, g, g2, &err)
                                   : kdc_model_backward(m, dl, NULL, g, NULL, &err);
            size_t nw;
            float *w = kdc_model_flat_weights(m, &nw);
            if (!st)
                st = be->axpy(be, nw, -0.01f, g->flat, w, &err);
            if (!st && g2)
                st = be->axpy(be, nw, -0.01f, g2->flat, w, &err);
        } else {
            st = kdc_model_infer(m, x, r->batch, r->px, r->px, &logits, &feats, &err);
        }
        if (st) {
            fprintf(stderr, "bench_core: %s: %s\n", r->name, err.msg);
            return 1;
        }
        double t = now() - t0;
        if (rep > 0 && t < best) {
            best = t;
            memcpy(best_acc, acc, sizeof acc);
        }
    }
    double ops = 0;
    printf("%-16s batch %3d %3dpx  %8.1f ms  %7.1f images/s |", r->name, r->batch, r->px,
           best * 1e3, r->batch / best);
    for (int k = 0; k < K_COUNT; k++) {
        ops += best_acc[k];
        if (best_acc[k] > 0.005 * best)
            printf(" %s %.0f%%", KIND[k], 100 * best_acc[k] / best);
    }
    printf(" | executor %.1f%%\n", 100 * (best - ops) / best);
    kdc_model_grads_free(m, g);
    kdc_model_grads_free(m, g2);
    kdc_model_free(m);
    free(x);
    free(dl);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (threads <= 0 || reps <= 0) {
        fprintf(stderr, "bench_core: --threads and --reps must be positive\n");
        return 2;
    }
    kdc_error err;
    kdc_backend *be;
    if (kdc_backend_cpu_create(threads, &be, &err)) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        return 1;
    }
    wrap(be);
    static const row rows[] = {
        {"resnet18-infer", "resnet18", 16, 224, 0},
        {"resnet50-infer", "resnet50", 8, 224, 0},
        {"resnet18-train32", "resnet18", 64, 32, 1},
        {"resnet18-dot32", "resnet18", 64, 32, 2},
    };
    printf("# kdcache model executor, %d threads, time by op kind (best of %d)\n", threads, reps);
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rc |= run(be, &rows[i], reps);
    kdc_backend_destroy(be);
    return rc;
}
