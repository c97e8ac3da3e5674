/* bundle_util.c - the helper program of the GPU bundle (scripts/gpu/) and its
 * minimal-root check (tests/bundle/check_bundle.sh): it makes their inputs and
 * compares their outputs with our own C code, so that nothing on the machine
 * under test needs Python packages.
 *
 *   bundle_util images ROOT NCLS PER_CLASS W H SEED [THREADS]
 *       ROOT/c<k>/img<iiiii>.jpg, smooth random pictures whose class k makes
 *       channel k % 3 brighter (so a model can learn something), quality 90;
 *       the same arguments give the same bytes. ROOT must not exist.
 *   bundle_util weights OUT.safetensors ARCH NUM_CLASSES SEED [random-bn]
 *       weights of a zoo model from SEED (tests/helpers' maker; random-bn: BN
 *       statistics and affine parameters drawn at random, a teacher whose BN
 *       folding matters).
 *   bundle_util cmp-cache A.h5 B.h5 TOL_LOGITS TOL_FEATURES
 *       header and image table must be equal; prints the relative error
 *       max|a - b| / max|b| of logits (or top-k values) and features and the
 *       top-1 agreement; exit 1 if a bound is exceeded or anything differs.
 *   bundle_util gpu-info
 *       kdc_cuda_libs_report (cuda_libs.h); with a GPU also creates cuda:0 and
 *       runs one small convolution so that cuDNN loads its sub-libraries,
 *       which the report's "loaded:" lines then list.
 *   bundle_util objects
 *       loads OpenBLAS and oneDNN as the tools do, then prints every shared
 *       object of the process ("object: PATH").
 *
 * Exit: 0 done, 1 failed (one line on stderr), 2 usage. */
#include <check.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "common/cuda/cuda_backend.h"
#include "common/cuda/cuda_libs.h"
#include "common/device/device.h"
#include "common/nn/dnnl_load.h"
#include "common/nn/gemm.h"
#include "common/nn/op_desc.h"
#include "formats/cache_reader.h"
#include "tests/helpers/make_inputs.h"

static int usage(void)
{
    fprintf(stderr, "usage: bundle_util images ROOT NCLS PER_CLASS W H SEED [THREADS]\n"
                    "       bundle_util weights OUT.safetensors ARCH NUM_CLASSES SEED "
                    "[random-bn]\n"
                    "       bundle_util cmp-cache A.h5 B.h5 TOL_LOGITS TOL_FEATURES\n"
                    "       bundle_util gpu-info | objects\n");
    return 2;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* ---- images ---- */

typedef struct {
    const char *root;
    int ncls, per_class, w, h;
    uint64_t seed;
    int next, failed; /* guarded by mu */
    pthread_mutex_t mu;
    char why[4608];
} img_job;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 0 on success, else errno-style failure with j->why filled. */
static int write_one(img_job *j, tjhandle tj, unsigned char *px, int idx)
{
    int cls = idx % j->ncls, i = idx / j->ncls;
    uint64_t s = j->seed * 1000003u + (uint64_t)idx;
    double ph = (double)(splitmix(&s) % 628) / 100.0;
    for (int y = 0; y < j->h; y++)
        for (int x = 0; x < j->w; x++)
            for (int c = 0; c < 3; c++) {
                double noise = (double)(splitmix(&s) >> 11) * (1.0 / 9007199254740992.0);
                double v = 50.0 * noise + 45.0 * sin(0.05 * (x + 7 * c) + 0.07 * y + ph) +
                           (c == cls % 3 ? 110.0 : 50.0) + 20.0;
                px[((size_t)y * (size_t)j->w + (size_t)x) * 3 + (size_t)c] =
                    (unsigned char)(v < 0     ? 0
                                    : v > 255 ? 255
                                              : v);
            }
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/c%03d/img%05d.jpg", j->root, cls, i);
    if (tjCompress2(tj, px, j->w, 0, j->h, TJPF_RGB, &jpg, &len, TJSAMP_420, 90, 0) != 0) {
        snprintf(j->why, sizeof j->why, "JPEG compression failed: %s", tjGetErrorStr2(tj));
        return -1;
    }
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(jpg, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    tjFree(jpg);
    if (!ok) {
        snprintf(j->why, sizeof j->why, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void *img_worker(void *arg)
{
    img_job *j = arg;
    tjhandle tj = tjInitCompress();
    unsigned char *px = malloc((size_t)j->w * (size_t)j->h * 3);
    if (!tj || !px) {
        pthread_mutex_lock(&j->mu);
        j->failed = 1;
        snprintf(j->why, sizeof j->why, "out of memory");
        pthread_mutex_unlock(&j->mu);
    }
    int total = j->ncls * j->per_class;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int idx = j->failed ? total : j->next++;
        pthread_mutex_unlock(&j->mu);
        if (idx >= total)
            break;
        if (write_one(j, tj, px, idx) != 0) {
            pthread_mutex_lock(&j->mu);
            j->failed = 1;
            pthread_mutex_unlock(&j->mu);
        }
    }
    free(px);
    if (tj)
        tjDestroy(tj);
    return NULL;
}

static int cmd_images(int argc, char **argv)
{
    long ncls, per, w, h, seed, threads = 4;
    if (argc < 8 || argc > 9 || !parse_int(argv[3], 1, 1000, &ncls) ||
        !parse_int(argv[4], 1, 100000, &per) || !parse_int(argv[5], 8, 8192, &w) ||
        !parse_int(argv[6], 8, 8192, &h) || !parse_int(argv[7], 0, 1L << 30, &seed) ||
        (argc == 9 && !parse_int(argv[8], 1, 256, &threads)))
        return usage();
    const char *root = argv[2];
    if (mkdir(root, 0755) != 0) {
        fprintf(stderr, "bundle_util: cannot create %s: %s\n", root, strerror(errno));
        return 1;
    }
    for (long c = 0; c < ncls; c++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/c%03ld", root, c);
        if (mkdir(dir, 0755) != 0) {
            fprintf(stderr, "bundle_util: cannot create %s: %s\n", dir, strerror(errno));
            return 1;
        }
    }
    img_job j = {.root = root,
                 .ncls = (int)ncls,
                 .per_class = (int)per,
                 .w = (int)w,
                 .h = (int)h,
                 .seed = (uint64_t)seed};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t tid[256];
    int started = 0;
    for (long t = 0; t < threads; t++)
        if (pthread_create(&tid[started], NULL, img_worker, &j) == 0)
            started++;
    if (!started)
        img_worker(&j);
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.failed) {
        fprintf(stderr, "bundle_util: %s\n", j.why);
        return 1;
    }
    return 0;
}

/* ---- weights: tests/helpers' maker, which reports through Check ---- */

static struct {
    const char *path, *arch;
    int ncls, random_bn;
    uint64_t seed;
} g_w;

START_TEST(make_weights)
{
    kdc_test_make_weights(g_w.path, g_w.arch, g_w.ncls, g_w.seed, 0, g_w.random_bn);
}
END_TEST

static int cmd_weights(int argc, char **argv)
{
    long ncls, seed;
    if (argc < 6 || argc > 7 || !parse_int(argv[4], 1, 1000000, &ncls) ||
        !parse_int(argv[5], 0, 1L << 30, &seed) || (argc == 7 && strcmp(argv[6], "random-bn")))
        return usage();
    g_w.path = argv[2];
    g_w.arch = argv[3];
    g_w.ncls = (int)ncls;
    g_w.seed = (uint64_t)seed;
    g_w.random_bn = argc == 7;
    Suite *s = suite_create("bundle_util");
    TCase *tc = tcase_create("weights");
    tcase_add_test(tc, make_weights);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* no Check timeout for resnet50's 100 MB */
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    if (failed) {
        TestResult **tr = srunner_failures(sr);
        fprintf(stderr, "bundle_util: weights: %s\n", tr_msg(tr[0]));
        free(tr);
    }
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* ---- cmp-cache ---- */

typedef struct {
    double num, den;
} rel_acc;

static void acc(rel_acc *a, const float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (d > a->num || isnan(d))
            a->num = d;
        if (fabs((double)y[i]) > a->den)
            a->den = fabs((double)y[i]);
    }
}

static double rel(const rel_acc *a)
{
    return a->den > 0 ? a->num / a->den : a->num > 0 ? INFINITY : 0.0;
}

static size_t argmax(const float *x, size_t n)
{
    size_t k = 0;
    for (size_t i = 1; i < n; i++)
        k = x[i] > x[k] ? i : k;
    return k;
}

static int cmd_cmp_cache(int argc, char **argv)
{
    if (argc != 6)
        return usage();
    char *e1 = NULL, *e2 = NULL;
    double tol_l = strtod(argv[4], &e1), tol_f = strtod(argv[5], &e2);
    if (!e1 || *e1 || !e2 || *e2 || !(tol_l >= 0) || !(tol_f >= 0))
        return usage();
    kdc_error err = {0};
    cache_reader *a = NULL, *b = NULL;
    if (cache_reader_open(argv[2], 0, &a, &err) != KDC_OK ||
        cache_reader_open(argv[3], 0, &b, &err) != KDC_OK) {
        fprintf(stderr, "bundle_util: %s\n", err.msg);
        cache_reader_close(a);
        return 1;
    }
    const cache_header *ha = cache_reader_header(a), *hb = cache_reader_header(b);
    const char *diff = cache_header_diff(ha, hb, 0);
    int bad = 0;
    if (diff) {
        printf("cmp-cache: headers differ in %s\n", diff);
        bad = 1;
    }
    const cache_image_table *ta = cache_reader_images(a), *tb = cache_reader_images(b);
    size_t N = (size_t)hb->num_images;
    if (!bad && (memcmp(ta->height, tb->height, N * sizeof *ta->height) ||
                 memcmp(ta->width, tb->width, N * sizeof *ta->width) ||
                 memcmp(ta->skipped, tb->skipped, N))) {
        printf("cmp-cache: image tables differ (sizes or skipped images)\n");
        bad = 1;
    }
    cache_batch ba = {0}, bb = {0};
    int V = (int)hb->views_per_image;
    if (!bad && (cache_batch_alloc(&ba, ha, V, &err) || cache_batch_alloc(&bb, hb, V, &err))) {
        fprintf(stderr, "bundle_util: %s\n", err.msg);
        bad = 1;
    }
    rel_acc rl = {0, 0}, rf = {0, 0};
    size_t rows = 0, same_top1 = 0, C = (size_t)hb->num_classes, K = (size_t)hb->topk,
           D = (size_t)hb->feature_dim;
    for (size_t i = 0; !bad && i < N; i++) {
        if (tb->skipped[i])
            continue;
        if (cache_reader_read_image(a, (int64_t)i, &ba, &err) ||
            cache_reader_read_image(b, (int64_t)i, &bb, &err)) {
            fprintf(stderr, "bundle_util: image %zu: %s\n", i, err.msg);
            bad = 1;
            break;
        }
        if (memcmp(ba.box, bb.box, (size_t)V * 4 * sizeof *ba.box) ||
            memcmp(ba.flip, bb.flip, (size_t)V)) {
            printf("cmp-cache: image %zu: view boxes or flips differ\n", i);
            bad = 1;
            break;
        }
        for (int v = 0; v < V; v++) {
            if (bb.logits) {
                acc(&rl, ba.logits + (size_t)v * C, bb.logits + (size_t)v * C, C);
                same_top1 +=
                    argmax(ba.logits + (size_t)v * C, C) == argmax(bb.logits + (size_t)v * C, C);
            } else {
                acc(&rl, ba.topk_value + (size_t)v * K, bb.topk_value + (size_t)v * K, K);
                same_top1 += ba.topk_index[(size_t)v * K] == bb.topk_index[(size_t)v * K];
            }
            if (D)
                acc(&rf, ba.features + (size_t)v * D, bb.features + (size_t)v * D, D);
            rows++;
        }
    }
    if (!bad) {
        double el = rel(&rl), ef = rel(&rf);
        int ok_l = el <= tol_l, ok_f = ef <= tol_f;
        printf("cmp-cache: %zu rows; %s rel. error %.3g (bound %.3g) %s; features %.3g "
               "(bound %.3g) %s; top-1 agrees on %.2f%%\n",
               rows, bb.logits ? "logits" : "top-k values", el, tol_l, ok_l ? "ok" : "FAIL", ef,
               tol_f, ok_f ? "ok" : "FAIL", rows ? 100.0 * (double)same_top1 / (double)rows : 100);
        bad = !ok_l || !ok_f;
    }
    cache_batch_free(&ba);
    cache_batch_free(&bb);
    cache_reader_close(a);
    cache_reader_close(b);
    return bad;
}

/* ---- gpu-info, objects ---- */

static int cmd_gpu_info(void)
{
    kdc_error err = {0};
    kdc_backend *be = NULL;
    /* Creating the backend loads cuDNN/cuBLAS; one convolution makes cuDNN
     * load the sub-libraries it dispatches to. */
    if (kdc_backend_create("cuda:0", 1, &be, &err) != KDC_OK) {
        printf("backend: cuda:0 not created: %s\n", err.msg);
    } else {
        kdc_conv2d_desc d = {.n = 1,
                             .c_in = 3,
                             .h_in = 8,
                             .w_in = 8,
                             .c_out = 4,
                             .kh = 3,
                             .kw = 3,
                             .stride = 1,
                             .pad = 1,
                             .groups = 1};
        void *x = NULL, *w = NULL, *y = NULL;
        kdc_status st = kdc_conv2d_desc_init(&d, &err);
        if (!st)
            st = be->alloc(be, 3 * 64 * sizeof(float), &x, &err);
        if (!st)
            st = be->alloc(be, 4 * 27 * sizeof(float), &w, &err);
        if (!st)
            st = be->alloc(be, 4 * 64 * sizeof(float), &y, &err);
        if (!st)
            st = be->fill_zero(be, x, 3 * 64 * sizeof(float), &err);
        if (!st)
            st = be->fill_zero(be, w, 4 * 27 * sizeof(float), &err);
        if (!st)
            st = be->conv2d_forward(be, &d, x, w, NULL, y, &err);
        if (!st)
            st = be->synchronize(be, &err);
        if (st)
            printf("backend: cuda:0 created, a 3x3 convolution failed: %s\n", err.msg);
        else
            printf("backend: cuda:0 created, a 3x3 convolution ran\n");
        be->free(be, x);
        be->free(be, w);
        be->free(be, y);
        kdc_backend_destroy(be);
    }
    size_t need = kdc_cuda_libs_report(NULL, 0) + 1;
    char *buf = malloc(need);
    if (!buf)
        return 1;
    kdc_cuda_libs_report(buf, need);
    fputs(buf, stdout);
    free(buf);
    return 0;
}

static int print_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (info->dlpi_name && info->dlpi_name[0])
        printf("object: %s\n", info->dlpi_name);
    return 0;
}

static int cmd_objects(void)
{
    kdc_error err = {0};
    int rc = 0;
    if (kdc_gemm_init(&err) != KDC_OK) {
        fprintf(stderr, "bundle_util: %s\n", err.msg);
        rc = 1;
    }
    if (kdc_dnnl_load(&err) != KDC_OK) {
        fprintf(stderr, "bundle_util: %s\n", err.msg);
        rc = 1;
    }
    dl_iterate_phdr(print_object, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "images"))
        return cmd_images(argc, argv);
    if (!strcmp(argv[1], "weights"))
        return cmd_weights(argc, argv);
    if (!strcmp(argv[1], "cmp-cache"))
        return cmd_cmp_cache(argc, argv);
    if (!strcmp(argv[1], "gpu-info") && argc == 2)
        return cmd_gpu_info();
    if (!strcmp(argv[1], "objects") && argc == 2)
        return cmd_objects();
    return usage();
}
