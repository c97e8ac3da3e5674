/* bench_train_data.c - kd-train's data path without the student: the cache
 * stream (one view per image and epoch), the check of every view and file
 * against the cache, read + decode + replay of the stored view, normalise,
 * batch (train/train_data.h, the code kd-train runs), with T decoding threads.
 *
 * usage: bench_train_data --data DIR --cache CACHE.h5 [--threads T] [--batch B]
 *                         [--limit BATCHES]
 * Prints start-up seconds (listing, cache open, dataset match), then samples/s
 * by wall clock and per CPU-second of the process, and the peak RSS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/train_data.h"

static double now_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    kd_data_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 64;
    cfg.threads = 1;
    cfg.shuffle = 1;
    long limit = 0;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--data"))
            cfg.data = argv[a + 1];
        else if (!strcmp(argv[a], "--cache"))
            cfg.cache = argv[a + 1];
        else if (!strcmp(argv[a], "--threads"))
            cfg.threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--batch"))
            cfg.batch_size = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--limit"))
            limit = atol(argv[a + 1]);
        else {
            fprintf(stderr, "bench_train_data: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (!cfg.data || !cfg.cache) {
        fprintf(stderr, "usage: bench_train_data --data DIR --cache CACHE.h5 [--threads T] "
                        "[--batch B] [--limit BATCHES]\n");
        return 2;
    }
    kdc_error e = {0};
    kd_data *d;
    double t0 = now_s(CLOCK_MONOTONIC);
    if (kd_data_open(&cfg, &d, &e)) {
        fprintf(stderr, "bench_train_data: %s\n", e.msg);
        return 1;
    }
    double t_open = now_s(CLOCK_MONOTONIC) - t0;
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    if (kd_data_start_epoch(d, 0, &e)) {
        fprintf(stderr, "bench_train_data: %s\n", e.msg);
        return 1;
    }
    long n = 0, batches = 0;
    kd_batch b;
    for (;;) {
        if (kd_data_next(d, &b, &e)) {
            fprintf(stderr, "bench_train_data: %s\n", e.msg);
            return 1;
        }
        if (b.count == 0 || (limit && batches == limit))
            break;
        n += b.count;
        batches++;
    }
    double wall = now_s(CLOCK_MONOTONIC) - w0, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("train data path threads %d batch %d: open %.2f s; %ld samples, %.1f s wall, %.1f s "
           "cpu: %.1f samples/s wall, %.1f samples/cpu-s; peak RSS %.0f MB\n",
           cfg.threads, cfg.batch_size, t_open, n, wall, cpu, n / wall, n / cpu,
           peak_rss_kb() / 1024.0);
    kd_data_close(d);
    return 0;
}
