/* test_gpu_train.c - `make check-gpu`, training math and cache-writer half:
 * the CUDA kernels of train/losses_cuda.h (top-k KD, projector loss),
 * train/optim_cuda.h (fused SGD and DOT) and common/cuda/cuda_topk.h (top-k +
 * float16 for the cache writer) against the CPU functions that specify them
 * (train/losses.h, train/optim.h, cache_topk_rows in formats/cache_writer.h).
 * (CE and full KD are in test_gpu_ops.c.)
 *
 * Inputs are random (splitmix64 uniform, never all zeros). Without a GPU, or
 * in a build without CUDA, the program prints one line saying the checks did
 * not run and exits 0, claiming nothing.
 *
 * Error bounds (fp32; errors are max|gpu - cpu| / max|cpu| per tensor):
 *   top-k KD gradient            1e-5   (GPU softmax in double, CPU in float)
 *   top-k KD loss                1e-6 relative (both in double)
 *   projector loss               1e-9 * max(1, |loss|) (double, summed in
 *                                another order)
 *   projector gradient           1e-5   (both in double; d is stored in float
 *                                and may differ by one rounding)
 *   SGD, DOT: parameters and momentum buffers after every step: bit-exact
 *                                (the kernels use non-contracting _rn
 *                                intrinsics in the C loops' order)
 *   top-k rows: indices and float16 values bit-exact, ties and NaN included */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cuda/cuda_backend.h"
#include "common/nn/backend_cpu.h"
#include "common/base/half.h"
#include "formats/cache_writer.h"
#include "tests/helpers/testutil.h"
#include "train/losses.h"
#include "train/optim.h"
#ifdef KDC_HAVE_CUDA
#include "common/cuda/cuda_topk.h"
#include "train/losses_cuda.h"
#include "train/optim_cuda.h"
#endif

#define TOL_GRAD 1e-5
#define TOL_LOSS 1e-6
#define TOL_PROJ_LOSS 1e-9

#ifdef KDC_HAVE_CUDA

static kdc_backend *g_gpu, *g_cpu;
static kdc_error g_err;

#define CK(call)                                                                                   \
    do {                                                                                           \
        kdc_status ck_st_ = (call);                                                                \
        ck_assert_msg(ck_st_ == KDC_OK, "%s: %s", #call, g_err.msg);                               \
    } while (0)

/* ---- helpers ---- */

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *rnd(size_t n, uint64_t seed, float lo, float hi)
{
    float *h = xmalloc(n * sizeof(float));
    kdc_test_fill_uniform(h, n, seed, lo, hi);
    return h;
}

static void *dev(size_t bytes)
{
    void *p = NULL;
    CK(g_gpu->alloc(g_gpu, bytes ? bytes : 1, &p, &g_err));
    return p;
}

static void *up(const void *h, size_t bytes)
{
    void *p = dev(bytes);
    CK(g_gpu->copy_h2d(g_gpu, p, h, bytes, &g_err));
    return p;
}

static void *down(const void *d, size_t bytes)
{
    void *h = xmalloc(bytes);
    CK(g_gpu->copy_d2h(g_gpu, h, d, bytes, &g_err));
    return h;
}

static void dfree(void *p)
{
    if (p)
        g_gpu->free(g_gpu, p);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) * 1e-6;
}

/* ---- top-k KD ---- */

/* Per row K distinct class indices (a random start and a stride coprime to C)
 * and float16 teacher logits sorted descending; row 0's last value is -inf
 * (q = 0 there, which both sides skip in the loss). */
static void make_topk(size_t B, size_t C, size_t K, uint64_t seed, uint16_t *val, int32_t *idx)
{
    uint64_t s = seed;
    size_t stride = 1;
    for (size_t cand = 7919 % C; cand > 0 && C > 1; cand = (cand + 1) % C) {
        size_t a = cand, b = C; /* gcd */
        while (b) {
            size_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1) {
            stride = cand;
            break;
        }
    }
    for (size_t b = 0; b < B; b++) {
        size_t start = splitmix(&s) % C;
        float v = 8.0f;
        for (size_t k = 0; k < K; k++) {
            idx[b * K + k] = (int32_t)((start + k * stride) % C);
            v -= (float)(splitmix(&s) % 1000) * 0.002f; /* steps of 0 (ties) to 2 */
            val[b * K + k] = kdc_f32_to_f16(v);
        }
    }
    if (K > 1)
        val[K - 1] = 0xfc00; /* -inf */
}

static void topk_case(size_t B, size_t C, size_t K, float T, float w, kd_grad_mode mode)
{
    float *zs = rnd(B * C, 100 + C + K, -6, 6), *g0 = rnd(B * C, 101, -0.01f, 0.01f);
    uint16_t *val = xmalloc(B * K * 2);
    int32_t *idx = xmalloc(B * K * 4);
    make_topk(B, C, K, 102 + K, val, idx);
    CK(kd_cuda_check_topk(val, idx, B, C, K, &g_err));
    float *d_zs = up(zs, B * C * 4), *d_g = up(g0, B * C * 4);
    uint16_t *d_val = up(val, B * K * 2);
    int32_t *d_idx = up(idx, B * K * 4);
    double *d_row = dev(B * sizeof(double));

    double lref, lgot;
    float *ref = xmalloc(B * C * 4);
    memcpy(ref, g0, B * C * 4);
    CK(kd_kd_topk_forward(&lref, zs, val, idx, B, C, K, T, w, &g_err));
    CK(kd_kd_topk_backward(ref, zs, val, idx, B, C, K, T, w, mode, &g_err));
    CK(kd_cuda_kd_topk(g_gpu, d_zs, d_val, d_idx, B, C, K, T, w, mode, d_g, d_row, &g_err));
    CK(kd_cuda_sum_rows(g_gpu, d_row, B, &lgot, &g_err));
    ck_assert_msg(fabs(lgot - lref) <= TOL_LOSS * fabs(lref),
                  "top-k KD loss (B=%zu C=%zu K=%zu T=%g): %.12g vs %.12g", B, C, K, (double)T,
                  lgot, lref);
    float *got = down(d_g, B * C * 4);
    double r = kdc_test_rel_err_f32(got, ref, B * C);
    ck_assert_msg(r <= TOL_GRAD, "top-k KD grad (B=%zu C=%zu K=%zu T=%g %s): rel err %.3g", B, C, K,
                  (double)T, mode == KD_GRAD_ADD ? "add" : "set", r);

    /* loss only (NULL gradient) gives the same loss */
    CK(kd_cuda_kd_topk(g_gpu, d_zs, d_val, d_idx, B, C, K, T, w, mode, NULL, d_row, &g_err));
    double l2;
    CK(kd_cuda_sum_rows(g_gpu, d_row, B, &l2, &g_err));
    ck_assert(l2 == lgot);

    free(got), free(ref), free(zs), free(g0), free(val), free(idx);
    dfree(d_zs), dfree(d_g), dfree(d_val), dfree(d_idx), dfree(d_row);
}

START_TEST(test_kd_topk)
{
    topk_case(16, 1000, 10, 1.0f, 0.5f, KD_GRAD_SET);
    topk_case(16, 1000, 1, 4.0f, 0.9f, KD_GRAD_ADD);
    topk_case(5, 300, 300, 2.0f, 1.0f, KD_GRAD_SET); /* K = C */
    topk_case(3, 10, 5, 4.0f, 0.9f, KD_GRAD_ADD);
    topk_case(4, 21843, 100, 1.0f, 0.5f, KD_GRAD_SET); /* ImageNet-21k classes */
    topk_case(300, 100, 5, 4.0f, 0.9f, KD_GRAD_SET);   /* many small rows */
}
END_TEST

START_TEST(test_kd_topk_bad)
{
    const size_t B = 2, C = 10, K = 3;
    uint16_t val[6] = {0x4000, 0x3c00, 0x3800, 0x4000, 0x3c00, 0x3800};
    int32_t idx[6] = {1, 2, 3, 4, 5, 10}; /* 10 is out of range */
    ck_assert_int_eq(kd_cuda_check_topk(val, idx, B, C, K, &g_err), KDC_EINVAL);
    idx[5] = 6;
    uint16_t ninf[3] = {0xfc00, 0xfc00, 0x7e00}; /* nothing above -inf (NaN is not) */
    ck_assert_int_eq(kd_cuda_check_topk(ninf, idx, 1, C, K, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_check_topk(val, idx, B, C, 0, &g_err), KDC_EINVAL);
    CK(kd_cuda_check_topk(val, idx, B, C, K, &g_err));

    /* unchecked bad index on the GPU: that row's loss is NaN, nothing out of bounds */
    idx[5] = -7;
    float *zs = rnd(B * C, 5, -1, 1);
    float *d_zs = up(zs, B * C * 4), *d_g = dev(B * C * 4);
    uint16_t *d_val = up(val, sizeof val);
    int32_t *d_idx = up(idx, sizeof idx);
    double *d_row = dev(B * sizeof(double));
    CK(kd_cuda_kd_topk(g_gpu, d_zs, d_val, d_idx, B, C, K, 1.0f, 1.0f, KD_GRAD_SET, d_g, d_row,
                       &g_err));
    double *row = down(d_row, B * sizeof(double));
    ck_assert(isfinite(row[0]));
    ck_assert(isnan(row[1]));
    free(row);

    ck_assert_int_eq(kd_cuda_kd_topk(g_gpu, d_zs, d_val, d_idx, B, C, 11, 1.0f, 1.0f, KD_GRAD_SET,
                                     d_g, d_row, &g_err),
                     KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_kd_topk(g_gpu, d_zs, d_val, d_idx, B, C, K, 0.0f, 1.0f, KD_GRAD_SET,
                                     d_g, d_row, &g_err),
                     KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_kd_topk(g_cpu, d_zs, d_val, d_idx, B, C, K, 1.0f, 1.0f, KD_GRAD_SET,
                                     d_g, d_row, &g_err),
                     KDC_EDEVICE);
    free(zs);
    dfree(d_zs), dfree(d_g), dfree(d_val), dfree(d_idx), dfree(d_row);
}
END_TEST

/* ---- projector loss ---- */

static void proj_case(size_t max_B, size_t B, size_t D, double alpha, float w, kd_grad_mode mode,
                      float mean)
{
    float *f = rnd(B * D, 200 + D, mean - 2, mean + 2), *t = rnd(B * D, 201 + D, -1, 3);
    float *g0 = rnd(B * D, 202, -0.01f, 0.01f);
    kd_proj_ws cws;
    kd_cuda_proj_ws gws;
    CK(kd_proj_ws_init(&cws, max_B, D, &g_err));
    CK(kd_cuda_proj_ws_init(&gws, g_gpu, max_B, D, &g_err));
    float *d_f = up(f, B * D * 4), *d_t = up(t, B * D * 4), *d_g = up(g0, B * D * 4);
    double *d_loss = dev(sizeof(double));

    double lref, lgot;
    float *ref = xmalloc(B * D * 4);
    memcpy(ref, g0, B * D * 4);
    CK(kd_proj_forward(&lref, &cws, f, t, B, alpha, w, &g_err));
    CK(kd_proj_backward(ref, &cws, f, w, mode, &g_err));
    CK(kd_cuda_proj_forward(&gws, d_f, d_t, B, alpha, w, d_loss, &g_err));
    CK(kd_cuda_proj_backward(&gws, d_f, w, mode, d_g, &g_err));
    CK(g_gpu->copy_d2h(g_gpu, &lgot, d_loss, sizeof lgot, &g_err));
    ck_assert_msg(fabs(lgot - lref) <= TOL_PROJ_LOSS * fmax(1.0, fabs(lref)),
                  "projector loss (B=%zu D=%zu alpha=%g): %.15g vs %.15g", B, D, alpha, lgot, lref);
    float *got = down(d_g, B * D * 4);
    double r = kdc_test_rel_err_f32(got, ref, B * D);
    ck_assert_msg(r <= TOL_GRAD, "projector grad (B=%zu D=%zu alpha=%g mean=%g): rel err %.3g", B,
                  D, alpha, (double)mean, r);
    free(got), free(ref), free(f), free(t), free(g0);
    dfree(d_f), dfree(d_t), dfree(d_g), dfree(d_loss);
    kd_proj_ws_free(&cws);
    kd_cuda_proj_ws_free(&gws);
}

START_TEST(test_proj)
{
    proj_case(8, 8, 64, 4.0, 2.0f, KD_GRAD_SET, 0.0f);
    proj_case(32, 32, 512, 2.0, 1.0f, KD_GRAD_ADD, 0.0f);
    proj_case(5, 5, 37, 3.0, 0.5f, KD_GRAD_SET, 0.0f);
    proj_case(6, 6, 100, 1.5, 1.0f, KD_GRAD_ADD, 0.0f);
    proj_case(6, 6, 100, 1.0, 1.0f, KD_GRAD_SET, 0.0f);
    proj_case(256, 256, 2048, 4.0, 2.0f, KD_GRAD_SET, 0.0f); /* ResNet50 teacher, batch 256 */
    proj_case(256, 2, 512, 4.0, 2.0f, KD_GRAD_SET, 0.0f);    /* B = 2 in a big workspace */
    proj_case(16, 16, 64, 4.0, 2.0f, KD_GRAD_SET, 1000.0f);  /* large mean, small spread */
}
END_TEST

START_TEST(test_proj_bad)
{
    const size_t B = 4, D = 8;
    kd_cuda_proj_ws ws;
    ck_assert_int_eq(kd_cuda_proj_ws_init(&ws, g_gpu, 1, D, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_proj_ws_init(&ws, g_cpu, B, D, &g_err), KDC_EDEVICE);
    CK(kd_cuda_proj_ws_init(&ws, g_gpu, B, D, &g_err));
    float *f = rnd(B * D, 300, -1, 1);
    float *d_f = up(f, B * D * 4), *d_g = dev(B * D * 4);
    double *d_loss = dev(sizeof(double));
    ck_assert_int_eq(kd_cuda_proj_backward(&ws, d_f, 1.0f, KD_GRAD_SET, d_g, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_proj_forward(&ws, d_f, d_f, 1, 4.0, 1.0f, d_loss, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_proj_forward(&ws, d_f, d_f, B + 1, 4.0, 1.0f, d_loss, &g_err),
                     KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_proj_forward(&ws, d_f, d_f, B, 0.5, 1.0f, d_loss, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_proj_backward(&ws, d_f, 1.0f, KD_GRAD_SET, d_g, &g_err), KDC_EINVAL);
    /* student == teacher: S = 0, where the CPU refuses; here loss and gradient are NaN */
    kd_proj_ws cws;
    CK(kd_proj_ws_init(&cws, B, D, &g_err));
    double l;
    ck_assert_int_eq(kd_proj_forward(&l, &cws, f, f, B, 4.0, 1.0f, &g_err), KDC_EINVAL);
    kd_proj_ws_free(&cws);
    CK(kd_cuda_proj_forward(&ws, d_f, d_f, B, 4.0, 1.0f, d_loss, &g_err));
    CK(kd_cuda_proj_backward(&ws, d_f, 1.0f, KD_GRAD_SET, d_g, &g_err));
    CK(g_gpu->copy_d2h(g_gpu, &l, d_loss, sizeof l, &g_err));
    ck_assert(isnan(l));
    float *g = down(d_g, B * D * 4);
    for (size_t i = 0; i < B * D; i++)
        ck_assert_msg(isnan(g[i]), "S = 0: gradient %zu is %g, expected NaN", i, (double)g[i]);
    free(g), free(f);
    dfree(d_f), dfree(d_g), dfree(d_loss);
    kd_cuda_proj_ws_free(&ws);
}
END_TEST

/* ---- SGD and DOT ----
 * Five parameters in one device vector: p0 both gradients, p1 task only, p2
 * distillation only, p3 and p4 both gradients and contiguous (one run). */

enum { NP = 5 };
static const size_t p_n[NP] = {1000, 37, 515, 300, 200};
static const int p_task[NP] = {1, 1, 0, 1, 1};
static const int p_kd[NP] = {1, 0, 1, 1, 1};
#define P_TOTAL 2052

typedef struct opt_fixture {
    float *h_theta, *h_gt, *h_gk; /* host (CPU optimiser's memory) */
    float *d_theta, *d_gt, *d_gk; /* device */
    kd_param_ref cpu[NP], gpu[NP];
} opt_fixture;

static void fixture_init(opt_fixture *x, uint64_t seed)
{
    x->h_theta = rnd(P_TOTAL, seed, -1, 1);
    x->h_gt = xmalloc(P_TOTAL * 4);
    x->h_gk = xmalloc(P_TOTAL * 4);
    x->d_theta = up(x->h_theta, P_TOTAL * 4);
    x->d_gt = dev(P_TOTAL * 4);
    x->d_gk = dev(P_TOTAL * 4);
    size_t off = 0;
    for (int i = 0; i < NP; i++) {
        x->cpu[i] = (kd_param_ref){x->h_theta + off, p_task[i] ? x->h_gt + off : NULL,
                                   p_kd[i] ? x->h_gk + off : NULL, p_n[i]};
        x->gpu[i] = (kd_param_ref){x->d_theta + off, p_task[i] ? x->d_gt + off : NULL,
                                   p_kd[i] ? x->d_gk + off : NULL, p_n[i]};
        off += p_n[i];
    }
}

/* New random gradients for step s, on both sides. */
static void fixture_grads(opt_fixture *x, int s)
{
    kdc_test_fill_uniform(x->h_gt, P_TOTAL, 1000 + 2 * s, -1, 1);
    kdc_test_fill_uniform(x->h_gk, P_TOTAL, 1001 + 2 * s, -0.5f, 0.5f);
    CK(g_gpu->copy_h2d(g_gpu, x->d_gt, x->h_gt, P_TOTAL * 4, &g_err));
    CK(g_gpu->copy_h2d(g_gpu, x->d_gk, x->h_gk, P_TOTAL * 4, &g_err));
}

static void fixture_free(opt_fixture *x)
{
    free(x->h_theta), free(x->h_gt), free(x->h_gk);
    dfree(x->d_theta), dfree(x->d_gt), dfree(x->d_gk);
}

/* Bit-exact comparison of a host array with a device array. */
static void same_bits(const char *what, int step, const float *ref, const float *d, size_t n)
{
    float *got = down(d, n * 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&got[i], &ref[i], 4) == 0,
                      "%s after step %d, element %zu: gpu %.9g cpu %.9g", what, step, i,
                      (double)got[i], (double)ref[i]);
    free(got);
}

static void same_host_bits(const char *what, int step, const float *ref, const float *got, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&got[i], &ref[i], 4) == 0,
                      "%s after step %d, element %zu: gpu %.9g cpu %.9g", what, step, i,
                      (double)got[i], (double)ref[i]);
}

static double lr_at(int s)
{
    return 0.1 * (1.0 + 0.37 * s);
}

static void sgd_case(double mu, double wd)
{
    opt_fixture x;
    fixture_init(&x, 400);
    kd_sgd c;
    kd_cuda_sgd g;
    CK(kd_sgd_init(&c, x.cpu, NP, mu, wd, &g_err));
    CK(kd_cuda_sgd_init(&g, g_gpu, x.gpu, NP, mu, wd, &g_err));
    ck_assert_uint_eq(g.n_runs, 4);
    ck_assert_uint_eq(g.n_buf, c.n_buf);
    float *buf = xmalloc(c.n_buf * 4);
    for (int s = 0; s < 5; s++) {
        fixture_grads(&x, s);
        CK(kd_sgd_step(&c, lr_at(s), &g_err));
        CK(kd_cuda_sgd_step(&g, lr_at(s), &g_err));
        same_bits("SGD theta", s, x.h_theta, x.d_theta, P_TOTAL);
        CK(kd_cuda_sgd_get_state(&g, buf, c.n_buf, &g_err));
        if (mu != 0)
            same_host_bits("SGD momentum", s, c.buf, buf, c.n_buf);
        if (s == 2) { /* resume from the CPU's checkpoint state */
            kd_cuda_sgd_free(&g);
            CK(kd_cuda_sgd_init(&g, g_gpu, x.gpu, NP, mu, wd, &g_err));
            CK(kd_cuda_sgd_set_state(&g, c.buf, c.n_buf, c.steps, &g_err));
        }
    }
    ck_assert_uint_eq(g.steps, c.steps);
    free(buf);
    kd_sgd_free(&c);
    kd_cuda_sgd_free(&g);
    fixture_free(&x);
}

START_TEST(test_sgd)
{
    sgd_case(0.9, 5e-4);
    sgd_case(0.0, 5e-4);
}
END_TEST

static void dot_case(double mu, double delta, double wd)
{
    opt_fixture x;
    fixture_init(&x, 500);
    kd_dot c;
    kd_cuda_dot g;
    CK(kd_dot_init(&c, x.cpu, NP, mu, delta, wd, &g_err));
    CK(kd_cuda_dot_init(&g, g_gpu, x.gpu, NP, mu, delta, wd, &g_err));
    ck_assert_uint_eq(g.n_runs, 4);
    ck_assert_uint_eq(g.n_task, c.n_task);
    ck_assert_uint_eq(g.n_distill, c.n_distill);
    float *bt = xmalloc(c.n_task * 4), *bk = xmalloc(c.n_distill * 4);
    for (int s = 0; s < 6; s++) {
        fixture_grads(&x, s);
        CK(kd_dot_step(&c, lr_at(s), &g_err));
        CK(kd_cuda_dot_step(&g, lr_at(s), &g_err));
        same_bits("DOT theta", s, x.h_theta, x.d_theta, P_TOTAL);
        CK(kd_cuda_dot_get_state(&g, bt, c.n_task, bk, c.n_distill, &g_err));
        same_host_bits("DOT task momentum", s, c.buf_task, bt, c.n_task);
        same_host_bits("DOT distillation momentum", s, c.buf_distill, bk, c.n_distill);
        if (s == 2) { /* resume from the CPU's checkpoint state */
            kd_cuda_dot_free(&g);
            CK(kd_cuda_dot_init(&g, g_gpu, x.gpu, NP, mu, delta, wd, &g_err));
            CK(kd_cuda_dot_set_state(&g, c.buf_task, c.n_task, c.buf_distill, c.n_distill, c.steps,
                                     &g_err));
        }
    }
    free(bt), free(bk);
    kd_dot_free(&c);
    kd_cuda_dot_free(&g);
    fixture_free(&x);
}

START_TEST(test_dot)
{
    dot_case(0.9, 0.075, 5e-4); /* CIFAR recipe */
    dot_case(0.9, 0.09, 1e-4);  /* ImageNet recipe */
    dot_case(0.45, 0.45, 1e-4); /* m_task = 0: no task buffer (mdistiller quirk) */
    dot_case(0.9, 0.0, 5e-4);   /* delta = 0 */
}
END_TEST

/* A resnet18-sized flat vector with both gradients plus a 512 -> 512
 * projector (distillation only): two runs, one launch. Checks the result on
 * a large grid and prints the step time. */
START_TEST(test_dot_flat)
{
    const size_t n = 11689512, np = 512 * 512 + 512, N = n + np;
    float *h = rnd(N, 600, -1, 1), *gt = rnd(N, 601, -1, 1), *gk = rnd(N, 602, -1, 1);
    float *d = up(h, N * 4), *dgt = up(gt, N * 4), *dgk = up(gk, N * 4);
    kd_param_ref cp[2] = {{h, gt, gk, n}, {h + n, NULL, gk + n, np}};
    kd_param_ref gp[2] = {{d, dgt, dgk, n}, {d + n, NULL, dgk + n, np}};
    kd_dot c;
    kd_cuda_dot g;
    CK(kd_dot_init(&c, cp, 2, 0.9, 0.09, 1e-4, &g_err));
    CK(kd_cuda_dot_init(&g, g_gpu, gp, 2, 0.9, 0.09, 1e-4, &g_err));
    ck_assert_uint_eq(g.n_runs, 2);
    for (int s = 0; s < 2; s++) {
        CK(kd_dot_step(&c, 0.2, &g_err));
        CK(kd_cuda_dot_step(&g, 0.2, &g_err));
    }
    same_bits("DOT flat theta", 1, h, d, N);
    CK(g_gpu->synchronize(g_gpu, &g_err));
    const int reps = 20;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int s = 0; s < reps; s++)
        CK(kd_cuda_dot_step(&g, 0.2, &g_err));
    CK(g_gpu->synchronize(g_gpu, &g_err));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = elapsed_ms(&a, &b) / reps;
    /* both-gradient element: reads theta, g_task, g_kd, v_task, v_kd, writes theta, v_task, v_kd */
    double bytes = 32.0 * (double)n + 20.0 * (double)np;
    printf("check-gpu: DOT step over %zu floats (2 runs): %.3f ms, %.0f GB/s\n", N, ms,
           bytes / (ms * 1e-3) / 1e9);
    kd_dot_free(&c);
    kd_cuda_dot_free(&g);
    free(h), free(gt), free(gk);
    dfree(d), dfree(dgt), dfree(dgk);
}
END_TEST

START_TEST(test_optim_bad)
{
    opt_fixture x;
    fixture_init(&x, 700);
    kd_cuda_sgd s;
    kd_cuda_dot d;
    ck_assert_int_eq(kd_cuda_sgd_init(&s, g_gpu, x.gpu, NP, 1.0, 0, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_dot_init(&d, g_gpu, x.gpu, NP, 0.9, 0.95, 0, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_dot_init(&d, g_gpu, x.gpu, NP, 0.9, 0.15, 0, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_sgd_init(&s, g_cpu, x.gpu, NP, 0.9, 0, &g_err), KDC_EDEVICE);
    /* host memory where device memory is expected: a clear error, not a crashed context */
    ck_assert_int_eq(kd_cuda_sgd_init(&s, g_gpu, x.cpu, NP, 0.9, 0, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_dot_init(&d, g_gpu, x.cpu, NP, 0.9, 0.05, 0, &g_err), KDC_EINVAL);
    kd_param_ref none = {x.d_theta, NULL, NULL, 4};
    ck_assert_int_eq(kd_cuda_dot_init(&d, g_gpu, &none, 1, 0.9, 0.05, 0, &g_err), KDC_EINVAL);
    CK(kd_cuda_dot_init(&d, g_gpu, x.gpu, NP, 0.9, 0.05, 0, &g_err));
    ck_assert_int_eq(kd_cuda_dot_step(&d, NAN, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_dot_step(&d, -1.0, &g_err), KDC_EINVAL);
    float tmp[4];
    ck_assert_int_eq(kd_cuda_dot_get_state(&d, tmp, 4, tmp, 4, &g_err), KDC_EMISMATCH);
    ck_assert_int_eq(kd_cuda_dot_set_state(&d, tmp, 4, tmp, 4, 1, &g_err), KDC_EMISMATCH);
    kd_cuda_dot_free(&d);
    ck_assert_int_eq(kd_cuda_dot_step(&d, 0.1, &g_err), KDC_EINVAL);
    fixture_free(&x);
}
END_TEST

/* ---- top-k rows for the cache writer ---- */

static void topk_rows_case(size_t rows, size_t C, size_t K, size_t index_size, int ties,
                           int specials)
{
    float *x = rnd(rows * C, 800 + C + K, -10, 10);
    if (ties) /* quarter steps in [-2, 2]: many equal values per row */
        for (size_t i = 0; i < rows * C; i++)
            x[i] = floorf(x[i] * 0.8f) * 0.25f;
    if (specials && C >= 8)
        for (size_t r = 0; r < rows; r++) {
            float *xr = x + r * C;
            xr[(r * 3 + 1) % C] = NAN;
            xr[(r * 5 + 2) % C] = r % 2 ? -NAN : NAN;
            xr[(r * 7 + 3) % C] = INFINITY;
            xr[(r * 11 + 4) % C] = -INFINITY;
            xr[(r * 13 + 5) % C] = -0.0f;
            xr[(r * 13 + 6) % C] = 0.0f;
            xr[(r * 17 + 7) % C] = 70000.0f; /* beyond float16: inf */
        }
    void *ref_i = xmalloc(rows * K * index_size);
    uint16_t *ref_v = xmalloc(rows * K * 2);
    cache_topk_rows(x, rows, C, K, ref_i, index_size, ref_v);
    float *d_x = up(x, rows * C * 4);
    void *d_i = dev(rows * K * index_size);
    uint16_t *d_v = dev(rows * K * 2);
    CK(kdc_cuda_topk_rows(g_gpu, d_x, rows, C, K, d_i, index_size, d_v, &g_err));
    void *got_i = down(d_i, rows * K * index_size);
    uint16_t *got_v = down(d_v, rows * K * 2);
    for (size_t e = 0; e < rows * K; e++) {
        long gi = index_size == 2 ? ((uint16_t *)got_i)[e] : ((int32_t *)got_i)[e];
        long ri = index_size == 2 ? ((uint16_t *)ref_i)[e] : ((int32_t *)ref_i)[e];
        ck_assert_msg(gi == ri && got_v[e] == ref_v[e],
                      "top-k rows (C=%zu K=%zu): row %zu rank %zu: gpu class %ld 0x%04x, cpu "
                      "class %ld 0x%04x",
                      C, K, e / K, e % K, gi, got_v[e], ri, ref_v[e]);
    }
    free(x), free(ref_i), free(ref_v), free(got_i), free(got_v);
    dfree(d_x), dfree(d_i), dfree(d_v);
}

START_TEST(test_topk_rows)
{
    topk_rows_case(37, 1000, 5, 2, 0, 1);
    topk_rows_case(37, 1000, 10, 4, 0, 0);
    topk_rows_case(9, 10, 10, 2, 0, 1);    /* K = C */
    topk_rows_case(64, 100, 100, 4, 1, 1); /* full sort with ties */
    topk_rows_case(64, 1000, 50, 2, 1, 0);
    topk_rows_case(3, 10240, 9, 2, 1, 1);  /* longest row staged in shared memory */
    topk_rows_case(3, 10241, 9, 2, 1, 1);  /* shortest row read from global memory */
    topk_rows_case(5, 20000, 20, 2, 0, 1); /* longer than shared memory */
    topk_rows_case(3, 70000, 7, 4, 1, 1);  /* beyond uint16 indices */
    topk_rows_case(4, 65536, 3, 2, 0, 0);  /* largest uint16 index */
    topk_rows_case(2, 1, 1, 4, 0, 0);

    /* the cache rows of one kd-precompute batch: 256 images x 10 views, C = 1000,
     * top-10 logits plus 2048 float16 features; timed */
    const size_t rows = 2560, C = 1000, K = 10, D = 2048;
    float *x = rnd(rows * C, 900, -10, 10), *f = rnd(rows * D, 901, 0, 6);
    float *d_x = up(x, rows * C * 4), *d_f = up(f, rows * D * 4);
    uint16_t *d_i = dev(rows * K * 2), *d_v = dev(rows * K * 2), *d_h = dev(rows * D * 2);
    CK(g_gpu->synchronize(g_gpu, &g_err));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CK(kdc_cuda_topk_rows(g_gpu, d_x, rows, C, K, d_i, 2, d_v, &g_err));
    CK(g_gpu->synchronize(g_gpu, &g_err));
    clock_gettime(CLOCK_MONOTONIC, &b);
    CK(g_gpu->f32_to_f16(g_gpu, rows * D, d_f, d_h, &g_err));
    uint16_t *got = down(d_h, rows * D * 2), *ref = xmalloc(rows * D * 2);
    kdc_f32_to_f16_array(f, ref, rows * D);
    ck_assert(memcmp(got, ref, rows * D * 2) == 0);
    printf("check-gpu: top-%zu of %zu rows x %zu classes: %.3f ms\n", K, rows, C,
           elapsed_ms(&a, &b));
    free(x), free(f), free(got), free(ref);
    dfree(d_x), dfree(d_f), dfree(d_i), dfree(d_v), dfree(d_h);
}
END_TEST

START_TEST(test_topk_rows_bad)
{
    float *d_x = dev(100 * 4);
    uint16_t *d_i = dev(100 * 4), *d_v = dev(100 * 2);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_gpu, d_x, 1, 100, 5, d_i, 3, d_v, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_gpu, d_x, 1, 100, 0, d_i, 2, d_v, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_gpu, d_x, 1, 100, 101, d_i, 2, d_v, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_gpu, d_x, 1, 70000, 5, d_i, 2, d_v, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_gpu, NULL, 1, 100, 5, d_i, 2, d_v, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kdc_cuda_topk_rows(g_cpu, d_x, 1, 100, 5, d_i, 2, d_v, &g_err), KDC_EDEVICE);
    CK(kdc_cuda_topk_rows(g_gpu, d_x, 0, 100, 5, d_i, 2, d_v, &g_err)); /* no rows: nothing */
    dfree(d_x), dfree(d_i), dfree(d_v);
}
END_TEST

static Suite *train_suite(void)
{
    Suite *s = suite_create("gpu_train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_kd_topk);
    tcase_add_test(tc, test_kd_topk_bad);
    tcase_add_test(tc, test_proj);
    tcase_add_test(tc, test_proj_bad);
    tcase_add_test(tc, test_sgd);
    tcase_add_test(tc, test_dot);
    tcase_add_test(tc, test_dot_flat);
    tcase_add_test(tc, test_optim_bad);
    tcase_add_test(tc, test_topk_rows);
    tcase_add_test(tc, test_topk_rows_bad);
    suite_add_tcase(s, tc);
    return s;
}

#endif /* KDC_HAVE_CUDA */

int main(void)
{
    kdc_error err = {0};
    kdc_backend *gpu = NULL;
    if (kdc_backend_cuda_create(0, &gpu, &err) != KDC_OK) {
        printf("check-gpu (train): not run, no usable GPU: %s\n", err.msg);
        return 0;
    }
#ifndef KDC_HAVE_CUDA
    /* unreachable: without CUDA the stub never creates a backend */
    kdc_backend_destroy(gpu);
    printf("check-gpu (train): not run, this build has no CUDA kernels\n");
    return 0;
#else
    g_gpu = gpu;
    if (kdc_backend_cpu_create(1, &g_cpu, &err) != KDC_OK) {
        fprintf(stderr, "check-gpu (train): %s\n", err.msg);
        kdc_backend_destroy(g_gpu);
        return 1;
    }
    printf("check-gpu (train): %s vs the CPU functions\n", g_gpu->name);
    SRunner *sr = srunner_create(train_suite());
    /* no fork: a CUDA context does not survive fork() */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    kdc_backend_destroy(g_cpu);
    kdc_backend_destroy(g_gpu);
    return failed ? 1 : 0;
#endif
}
