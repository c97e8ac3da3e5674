/* bench_gemm.c - sgemm GFLOP/s with the OpenBLAS kernel gemm.c selects, or with
 * OpenBLAS's own detection, for docs/PERFORMANCE.md.
 *
 * OPENBLAS_CORETYPE is read once, in OpenBLAS's constructor, so one process can
 * only measure one kernel: run it twice and compare.
 *   build/bench/bench_gemm --coretype auto  --threads 2 --out /tmp/auto.bin
 *   build/bench/bench_gemm --coretype chosen --threads 2 --check /tmp/auto.bin
 * auto   = OpenBLAS's own cpuid detection (KDC_OPENBLAS_CORETYPE=auto)
 * chosen = what kdc_gemm_init picks; X = OPENBLAS_CORETYPE=X.
 * --out writes C, --check compares C with a file written by another run
 * (max relative difference). Sizes: --size N (N x N x N, default 2048). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/nn/gemm.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fill(float *x, size_t n, unsigned seed)
{
    unsigned long long s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
    }
}

int main(int argc, char **argv)
{
    const char *coretype = "chosen", *out = NULL, *check = NULL;
    int threads = 2, n = 2048, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--coretype") && i + 1 < argc)
            coretype = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            check = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--coretype auto|chosen|NAME] [--threads T] [--size N] "
                    "[--reps R] [--out FILE] [--check FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n <= 0 || n > 16384 || threads <= 0 || reps <= 0) {
        fprintf(stderr, "bench_gemm: bad --size, --threads or --reps\n");
        return 2;
    }
    /* OPENBLAS_CORETYPE is left to gemm.c ("chosen"), or gemm.c is told to keep
     * out ("auto": OpenBLAS's own detection) or to use a given name. */
    unsetenv("OPENBLAS_CORETYPE");
    if (strcmp(coretype, "chosen"))
        setenv("KDC_OPENBLAS_CORETYPE", coretype, 1);
    else
        unsetenv("KDC_OPENBLAS_CORETYPE");
    kdc_error err;
    if (kdc_gemm_init(&err)) {
        fprintf(stderr, "bench_gemm: %s\n", err.msg);
        return 1;
    }
    kdc_gemm_set_threads(threads);
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * 4), *b = malloc(nn * 4), *c = malloc(nn * 4);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    fill(a, nn, 1);
    fill(b, nn, 2);
    kdc_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        kdc_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    double gflops = 2.0 * n * (double)n * n / best * 1e-9;
    printf("sgemm %dx%dx%d threads %d coretype %-7s kernel %-20s best %.1f ms  %.1f GFLOP/s\n",
           n, n, n, threads, coretype, kdc_gemm_backend_name(), best * 1e3, gflops);
    int rc = 0;
    if (out) {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(c, 4, nn, f) != nn) {
            fprintf(stderr, "bench_gemm: cannot write %s\n", out);
            rc = 1;
        }
        if (f)
            fclose(f);
    }
    if (check) {
        FILE *f = fopen(check, "rb");
        float *o = malloc(nn * 4);
        if (!f || !o || fread(o, 4, nn, f) != nn) {
            fprintf(stderr, "bench_gemm: cannot read %s (same --size?)\n", check);
            rc = 1;
        } else {
            double md = 0, mr = 0;
            for (size_t i = 0; i < nn; i++) {
                double dd = fabs((double)c[i] - o[i]);
                md = dd > md ? dd : md;
                mr = fabs(o[i]) > mr ? fabs(o[i]) : mr;
            }
            printf("max |C - C_other| / max |C_other| = %.3g (%s)\n", md / mr,
                   md / mr < 1e-5 ? "equal within float32 rounding" : "DIFFERENT");
            rc = md / mr < 1e-5 ? 0 : 1;
        }
        if (f)
            fclose(f);
        free(o);
    }
    free(a), free(b), free(c);
    return rc;
}
