/* test_cache.c - the teacher cache (format v2 written, v1 read): round trips in
 * every storage mode, files read by h5py + hdf5plugin and h5dump, files
 * written by h5py and by the v1 writer read by us, v1 -> v2 upgrade, the v2
 * layout (no variable-length type, one view per chunk, deterministic bytes),
 * one view of a chunk, top-k against a float64 reference, kill -9 and resume,
 * hostile and corrupt files with their one-line errors, a full disk, shard
 * merge, verify against the dataset's files, the streaming reader's epochs,
 * and the kd-cache tool. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/half.h"
#include "formats/cache_h5.h"
#include "formats/cache_merge.h"
#include "formats/cache_reader.h"
#include "formats/cache_stream.h"
#include "formats/cache_upgrade.h"
#include "formats/cache_verify.h"
#include "formats/cache_writer.h"
#include "tests/helpers/testutil.h"

enum { N = 23, V = 3, C = 11, D = 5, CH = 4 };

static const char *python(void)
{
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static void make_header(cache_header *h, cache_logit_storage mode, int64_t k)
{
    memset(h, 0, sizeof *h);
    strcpy(h->teacher_arch, "resnet18");
    strcpy(h->teacher_weights_sha256, "ab12");
    h->num_images = N;
    h->views_per_image = V;
    h->num_classes = C;
    h->feature_dim = D;
    strcpy(h->view_policy, "rrc");
    h->image_size = 32;
    h->resize_size = 36;
    for (int i = 0; i < 3; i++) {
        h->mean[i] = 0.5;
        h->std[i] = 0.25;
    }
    h->scale_range[0] = 0.08;
    h->scale_range[1] = 1;
    h->ratio_range[0] = 0.75;
    h->ratio_range[1] = 4.0 / 3;
    h->seed = 99;
    h->logit_storage = mode;
    h->topk = k;
    strcpy(h->created_by, "test_cache");
    h->chunk_images = CH;
}

static void make_table(cache_image_table *t)
{
    kdc_error e;
    ck_assert_int_eq(cache_image_table_alloc(t, N, &e), KDC_OK);
    for (int i = 0; i < N; i++) {
        char p[64];
        snprintf(p, sizeof p, "c%d/img_%02d.jpg", i % 4, i);
        t->path[i] = strdup(p);
        t->label[i] = i % 4 == 3 ? -1 : i % C;
        t->size[i] = 1000 + (uint64_t)i;
        t->crc32[i] = 0xdead0000u + (uint32_t)i;
    }
}

/* Deterministic teacher outputs; image 6 is skipped. */
static float logit_of(int i, int v, int c)
{
    return 6.0f * sinf(0.7f * (float)i + 1.3f * (float)v + 0.37f * (float)c * (float)(c % 3 + 1));
}

typedef struct rows {
    int32_t h[N], w[N], box[N * V * 4];
    uint8_t skip[N], flip[N * V];
    float logits[N * V * C], feats[N * V * D];
} rows;

static void make_rows(rows *r)
{
    for (int i = 0; i < N; i++) {
        r->h[i] = 100 + i;
        r->w[i] = 200 + i;
        r->skip[i] = i == 6;
        for (int v = 0; v < V; v++) {
            int32_t *b = r->box + (i * V + v) * 4;
            b[0] = v - 2, b[1] = i, b[2] = 10 + v, b[3] = 20 + i % 5;
            r->flip[i * V + v] = (uint8_t)((i + v) % 2);
            for (int c = 0; c < C; c++)
                r->logits[(i * V + v) * C + c] = logit_of(i, v, c);
            for (int d = 0; d < D; d++)
                r->feats[(i * V + v) * D + d] = fmaxf(0.f, cosf((float)(i * 5 + v * 2 + d)));
        }
    }
}

static cache_chunk_input input_for(const rows *r, int64_t first, int64_t count)
{
    cache_chunk_input in = {first, count, r->h + first, r->w + first, r->skip + first,
                            r->box + first * V * 4, r->flip + first * V,
                            r->logits + first * V * C, r->feats + first * V * D, NULL, NULL};
    return in;
}

static char *tmp;

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void setup(void)
{
    tmp = kdc_test_tmpdir("cache");
}

static void teardown(void)
{
    kdc_test_system("rm -rf '%s'", tmp);
    free(tmp);
}

static char *tpath(const char *name)
{
    static char buf[64][4096];
    static int k;
    char *p = buf[k++ % 64];
    snprintf(p, 4096, "%s/%s", tmp, name);
    return p;
}

/* Writes a whole cache: by chunks (append = 0) or by appends of 5 images. */
static void write_cache(const char *path, cache_logit_storage mode, int64_t k, int shard,
                        int nshards, int append)
{
    cache_header h;
    cache_image_table t;
    rows *r = malloc(sizeof *r);
    make_header(&h, mode, k);
    h.shard_index = shard;
    h.shard_count = nshards;
    make_table(&t);
    make_rows(r);
    kdc_error e;
    cache_writer *w;
    ck_assert_msg(cache_writer_create(path, &h, &t, NULL, &w, &e) == KDC_OK, "%s", e.msg);
    int64_t a, b;
    cache_writer_chunk_range(w, &a, &b);
    if (append) {
        int64_t first = a * CH, end = b * CH < N ? b * CH : N;
        for (int64_t i = first; i < end; i += 5) {
            int64_t n = end - i < 5 ? end - i : 5;
            cache_chunk_input in = input_for(r, i, n);
            ck_assert_msg(cache_writer_append(w, &in, &e) == KDC_OK, "%s", e.msg);
        }
    } else {
        for (int64_t c = a; c < b; c++) {
            int64_t f, n;
            cache_writer_chunk_images(w, c, &f, &n);
            cache_chunk_input in = input_for(r, f, n);
            ck_assert_msg(cache_writer_write_chunk(w, c, &in, &e) == KDC_OK, "%s", e.msg);
        }
    }
    ck_assert_msg(cache_writer_finish(w, &e) == KDC_OK, "%s", e.msg);
    cache_image_table_free(&t);
    free(r);
}

static float expect_logit(cache_logit_storage mode, float x)
{
    return mode == CACHE_LOGITS_F16 ? kdc_f16_to_f32(kdc_f32_to_f16(x)) : x;
}

static void check_values(const char *path, cache_logit_storage mode, int64_t k)
{
    kdc_error e;
    cache_reader *rd;
    ck_assert_msg(cache_reader_open(path, 0, &rd, &e) == KDC_OK, "%s", e.msg);
    const cache_header *h = cache_reader_header(rd);
    ck_assert_str_eq(h->teacher_arch, "resnet18");
    ck_assert_int_eq(h->logit_storage, mode);
    ck_assert_int_eq(h->topk, k);
    ck_assert_int_eq(h->complete, 1);
    const cache_image_table *t = cache_reader_images(rd);
    ck_assert_str_eq(t->path[5], "c1/img_05.jpg");
    ck_assert_int_eq(t->label[3], -1);
    ck_assert_int_eq(t->skipped[6], 1);
    ck_assert_int_eq(t->height[7], 107);
    ck_assert_int_eq(t->height[6], 0);
    rows *r = malloc(sizeof *r);
    make_rows(r);
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, h, V, &e), KDC_OK);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cache_reader_read_image(rd, i, &b, &e), KDC_OK);
        ck_assert_int_eq(b.count, V);
        for (int v = 0; v < V; v++) {
            int skip = i == 6;
            ck_assert_int_eq(b.image[v], i);
            ck_assert_int_eq(b.view[v], v);
            ck_assert_int_eq(b.flip[v], skip ? 0 : r->flip[i * V + v]);
            for (int j = 0; j < 4; j++)
                ck_assert_int_eq(b.box[v * 4 + j], skip ? 0 : r->box[(i * V + v) * 4 + j]);
            for (int d = 0; d < D; d++) {
                float x = r->feats[(i * V + v) * D + d];
                ck_assert_float_eq(b.features[v * D + d],
                                   skip ? 0.f : kdc_f16_to_f32(kdc_f32_to_f16(x)));
            }
            if (mode == CACHE_LOGITS_TOPK) {
                if (skip)
                    continue;
                /* Sorted descending, and nothing outside beats the K-th. */
                for (int j = 0; j < k; j++) {
                    int idx = b.topk_index[v * k + j];
                    ck_assert_float_eq(b.topk_value[v * k + j],
                                       kdc_f16_to_f32(kdc_f32_to_f16(logit_of(i, v, idx))));
                    if (j)
                        ck_assert(b.topk_value[v * k + j] <= b.topk_value[v * k + j - 1]);
                }
            } else {
                for (int c = 0; c < C; c++)
                    ck_assert_float_eq(b.logits[v * C + c],
                                       skip ? 0.f : expect_logit(mode, logit_of(i, v, c)));
            }
        }
    }
    cache_batch_free(&b);
    free(r);
    cache_reader_close(rd);
}

START_TEST(test_roundtrip_modes)
{
    struct {
        cache_logit_storage m;
        int64_t k;
    } modes[] = {{CACHE_LOGITS_F32, 0}, {CACHE_LOGITS_F16, 0}, {CACHE_LOGITS_TOPK, 4}};
    for (int i = 0; i < 3; i++)
        for (int append = 0; append < 2; append++) {
            char *p = tpath("rt.h5");
            write_cache(p, modes[i].m, modes[i].k, 0, 1, append);
            struct stat sb;
            ck_assert_int_ne(stat(tpath("rt.h5.partial"), &sb), 0); /* renamed */
            check_values(p, modes[i].m, modes[i].k);
        }
}
END_TEST

START_TEST(test_topk_vs_float64_reference)
{
    size_t n, ni, nv;
    float *x = kdc_test_load_f32("cache", "topk_logits", 0, &n);
    int64_t *ri = kdc_test_load_i64("cache", "topk_index", 0, &ni);
    float *rv = kdc_test_load_f32("cache", "topk_value", 0, &nv);
    size_t Cc = 1000, K = 20, R = n / Cc;
    ck_assert_uint_eq(ni, R * K);
    uint16_t *idx = malloc(R * K * 2), *val = malloc(R * K * 2);
    cache_topk_rows(x, R, Cc, K, idx, 2, val);
    for (size_t j = 0; j < R * K; j++) {
        ck_assert_msg(idx[j] == ri[j], "row %zu rank %zu: index %d, reference %lld", j / K, j % K,
                      idx[j], (long long)ri[j]);
        ck_assert_float_eq(kdc_f16_to_f32(val[j]), rv[j]);
    }
    /* int32 indices (past 65535 classes) give the same answer. */
    int32_t *idx32 = malloc(R * K * 4);
    cache_topk_rows(x, R, Cc, K, idx32, 4, val);
    for (size_t j = 0; j < R * K; j++)
        ck_assert_int_eq(idx32[j], ri[j]);
    free(x), free(ri), free(rv), free(idx), free(val), free(idx32);
}
END_TEST

static float *load_raw_f32(const char *dir, const char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.f32", dir, name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "missing %s", p);
    float *a = malloc(n * 4);
    ck_assert_uint_eq(fread(a, 4, n, f), n);
    ck_assert_int_eq(fgetc(f), EOF);
    fclose(f);
    return a;
}

static int64_t *load_raw_i64(const char *dir, const char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.i64", dir, name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "missing %s", p);
    int64_t *a = malloc(n * 8);
    ck_assert_uint_eq(fread(a, 8, n, f), n);
    fclose(f);
    return a;
}

/* h5py + hdf5plugin read what we wrote: the standard plugin decodes our LZ4. */
START_TEST(test_h5py_reads_our_file)
{
    rows *r = malloc(sizeof *r);
    make_rows(r);
    for (int mode = 0; mode < 2; mode++) {
        char *p = tpath(mode ? "k.h5" : "h.h5"), *out = tpath(mode ? "k_dump" : "h_dump");
        write_cache(p, mode ? CACHE_LOGITS_TOPK : CACHE_LOGITS_F16, mode ? 4 : 0, 0, 1, 0);
        int rc = kdc_test_system("cd '%s' && %s scripts/ref/ref_cache.py --read '%s' '%s'",
                                 kdc_test_repo_root(), python(), p, out);
        ck_assert_int_eq(rc, 0);
        /* v2 as h5py users see it: str paths via asstr(), bytes attributes,
         * no variable-length dtype, one view per chunk. */
        rc = kdc_test_system(
            "%s -c \"import h5py, hdf5plugin, sys; f = h5py.File(sys.argv[1], 'r'); "
            "assert f.attrs['kdcache_version'] == 2; "
            "assert f.attrs['teacher_arch'].decode() == 'resnet18'; "
            "assert len(f.attrs['dataset_fingerprint']) == 64; "
            "p = f['images/path'].asstr()[:]; assert p[5] == 'c1/img_05.jpg', p[5]; "
            "assert h5py.check_string_dtype(f['images/path'].dtype).length == 13; "
            "n = '%s'; assert f[n].chunks == (%d, 1, f[n].shape[2]), f[n].chunks; "
            "assert f['images/crc32'][22] == 0xdead0016\" '%s'",
            python(), mode ? "topk/value" : "logits", CH, p);
        ck_assert_int_eq(rc, 0);
        float *feat = load_raw_f32(out, "features", N * V * D);
        int64_t *box = load_raw_i64(out, "views_box", N * V * 4);
        for (int j = 0; j < N * V * D; j++)
            ck_assert_float_eq(feat[j], j / (V * D) == 6 ? 0.f
                                                          : kdc_f16_to_f32(kdc_f32_to_f16(r->feats[j])));
        for (int j = 0; j < N * V * 4; j++)
            ck_assert_int_eq(box[j], j / (V * 4) == 6 ? 0 : r->box[j]);
        if (mode == 0) {
            float *lg = load_raw_f32(out, "logits", N * V * C);
            for (int j = 0; j < N * V * C; j++)
                ck_assert_float_eq(lg[j], j / (V * C) == 6
                                              ? 0.f
                                              : kdc_f16_to_f32(kdc_f32_to_f16(r->logits[j])));
            free(lg);
        } else {
            int64_t *ti = load_raw_i64(out, "topk_index", N * V * 4);
            float *tv = load_raw_f32(out, "topk_value", N * V * 4);
            for (int j = 0; j < N * V * 4; j++) {
                int row = j / 4;
                if (row / V == 6)
                    continue;
                ck_assert_float_eq(tv[j], kdc_f16_to_f32(kdc_f32_to_f16(
                                              r->logits[row * C + ti[j]])));
            }
            free(ti), free(tv);
        }
        free(feat), free(box);
    }
    free(r);
}
END_TEST

/* h5dump with Debian's standard LZ4 plugin dumps our LZ4-filtered datasets. */
START_TEST(test_h5dump_reads_our_file)
{
    const char *plugdir = getenv("KDC_HDF5_PLUGIN_DIR");
    if (!plugdir)
        plugdir = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins";
    char lib[4096];
    snprintf(lib, sizeof lib, "%s/libh5lz4.so", plugdir);
    struct stat sb;
    ck_assert_msg(stat(lib, &sb) == 0, "%s missing: install hdf5-filter-plugin", lib);
    char *p = tpath("d.h5"), *out = tpath("box.txt");
    write_cache(p, CACHE_LOGITS_F32, 0, 0, 1, 0);
    int rc = kdc_test_system("HDF5_PLUGIN_PATH='%s' h5dump -y -w 0 -d /views/box -o '%s' '%s' "
                             ">/dev/null 2>&1",
                             plugdir, out, p);
    ck_assert_int_eq(rc, 0);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    rows *r = malloc(sizeof *r);
    make_rows(r);
    int n = 0, ch;
    long v;
    while (n < N * V * 4) {
        while ((ch = fgetc(f)) != EOF && ch != '-' && (ch < '0' || ch > '9'))
            ;
        if (ch == EOF)
            break;
        ungetc(ch, f);
        ck_assert_int_eq(fscanf(f, "%ld", &v), 1);
        ck_assert_int_eq(v, n / (V * 4) == 6 ? 0 : r->box[n]);
        n++;
    }
    ck_assert_int_eq(n, N * V * 4);
    fclose(f);
    /* The fixed-length paths and string attributes print as text. */
    ck_assert_int_eq(kdc_test_system("HDF5_PLUGIN_PATH='%s' h5dump -d /images/path '%s' 2>&1 | "
                                     "grep -q '\"c1/img_05.jpg\"'",
                                     plugdir, p),
                     0);
    ck_assert_int_eq(kdc_test_system("h5dump -a /teacher_arch '%s' 2>&1 | grep -q '\"resnet18\"'",
                                     p),
                     0);
    free(r);
}
END_TEST

/* A cache written by h5py + hdf5plugin (another writer) opens and reads. */
START_TEST(test_reads_h5py_written_cache)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/cache/full_h5py.h5", kdc_test_fixture_root());
    kdc_error e;
    cache_reader *rd;
    ck_assert_msg(cache_reader_open(p, 0, &rd, &e) == KDC_OK, "%s", e.msg);
    const cache_header *h = cache_reader_header(rd);
    int64_t n = h->num_images, v = h->views_per_image, c = h->num_classes, d = h->feature_dim;
    float *lg = kdc_test_load_f32("cache", "full_logits", (size_t)(n * v * c), NULL);
    float *ft = kdc_test_load_f32("cache", "full_features", (size_t)(n * v * d), NULL);
    int64_t *bx = kdc_test_load_i64("cache", "full_box", (size_t)(n * v * 4), NULL);
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, h, (int)v, &e), KDC_OK);
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(cache_reader_read_image(rd, i, &b, &e), KDC_OK);
        ck_assert(memcmp(b.logits, lg + i * v * c, (size_t)(v * c) * 4) == 0);
        ck_assert(memcmp(b.features, ft + i * v * d, (size_t)(v * d) * 4) == 0);
        for (int j = 0; j < v * 4; j++)
            ck_assert_int_eq(b.box[j], bx[i * v * 4 + j]);
    }
    cache_batch_free(&b);
    cache_reader_close(rd);
    free(lg), free(ft), free(bx);
}
END_TEST

static void assert_same_chunks(const char *a, const char *b)
{
    kdc_error e;
    cache_reader *ra, *rb;
    ck_assert_msg(cache_reader_open(a, 0, &ra, &e) == KDC_OK, "%s", e.msg);
    ck_assert_msg(cache_reader_open(b, 0, &rb, &e) == KDC_OK, "%s", e.msg);
    const cache_header *h = cache_reader_header(ra);
    cache_header hb = *cache_reader_header(rb);
    hb.version = h->version; /* a v1 file and its v2 upgrade hold the same chunks */
    ck_assert_ptr_null(cache_header_diff(h, &hb, 0));
    cache_chunk ca, cb;
    ck_assert_int_eq(cache_chunk_alloc(&ca, h, &e), KDC_OK);
    ck_assert_int_eq(cache_chunk_alloc(&cb, h, &e), KDC_OK);
    size_t rows = (size_t)CH * V;
    for (int64_t k = 0; k < cache_reader_num_chunks(ra); k++) {
        ck_assert_int_eq(cache_reader_read_chunk(ra, k, &ca, &e), KDC_OK);
        ck_assert_int_eq(cache_reader_read_chunk(rb, k, &cb, &e), KDC_OK);
        size_t n = (size_t)ca.count;
        ck_assert(memcmp(ca.box, cb.box, n * V * 16) == 0);
        ck_assert(memcmp(ca.flip, cb.flip, n * V) == 0);
        ck_assert(memcmp(ca.height, cb.height, n * 4) == 0);
        ck_assert(memcmp(ca.skipped, cb.skipped, n) == 0);
        ck_assert(memcmp(ca.features, cb.features, n * V * D * 2) == 0);
        if (ca.logits)
            ck_assert(memcmp(ca.logits, cb.logits, n * V * C * 2) == 0);
        (void)rows;
    }
    cache_chunk_free(&ca);
    cache_chunk_free(&cb);
    cache_reader_close(ra);
    cache_reader_close(rb);
}

/* A writer killed with SIGKILL mid-way resumes to the same values as an
 * uninterrupted write. */
START_TEST(test_kill9_resume)
{
    char *ref = tpath("ref.h5"), *out = tpath("killed.h5");
    write_cache(ref, CACHE_LOGITS_F16, 0, 0, 1, 0);
    for (int kill_after = 1; kill_after <= 4; kill_after += 3) {
        int fd[2];
        ck_assert_int_eq(pipe(fd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fd[0]);
            cache_header h;
            cache_image_table t;
            static rows r;
            make_header(&h, CACHE_LOGITS_F16, 0);
            make_table(&t);
            make_rows(&r);
            cache_writer *w;
            if (cache_writer_create(out, &h, &t, NULL, &w, NULL) != KDC_OK)
                _exit(3);
            for (int64_t c = 0;; c = (c + 1) % cache_writer_num_chunks(w)) {
                int64_t f, n;
                cache_writer_chunk_images(w, c, &f, &n);
                cache_chunk_input in = input_for(&r, f, n);
                /* After the first pass, keep rewriting the last chunk so the
                 * parent's kill lands inside a write. */
                if (c < cache_writer_num_chunks(w) && !cache_writer_chunk_done(w, c)) {
                    if (cache_writer_write_chunk(w, c, &in, NULL) != KDC_OK)
                        _exit(4);
                    if (write(fd[1], "x", 1) != 1)
                        _exit(5);
                }
                if (c == 3)
                    for (;;)
                        pause();
            }
        }
        close(fd[1]);
        char buf;
        for (int i = 0; i < kill_after; i++)
            ck_assert_int_eq(read(fd[0], &buf, 1), 1);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close(fd[0]);
        ck_assert(WIFSIGNALED(status));

        cache_header h;
        cache_image_table t;
        rows *r = malloc(sizeof *r);
        make_header(&h, CACHE_LOGITS_F16, 0);
        make_table(&t);
        make_rows(r);
        kdc_error e;
        /* A different setting is refused, naming the attribute. */
        cache_header h2 = h;
        h2.seed = 100;
        cache_writer *w;
        ck_assert_int_eq(cache_writer_resume(out, &h2, &t, NULL, &w, &e), KDC_EMISMATCH);
        ck_assert_msg(strstr(e.msg, "seed") != NULL, "%s", e.msg);
        ck_assert_msg(cache_writer_resume(out, &h, &t, NULL, &w, &e) == KDC_OK, "%s", e.msg);
        int done = 0;
        for (int64_t c = 0; c < cache_writer_num_chunks(w); c++)
            done += cache_writer_chunk_done(w, c);
        ck_assert_int_ge(done, kill_after);
        ck_assert_int_lt(done, cache_writer_num_chunks(w));
        for (int64_t c = 0; c < cache_writer_num_chunks(w); c++) {
            if (cache_writer_chunk_done(w, c))
                continue;
            int64_t f, n;
            cache_writer_chunk_images(w, c, &f, &n);
            cache_chunk_input in = input_for(r, f, n);
            ck_assert_msg(cache_writer_write_chunk(w, c, &in, &e) == KDC_OK, "%s", e.msg);
        }
        ck_assert_msg(cache_writer_finish(w, &e) == KDC_OK, "%s", e.msg);
        assert_same_chunks(ref, out);
        cache_image_table_free(&t);
        free(r);
    }
}
END_TEST

/* Copies the reference file and edits it with HDF5 directly. */
static char *edited_copy(const char *src, const char *name)
{
    char *dst = tpath(name);
    ck_assert_int_eq(kdc_test_system("cp '%s' '%s'", src, dst), 0);
    return dst;
}

static void set_int_attr(const char *path, const char *name, int64_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
    H5Fclose(f);
}

/* Rewrites /images/path (v2: fixed width, so the dataset is made anew). */
static void set_path(const char *path, int64_t i, const char *value)
{
    cache_image_table t;
    make_table(&t);
    free(t.path[i]);
    t.path[i] = strdup(value);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(H5Ldelete(f, CACHE_DS_PATH, H5P_DEFAULT), 0);
    kdc_error e;
    ck_assert_int_eq(cache_h5_write_paths(f, t.path, N, N, 0, &e), KDC_OK);
    H5Fclose(f);
    cache_image_table_free(&t);
}

/* Replaces a string attribute: fixed length (as v2 writes) or variable. */
static void set_str_attr(const char *path, const char *name, const char *value, int vlen)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    H5Adelete(f, name);
    hid_t t = vlen ? cache_h5_vlen_str() : cache_h5_fixed_str(strlen(value));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(vlen ? H5Awrite(a, t, &value) : H5Awrite(a, t, value), 0);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
}

static void expect_open_error(const char *path, kdc_status code, const char *needle)
{
    kdc_error e;
    kdc_error_clear(&e);
    cache_reader *rd = NULL;
    ck_assert_int_eq(cache_reader_open(path, 0, &rd, &e), code);
    ck_assert_ptr_null(rd);
    ck_assert_msg(strstr(e.msg, needle) != NULL, "error '%s' lacks '%s'", e.msg, needle);
    ck_assert_ptr_null(strchr(e.msg, '\n'));
}

START_TEST(test_rejects_bad_files)
{
    kdc_error e;
    cache_h5_init(&e);
    char *ref = tpath("good.h5");
    write_cache(ref, CACHE_LOGITS_F16, 0, 0, 1, 0);
    char *p = edited_copy(ref, "v3.h5");
    set_int_attr(p, "kdcache_version", 3);
    expect_open_error(p, KDC_EUNSUPPORTED, "kdcache_version 3");
    /* v2 refuses variable-length strings before libhdf5 reads them. */
    p = edited_copy(ref, "vlen.h5");
    set_str_attr(p, "teacher_arch", "resnet18", 1);
    expect_open_error(p, KDC_EFORMAT, "variable-length");
    p = edited_copy(ref, "fp.h5");
    set_str_attr(p, "dataset_fingerprint", "0123", 0);
    expect_open_error(p, KDC_EFORMAT, "dataset_fingerprint");
    p = edited_copy(ref, "abs.h5");
    set_path(p, 4, "/etc/passwd");
    expect_open_error(p, KDC_EFORMAT, "absolute");
    p = edited_copy(ref, "dotdot.h5");
    set_path(p, 2, "c2/../../secret.jpg");
    expect_open_error(p, KDC_EFORMAT, "'..'");
    p = edited_copy(ref, "shape.h5");
    set_int_attr(p, "num_classes", C + 1);
    expect_open_error(p, KDC_EFORMAT, "/logits: dimension 2");
    p = edited_copy(ref, "absurd.h5");
    set_int_attr(p, "num_images", (int64_t)1 << 40);
    expect_open_error(p, KDC_EFORMAT, "num_images");
    p = edited_copy(ref, "big.h5");
    set_int_attr(p, "num_images", 100000000);
    set_int_attr(p, "chunk_images", 4);
    expect_open_error(p, KDC_EFORMAT, "impossible");
    p = edited_copy(ref, "views.h5");
    set_int_attr(p, "views_per_image", 1000000);
    expect_open_error(p, KDC_EFORMAT, "views_per_image");
    p = edited_copy(ref, "incomplete.h5");
    set_int_attr(p, "complete", 0);
    expect_open_error(p, KDC_EFORMAT, "incomplete");
    p = edited_copy(ref, "trunc.h5");
    ck_assert_int_eq(truncate(p, 3000), 0);
    expect_open_error(p, KDC_EFORMAT, "");
    p = tpath("text.h5");
    ck_assert_int_eq(kdc_test_system("echo hello > '%s'", p), 0);
    expect_open_error(p, KDC_EFORMAT, "not an HDF5 file");
    expect_open_error(tpath("missing.h5"), KDC_EIO, "no such file");
}
END_TEST

/* Flips one byte inside a stored /logits chunk: fletcher32 catches it. */
START_TEST(test_flipped_byte_detected)
{
    kdc_error e;
    cache_h5_init(&e);
    char *ref = tpath("good.h5");
    write_cache(ref, CACHE_LOGITS_F32, 0, 0, 1, 0);
    char *p = edited_copy(ref, "flip.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, CACHE_DS_LOGITS, H5P_DEFAULT);
    hsize_t off[3] = {2 * CH, 0, 0}, size;
    haddr_t addr;
    unsigned mask;
    ck_assert_int_ge(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size), 0);
    H5Dclose(d);
    H5Fclose(f);
    FILE *fp = fopen(p, "r+b");
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    cache_verify_report rep;
    ck_assert_int_eq(cache_verify(ref, NULL, &rep, &e), KDC_OK);
    ck_assert_int_eq(cache_verify(p, NULL, &rep, &e), KDC_EFORMAT);
    ck_assert_msg(strstr(e.msg, "checksum mismatch in /logits chunk 2 (images 8-11): the file is "
                                "corrupt") != NULL,
                  "%s", e.msg);
    /* The CLI says the same in one line (no HDF5-DIAG) and exits 1; so does
     * the streaming reader kd-train uses. */
    char *errf = tpath("verify.err");
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' verify '%s' 2>'%s'", kdc_test_bin_dir(), p,
                                     errf),
                     1);
    char *se = read_text(errf);
    ck_assert_msg(strstr(se, "checksum mismatch in /logits chunk 2 (images 8-11)") &&
                      strchr(se, '\n') == se + strlen(se) - 1,
                  "%s", se);
    free(se);
    cache_stream_options o = {.batch_size = 4, .shuffle = 0, .all_views = 1};
    cache_stream *cs;
    ck_assert_int_eq(cache_stream_open(p, &o, &cs, &e), KDC_OK);
    ck_assert_int_eq(cache_stream_start_epoch(cs, 0, &e), KDC_OK);
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, cache_stream_header(cs), 4, &e), KDC_OK);
    kdc_status st;
    while ((st = cache_stream_next(cs, &b, &e)) == KDC_OK && b.count)
        ;
    ck_assert_int_eq(st, KDC_EFORMAT);
    ck_assert_msg(strstr(e.msg, "checksum mismatch in /logits chunk 2") != NULL, "%s", e.msg);
    cache_batch_free(&b);
    cache_stream_close(cs);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' verify '%s' >/dev/null", kdc_test_bin_dir(), ref),
                     0);
}
END_TEST

START_TEST(test_merge_shards)
{
    char *whole = tpath("whole.h5"), *s0 = tpath("s0.h5"), *s1 = tpath("s1.h5");
    char *s2 = tpath("s2.h5"), *m = tpath("merged.h5");
    write_cache(whole, CACHE_LOGITS_F16, 0, 0, 1, 0);
    write_cache(s0, CACHE_LOGITS_F16, 0, 0, 3, 0);
    write_cache(s1, CACHE_LOGITS_F16, 0, 1, 3, 1);
    write_cache(s2, CACHE_LOGITS_F16, 0, 2, 3, 0);
    kdc_error e;
    cache_reader *rd;
    /* A shard alone is not a trainable cache. */
    ck_assert_int_eq(cache_reader_open(s1, 0, &rd, &e), KDC_EUNSUPPORTED);
    const char *in[] = {s2, s0, s1};
    ck_assert_msg(cache_merge(m, in, 3, &e) == KDC_OK, "%s", e.msg);
    assert_same_chunks(whole, m);
    /* Refusals: a missing shard, the same shard twice, another teacher. */
    const char *missing[] = {s0, s1};
    ck_assert_int_ne(cache_merge(tpath("x.h5"), missing, 2, &e), KDC_OK);
    const char *twice[] = {s0, s1, s1};
    ck_assert_int_ne(cache_merge(tpath("x.h5"), twice, 3, &e), KDC_OK);
    ck_assert_msg(strstr(e.msg, "both shard 1") != NULL, "%s", e.msg);
    char *other = edited_copy(s2, "other.h5");
    set_str_attr(other, "teacher_arch", "resnet50", 0);
    const char *mixed[] = {s0, s1, other};
    ck_assert_int_eq(cache_merge(tpath("x.h5"), mixed, 3, &e), KDC_EMISMATCH);
    ck_assert_msg(strstr(e.msg, "teacher_arch") != NULL, "%s", e.msg);
    struct stat sb;
    ck_assert_int_ne(stat(tpath("x.h5"), &sb), 0);
    ck_assert_int_ne(stat(tpath("x.h5.partial"), &sb), 0);
    /* The CLI. */
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' merge '%s' '%s' '%s' '%s' >/dev/null",
                                     kdc_test_bin_dir(), tpath("cli.h5"), s0, s1, s2),
                     0);
    ck_assert_int_ne(kdc_test_system("'%s/kd-cache' merge '%s' '%s' '%s' 2>/dev/null",
                                     kdc_test_bin_dir(), tpath("cli2.h5"), s0, s1),
                     0);
}
END_TEST

/* verify --data is tests/formats/test_cache_match.c (formats/cache_match.h: the
 * check kd-train runs, on real JPEG folders); here the CRC-32 it reads with. */
START_TEST(test_verify_data_dir)
{
    kdc_error e;
    /* zlib's CRC-32 of a known string, against the published check value. */
    char *chk = tpath("chk");
    FILE *f = fopen(chk, "wb");
    fputs("123456789", f);
    fclose(f);
    uint64_t sz;
    uint32_t crc;
    ck_assert_int_eq(cache_file_crc32(chk, &sz, &crc, &e), KDC_OK);
    ck_assert_uint_eq(crc, 0xcbf43926u);
    ck_assert_uint_eq(sz, 9);
}
END_TEST

/* Collects one epoch's (image, view) pairs. */
static int64_t run_epoch(cache_stream *s, int64_t epoch, int64_t *images, int32_t *views)
{
    kdc_error e;
    ck_assert_int_eq(cache_stream_start_epoch(s, epoch, &e), KDC_OK);
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, cache_stream_header(s), 5, &e), KDC_OK);
    int64_t n = 0;
    for (;;) {
        ck_assert_msg(cache_stream_next(s, &b, &e) == KDC_OK, "%s", e.msg);
        if (b.count == 0)
            break;
        for (int i = 0; i < b.count; i++) {
            images[n] = b.image[i];
            views[n] = b.view[i];
            /* The sample's values are those of its (image, view). */
            ck_assert_float_eq(b.logits[i * C + 3],
                               kdc_f16_to_f32(kdc_f32_to_f16(logit_of((int)b.image[i], b.view[i], 3))));
            ck_assert_int_eq(b.box[i * 4 + 0], b.view[i] - 2);
            n++;
        }
    }
    cache_batch_free(&b);
    return n;
}

START_TEST(test_stream_epochs)
{
    char *p = tpath("s.h5");
    write_cache(p, CACHE_LOGITS_F16, 0, 0, 1, 0);
    kdc_error e;
    cache_stream_options o = {.batch_size = 5, .buffer_chunks = 2, .shuffle = 1, .seed = 1};
    cache_stream *s1, *s2;
    ck_assert_int_eq(cache_stream_open(p, &o, &s1, &e), KDC_OK);
    o.seed = 2;
    ck_assert_int_eq(cache_stream_open(p, &o, &s2, &e), KDC_OK);
    ck_assert_int_eq(cache_stream_epoch_samples(s1), N - 1);
    int64_t a[N * V], b2[N * V], c[N * V];
    int32_t va[N * V], vb[N * V], vc[N * V];
    int viewcount[N][V];
    memset(viewcount, 0, sizeof viewcount);
    for (int ep = 0; ep < V; ep++) {
        ck_assert_int_eq(run_epoch(s1, ep, a, va), N - 1);
        int seen[N] = {0};
        for (int i = 0; i < N - 1; i++) {
            seen[a[i]]++;
            viewcount[a[i]][va[i]]++;
        }
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(seen[i], i == 6 ? 0 : 1); /* skipped image never served */
    }
    /* Over V epochs each image used each view once. */
    for (int i = 0; i < N; i++)
        for (int v = 0; v < V; v++)
            ck_assert_int_eq(viewcount[i][v], i == 6 ? 0 : 1);
    /* Same seed and epoch: same order; another seed or epoch: another one. */
    run_epoch(s1, 0, a, va);
    run_epoch(s1, 0, c, vc);
    ck_assert(memcmp(a, c, sizeof(int64_t) * (N - 1)) == 0);
    run_epoch(s2, 0, b2, vb);
    ck_assert(memcmp(a, b2, sizeof(int64_t) * (N - 1)) != 0);
    run_epoch(s1, 1, c, vc);
    ck_assert(memcmp(a, c, sizeof(int64_t) * (N - 1)) != 0);
    cache_stream_close(s1);
    cache_stream_close(s2);
    /* all_views: every (image, view) exactly once; no shuffle: file order. */
    o.all_views = 1;
    o.shuffle = 0;
    ck_assert_int_eq(cache_stream_open(p, &o, &s1, &e), KDC_OK);
    ck_assert_int_eq(run_epoch(s1, 0, a, va), (N - 1) * V);
    for (int i = 0; i < (N - 1) * V; i++) {
        int64_t img = i / V >= 6 ? i / V + 1 : i / V;
        ck_assert_int_eq(a[i], img);
        ck_assert_int_eq(va[i], i % V);
    }
    /* A restart mid-epoch is clean. */
    ck_assert_int_eq(cache_stream_start_epoch(s1, 0, &e), KDC_OK);
    ck_assert_int_eq(cache_stream_start_epoch(s1, 1, &e), KDC_OK);
    cache_stream_close(s1);
}
END_TEST

START_TEST(test_cli_info_export)
{
    char *p = tpath("i.h5"), *out = tpath("npy");
    write_cache(p, CACHE_LOGITS_TOPK, 4, 0, 1, 0);
    const char *bin = kdc_test_bin_dir();
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' info '%s' | grep -q 'topk:4'", bin, p), 0);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' info --help | grep -q usage", bin), 0);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' export '%s' --format npy --out '%s' >/dev/null",
                                     bin, p, out),
                     0);
    int rc = kdc_test_system(
        "%s -c \"import numpy as np,json,sys; d=sys.argv[1]; "
        "i=np.load(d+'/topk_index.npy'); v=np.load(d+'/topk_value.npy'); "
        "b=np.load(d+'/box.npy'); a=json.load(open(d+'/attributes.json')); "
        "assert i.shape==(%d,%d,4) and i.dtype==np.uint16 and v.dtype==np.float16, (i.shape,i.dtype); "
        "assert b.shape==(%d,%d,4) and b[7,1,3]==%d; assert a['topk']==4; "
        "assert (np.diff(v[0].astype(np.float32),axis=1)<=0).all(); "
        "assert open(d+'/paths.txt').read().split()[5]=='c1/img_05.jpg'\" '%s'",
        python(), N, V, N, V, 20 + 7 % 5, out);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_ne(kdc_test_system("'%s/kd-cache' export '%s' --format csv --out '%s' 2>/dev/null",
                                     bin, p, out),
                     0);
    ck_assert_int_ne(kdc_test_system("'%s/kd-cache' info '%s/nope.h5' 2>/dev/null", bin, tmp), 0);
}
END_TEST


/* ---- format v2 and v1 ---- */


static const char *v1_seed(const char *name)
{
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 4096, "%s/tests/fuzz/seeds_v1/%s", kdc_test_repo_root(), name);
    return p;
}

/* Caches written by the v1 writer (main at dc8ba58, tests/fuzz/make_seeds_v1.c)
 * read with the same values as v2 ones, and upgrade to v2 bit for bit. */
START_TEST(test_v1_files_read_and_upgrade)
{
    struct {
        const char *file;
        cache_logit_storage m;
        int64_t k;
    } v1[] = {{"v1_float16_feat.h5", CACHE_LOGITS_F16, 0},
              {"v1_float32_feat.h5", CACHE_LOGITS_F32, 0},
              {"v1_topk_feat.h5", CACHE_LOGITS_TOPK, 4}};
    kdc_error e;
    for (size_t i = 0; i < sizeof v1 / sizeof *v1; i++) {
        const char *in = v1_seed(v1[i].file);
        check_values(in, v1[i].m, v1[i].k);
        cache_reader *r1;
        ck_assert_int_eq(cache_reader_open(in, 0, &r1, &e), KDC_OK);
        ck_assert_int_eq(cache_reader_header(r1)->version, 1);
        char fp1[CACHE_STR_MAX];
        snprintf(fp1, sizeof fp1, "%s", cache_reader_header(r1)->dataset_fingerprint);
        cache_reader_close(r1);
        char name[64];
        snprintf(name, sizeof name, "up%zu.h5", i);
        char *out = tpath(name);
        ck_assert_msg(cache_upgrade(in, out, &e) == KDC_OK, "%s", e.msg);
        check_values(out, v1[i].m, v1[i].k);
        assert_same_chunks(in, out);
        cache_reader *r2;
        ck_assert_int_eq(cache_reader_open(out, 0, &r2, &e), KDC_OK);
        ck_assert_int_eq(cache_reader_header(r2)->version, 2);
        ck_assert_str_eq(cache_reader_header(r2)->dataset_fingerprint, fp1);
        cache_reader_close(r2);
        /* An existing OUT is refused and left alone; a v2 input is refused. */
        ck_assert_int_eq(cache_upgrade(in, out, &e), KDC_EINVAL);
        ck_assert_msg(strstr(e.msg, "exists") != NULL, "%s", e.msg);
        ck_assert_int_eq(cache_upgrade(out, tpath("again.h5"), &e), KDC_EINVAL);
        ck_assert_msg(strstr(e.msg, "already format v2") != NULL, "%s", e.msg);
    }
    /* A corrupt v1 chunk: the upgrade fails and leaves nothing. */
    char *bad = edited_copy(v1_seed("v1_float32_feat.h5"), "bad_v1.h5");
    hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, CACHE_DS_LOGITS, H5P_DEFAULT);
    hsize_t off[3] = {3 * CH, 0, 0}, size;
    haddr_t addr;
    unsigned mask;
    ck_assert_int_ge(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size), 0);
    H5Dclose(d), H5Fclose(f);
    FILE *fp = fopen(bad, "r+b");
    fseek(fp, (long)(addr + size / 3), SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)(addr + size / 3), SEEK_SET);
    fputc(c ^ 0x40, fp);
    fclose(fp);
    char *out = tpath("up_bad.h5");
    ck_assert_int_eq(cache_upgrade(bad, out, &e), KDC_EFORMAT);
    ck_assert_msg(strstr(e.msg, "checksum mismatch in /logits chunk 3 (images 12-15)") != NULL,
                  "%s", e.msg);
    struct stat sb;
    ck_assert_int_ne(stat(out, &sb), 0);
    ck_assert_int_ne(stat(tpath("up_bad.h5.partial"), &sb), 0);
    /* The CLI. */
    const char *bin = kdc_test_bin_dir();
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' upgrade '%s' '%s' >/dev/null", bin,
                                     v1_seed("v1_topk.h5"), tpath("cli_up.h5")),
                     0);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' verify '%s' >/dev/null", bin,
                                     tpath("cli_up.h5")),
                     0);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' upgrade '%s' 2>/dev/null", bin,
                                     v1_seed("v1_topk.h5")),
                     2);
    ck_assert_int_eq(kdc_test_system("'%s/kd-cache' upgrade '%s' '%s' 2>/dev/null", bin,
                                     v1_seed("v1_topk.h5"), tpath("cli_up.h5")),
                     1);
}
END_TEST

static int vlen_found;

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info, (void)data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
    if (H5Tis_variable_str(t) > 0 || H5Tdetect_class(t, H5T_VLEN) > 0)
        vlen_found++;
    H5Tclose(t), H5Aclose(a);
    return 0;
}

static herr_t obj_cb(hid_t root, const char *name, const H5O_info_t *info, void *data)
{
    (void)data;
    hid_t o = H5Oopen(root, name, H5P_DEFAULT);
    hsize_t idx = 0;
    H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, attr_cb, NULL);
    if (info->type == H5O_TYPE_DATASET) {
        hid_t t = H5Dget_type(o);
        if (H5Tis_variable_str(t) > 0 || H5Tdetect_class(t, H5T_VLEN) > 0)
            vlen_found++;
        H5Tclose(t);
    }
    H5Oclose(o);
    return 0;
}

static void chunk_dims(const char *file, const char *ds, hsize_t out[3])
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT), p = H5Dget_create_plist(d);
    out[0] = out[1] = out[2] = 0;
    H5Pget_chunk(p, 3, out);
    H5Pclose(p), H5Dclose(d), H5Fclose(f);
}

/* v2: no variable-length type anywhere, one view per HDF5 chunk of the
 * per-view outputs, fixed-width paths, and the same bytes for the same input. */
START_TEST(test_v2_layout)
{
    kdc_error e;
    cache_h5_init(&e);
    for (int mode = 0; mode < 2; mode++) {
        char *p = tpath(mode ? "lk.h5" : "lf.h5");
        write_cache(p, mode ? CACHE_LOGITS_TOPK : CACHE_LOGITS_F16, mode ? 4 : 0, 0, 1, 0);
        vlen_found = 0;
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, obj_cb, NULL, H5O_INFO_BASIC);
        hid_t d = H5Dopen2(f, CACHE_DS_PATH, H5P_DEFAULT), t = H5Dget_type(d);
        ck_assert_uint_eq(H5Tget_size(t), strlen("c0/img_00.jpg"));
        H5Tclose(t), H5Dclose(d), H5Fclose(f);
        ck_assert_int_eq(vlen_found, 0);
        hsize_t cd[3];
        chunk_dims(p, mode ? CACHE_DS_TOPK_VALUE : CACHE_DS_LOGITS, cd);
        ck_assert_uint_eq(cd[0], CH);
        ck_assert_uint_eq(cd[1], 1);
        ck_assert_uint_eq(cd[2], mode ? 4 : C);
        chunk_dims(p, CACHE_DS_FEATURES, cd);
        ck_assert_uint_eq(cd[0], CH);
        ck_assert_uint_eq(cd[1], 1);
        ck_assert_uint_eq(cd[2], D);
        chunk_dims(p, CACHE_DS_BOX, cd);
        ck_assert_uint_eq(cd[0], CH);
        ck_assert_uint_eq(cd[1], V);
        chunk_dims(p, CACHE_DS_CRC32, cd);
        ck_assert_uint_eq(cd[0], CH);
    }
    /* Deterministic: a second write a second later is byte-identical. */
    char *a = tpath("det_a.h5"), *b = tpath("det_b.h5");
    write_cache(a, CACHE_LOGITS_F32, 0, 0, 1, 0);
    sleep(1);
    write_cache(b, CACHE_LOGITS_F32, 0, 0, 1, 1);
    ck_assert_int_eq(kdc_test_system("cmp -s '%s' '%s'", a, b), 0);
    /* The v2 default chunk rule: one view of the largest dataset ~256 KiB. */
    cache_header h;
    make_header(&h, CACHE_LOGITS_F16, 0);
    h.num_images = 1281167, h.views_per_image = 10, h.num_classes = 1000, h.feature_dim = 0;
    ck_assert_int_eq(cache_default_chunk_images(&h), 131);
    h.feature_dim = 2048;
    ck_assert_int_eq(cache_default_chunk_images(&h), 64);
}
END_TEST

/* One view of one chunk equals that view's rows of the whole chunk, in v2 and
 * in a v1 file; chunk_to_batch labels the rows with that view. */
START_TEST(test_read_view)
{
    char *p = tpath("view.h5");
    write_cache(p, CACHE_LOGITS_F16, 0, 0, 1, 0);
    const char *files[] = {p, v1_seed("v1_topk_feat.h5")};
    kdc_error e;
    for (int fi = 0; fi < 2; fi++) {
        cache_reader *r;
        ck_assert_int_eq(cache_reader_open(files[fi], 0, &r, &e), KDC_OK);
        const cache_header *h = cache_reader_header(r);
        cache_chunk all, one;
        ck_assert_int_eq(cache_chunk_alloc(&all, h, &e), KDC_OK);
        ck_assert_int_eq(cache_chunk_alloc(&one, h, &e), KDC_OK);
        cache_batch b;
        ck_assert_int_eq(cache_batch_alloc(&b, h, CH, &e), KDC_OK);
        size_t C2 = h->logit_storage == CACHE_LOGITS_TOPK ? 4 : C;
        size_t es = 2, is = h->logit_storage == CACHE_LOGITS_TOPK ? 2 : 0;
        for (int64_t k = 0; k < cache_reader_num_chunks(r); k++) {
            ck_assert_int_eq(cache_reader_read_chunk(r, k, &all, &e), KDC_OK);
            for (int64_t v = 0; v < V; v++) {
                ck_assert_msg(cache_reader_read_view(r, k, v, &one, &e) == KDC_OK, "%s", e.msg);
                ck_assert_int_eq(one.view, v);
                ck_assert_int_eq(one.count, all.count);
                for (int64_t i = 0; i < one.count; i++) {
                    size_t ra = (size_t)(i * V + v), ro = (size_t)i;
                    ck_assert(!memcmp(one.box + 4 * ro, all.box + 4 * ra, 16));
                    ck_assert_int_eq(one.flip[ro], all.flip[ra]);
                    ck_assert(!memcmp(one.features + D * ro, all.features + D * ra, D * 2));
                    if (is)
                        ck_assert(!memcmp((char *)one.topk_index + C2 * is * ro,
                                          (char *)all.topk_index + C2 * is * ra, C2 * is));
                    else
                        ck_assert(!memcmp((char *)one.logits + C2 * es * ro,
                                          (char *)all.logits + C2 * es * ra, C2 * es));
                    ck_assert_uint_eq(one.size[i], 1000 + (uint64_t)(one.first_image + i));
                }
                cache_chunk_to_batch(h, &one, cache_reader_images(r)->label, &b);
                ck_assert_int_eq(b.count, one.count);
                ck_assert_int_eq(b.view[b.count - 1], v);
                ck_assert_int_eq(b.image[0], k * CH);
            }
        }
        ck_assert_int_eq(cache_reader_read_view(r, 0, V, &one, &e), KDC_EINVAL);
        cache_batch_free(&b);
        cache_chunk_free(&all);
        cache_chunk_free(&one);
        cache_reader_close(r);
    }
}
END_TEST

/* Sizes and CRCs given with each chunk (one read per image in kd-precompute)
 * end up in the table and the fingerprint, which exists only once complete. */
START_TEST(test_files_with_chunks)
{
    cache_header h;
    cache_image_table t, ref;
    rows *r = malloc(sizeof *r);
    make_header(&h, CACHE_LOGITS_F16, 0);
    make_table(&t);
    make_table(&ref);
    make_rows(r);
    memset(t.size, 0, N * sizeof *t.size);
    memset(t.crc32, 0, N * sizeof *t.crc32);
    kdc_error e;
    cache_writer *w;
    char *p = tpath("files.h5");
    ck_assert_int_eq(cache_writer_create(p, &h, &t, NULL, &w, &e), KDC_OK);
    for (int64_t c = 0; c < cache_writer_num_chunks(w); c++) {
        int64_t f, n;
        cache_writer_chunk_images(w, c, &f, &n);
        cache_chunk_input in = input_for(r, f, n);
        in.size = ref.size + f;
        in.crc32 = ref.crc32 + f;
        ck_assert_int_eq(cache_writer_write_chunk(w, c, &in, &e), KDC_OK);
        if (c == 1) { /* a reader of the partial file: no fingerprint yet */
            char partial[4096];
            snprintf(partial, sizeof partial, "%s.partial", p);
            cache_reader *rd;
            ck_assert_msg(cache_reader_open(partial, CACHE_OPEN_ALLOW_INCOMPLETE, &rd, &e) ==
                              KDC_OK,
                          "%s", e.msg);
            ck_assert_str_eq(cache_reader_header(rd)->dataset_fingerprint, "");
            ck_assert_uint_eq(cache_reader_images(rd)->crc32[5], ref.crc32[5]);
            ck_assert_uint_eq(cache_reader_images(rd)->crc32[9], 0);
            cache_reader_close(rd);
        }
    }
    ck_assert_int_eq(cache_writer_finish(w, &e), KDC_OK);
    char fp[65];
    cache_fingerprint(&ref, fp);
    cache_reader *rd;
    ck_assert_int_eq(cache_reader_open(p, 0, &rd, &e), KDC_OK);
    ck_assert_str_eq(cache_reader_header(rd)->dataset_fingerprint, fp);
    ck_assert_uint_eq(cache_reader_images(rd)->size[22], 1022);
    cache_reader_close(rd);
    cache_image_table_free(&t);
    cache_image_table_free(&ref);
    free(r);
}
END_TEST

/* A write that hits a full disk (/dev/full: ENOSPC) or the file-size limit
 * (RLIMIT_FSIZE: EFBIG) fails with one line naming the cause; nothing of
 * HDF5's error stack is printed, and the process exits cleanly after it. */
START_TEST(test_disk_full)
{
    for (int variant = 0; variant < 2; variant++) {
        char *out = tpath(variant ? "fsize.h5" : "full.h5"), *errf = tpath("stderr.txt");
        char partial[4096];
        snprintf(partial, sizeof partial, "%s.partial", out);
        if (variant == 0)
            ck_assert_int_eq(symlink("/dev/full", partial), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            if (!freopen(errf, "w", stderr))
                _exit(9);
            if (variant == 1) {
                signal(SIGXFSZ, SIG_IGN);
                struct rlimit rl = {20000, 20000};
                setrlimit(RLIMIT_FSIZE, &rl);
            }
            cache_header h;
            cache_image_table t;
            static rows r;
            make_header(&h, CACHE_LOGITS_F32, 0);
            make_table(&t);
            make_rows(&r);
            kdc_error e;
            kdc_error_clear(&e);
            cache_writer *w = NULL;
            kdc_status st = cache_writer_create(out, &h, &t, NULL, &w, &e);
            for (int64_t c = 0; st == KDC_OK && c < cache_writer_num_chunks(w); c++) {
                int64_t f, n;
                cache_writer_chunk_images(w, c, &f, &n);
                cache_chunk_input in = input_for(&r, f, n);
                st = cache_writer_write_chunk(w, c, &in, &e);
            }
            if (st == KDC_OK)
                st = cache_writer_finish(w, &e);
            else if (w)
                cache_writer_abort(w);
            FILE *m = fopen(tpath("msg.txt"), "w");
            fprintf(m, "%s\n", e.msg);
            fclose(m);
            exit(st == KDC_OK ? 0 : 7); /* exit(): the atexit handlers run */
        }
        int status;
        waitpid(pid, &status, 0);
        ck_assert_msg(WIFEXITED(status), "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        ck_assert_int_eq(WEXITSTATUS(status), 7);
        char *msg = read_text(tpath("msg.txt"));
        const char *want = variant ? "file size limit reached writing" : "disk full writing";
        ck_assert_msg(strstr(msg, want) != NULL, "'%s' lacks '%s'", msg, want);
        ck_assert_msg(strstr(msg, ".partial") != NULL, "%s", msg);
        char *se = read_text(errf);
        ck_assert_msg(se[0] == '\0', "stderr: %s", se);
        free(msg), free(se);
        remove(partial);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_roundtrip_modes);
    tcase_add_test(tc, test_topk_vs_float64_reference);
    tcase_add_test(tc, test_h5py_reads_our_file);
    tcase_add_test(tc, test_h5dump_reads_our_file);
    tcase_add_test(tc, test_reads_h5py_written_cache);
    tcase_add_test(tc, test_kill9_resume);
    tcase_add_test(tc, test_rejects_bad_files);
    tcase_add_test(tc, test_flipped_byte_detected);
    tcase_add_test(tc, test_merge_shards);
    tcase_add_test(tc, test_verify_data_dir);
    tcase_add_test(tc, test_stream_epochs);
    tcase_add_test(tc, test_cli_info_export);
    tcase_add_test(tc, test_v1_files_read_and_upgrade);
    tcase_add_test(tc, test_v2_layout);
    tcase_add_test(tc, test_read_view);
    tcase_add_test(tc, test_files_with_chunks);
    tcase_add_test(tc, test_disk_full);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
