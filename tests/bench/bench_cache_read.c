/* bench_cache_read.c - cache throughput and size: for several chunk sizes,
 * writes a synthetic cache and measures streaming shuffled reads (images/s,
 * MB/s of float32 samples served), random single-image reads, and the stored
 * bytes per image per view for float32 / float16 / topk:5,10,20.
 *
 * Synthetic teacher outputs (Gaussian logits, post-ReLU Gaussian features):
 * compression ratios on real teacher outputs differ; see docs/PERFORMANCE.md.
 * Usage: bench_cache_read [N] (default 1024 images, V=4, C=1000, D=256). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "formats/cache_reader.h"
#include "formats/cache_stream.h"
#include "formats/cache_writer.h"

enum { V = 4, C = 1000, D = 256 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t lcg = 12345;
static float gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        s += (float)(lcg >> 40) / (float)(1 << 24);
    }
    return (s - 2.0f) * 1.732f;
}

static void die(const kdc_error *e)
{
    fprintf(stderr, "bench_cache_read: %s\n", e->msg);
    exit(1);
}

static long long write_cache(const char *path, int64_t n, cache_logit_storage mode, int64_t k,
                             int64_t chunk_images, double *secs)
{
    cache_header h;
    memset(&h, 0, sizeof h);
    strcpy(h.teacher_arch, "synthetic");
    strcpy(h.view_policy, "rrc");
    strcpy(h.created_by, "bench_cache_read");
    h.num_images = n, h.views_per_image = V, h.num_classes = C, h.feature_dim = D;
    h.image_size = 224, h.resize_size = 256;
    for (int i = 0; i < 3; i++)
        h.mean[i] = 0.45, h.std[i] = 0.225;
    h.logit_storage = mode, h.topk = k, h.chunk_images = chunk_images;
    cache_image_table t;
    kdc_error e;
    if (cache_image_table_alloc(&t, n, &e) != KDC_OK)
        die(&e);
    for (int64_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "n%03lld/img%06lld.JPEG", (long long)(i % 1000), (long long)i);
        t.path[i] = strdup(p);
        t.label[i] = (int32_t)(i % C);
    }
    const int B = 64;
    int32_t *hh = malloc(B * 4), *ww = malloc(B * 4), *box = malloc(B * V * 16);
    uint8_t *flip = calloc(B * V, 1);
    float *lg = malloc(sizeof(float) * B * V * C), *ft = malloc(sizeof(float) * B * V * D);
    for (int i = 0; i < B; i++)
        hh[i] = ww[i] = 300;
    for (int i = 0; i < B * V * 4; i++)
        box[i] = 1 + i % 200;
    cache_writer *w;
    if (cache_writer_create(path, &h, &t, NULL, &w, &e) != KDC_OK)
        die(&e);
    double t0 = now();
    for (int64_t i = 0; i < n; i += B) {
        int64_t cnt = n - i < B ? n - i : B;
        for (int64_t j = 0; j < cnt * V * C; j++)
            lg[j] = 3.0f * gauss();
        for (int64_t j = 0; j < cnt * V * D; j++)
            ft[j] = fmaxf(0.f, gauss());
        cache_chunk_input in = {i, cnt, hh, ww, NULL, box, flip, lg, ft, NULL, NULL};
        if (cache_writer_append(w, &in, &e) != KDC_OK)
            die(&e);
    }
    if (cache_writer_finish(w, &e) != KDC_OK)
        die(&e);
    *secs = now() - t0;
    cache_image_table_free(&t);
    free(hh), free(ww), free(box), free(flip), free(lg), free(ft);
    struct stat sb;
    stat(path, &sb);
    return (long long)sb.st_size;
}

static void bench_stream(const char *path, int64_t n, double *ips, double *mbs)
{
    cache_stream_options o = {.batch_size = 128, .buffer_chunks = 8, .shuffle = 1,
                              .all_views = 0, .seed = 1};
    cache_stream *s;
    kdc_error e;
    if (cache_stream_open(path, &o, &s, &e) != KDC_OK)
        die(&e);
    cache_batch b;
    cache_batch_alloc(&b, cache_stream_header(s), 128, &e);
    size_t row = sizeof(float) * (C + D) + 16 + 1;
    int64_t got = 0;
    double t0 = now();
    for (int ep = 0; ep < 2; ep++) {
        cache_stream_start_epoch(s, ep, &e);
        for (;;) {
            if (cache_stream_next(s, &b, &e) != KDC_OK)
                die(&e);
            if (!b.count)
                break;
            got += b.count;
        }
    }
    double dt = now() - t0;
    (void)n;
    *ips = (double)got / dt;
    *mbs = (double)got * (double)row / dt / 1e6;
    cache_batch_free(&b);
    cache_stream_close(s);
}

static double bench_random(const char *path, int64_t n)
{
    cache_reader *r;
    kdc_error e;
    if (cache_reader_open(path, 0, &r, &e) != KDC_OK)
        die(&e);
    cache_batch b;
    cache_batch_alloc(&b, cache_reader_header(r), V, &e);
    int64_t reads = n < 512 ? n : 512;
    double t0 = now();
    uint64_t x = 7;
    for (int64_t i = 0; i < reads; i++) {
        x = x * 6364136223846793005ull + 1;
        if (cache_reader_read_image(r, (int64_t)((x >> 33) % (uint64_t)n), &b, &e) != KDC_OK)
            die(&e);
    }
    double dt = now() - t0;
    cache_batch_free(&b);
    cache_reader_close(r);
    return (double)reads / dt;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 1024;
    char path[256];
    snprintf(path, sizeof path, "/tmp/bench_cache_%d.h5", (int)getpid());
    printf("N=%lld V=%d C=%d D=%d, float16 logits, synthetic outputs\n", (long long)n, V, C, D);
    printf("%8s %10s %10s %12s %12s %12s\n", "chunk", "chunk_KiB", "write_s", "stream_img/s",
           "stream_MB/s", "random_img/s");
    int64_t chunks[] = {4, 16, 64, 256};
    for (int i = 0; i < 4; i++) {
        double ws, ips, mbs;
        write_cache(path, n, CACHE_LOGITS_F16, 0, chunks[i], &ws);
        bench_stream(path, n, &ips, &mbs);
        double rnd = bench_random(path, n);
        printf("%8lld %10.0f %10.2f %12.0f %12.1f %12.0f\n", (long long)chunks[i],
               (double)chunks[i] * V * C * 2 / 1024, ws, ips, mbs, rnd);
    }
    printf("\nstored bytes per image per view (default chunking):\n");
    struct {
        cache_logit_storage m;
        int64_t k;
        const char *name;
    } modes[] = {{CACHE_LOGITS_F32, 0, "float32"},
                 {CACHE_LOGITS_F16, 0, "float16"},
                 {CACHE_LOGITS_TOPK, 5, "topk:5"},
                 {CACHE_LOGITS_TOPK, 10, "topk:10"},
                 {CACHE_LOGITS_TOPK, 20, "topk:20"}};
    for (int i = 0; i < 5; i++) {
        double ws;
        cache_header h;
        memset(&h, 0, sizeof h);
        h.num_images = n, h.views_per_image = V, h.num_classes = C, h.feature_dim = D;
        h.logit_storage = modes[i].m, h.topk = modes[i].k;
        int64_t ch = cache_default_chunk_images(&h);
        long long sz = write_cache(path, n, modes[i].m, modes[i].k, ch, &ws);
        cache_reader *r;
        kdc_error e;
        if (cache_reader_open(path, 0, &r, &e) != KDC_OK)
            die(&e);
        uint64_t stored, raw;
        cache_reader_storage(r, &stored, &raw);
        cache_reader_close(r);
        printf("%8s chunk %4lld: file %.0f B/view (with %d float16 features), data %.0f B/view, "
               "LZ4 ratio %.3f\n",
               modes[i].name, (long long)ch, (double)sz / (double)(n * V), D,
               (double)stored / (double)(n * V), (double)raw / (double)stored);
    }
    unlink(path);
    return 0;
}
