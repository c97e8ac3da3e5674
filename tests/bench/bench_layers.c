/* bench_layers.c - conv2d forward/backward time and GFLOP/s for typical ResNet
 * layer shapes through the CPU backend, to see where a model's time goes.
 * scripts/bench/bench_layers_torch.py times the same shapes with PyTorch.
 *
 *   build/bench/bench_layers [--threads 2] [--set r18|r50|r18train|mbv1|all] [--reps 3]
 *
 * Each line: the shape, best-of-reps forward and backward (dx + dw) times and
 * GFLOP/s (2 * MACs; backward counts both products, 4 * MACs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/nn/backend_cpu.h"
#include "common/nn/gemm.h"

typedef struct shape {
    const char *set, *name;
    int n, c_in, hw, c_out, k, stride, pad, groups;
} shape;

/* resnet18/50 at 224px (batch 16 / 8, the PyTorch reference batches),
 * resnet18 at 32px batch 64 (train step), mobilenet_v1 depthwise layers. */
static const shape shapes[] = {
    {"r18", "conv1 7x7/2", 16, 3, 224, 64, 7, 2, 3, 1},
    {"r18", "l1 3x3", 16, 64, 56, 64, 3, 1, 1, 1},
    {"r18", "l2 3x3/2", 16, 64, 56, 128, 3, 2, 1, 1},
    {"r18", "l2 3x3", 16, 128, 28, 128, 3, 1, 1, 1},
    {"r18", "l2 down 1x1/2", 16, 64, 56, 128, 1, 2, 0, 1},
    {"r18", "l3 3x3", 16, 256, 14, 256, 3, 1, 1, 1},
    {"r18", "l4 3x3", 16, 512, 7, 512, 3, 1, 1, 1},
    {"r50", "l1 1x1 64>64", 8, 64, 56, 64, 1, 1, 0, 1},
    {"r50", "l1 3x3", 8, 64, 56, 64, 3, 1, 1, 1},
    {"r50", "l1 1x1 64>256", 8, 64, 56, 256, 1, 1, 0, 1},
    {"r50", "l1 1x1 256>64", 8, 256, 56, 64, 1, 1, 0, 1},
    {"r50", "l2 1x1 512>128", 8, 512, 28, 128, 1, 1, 0, 1},
    {"r50", "l2 3x3", 8, 128, 28, 128, 3, 1, 1, 1},
    {"r50", "l3 1x1 1024>256", 8, 1024, 14, 256, 1, 1, 0, 1},
    {"r50", "l3 3x3", 8, 256, 14, 256, 3, 1, 1, 1},
    {"r50", "l4 1x1 2048>512", 8, 2048, 7, 512, 1, 1, 0, 1},
    {"r50", "l4 3x3", 8, 512, 7, 512, 3, 1, 1, 1},
    {"r18train", "conv1 7x7/2", 64, 3, 32, 64, 7, 2, 3, 1},
    {"r18train", "l1 3x3", 64, 64, 8, 64, 3, 1, 1, 1},
    {"r18train", "l2 3x3", 64, 128, 4, 128, 3, 1, 1, 1},
    {"r18train", "l3 3x3", 64, 256, 2, 256, 3, 1, 1, 1},
    {"r18train", "l4 3x3", 64, 512, 1, 512, 3, 1, 1, 1},
    {"mbv1", "dw 3x3 32", 16, 32, 112, 32, 3, 1, 1, 32},
    {"mbv1", "dw 3x3/2 64", 16, 64, 112, 64, 3, 2, 1, 64},
    {"mbv1", "dw 3x3 256", 16, 256, 28, 256, 3, 1, 1, 256},
    {"mbv1", "pw 1x1 256", 16, 256, 28, 256, 1, 1, 0, 1},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 3;
    const char *set = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc)
            set = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--set r18|r50|r18train|mbv1|all] "
                            "[--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (reps <= 0) {
        fprintf(stderr, "bench_layers: bad --reps\n");
        return 2;
    }
    kdc_error err;
    kdc_backend *be;
    if (kdc_backend_cpu_create(threads, &be, &err)) {
        fprintf(stderr, "bench_layers: %s\n", err.msg);
        return 1;
    }
    printf("# %d threads, GEMM %s\n", threads, kdc_gemm_backend_name());
    printf("%-9s %-18s %-22s %9s %7s %9s %7s\n", "set", "layer", "n,cin,hw>cout", "fwd ms",
           "GF/s", "bwd ms", "GF/s");
    double tot_f = 0, tot_b = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        if (strcmp(set, "all") && strcmp(set, sh->set))
            continue;
        kdc_conv2d_desc d = {.n = sh->n, .c_in = sh->c_in, .h_in = sh->hw, .w_in = sh->hw,
                             .c_out = sh->c_out, .kh = sh->k, .kw = sh->k,
                             .stride = sh->stride, .pad = sh->pad, .groups = sh->groups};
        if (kdc_conv2d_desc_init(&d, &err)) {
            fprintf(stderr, "bench_layers: %s\n", err.msg);
            return 1;
        }
        size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
        size_t nw = (size_t)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
        size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
        float *x = calloc(nx, 4), *w = calloc(nw, 4), *y = calloc(ny, 4), *dy = calloc(ny, 4);
        float *dx = calloc(nx, 4), *dw = calloc(nw, 4);
        if (!x || !w || !y || !dy || !dx || !dw) {
            fprintf(stderr, "bench_layers: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)(i % 13) * 0.1f - 0.6f;
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)(i % 7) * 0.01f - 0.03f;
        for (size_t i = 0; i < ny; i++)
            dy[i] = (float)(i % 5) * 0.1f - 0.2f;
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r <= reps; r++) { /* r == 0 warms up (workspace, OpenBLAS) */
            double t0 = now();
            if (be->conv2d_forward(be, &d, x, w, NULL, y, &err)) {
                fprintf(stderr, "bench_layers: %s\n", err.msg);
                return 1;
            }
            double t1 = now();
            if (be->conv2d_backward(be, &d, x, w, dy, dx, dw, NULL, &err)) {
                fprintf(stderr, "bench_layers: %s\n", err.msg);
                return 1;
            }
            double t2 = now();
            if (r > 0) {
                bf = t1 - t0 < bf ? t1 - t0 : bf;
                bb = t2 - t1 < bb ? t2 - t1 : bb;
            }
        }
        double macs = (double)ny * (d.c_in / d.groups) * d.kh * d.kw;
        char desc[64];
        snprintf(desc, sizeof desc, "%d,%d,%d>%d", d.n, d.c_in, d.h_in, d.c_out);
        printf("%-9s %-18s %-22s %9.2f %7.1f %9.2f %7.1f\n", sh->set, sh->name, desc, bf * 1e3,
               2 * macs / bf * 1e-9, bb * 1e3, 4 * macs / bb * 1e-9);
        tot_f += bf;
        tot_b += bb;
        free(x), free(w), free(y), free(dy), free(dx), free(dw);
    }
    printf("# total fwd %.1f ms, bwd %.1f ms\n", tot_f * 1e3, tot_b * 1e3);
    kdc_backend_destroy(be);
    return 0;
}
