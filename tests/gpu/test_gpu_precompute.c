/* test_gpu_precompute.c - `make check-gpu`, kd-precompute end to end: the same
 * short run with --device cpu and --device cuda:0, then the two cache files
 * compared.
 *
 * Everything is made here: 12 synthetic JPEGs (2 classes, 72 x 56 px) plus one
 * file that is not a JPEG (a skipped image), and resnet18 weights (100
 * classes, seed 5, BN weights, biases and running statistics randomised so
 * that the folding matters) saved with kdc_checkpoint_save. Every run uses
 * rrc views (2 per image, 64 px), --chunk-images 4 and --batch 6, so chunks
 * end in short batches and the GPU's batch in flight crosses chunk ends.
 *
 * What must be equal (bit for bit): the header (cache_header_diff), the image
 * table with heights, widths and the skipped flag, every box and flip, and the
 * skipped image's rows (zeros). What must be close, relative error
 * max|gpu - cpu| / max|cpu| over the non-skipped rows:
 *   fp32, float32 logits      TOL_FP32 (2e-3): the bound test_gpu_ops puts on
 *                             a whole-model forward (cuDNN / cuBLAS summation
 *                             orders and algorithms such as Winograd);
 *   fp32, float16 features    TOL_FP32 + TOL_HALF (float16 rounds by up to
 *   and logits, top-k values  2^-11 of the value, <= 4.9e-4 of the maximum);
 *   tf32, float32 logits      TOL_TF32 (3e-2, test_gpu_ops' tf32 model bound:
 *   and features              10-bit mantissas in the products);
 *   fp16                      only reported (the issue asks for the measured
 *                             difference), with a sanity bound TOL_FP16_SANE
 *                             (0.25) that only garbage exceeds.
 * Top-k is compared rank by rank (the k-th largest value is continuous in the
 * logits, the index of a near-tie is not): values within TOL_FP32 + TOL_HALF,
 * index agreement reported; and every stored (index, value) pair of the GPU
 * file must match the GPU's own float32 logit at that index (the fp32 run)
 * within the same bound, so a misplaced row or index buffer fails.
 * Refusals: --resume of the GPU's file with another --precision or --device.
 * And on the host alone: the chunk writer's stored form (what the GPU path
 * hands over) writes the same file as its float32 form (what the CPU path
 * hands over), for every storage mode, skipped images included.
 *
 * Without a GPU (or in a build without CUDA) the program prints one line
 * saying the checks did not run and exits 0. KDC_GPU_TEST_DEVICE=cpu runs the
 * whole comparison with a 1-thread CPU run in the GPU's place (precision
 * flags dropped): a dry run of this test's own logic, not a GPU check. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "common/cuda/cuda_backend.h"
#include "common/nn/backend_cpu.h"
#include "common/base/half.h"
#include "common/models/model.h"
#include "formats/cache_reader.h"
#include "formats/checkpoint.h"
#include "precompute/chunk_writer.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

#define NCLS_DATA 2
#define PER_CLASS 6
#define NIMG (NCLS_DATA * PER_CLASS + 1) /* + the broken file */
#define IMG_W 72
#define IMG_H 56
#define TEACHER_CLASSES 100
#define VIEWS 2
#define TOPK 5
#define TOL_FP32 2e-3
#define TOL_HALF 5e-4
#define TOL_TF32 3e-2
#define TOL_FP16_SANE 0.25

static char *g_tmp;
static char g_data[2048], g_weights[2048];
static const char *g_dev = "cuda:0"; /* the device under test */
static int g_dry;                    /* 1: a CPU run stands in for the GPU */

/* ---- inputs ---- */

static void make_dataset(void)
{
    snprintf(g_data, sizeof g_data, "%s/data", g_tmp);
    kdc_test_make_image_folder(g_data, NCLS_DATA, PER_CLASS, IMG_W, IMG_H, 1, 3);
    /* Sorted between img02 and img03 of class0: a skipped row mid-chunk. */
    char path[2200];
    snprintf(path, sizeof path, "%s/class0/img02b.jpg", g_data);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s", path);
    ck_assert(fputs("not a JPEG at all", f) >= 0);
    ck_assert(fclose(f) == 0);
}

/* resnet18 from seed 5 with BN affine parameters and running statistics
 * drawn at random (PyTorch's init would make every BN the identity). */
static void make_weights(void)
{
    snprintf(g_weights, sizeof g_weights, "%s/resnet18.safetensors", g_tmp);
    kdc_test_make_weights(g_weights, "resnet18", TEACHER_CLASSES, 5, 0, 1);
}

static void setup_once(void)
{
    if (g_tmp)
        return;
    g_tmp = kdc_test_tmpdir("gpu-precompute");
    make_dataset();
    make_weights();
}

/* ---- runs ---- */

/* kd-precompute into TMP/<name>.h5 on `device`; returns its exit status.
 * extra: more flags. Its stderr goes to TMP/<name>.err. */
static int run_pc(const char *name, const char *device, const char *extra)
{
    char out[2200];
    snprintf(out, sizeof out, "%s/%s.h5", g_tmp, name);
    /* the dry run's stand-in differs from the reference CPU run in threads */
    int threads = strcmp(device, "cpu") || strstr(name, "_gpu") ? 1 : 2;
    return kdc_test_system(
        "%s/kd-precompute --data %s --teacher resnet18 --weights %s --out %s --view-policy rrc "
        "--views %d --image-size 64 --chunk-images 4 --batch 6 --seed 3 --threads %d "
        "--decode-threads 2 --quiet --device %s %s 2> %s/%s.err",
        kdc_test_bin_dir(), g_data, g_weights, out, VIEWS, threads, device, extra, g_tmp, name);
}

static void run_ok(const char *name, const char *device, const char *extra)
{
    int rc = run_pc(name, device, extra);
    ck_assert_msg(rc == 0, "kd-precompute --device %s %s (%s) exited with %d; see %s/%s.err",
                  device, extra, name, rc, g_tmp, name);
}

/* The device flag and precision flags of the device under test. */
static void gpu_flags(char *buf, size_t len, const char *extra, const char *precision)
{
    if (g_dry || !precision)
        snprintf(buf, len, "%s", extra);
    else
        snprintf(buf, len, "%s --precision %s", extra, precision);
}

/* ---- a whole cache in memory ---- */

typedef struct loaded {
    cache_header h;
    int64_t rows;            /* N x V */
    int32_t *height, *width; /* N */
    uint8_t *skipped;        /* N */
    int32_t *box;            /* rows x 4 */
    uint8_t *flip;           /* rows */
    float *logits;           /* rows x C (float32 / float16 storage) */
    int32_t *topk_index;     /* rows x K (top-k storage) */
    float *topk_value;
    float *features; /* rows x D, or NULL */
} loaded;

static void load(const char *name, loaded *L)
{
    char path[2200];
    kdc_error err = {0};
    snprintf(path, sizeof path, "%s/%s.h5", g_tmp, name);
    cache_reader *r = NULL;
    ck_assert_msg(cache_reader_open(path, 0, &r, &err) == KDC_OK, "%s", err.msg);
    memset(L, 0, sizeof *L);
    L->h = *cache_reader_header(r);
    const cache_header *h = &L->h;
    const cache_image_table *t = cache_reader_images(r);
    size_t N = (size_t)h->num_images, V = (size_t)h->views_per_image;
    size_t C = (size_t)h->num_classes, K = (size_t)h->topk, D = (size_t)h->feature_dim;
    L->rows = (int64_t)(N * V);
    L->height = malloc(N * 4);
    L->width = malloc(N * 4);
    L->skipped = malloc(N);
    memcpy(L->height, t->height, N * 4);
    memcpy(L->width, t->width, N * 4);
    memcpy(L->skipped, t->skipped, N);
    L->box = malloc(N * V * 16);
    L->flip = malloc(N * V);
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        L->topk_index = malloc(N * V * K * 4);
        L->topk_value = malloc(N * V * K * 4);
    } else {
        L->logits = malloc(N * V * C * 4);
    }
    L->features = D ? malloc(N * V * D * 4) : NULL;
    cache_chunk c;
    cache_batch b;
    ck_assert(cache_chunk_alloc(&c, h, &err) == KDC_OK);
    ck_assert(cache_batch_alloc(&b, h, (int)(h->chunk_images * h->views_per_image), &err) ==
              KDC_OK);
    for (int64_t k = 0; k < cache_reader_num_chunks(r); k++) {
        ck_assert_msg(cache_reader_read_chunk(r, k, &c, &err) == KDC_OK, "%s", err.msg);
        cache_chunk_to_batch(h, &c, t->label, &b);
        size_t r0 = (size_t)c.first_image * V, n = (size_t)b.count;
        memcpy(L->box + r0 * 4, b.box, n * 16);
        memcpy(L->flip + r0, b.flip, n);
        if (L->logits)
            memcpy(L->logits + r0 * C, b.logits, n * C * 4);
        if (L->topk_index) {
            memcpy(L->topk_index + r0 * K, b.topk_index, n * K * 4);
            memcpy(L->topk_value + r0 * K, b.topk_value, n * K * 4);
        }
        if (D)
            memcpy(L->features + r0 * D, b.features, n * D * 4);
    }
    cache_batch_free(&b);
    cache_chunk_free(&c);
    cache_reader_close(r);
}

static void unload(loaded *L)
{
    free(L->height);
    free(L->width);
    free(L->skipped);
    free(L->box);
    free(L->flip);
    free(L->logits);
    free(L->topk_index);
    free(L->topk_value);
    free(L->features);
}

/* Everything but the teacher's numbers is equal; the skipped image's rows
 * are zeros in both. */
static void check_same_layout(const loaded *g, const loaded *c)
{
    const char *diff = cache_header_diff(&g->h, &c->h, 0);
    ck_assert_msg(diff == NULL, "headers differ in %s", diff ? diff : "");
    size_t N = (size_t)c->h.num_images, V = (size_t)c->h.views_per_image;
    ck_assert_int_eq((int64_t)N, NIMG);
    ck_assert(!memcmp(g->height, c->height, N * 4) && !memcmp(g->width, c->width, N * 4));
    ck_assert(!memcmp(g->skipped, c->skipped, N));
    ck_assert(!memcmp(g->box, c->box, N * V * 16) && !memcmp(g->flip, c->flip, N * V));
    int skipped = 0;
    for (size_t i = 0; i < N; i++)
        skipped += c->skipped[i];
    ck_assert_int_eq(skipped, 1);
    size_t C = (size_t)c->h.num_classes, K = (size_t)c->h.topk, D = (size_t)c->h.feature_dim;
    for (size_t i = 0; i < N; i++) {
        if (!g->skipped[i])
            continue;
        for (size_t j = i * V; j < (i + 1) * V; j++) {
            for (size_t k = 0; g->logits && k < C; k++)
                ck_assert(g->logits[j * C + k] == 0.0f);
            for (size_t k = 0; g->topk_index && k < K; k++)
                ck_assert(g->topk_index[j * K + k] == 0 && g->topk_value[j * K + k] == 0.0f);
            for (size_t k = 0; k < D; k++)
                ck_assert(g->features[j * D + k] == 0.0f);
        }
    }
}

/* max|g - c| / max|c| over the rows of images that were not skipped, width w. */
static double rel_err(const loaded *L, const float *g, const float *c, size_t w)
{
    double num = 0, den = 0;
    size_t V = (size_t)L->h.views_per_image;
    for (size_t j = 0; j < (size_t)L->rows; j++) {
        if (L->skipped[j / V])
            continue;
        for (size_t k = 0; k < w; k++) {
            double d = fabs((double)g[j * w + k] - (double)c[j * w + k]);
            num = d > num || isnan(d) ? d : num;
            den = fabs((double)c[j * w + k]) > den ? fabs((double)c[j * w + k]) : den;
        }
    }
    return den > 0 ? num / den : num > 0 ? INFINITY : 0.0;
}

/* Fraction of non-skipped rows whose arg-max agrees. */
static double top1_agreement(const loaded *g, const loaded *c)
{
    size_t V = (size_t)c->h.views_per_image, C = (size_t)c->h.num_classes;
    size_t same = 0, n = 0;
    for (size_t j = 0; j < (size_t)c->rows; j++) {
        if (c->skipped[j / V])
            continue;
        size_t ag = 0, ac = 0;
        for (size_t k = 1; k < C; k++) {
            ag = g->logits[j * C + k] > g->logits[j * C + ag] ? k : ag;
            ac = c->logits[j * C + k] > c->logits[j * C + ac] ? k : ac;
        }
        same += ag == ac;
        n++;
    }
    return n ? (double)same / (double)n : 1.0;
}

/* ---- cases ---- */

/* float32 logits + float16 features at `precision` (NULL = the default). */
static void logits_case(const char *tag, const char *precision, double tol_logits,
                        double tol_features, double *rel_out)
{
    setup_once();
    char cpu[64], gpu[64], flags[256];
    snprintf(cpu, sizeof cpu, "%s_cpu", tag);
    snprintf(gpu, sizeof gpu, "%s_gpu", tag);
    run_ok(cpu, "cpu", "--logits float32");
    gpu_flags(flags, sizeof flags, "--logits float32", precision);
    run_ok(gpu, g_dev, flags);
    loaded g, c;
    load(gpu, &g);
    load(cpu, &c);
    check_same_layout(&g, &c);
    if (!g_dry && precision)
        ck_assert_msg(strstr(g.h.created_by, precision) != NULL, "created_by '%s' lacks %s",
                      g.h.created_by, precision);
    size_t C = (size_t)c.h.num_classes, D = (size_t)c.h.feature_dim;
    double rl = rel_err(&c, g.logits, c.logits, C), rf = rel_err(&c, g.features, c.features, D);
    double agree = top1_agreement(&g, &c);
    printf("check-gpu: kd-precompute %s (%s): logits differ from the CPU's fp32 by %.3g, "
           "features by %.3g (relative to max); top-1 agrees on %.1f%% of %lld views\n",
           precision ? precision : "fp32", g_dry ? "dry run, cpu" : g_dev, rl, rf, 100 * agree,
           (long long)(c.rows - VIEWS));
    ck_assert_msg(rl <= tol_logits, "%s: logits rel err %.3g > %.3g", tag, rl, tol_logits);
    ck_assert_msg(rf <= tol_features, "%s: features rel err %.3g > %.3g", tag, rf, tol_features);
    if (rel_out)
        *rel_out = rl;
    unload(&g);
    unload(&c);
}

START_TEST(test_fp32)
{
    logits_case("fp32", NULL, TOL_FP32, TOL_FP32 + TOL_HALF, NULL);
}
END_TEST

START_TEST(test_tf32)
{
    logits_case("tf32", "tf32", TOL_TF32, TOL_TF32, NULL);
}
END_TEST

START_TEST(test_fp16)
{
    logits_case("fp16", "fp16", TOL_FP16_SANE, TOL_FP16_SANE, NULL);
}
END_TEST

/* float16 logits: converted on the device by f32_to_f16. */
START_TEST(test_float16_storage)
{
    setup_once();
    run_ok("f16_cpu", "cpu", "--logits float16");
    run_ok("f16_gpu", g_dev, "--logits float16");
    loaded g, c;
    load("f16_gpu", &g);
    load("f16_cpu", &c);
    check_same_layout(&g, &c);
    double tol = TOL_FP32 + TOL_HALF;
    double rl = rel_err(&c, g.logits, c.logits, (size_t)c.h.num_classes);
    double rf = rel_err(&c, g.features, c.features, (size_t)c.h.feature_dim);
    printf("check-gpu: kd-precompute float16 storage: logits %.3g, features %.3g\n", rl, rf);
    ck_assert_msg(rl <= tol && rf <= tol, "float16 storage: %.3g / %.3g > %.3g", rl, rf, tol);
    unload(&g);
    unload(&c);
}
END_TEST

/* top-K on the device, without features (D = 0 on the device path). */
START_TEST(test_topk_storage)
{
    setup_once();
    char flags[64];
    snprintf(flags, sizeof flags, "--logits topk:%d --no-features", TOPK);
    run_ok("topk_cpu", "cpu", flags);
    run_ok("topk_gpu", g_dev, flags);
    /* the GPU's own float32 logits, for the (index, value) pairing */
    run_ok("topk_ref_gpu", g_dev, "--logits float32 --no-features");
    loaded g, c, ref;
    load("topk_gpu", &g);
    load("topk_cpu", &c);
    load("topk_ref_gpu", &ref);
    check_same_layout(&g, &c);
    ck_assert_ptr_null(g.features);
    size_t V = VIEWS, K = TOPK, C = (size_t)c.h.num_classes;
    double tol = TOL_FP32 + TOL_HALF;
    double rv = rel_err(&c, g.topk_value, c.topk_value, K);
    double den = 0, pair = 0;
    size_t same = 0, total = 0;
    for (size_t j = 0; j < (size_t)c.rows; j++) {
        if (c.skipped[j / V])
            continue;
        for (size_t k = 0; k < K; k++) {
            int32_t gi = g.topk_index[j * K + k];
            ck_assert_msg(gi >= 0 && (size_t)gi < C, "row %zu: index %d", j, gi);
            if (k)
                ck_assert_msg(g.topk_value[j * K + k] <= g.topk_value[j * K + k - 1],
                              "row %zu: values not sorted descending", j);
            double own = kdc_f16_to_f32(kdc_f32_to_f16(ref.logits[j * C + (size_t)gi]));
            double d = fabs(own - (double)g.topk_value[j * K + k]);
            pair = d > pair ? d : pair;
            den = fabs(ref.logits[j * C + (size_t)gi]) > den ? fabs(ref.logits[j * C + (size_t)gi])
                                                             : den;
            same += gi == c.topk_index[j * K + k];
            total++;
        }
    }
    double rp = den > 0 ? pair / den : pair;
    printf("check-gpu: kd-precompute top-%zu storage: values (rank by rank) %.3g, GPU pairs vs "
           "its float32 logits %.3g, indices equal to the CPU's %.1f%%\n",
           K, rv, rp, 100.0 * (double)same / (double)total);
    ck_assert_msg(rv <= tol, "top-k values rel err %.3g > %.3g", rv, tol);
    ck_assert_msg(rp <= tol, "top-k (index, value) pairs vs the GPU's logits: %.3g > %.3g", rp,
                  tol);
    unload(&g);
    unload(&c);
    unload(&ref);
}
END_TEST

/* --resume refuses another precision or device, naming the flag, and leaves
 * the file alone. */
START_TEST(test_resume_refusals)
{
    if (g_dry)
        return; /* the CPU cannot make a file with another precision */
    setup_once();
    run_ok("refuse_gpu", g_dev, "--logits float16 --precision tf32");
    struct stat before, after;
    char path[2200], cmd[4600];
    snprintf(path, sizeof path, "%s/refuse_gpu.h5", g_tmp);
    ck_assert_int_eq(stat(path, &before), 0);
    const struct {
        const char *device, *flags, *named;
    } cases[] = {
        {"cuda:0", "--logits float16 --precision fp32 --resume", "--precision"},
        {"cuda:0", "--logits float16 --resume", "--precision"},
        {"cpu", "--logits float16 --resume", "--device"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_msg(run_pc("refuse_gpu", cases[i].device, cases[i].flags) != 0,
                      "--resume %s %s was accepted", cases[i].device, cases[i].flags);
        snprintf(cmd, sizeof cmd, "grep -q -e '%s' %s/refuse_gpu.err", cases[i].named, g_tmp);
        ck_assert_msg(kdc_test_system("%s", cmd) == 0, "the refusal does not name %s",
                      cases[i].named);
    }
    ck_assert_int_eq(stat(path, &after), 0);
    ck_assert(before.st_mtime == after.st_mtime && before.st_size == after.st_size);
    /* the same settings: already complete, exit 0 */
    ck_assert_int_eq(run_pc("refuse_gpu", g_dev, "--logits float16 --precision tf32 --resume"), 0);
}
END_TEST

/* ---- the chunk writer's two forms, on the host ---- */

#define SW_N 11
#define SW_V 2
#define SW_C 7
#define SW_D 5

/* Writes a cache of made-up rows (images 2 and 9 skipped, with garbage in
 * their rows) through kd_chunk_writer in `form`; in stored form the rows are
 * converted as the GPU does (float16 by round-to-nearest-even, top-k by the
 * CPU twin of the device kernel). */
static void write_form(const char *path, const char *mode, kd_chunk_form form, const float *lg,
                       const float *ft)
{
    kdc_error err = {0};
    cache_header h;
    memset(&h, 0, sizeof h);
    snprintf(h.teacher_arch, sizeof h.teacher_arch, "synthetic");
    snprintf(h.teacher_weights_sha256, sizeof h.teacher_weights_sha256, "%064d", 0);
    snprintf(h.created_by, sizeof h.created_by, "test_gpu_precompute");
    h.num_images = SW_N;
    h.views_per_image = SW_V;
    h.num_classes = SW_C;
    h.feature_dim = SW_D;
    snprintf(h.view_policy, sizeof h.view_policy, "rrc");
    h.image_size = h.resize_size = 32;
    for (int c = 0; c < 3; c++)
        h.mean[c] = h.std[c] = 0.5;
    h.scale_range[0] = 0.08;
    h.scale_range[1] = 1;
    h.ratio_range[0] = 0.75;
    h.ratio_range[1] = 4.0 / 3.0;
    h.pad = 4;
    h.chunk_images = 4;
    ck_assert(cache_parse_logit_storage(mode, &h.logit_storage, &h.topk, &err) == KDC_OK);
    cache_image_table t;
    ck_assert(cache_image_table_alloc(&t, SW_N, &err) == KDC_OK);
    for (int i = 0; i < SW_N; i++) {
        char p[32];
        snprintf(p, sizeof p, "c/%02d.jpg", i);
        t.path[i] = strdup(p);
        t.label[i] = i % 3;
        t.size[i] = 100 + (uint64_t)i;
        t.crc32[i] = 7u * (uint32_t)i;
    }
    cache_writer *w = NULL;
    ck_assert_msg(cache_writer_create(path, &h, &t, NULL, &w, &err) == KDC_OK, "%s", err.msg);
    const cache_header *wh = cache_writer_header(w);
    kd_chunk_writer *cw = NULL;
    ck_assert_msg(kd_chunk_writer_start(w, 2, form, &cw, &err) == KDC_OK, "%s", err.msg);
    for (int64_t c = 0; c < cache_writer_num_chunks(w); c++) {
        kd_chunk_buf *b;
        ck_assert(kd_chunk_writer_acquire(cw, &b, &err) == KDC_OK);
        int64_t first, count;
        cache_writer_chunk_images(w, c, &first, &count);
        b->chunk = c;
        b->first_image = first;
        b->count = count;
        for (int64_t i = 0; i < count; i++) {
            int64_t g = first + i;
            b->height[i] = 30 + (int32_t)g;
            b->width[i] = 40 + (int32_t)g;
            b->skipped[i] = g == 2 || g == 9;
            for (int v = 0; v < SW_V; v++) {
                for (int k = 0; k < 4; k++)
                    b->box[(i * SW_V + v) * 4 + k] = (int32_t)(g * 10 + v + k + 1);
                b->flip[i * SW_V + v] = (uint8_t)((g + v) & 1);
            }
        }
        size_t r0 = (size_t)first * SW_V, rows = (size_t)count * SW_V;
        if (form == KD_CHUNK_F32) {
            memcpy(b->logits, lg + r0 * SW_C, rows * SW_C * 4);
            memcpy(b->features, ft + r0 * SW_D, rows * SW_D * 4);
        } else {
            if (wh->logit_storage == CACHE_LOGITS_F32)
                memcpy(b->stored.logits, lg + r0 * SW_C, rows * SW_C * 4);
            else if (wh->logit_storage == CACHE_LOGITS_F16)
                kdc_f32_to_f16_array(lg + r0 * SW_C, b->stored.logits, rows * SW_C);
            else
                cache_topk_rows(lg + r0 * SW_C, rows, SW_C, (size_t)wh->topk, b->stored.topk_index,
                                cache_topk_index_size(wh), b->stored.topk_value);
            kdc_f32_to_f16_array(ft + r0 * SW_D, b->stored.features, rows * SW_D);
        }
        kd_chunk_writer_submit(cw, b);
    }
    ck_assert_msg(kd_chunk_writer_stop(cw, 0, &err) == KDC_OK, "%s", err.msg);
    kd_chunk_writer_free(cw);
    ck_assert_msg(cache_writer_finish(w, &err) == KDC_OK, "%s", err.msg);
    cache_image_table_free(&t);
}

START_TEST(test_stored_form_writer)
{
    setup_once();
    float lg[SW_N * SW_V * SW_C], ft[SW_N * SW_V * SW_D];
    kdc_test_fill_uniform(lg, sizeof lg / sizeof *lg, 41, -6.0f, 6.0f);
    kdc_test_fill_uniform(ft, sizeof ft / sizeof *ft, 42, 0.0f, 3.0f);
    lg[5] = lg[6]; /* a tie for top-k */
    const char *modes[] = {"float32", "float16", "topk:3"};
    for (int m = 0; m < 3; m++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "sw_f32_%d", m);
        snprintf(b, sizeof b, "sw_stored_%d", m);
        char pa[2200], pb[2200];
        snprintf(pa, sizeof pa, "%s/%s.h5", g_tmp, a);
        snprintf(pb, sizeof pb, "%s/%s.h5", g_tmp, b);
        write_form(pa, modes[m], KD_CHUNK_F32, lg, ft);
        write_form(pb, modes[m], KD_CHUNK_STORED, lg, ft);
        loaded la, lb;
        load(a, &la);
        load(b, &lb);
        ck_assert(cache_header_diff(&la.h, &lb.h, 0) == NULL);
        size_t N = SW_N, R = SW_N * SW_V, K = (size_t)la.h.topk;
        ck_assert(!memcmp(la.height, lb.height, N * 4) && !memcmp(la.width, lb.width, N * 4));
        ck_assert(!memcmp(la.skipped, lb.skipped, N));
        ck_assert(la.skipped[2] && la.height[2] == 0 && !la.skipped[3] && la.height[3] == 33);
        ck_assert(!memcmp(la.box, lb.box, R * 16) && !memcmp(la.flip, lb.flip, R));
        if (la.logits)
            ck_assert_msg(!memcmp(la.logits, lb.logits, R * SW_C * 4), "%s logits", modes[m]);
        else
            ck_assert_msg(!memcmp(la.topk_index, lb.topk_index, R * K * 4) &&
                              !memcmp(la.topk_value, lb.topk_value, R * K * 4),
                          "%s", modes[m]);
        ck_assert_msg(!memcmp(la.features, lb.features, R * SW_D * 4), "%s features", modes[m]);
        unload(&la);
        unload(&lb);
    }
}
END_TEST

static Suite *gpu_precompute_suite(void)
{
    Suite *s = suite_create("gpu_precompute");
    TCase *t = tcase_create("cpu_vs_gpu");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, test_fp32);
    tcase_add_test(t, test_tf32);
    tcase_add_test(t, test_fp16);
    tcase_add_test(t, test_float16_storage);
    tcase_add_test(t, test_topk_storage);
    tcase_add_test(t, test_resume_refusals);
    suite_add_tcase(s, t);
    TCase *h = tcase_create("host");
    tcase_add_test(h, test_stored_form_writer);
    suite_add_tcase(s, h);
    return s;
}

int main(void)
{
    const char *dev = getenv("KDC_GPU_TEST_DEVICE");
    if (dev && !strcmp(dev, "cpu")) {
        g_dev = "cpu";
        g_dry = 1;
        printf(
            "check-gpu: kd-precompute dry run: a CPU run in the GPU's place (not a GPU check)\n");
    } else {
        kdc_error err = {0};
        kdc_backend *gpu = NULL;
        if (kdc_backend_cuda_create(0, &gpu, &err) != KDC_OK) {
            printf("check-gpu: kd-precompute not run: %s\n", err.msg);
            return 0;
        }
        /* the runs are separate processes: only the probe was needed here */
        kdc_backend_destroy(gpu);
    }
    SRunner *sr = srunner_create(gpu_precompute_suite());
    /* no fork, as the other GPU checks (a CUDA context does not survive fork) */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
