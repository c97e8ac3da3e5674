/* bench_models_cpu.c - whole-model CPU throughput: the three numbers of issue 2
 * (resnet18 and resnet50 forward at 224 px, a resnet18 train step at 32 px,
 * batch 64), for the conv path the backend runs (KDC_CONV=dnnl|ref).
 * scripts/bench/bench_models_torch.py times the same with PyTorch.
 *
 *   build/bench/bench_models_cpu [--threads 2] [--reps 5] [--only NAME] [--classes C]
 *                                [--set core|zoo]
 *
 * --set zoo runs the students of issue 17 instead (a train step of mdistiller's
 * CIFAR MobileNetV2, ShuffleV1, ShuffleV2, resnet20, resnet56, vgg8, wrn_16_2 and
 * wrn_40_1 at 32 px, torchvision's mobilenet_v2 and shufflenet_v2_x1_0 at 96 px);
 * scripts/bench/bench_zoo_torch.py times the same with PyTorch.
 *
 * --classes overrides every row's number of classes (scripts/bench/bench_step.sh
 * matches kd-train's 10-class bench data).
 *
 * Forward rows run kdc_model_forward in eval mode and kdc_model_infer (BN
 * folded, the teacher path); the train row is forward (train mode) + the
 * gradient of mean cross-entropy at the logits + backward + kd-train's SGD update
 * (train/optim.h: momentum 0.9, weight decay 5e-4, on a pool of the same threads);
 * the DOT rows add a second gradient stream, through a second backward pass (dot2)
 * or the fused two-stream one (dot), and kd-train's DOT update. Each line: best and median wall time per batch, images/s
 * from the best, and the median CPU time of the process per batch (all threads;
 * steadier than wall time when other jobs share the cores, and it charges
 * threads that spin while waiting). Weights are the architecture's own initialisation; inputs are
 * a fixed pattern (timing does not depend on values). Not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/nn/backend_cpu.h"
#include "common/models/model.h"
#include "common/base/threadpool.h"
#include "train/optim.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct row {
    const char *name, *arch;
    int batch, px;
    int mode; /* 0 eval forward, 1 infer (folded), 2 train step, 3 DOT step with two
               * backward passes, 4 DOT step with the fused backward (backward_dual) */
    int classes;
    int zoo; /* 1: a row of --set zoo */
} row;

static const row rows[] = {
    {"resnet18-fwd", "resnet18", 16, 224, 0, 1000, 0},
    {"resnet18-infer", "resnet18", 16, 224, 1, 1000, 0},
    {"resnet50-fwd", "resnet50", 8, 224, 0, 1000, 0},
    {"resnet50-infer", "resnet50", 8, 224, 1, 1000, 0},
    {"resnet18-train32", "resnet18", 64, 32, 2, 1000, 0},
    {"resnet18-dot2-32", "resnet18", 64, 32, 3, 1000, 0},
    {"resnet18-dot32", "resnet18", 64, 32, 4, 1000, 0},
    {"mobilenet_v1-train32", "mobilenet_v1", 64, 32, 2, 100, 0},
    {"mobilenet_v1-dot2-32", "mobilenet_v1", 64, 32, 3, 100, 0},
    {"mobilenet_v1-dot32", "mobilenet_v1", 64, 32, 4, 100, 0},
    {"resnet8x4-train32", "resnet8x4", 64, 32, 2, 100, 0},
    {"resnet8x4-dot2-32", "resnet8x4", 64, 32, 3, 100, 0},
    {"resnet8x4-dot32", "resnet8x4", 64, 32, 4, 100, 0},
    /* --set zoo: SGD train steps of the issue-17 students */
    {"MobileNetV2-train32", "MobileNetV2", 64, 32, 2, 100, 1},
    {"ShuffleV1-train32", "ShuffleV1", 64, 32, 2, 100, 1},
    {"ShuffleV2-train32", "ShuffleV2", 64, 32, 2, 100, 1},
    {"resnet20-train32", "resnet20", 64, 32, 2, 100, 1},
    {"resnet56-train32", "resnet56", 64, 32, 2, 100, 1},
    {"vgg8-train32", "vgg8", 64, 32, 2, 100, 1},
    {"wrn_16_2-train32", "wrn_16_2", 64, 32, 2, 100, 1},
    {"wrn_40_1-train32", "wrn_40_1", 64, 32, 2, 100, 1},
    {"mobilenet_v2-train96", "mobilenet_v2", 32, 96, 2, 1000, 1},
    {"shufflenet_v2_x1_0-train96", "shufflenet_v2_x1_0", 32, 96, 2, 1000, 1},
};

static int run_row(const row *r, kdc_backend *be, kdc_pool *pool, int reps, int classes,
                   kdc_error *err)
{
    kdc_model *m;
    const int C = classes > 0 ? classes : r->classes;
    if (kdc_model_create(r->arch, C, be, 1, &m, err))
        return 1;
    size_t nx = (size_t)r->batch * 3 * r->px * r->px, nl = (size_t)r->batch * C;
    /* DOT: the distillation stream's gradient follows the task one */
    float *x = malloc(nx * sizeof(float)), *dl = malloc(2 * nl * sizeof(float));
    kdc_grad_set *g = NULL, *g2 = NULL;
    double *t = calloc((size_t)reps, sizeof(double)), *tc = calloc((size_t)reps, sizeof(double));
    int rc = 1;
    if (!x || !dl || !t || !tc)
        goto done;
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(i % 251) / 125.0f - 1.0f;
    if (r->mode >= 2 && kdc_model_grads_alloc(m, &g, err))
        goto done;
    if (r->mode >= 3 && kdc_model_grads_alloc(m, &g2, err))
        goto done;
    size_t nw;
    float *wflat = kdc_model_flat_weights(m, &nw);
    /* kd-train's optimisers and their pool: SGD (momentum 0.9, wd 5e-4) or DOT */
    kd_sgd sgd = {0};
    kd_dot dot = {0};
    if (r->mode == 2 || r->mode >= 3) {
        kd_param_ref ref = {wflat, g->flat, r->mode >= 3 ? g2->flat : NULL, nw};
        if (r->mode == 2 ? kd_sgd_init(&sgd, &ref, 1, 0.9, 5e-4, err)
                         : kd_dot_init(&dot, &ref, 1, 0.9, 0.075, 5e-4, err))
            goto done;
        sgd.pool = dot.pool = pool;
    }
    for (int k = -1; k < reps; k++) { /* k == -1 warms up (primitives, buffers) */
        const float *logits;
        double t0 = now(), c0 = cpu_now();
        kdc_status st;
        if (r->mode == 0)
            st = kdc_model_forward(m, x, r->batch, r->px, r->px, 0, &logits, NULL, err);
        else if (r->mode == 1)
            st = kdc_model_infer(m, x, r->batch, r->px, r->px, &logits, NULL, err);
        else {
            st = kdc_model_forward(m, x, r->batch, r->px, r->px, 1, &logits, NULL, err);
            if (!st) { /* d mean CE / d logits, label i % C */
                for (int i = 0; i < r->batch; i++) {
                    const float *l = logits + (size_t)i * C;
                    float *d = dl + (size_t)i * C, mx = l[0];
                    double s = 0;
                    for (int j = 1; j < C; j++)
                        mx = l[j] > mx ? l[j] : mx;
                    for (int j = 0; j < C; j++)
                        s += d[j] = expf(l[j] - mx);
                    for (int j = 0; j < C; j++)
                        d[j] = (float)(d[j] / s - (j == i % C)) / (float)r->batch;
                }
                /* DOT's second stream: a stand-in distillation gradient, same cost */
                if (r->mode >= 3)
                    for (size_t j = 0; j < nl; j++)
                        dl[nl + j] = 0.5f * dl[(j + 7) % nl];
                if (r->mode == 2)
                    st = kdc_model_backward(m, dl, NULL, g, NULL, err);
                else if (r->mode == 3 && !(st = kdc_model_backward(m, dl, NULL, g, NULL, err)))
                    st = kdc_model_backward(m, dl + nl, NULL, g2, NULL, err);
                else if (r->mode == 4)
                    st = kdc_model_backward_dual(m, dl, NULL, NULL, g, g2, err);
            }
            if (!st)
                st = r->mode == 2 ? kd_sgd_step(&sgd, 0.01, err) : kd_dot_step(&dot, 0.01, err);
        }
        if (st)
            goto done;
        if (k >= 0) {
            t[k] = now() - t0;
            tc[k] = cpu_now() - c0;
        }
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    qsort(tc, (size_t)reps, sizeof(double), cmp_d);
    printf("%-26s batch %3d %3dpx  best %8.1f ms  median %8.1f ms  %8.1f images/s  "
           "cpu %8.1f ms\n",
           r->name, r->batch, r->px, t[0] * 1e3, t[reps / 2] * 1e3, r->batch / t[0],
           tc[reps / 2] * 1e3);
    fflush(stdout);
    rc = 0;
done:
    if (g)
        kdc_model_grads_free(m, g);
    if (g2)
        kdc_model_grads_free(m, g2);
    kd_sgd_free(&sgd);
    kd_dot_free(&dot);
    kdc_model_free(m);
    free(x), free(dl), free(t), free(tc);
    return rc;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, classes = 0, zoo = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc)
            classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && !strcmp(argv[i + 1], "core"))
            zoo = 0, i++;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && !strcmp(argv[i + 1], "zoo"))
            zoo = 1, i++;
        else {
            fprintf(stderr,
                    "usage: %s [--threads T] [--reps R] [--only NAME] [--classes C] "
                    "[--set core|zoo]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps <= 0 || threads <= 0 || classes < 0) {
        fprintf(stderr, "bench_models_cpu: bad --reps, --threads or --classes\n");
        return 2;
    }
    kdc_error err;
    kdc_backend *be;
    if (kdc_backend_cpu_create(threads, &be, &err)) {
        fprintf(stderr, "bench_models_cpu: %s\n", err.msg);
        return 1;
    }
    kdc_pool *pool;
    if (kdc_pool_create(threads, &pool, &err)) {
        fprintf(stderr, "bench_models_cpu: %s\n", err.msg);
        return 1;
    }
    const char *conv = getenv("KDC_CONV");
    printf("# kdcache, %d threads, conv %s\n", threads, conv && *conv ? conv : "dnnl");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (only ? strcmp(only, rows[i].name) != 0 : rows[i].zoo != zoo)
            continue;
        if (run_row(&rows[i], be, pool, reps, classes, &err)) {
            fprintf(stderr, "bench_models_cpu: %s: %s\n", rows[i].name, err.msg);
            kdc_backend_destroy(be);
            kdc_pool_destroy(pool);
            return 1;
        }
    }
    kdc_backend_destroy(be);
    kdc_pool_destroy(pool);
    return 0;
}
