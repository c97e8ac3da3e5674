/* bench_datapath.c - kd-precompute's data path without the teacher: read each
 * file once (size + CRC-32), decode, cut V views (rrc), resize, flip and
 * normalise into float batches, on the loader kd-precompute uses
 * (common/image/loader.h), with T threads.
 *
 * usage: bench_datapath [--views V] [--threads T] [--size S] [--batch B]
 *                       [--decode-scale off|auto] [--per-view] [--limit N] ROOT
 *
 * --per-view gives every view its own loader claim (the views of an image
 * spread over threads and batches, one read and decode per view: the path
 * before views were cut from one decode). Prints images/s of wall-clock time
 * and per CPU-second of this process (steadier on a shared machine), and the
 * same per view. scripts/scale_sim.sh runs it next to
 * scripts/bench/bench_datapath_torch.py at equal threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/image/dataset.h"
#include "common/image/loader.h"

static double now_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int V = 1, T = 1, S = 224, B = 64, per_view = 0, scale_auto = 0;
    long limit = 0;
    int a = 1;
    for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
        const char *o = argv[a];
        if (!strcmp(o, "--per-view")) {
            per_view = 1;
            continue;
        }
        if (a + 1 >= argc) {
            fprintf(stderr, "bench_datapath: %s needs a value\n", o);
            return 2;
        }
        const char *v = argv[++a];
        if (!strcmp(o, "--views"))
            V = atoi(v);
        else if (!strcmp(o, "--threads"))
            T = atoi(v);
        else if (!strcmp(o, "--size"))
            S = atoi(v);
        else if (!strcmp(o, "--batch"))
            B = atoi(v);
        else if (!strcmp(o, "--limit"))
            limit = atol(v);
        else if (!strcmp(o, "--decode-scale"))
            scale_auto = !strcmp(v, "auto");
        else {
            fprintf(stderr, "bench_datapath: unknown option %s\n", o);
            return 2;
        }
    }
    if (a != argc - 1 || V < 1 || T < 1 || B < 1) {
        fprintf(stderr, "usage: bench_datapath [--views V] [--threads T] [--size S] [--batch B] "
                        "[--decode-scale off|auto] [--per-view] [--limit N] ROOT\n");
        return 2;
    }
    kdc_error err = {0};
    img_dataset *ds;
    if (img_dataset_open_folder(&ds, argv[a], &err)) {
        fprintf(stderr, "bench_datapath: %s\n", err.msg);
        return 1;
    }
    size_t N = limit > 0 && (size_t)limit < ds->count ? (size_t)limit : ds->count;
    img_loader_config cfg;
    img_loader_config_default(&cfg);
    cfg.threads = T;
    cfg.batch_size = B;
    cfg.prefetch = 4;
    cfg.view.policy = IMG_VIEW_RRC;
    cfg.view.image_size = S;
    cfg.view.seed = 1;
    cfg.view.decode_scale = scale_auto ? IMG_DECODE_SCALE_AUTO : IMG_DECODE_SCALE_OFF;
    img_loader *l;
    img_request *plan = calloc(N * (size_t)V, sizeof *plan);
    if (!plan || img_loader_create(&l, ds, &cfg, &err)) {
        fprintf(stderr, "bench_datapath: %s\n", plan ? err.msg : "out of memory");
        return 1;
    }
    /* --per-view: the views of an image apart (view-major order), so no
     * claim holds two views of one image. */
    for (size_t k = 0; k < N * (size_t)V; k++)
        plan[k] = per_view
                      ? (img_request){.index = (int64_t)(k % N), .view_index = (uint32_t)(k / N)}
                      : (img_request){.index = (int64_t)(k / (size_t)V),
                                      .view_index = (uint32_t)(k % (size_t)V)};
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double checksum = 0;
    long failed = 0, scaled = 0;
    if (img_loader_start(l, plan, N * (size_t)V, &err)) {
        fprintf(stderr, "bench_datapath: %s\n", err.msg);
        return 1;
    }
    img_batch *b;
    while (img_loader_next(l, &b, &err) == KDC_OK && b) {
        failed += b->failed;
        for (int i = 0; i < b->count; i++) {
            const img_sample *sm = &b->samples[i];
            scaled += sm->status == KDC_OK &&
                      img_view_decode_eighths(&cfg.view, sm->width, sm->height, &sm->view) < 8;
        }
        checksum += img_batch_sample_pixels(b, 0)[0];
        img_loader_release(l, b);
    }
    double wall = now_s(CLOCK_MONOTONIC) - w0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("datapath views %d threads %d size %d decode-scale %s%s: %zu images, %ld failed, "
           "%.1f s wall, %.1f s cpu: %.1f img/s wall, %.1f img/cpu-s, %.1f views/cpu-s "
           "(%.1f%% of views from a scaled decode; check %.3f)\n",
           V, T, S, scale_auto ? "auto" : "off", per_view ? " per-view" : "", N, failed, wall, cpu,
           N / wall, N / cpu, N * (double)V / cpu, 100.0 * scaled / ((double)N * V), checksum);
    img_loader_destroy(l);
    free(plan);
    img_dataset_free(ds);
    return 0;
}
