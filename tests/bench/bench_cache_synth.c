/* bench_cache_synth.c - a teacher cache of any shape with synthetic teacher
 * outputs, written with the cache writer kd-precompute uses, then read back
 * with the stream kd-train uses: the ImageNet-shape file costs of
 * docs/SCALE.md without running a teacher.
 *
 * usage: bench_cache_synth --out CACHE.h5 (--data DIR | --images N)
 *            [--views V (1)] [--classes C (1000)] [--logits float16|float32|topk:K]
 *            [--features D (0)] [--policy rrc|center] [--image-size S (224)]
 *            [--resize-size R (256)] [--threads T (1)] [--read-epochs E (1)]
 *            [--shard i/n] [--list-only]
 *
 * --data: the cache describes that ImageFolder (kd-train can train from it):
 *   the folder is listed (timed), then every file is read once with T threads
 *   for its size, CRC-32 and JPEG header (timed: the read kd-precompute does
 *   before decoding), and the views are drawn from the real image sizes.
 * --images: N rows of made-up 500x375 images (paths like ImageNet's).
 * Logits: per row a peak class at +8 over uniform noise in [-4, 4); features:
 * u^2 * 2 (non-negative, skewed, like pooled ReLU outputs). Random mantissas
 * compress like real ones (badly); real logits may compress a little better.
 *
 * Prints: list / read seconds, write seconds and MB/s (of the file and of the
 * float32 the writer converts), file size, raw bytes of the outputs and the
 * LZ4 ratio, then per read epoch: seconds, samples/s, bytes read from the
 * file (/proc/self/io rchar: every read() HDF5 makes, page cache or not)
 * against the file size. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/image/dataset.h"
#include "common/image/jpeg_decode.h"
#include "common/image/views.h"
#include "formats/cache_reader.h"
#include "formats/cache_stream.h"
#include "formats/cache_writer.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "rchar: %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
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

static void die(const char *what, const kdc_error *e)
{
    fprintf(stderr, "bench_cache_synth: %s: %s\n", what, e ? e->msg : "failed");
    exit(1);
}

/* ---- the one read of every file: size, CRC-32, header ---- */
typedef struct read_job {
    const img_dataset *ds;
    uint32_t *crc;
    uint64_t *size;
    int32_t *w, *h;
    pthread_mutex_t mu;
    size_t next;
    int failed;
    kdc_error err;
} read_job;

static void *read_worker(void *arg)
{
    read_job *j = arg;
    img_decoder *d;
    kdc_error e = {0};
    if (img_decoder_create(&d, &e))
        return NULL;
    char path[4096];
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->ds->count)
            break;
        if (img_dataset_full_path(j->ds, i, path, sizeof path, &e) ||
            img_decoder_load_file(d, path, &e)) {
            pthread_mutex_lock(&j->mu);
            j->failed = 1;
            j->err = e;
            pthread_mutex_unlock(&j->mu);
            continue;
        }
        j->size[i] = img_decoder_file_size(d);
        j->crc[i] = img_decoder_file_crc32(d);
        j->w[i] = img_decoder_width(d);
        j->h[i] = img_decoder_height(d);
    }
    img_decoder_free(d);
    return NULL;
}

static uint64_t rng_s = 0x243f6a8885a308d3ull;
static inline uint64_t rng_next(void)
{
    /* xorshift64*: fast enough to make ~1e9 numbers per view of ImageNet */
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return rng_s * 0x2545f4914f6cdd1dull;
}
static inline float unit24(uint64_t x)
{
    return (float)(x >> 40) * (1.0f / 16777216.0f);
}

int main(int argc, char **argv)
{
    const char *out = NULL, *data = NULL, *logits = "float16", *policy = "rrc";
    long N = 0;
    int V = 1, C = 1000, D = 0, S = 224, R = 256, T = 1, epochs = 1, shard = 0, nshards = 1;
    int list_only = 0;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--list-only")) {
            list_only = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_cache_synth: %s needs a value\n", o);
            return 2;
        }
        a++;
        if (!strcmp(o, "--out"))
            out = v;
        else if (!strcmp(o, "--data"))
            data = v;
        else if (!strcmp(o, "--images"))
            N = atol(v);
        else if (!strcmp(o, "--views"))
            V = atoi(v);
        else if (!strcmp(o, "--classes"))
            C = atoi(v);
        else if (!strcmp(o, "--logits"))
            logits = v;
        else if (!strcmp(o, "--features"))
            D = atoi(v);
        else if (!strcmp(o, "--policy"))
            policy = v;
        else if (!strcmp(o, "--image-size"))
            S = atoi(v);
        else if (!strcmp(o, "--resize-size"))
            R = atoi(v);
        else if (!strcmp(o, "--threads"))
            T = atoi(v);
        else if (!strcmp(o, "--read-epochs"))
            epochs = atoi(v);
        else if (!strcmp(o, "--shard")) {
            if (sscanf(v, "%d/%d", &shard, &nshards) != 2 || nshards < 1 || shard < 0 ||
                shard >= nshards) {
                fprintf(stderr, "bench_cache_synth: --shard i/n\n");
                return 2;
            }
        } else {
            fprintf(stderr, "bench_cache_synth: unknown option %s\n", o);
            return 2;
        }
    }
    if (!out || (!data && N < 1) || V < 1 || C < 1 || D < 0 || T < 1 || T > 64) {
        fprintf(stderr, "usage: bench_cache_synth --out CACHE.h5 (--data DIR | --images N) "
                        "[--views V] [--classes C] [--logits MODE] [--features D] [--policy P] "
                        "[--image-size S] [--resize-size R] [--threads T] [--read-epochs E]\n");
        return 2;
    }
    kdc_error e = {0};
    cache_header h;
    memset(&h, 0, sizeof h);
    if (cache_parse_logit_storage(logits, &h.logit_storage, &h.topk, &e))
        die("--logits", &e);

    /* ---- the image table ---- */
    img_dataset *ds = NULL;
    cache_image_table t;
    int32_t *W, *H;
    double t0 = now_s();
    if (data) {
        if (img_dataset_open_folder(&ds, data, &e))
            die(data, &e);
        double t_list = now_s() - t0;
        N = (long)ds->count;
        if (list_only) {
            printf("folder %s: %ld images in %d classes; list %.2f s; peak RSS %.0f MB\n", data, N,
                   ds->num_classes, t_list, peak_rss_kb() / 1024.0);
            img_dataset_free(ds);
            return 0;
        }
        if (cache_image_table_alloc(&t, N, &e))
            die("table", &e);
        W = calloc((size_t)N, sizeof *W);
        H = calloc((size_t)N, sizeof *H);
        read_job j = {.ds = ds, .crc = t.crc32, .size = t.size, .w = W, .h = H};
        pthread_mutex_init(&j.mu, NULL);
        pthread_t tid[64];
        t0 = now_s();
        for (int i = 0; i < T; i++)
            pthread_create(&tid[i], NULL, read_worker, &j);
        for (int i = 0; i < T; i++)
            pthread_join(tid[i], NULL);
        if (j.failed)
            die("read", &j.err);
        double t_read = now_s() - t0;
        printf("folder %s: %ld images in %d classes; list %.2f s; read + CRC-32 + header of "
               "every file with %d threads %.2f s (%.0f files/s); peak RSS %.0f MB\n",
               data, N, ds->num_classes, t_list, T, t_read, N / t_read, peak_rss_kb() / 1024.0);
        for (long i = 0; i < N; i++) {
            t.path[i] = ds->items[i].path;
            t.label[i] = ds->items[i].label;
        }
    } else {
        if (cache_image_table_alloc(&t, N, &e))
            die("table", &e);
        W = calloc((size_t)N, sizeof *W);
        H = calloc((size_t)N, sizeof *H);
        for (long i = 0; i < N; i++) {
            char p[64];
            long c = i * 1000 / N;
            snprintf(p, sizeof p, "n%08ld/n%08ld_%ld.JPEG", c, c, i);
            t.path[i] = strdup(p);
            t.label[i] = (int32_t)(c % C);
            t.size[i] = 110000 + (uint64_t)(i % 977);
            t.crc32[i] = (uint32_t)(i * 2654435761u);
            W[i] = 500;
            H[i] = 375;
        }
    }

    /* ---- the header ---- */
    h.version = CACHE_VERSION;
    snprintf(h.teacher_arch, sizeof h.teacher_arch, "resnet50");
    snprintf(h.teacher_weights_sha256, sizeof h.teacher_weights_sha256, "%064d", 0);
    h.num_images = N;
    h.views_per_image = V;
    h.num_classes = C;
    h.feature_dim = D;
    snprintf(h.view_policy, sizeof h.view_policy, "%s", policy);
    h.image_size = S;
    h.resize_size = R;
    const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    memcpy(h.mean, mean, sizeof mean);
    memcpy(h.std, std, sizeof std);
    h.scale_range[0] = 0.08, h.scale_range[1] = 1;
    h.ratio_range[0] = 0.75, h.ratio_range[1] = 4.0 / 3.0;
    h.pad = 4;
    h.seed = 0;
    snprintf(h.created_by, sizeof h.created_by, "bench_cache_synth (synthetic teacher outputs)");
    h.shard_index = shard;
    h.shard_count = nshards;
    img_view_params vp;
    img_view_params_default(&vp);
    if (img_view_policy_parse(policy, &vp.policy, &e))
        die("--policy", &e);
    vp.image_size = S;
    vp.resize_size = R;

    cache_writer *w;
    remove(out);
    t0 = now_s();
    if (cache_writer_create(out, &h, &t, NULL, &w, &e))
        die(out, &e);
    double t_create = now_s() - t0;
    const cache_header *wh = cache_writer_header(w);
    const int64_t ch = wh->chunk_images, nchunks = cache_writer_num_chunks(w);
    const size_t rows = (size_t)ch * (size_t)V;
    float *lg = malloc(rows * (size_t)C * sizeof *lg);
    float *ft = D ? malloc(rows * (size_t)D * sizeof *ft) : NULL;
    int32_t *box = malloc(rows * 4 * sizeof *box);
    uint8_t *flip = malloc(rows);
    if (!lg || (D && !ft) || !box || !flip)
        die("buffers", NULL);
    double t_gen = 0, t_write = 0;
    int64_t cfirst, cend;
    cache_writer_chunk_range(w, &cfirst, &cend);
    for (int64_t c = cfirst; c < cend; c++) {
        int64_t first, n;
        cache_writer_chunk_images(w, c, &first, &n);
        double g0 = now_s();
        for (int64_t i = 0; i < n; i++)
            for (int v = 0; v < V; v++) {
                size_t r = (size_t)i * V + (size_t)v;
                img_view vw;
                if (img_view_draw(&vp, W[first + i], H[first + i], (uint64_t)(first + i),
                                  (uint32_t)v, &vw, &e))
                    die("view", &e);
                box[4 * r] = vw.y0, box[4 * r + 1] = vw.x0, box[4 * r + 2] = vw.h,
                        box[4 * r + 3] = vw.w;
                flip[r] = vw.flip;
                float *l = lg + r * (size_t)C;
                for (int k = 0; k < C; k++)
                    l[k] = 8.0f * unit24(rng_next()) - 4.0f;
                l[rng_next() % (uint64_t)C] += 8.0f;
                for (int k = 0; k < D; k++) {
                    float u = unit24(rng_next());
                    ft[r * (size_t)D + (size_t)k] = 2.0f * u * u;
                }
            }
        double w0 = now_s();
        t_gen += w0 - g0;
        cache_chunk_input in = {.first_image = first,
                                .count = n,
                                .height = H + first,
                                .width = W + first,
                                .box = box,
                                .flip = flip,
                                .logits = lg,
                                .features = ft};
        if (cache_writer_write_chunk(w, c, &in, &e))
            die("write", &e);
        t_write += now_s() - w0;
    }
    double f0 = now_s();
    if (cache_writer_finish(w, &e))
        die("finish", &e);
    t_write += now_s() - f0;
    struct stat sb;
    stat(out, &sb);
    double f32_mb = (double)N * V * ((double)C + D) * 4 / 1e6;
    printf("write %s: %ld images x %d views x %d classes (%s), features %d, %lld chunks of %lld "
           "images: create %.2f s, generate %.1f s (not counted), write %.1f s = %.1f MB/s of "
           "file, %.1f MB/s of float32 outputs\n",
           out, N, V, C, logits, D, (long long)nchunks, (long long)ch, t_create, t_gen, t_write,
           sb.st_size / 1e6 / t_write, f32_mb / t_write);

    /* ---- read back: kd-train's stream, one view per image per epoch ---- */
    if (nshards > 1) {
        printf("shard %d/%d: %lld chunks written, file %.1f MB\n", shard, nshards,
               (long long)(cend - cfirst), sb.st_size / 1e6);
        epochs = 0;
    }
    cache_reader *rd;
    t0 = now_s();
    if (nshards > 1)
        goto done;
    if (cache_reader_open(out, 0, &rd, &e))
        die("open", &e);
    double t_open = now_s() - t0;
    uint64_t stored, raw;
    cache_reader_storage(rd, &stored, &raw);
    cache_reader_close(rd);
    printf("file %.1f MB (%.2f MB per view): outputs %.1f MB stored of %.1f MB raw, LZ4 ratio "
           "%.3f; open + validate %.2f s\n",
           sb.st_size / 1e6, sb.st_size / 1e6 / V, stored / 1e6, raw / 1e6,
           stored ? (double)raw / stored : 0, t_open);
    cache_stream_options so = {.batch_size = 256, .shuffle = 1, .seed = 0};
    cache_stream *s;
    if (cache_stream_open(out, &so, &s, &e))
        die("stream", &e);
    cache_batch b;
    if (cache_batch_alloc(&b, cache_stream_header(s), 256, &e))
        die("batch", &e);
    for (int ep = 0; ep < epochs; ep++) {
        uint64_t r0 = rchar();
        t0 = now_s();
        if (cache_stream_start_epoch(s, ep, &e))
            die("epoch", &e);
        int64_t got = 0;
        do {
            if (cache_stream_next(s, &b, &e))
                die("read", &e);
            got += b.count;
        } while (b.count);
        double dt = now_s() - t0;
        uint64_t rb = rchar() - r0;
        printf("read epoch %d: %lld samples in %.1f s = %.0f samples/s, %.1f MB/s of file; read "
               "%.1f MB = %.3f of the file (1/V = %.3f)\n",
               ep, (long long)got, dt, got / dt, rb / 1e6 / dt, rb / 1e6,
               (double)rb / (double)sb.st_size, 1.0 / V);
    }
    cache_batch_free(&b);
    cache_stream_close(s);
done:
    printf("peak RSS %.0f MB\n", peak_rss_kb() / 1024.0);
    if (ds) /* the paths belong to the dataset */
        memset(t.path, 0, (size_t)N * sizeof *t.path);
    cache_image_table_free(&t);
    img_dataset_free(ds);
    free(W), free(H), free(lg), free(ft), free(box), free(flip);
    return 0;
}
