/* test_gpu_ops.c - `make check-gpu`: every op of the CUDA backend against the
 * CPU backend (the specification), then whole models (resnet18, mobilenet_v1:
 * eval forward, BN-folded inference, train forward + backward, one SGD step),
 * then the allocator and the uploader.
 *
 * Inputs are random (splitmix64 uniform, never all zeros); max-pool inputs
 * are distinct values so that no window has a tie (cuDNN and the CPU break
 * ties differently). Errors are max|gpu - cpu| / max|cpu| per tensor, with
 * the bounds below. Without a GPU (or in a build without CUDA) the program
 * prints one line saying the checks did not run and exits 0.
 *
 * Error bounds (relative to the tensor's max; fp32 | tf32/fp16 teacher mode):
 *   conv2d forward, backward (dx, dw, dbias)   2e-4 | 3e-3   (cuDNN may use
 *       FFT / Winograd algorithms, which reorder and transform the sums)
 *   linear forward, backward                   2e-5 | 3e-3
 *   batchnorm train y, saved stats, running    2e-5;  eval 2e-6;  backward dx 1e-4,
 *       dgamma / dbeta 2e-5 (the CPU sums channel statistics in double)
 *   relu forward / backward, add, max-pool forward    exact
 *   max-pool backward, avg-pool, axpy          1e-6
 *   f32_to_f16                                 bit-exact (round-to-nearest-even)
 *   CE / KD loss kernels: gradient 1e-5, loss 1e-6 (both sides work in double)
 *   whole model logits eval / infer / train    2e-3 | 3e-2;  gradients 1e-2
 *       (deep BN networks amplify rounding differences, see FINDINGS.md) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/backend_cpu.h"
#include "common/cuda/cuda_backend.h"
#include "common/base/half.h"
#include "common/models/model.h"
#include "tests/helpers/testutil.h"
#include "train/losses.h"
#ifdef KDC_HAVE_CUDA
#include "train/losses_cuda.h"
#endif

#define TOL_CONV 2e-4
#define TOL_CONV_TC 3e-3
#define TOL_LINEAR 2e-5
#define TOL_LINEAR_TC 3e-3
#define TOL_BN 2e-5
#define TOL_BN_EVAL 2e-6
#define TOL_BN_DX 1e-4
#define TOL_SMALL 1e-6
#define TOL_MODEL 2e-3
#define TOL_MODEL_TC 3e-2
#define TOL_MODEL_GRAD 1e-2

static kdc_backend *g_cpu, *g_gpu;
static kdc_error g_err;

#define CK(call)                                                                             \
    do {                                                                                     \
        kdc_status ck_st_ = (call);                                                          \
        ck_assert_msg(ck_st_ == KDC_OK, "%s: %s", #call, g_err.msg);                         \
    } while (0)

/* ---- helpers: the same host data on both backends ---- */

static float *rnd(size_t n, uint64_t seed, float lo, float hi)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    kdc_test_fill_uniform(h, n, seed, lo, hi);
    return h;
}

static float *up(kdc_backend *be, const float *h, size_t n)
{
    void *p = NULL;
    CK(be->alloc(be, n * sizeof(float), &p, &g_err));
    CK(be->copy_h2d(be, p, h, n * sizeof(float), &g_err));
    return p;
}

/* Output buffers start as NaN so that an op that forgets to write shows. */
static float *out_buf(kdc_backend *be, size_t n)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    float *d = up(be, h, n);
    free(h);
    return d;
}

static float *down(kdc_backend *be, const float *d, size_t n)
{
    float *h = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(h);
    CK(be->copy_d2h(be, h, d, n * sizeof(float), &g_err));
    return h;
}

/* Downloads d from both backends and compares; frees nothing. */
static double cmp(const char *what, const float *dcpu, const float *dgpu, size_t n, double tol)
{
    float *c = down(g_cpu, dcpu, n), *g = down(g_gpu, dgpu, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(g[i]) || !isfinite(c[i]), "%s: gpu[%zu] = %g, cpu %g", what, i,
                      (double)g[i], (double)c[i]);
    double r = kdc_test_rel_err_f32(g, c, n);
    ck_assert_msg(r <= tol, "%s: relative error %.3g > %.3g", what, r, tol);
    free(c);
    free(g);
    return r;
}

/* A host array on both devices. */
typedef struct pair {
    float *c, *g;
    size_t n;
} pair;

static pair both(const float *h, size_t n)
{
    pair p = {up(g_cpu, h, n), up(g_gpu, h, n), n};
    return p;
}

static pair both_rnd(size_t n, uint64_t seed, float lo, float hi)
{
    float *h = rnd(n, seed, lo, hi);
    pair p = both(h, n);
    free(h);
    return p;
}

static pair both_out(size_t n)
{
    pair p = {out_buf(g_cpu, n), out_buf(g_gpu, n), n};
    return p;
}

static void pfree(pair *p)
{
    if (p->c)
        g_cpu->free(g_cpu, p->c);
    if (p->g)
        g_gpu->free(g_gpu, p->g);
    p->c = p->g = NULL;
}

/* ---- convolution ---- */

typedef struct conv_case {
    int n, c_in, h, w, c_out, k, stride, pad, groups, bias;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 32, 32, 16, 7, 2, 3, 1, 0},  /* resnet stem */
    {2, 16, 14, 14, 16, 3, 1, 1, 1, 1}, /* 3x3 with bias */
    {3, 16, 15, 13, 32, 1, 2, 0, 1, 0}, /* 1x1 downsample, odd sizes */
    {2, 32, 12, 12, 32, 3, 2, 1, 32, 0}, /* depthwise (mobilenet) */
    {2, 8, 9, 9, 12, 3, 1, 1, 4, 1},    /* grouped */
};

static void conv_case_run(const conv_case *cc, kdc_precision prec, double tol_fwd)
{
    kdc_conv2d_desc d = {cc->n, cc->c_in, cc->h, cc->w, cc->c_out, cc->k, cc->k,
                         cc->stride, cc->pad, cc->groups, 0, 0, 0, 0, 0};
    CK(kdc_conv2d_desc_init(&d, &g_err));
    size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
    size_t nw = (size_t)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
    size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
    uint64_t s = (uint64_t)cc->c_in * 1000 + cc->k;
    pair x = both_rnd(nx, s + 1, -1, 1), w = both_rnd(nw, s + 2, -0.5f, 0.5f);
    pair b = cc->bias ? both_rnd(d.c_out, s + 3, -1, 1) : (pair){0};
    pair y = both_out(ny);
    CK(kdc_backend_set_precision(g_gpu, prec, &g_err));
    CK(g_cpu->conv2d_forward(g_cpu, &d, x.c, w.c, b.c, y.c, &g_err));
    CK(g_gpu->conv2d_forward(g_gpu, &d, x.g, w.g, b.g, y.g, &g_err));
    CK(kdc_backend_set_precision(g_gpu, KDC_PREC_FP32, &g_err));
    char what[96];
    snprintf(what, sizeof what, "conv %dx%d k%d s%d g%d %s y", d.c_in, d.c_out, d.kh, d.stride,
             d.groups, kdc_precision_name(prec));
    cmp(what, y.c, y.g, ny, tol_fwd);
    if (prec == KDC_PREC_FP32) {
        pair dy = both_rnd(ny, s + 4, -1, 1), dx = both_out(nx), dw = both_out(nw);
        pair db = cc->bias ? both_out(d.c_out) : (pair){0};
        CK(g_cpu->conv2d_backward(g_cpu, &d, x.c, w.c, dy.c, dx.c, dw.c, db.c, &g_err));
        CK(g_gpu->conv2d_backward(g_gpu, &d, x.g, w.g, dy.g, dx.g, dw.g, db.g, &g_err));
        cmp("conv dx", dx.c, dx.g, nx, TOL_CONV);
        cmp("conv dw", dw.c, dw.g, nw, TOL_CONV);
        if (cc->bias)
            cmp("conv dbias", db.c, db.g, d.c_out, TOL_CONV);
        /* dx NULL (first layer): dw must not change */
        pair dw2 = both_out(nw);
        CK(g_gpu->conv2d_backward(g_gpu, &d, x.g, w.g, dy.g, NULL, dw2.g, NULL, &g_err));
        CK(g_cpu->conv2d_backward(g_cpu, &d, x.c, w.c, dy.c, NULL, dw2.c, NULL, &g_err));
        cmp("conv dw (dx NULL)", dw2.c, dw2.g, nw, TOL_CONV);
        pfree(&dy), pfree(&dx), pfree(&dw), pfree(&db), pfree(&dw2);
    }
    pfree(&x), pfree(&w), pfree(&b), pfree(&y);
}

START_TEST(test_conv2d)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        conv_case_run(&conv_cases[i], KDC_PREC_FP32, TOL_CONV);
        conv_case_run(&conv_cases[i], KDC_PREC_TF32, TOL_CONV_TC);
        conv_case_run(&conv_cases[i], KDC_PREC_FP16, TOL_CONV_TC);
        /* the cached plan must give the same result on a second call */
        conv_case_run(&conv_cases[i], KDC_PREC_FP32, TOL_CONV);
    }
}
END_TEST

START_TEST(test_conv2d_bad_desc)
{
    kdc_conv2d_desc d = {1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0};
    CK(kdc_conv2d_desc_init(&d, &g_err));
    d.h_out += 1; /* inconsistent with the sizes */
    ck_assert_int_eq(g_gpu->conv2d_forward(g_gpu, &d, NULL, NULL, NULL, NULL, &g_err),
                     KDC_EINVAL);
}
END_TEST

/* ---- batch norm ---- */

static void bn_case(int n, int c, int hw, int affine, int track)
{
    kdc_bn_desc d = {n, c, hw, 1e-5f, 0.1f, 0};
    size_t nx = (size_t)n * c * hw;
    uint64_t s = (uint64_t)c * 77 + hw;
    /* a channel offset so that the mean matters */
    float *hx = rnd(nx, s, -1, 3);
    pair x = both(hx, nx);
    free(hx);
    pair g = affine ? both_rnd(c, s + 1, 0.5f, 1.5f) : (pair){0};
    pair b = affine ? both_rnd(c, s + 2, -1, 1) : (pair){0};
    pair rm = track ? both_rnd(c, s + 3, -0.5f, 0.5f) : (pair){0};
    pair rv = track ? both_rnd(c, s + 4, 0.5f, 2.0f) : (pair){0};
    pair sm = both_out(c), si = both_out(c), y = both_out(nx);
    CK(g_cpu->batchnorm_forward_train(g_cpu, &d, x.c, g.c, b.c, rm.c, rv.c, sm.c, si.c, y.c,
                                      &g_err));
    CK(g_gpu->batchnorm_forward_train(g_gpu, &d, x.g, g.g, b.g, rm.g, rv.g, sm.g, si.g, y.g,
                                      &g_err));
    cmp("bn train y", y.c, y.g, nx, TOL_BN);
    cmp("bn save_mean", sm.c, sm.g, c, TOL_BN);
    cmp("bn save_invstd", si.c, si.g, c, TOL_BN);
    if (track) {
        cmp("bn running_mean", rm.c, rm.g, c, TOL_BN);
        cmp("bn running_var (unbiased)", rv.c, rv.g, c, TOL_BN);
        pair ye = both_out(nx);
        CK(g_cpu->batchnorm_forward_eval(g_cpu, &d, x.c, g.c, b.c, rm.c, rv.c, ye.c, &g_err));
        CK(g_gpu->batchnorm_forward_eval(g_gpu, &d, x.g, g.g, b.g, rm.g, rv.g, ye.g, &g_err));
        cmp("bn eval y", ye.c, ye.g, nx, TOL_BN_EVAL);
        pfree(&ye);
    }
    pair dy = both_rnd(nx, s + 5, -1, 1), dx = both_out(nx);
    pair dg = affine ? both_out(c) : (pair){0}, db = affine ? both_out(c) : (pair){0};
    CK(g_cpu->batchnorm_backward(g_cpu, &d, x.c, dy.c, g.c, sm.c, si.c, dx.c, dg.c, db.c,
                                 &g_err));
    CK(g_gpu->batchnorm_backward(g_gpu, &d, x.g, dy.g, g.g, sm.g, si.g, dx.g, dg.g, db.g,
                                 &g_err));
    cmp("bn dx", dx.c, dx.g, nx, TOL_BN_DX);
    if (affine) {
        cmp("bn dgamma", dg.c, dg.g, c, TOL_BN);
        cmp("bn dbeta", db.c, db.g, c, TOL_BN);
    }
    pfree(&x), pfree(&g), pfree(&b), pfree(&rm), pfree(&rv), pfree(&sm), pfree(&si);
    pfree(&y), pfree(&dy), pfree(&dx), pfree(&dg), pfree(&db);
}

START_TEST(test_batchnorm)
{
    bn_case(4, 8, 49, 1, 1);  /* conv feature map */
    bn_case(2, 16, 9, 0, 1);  /* no affine */
    bn_case(8, 32, 1, 0, 0);  /* projector: B x D, no affine, untracked */
    bn_case(3, 5, 17, 1, 0);  /* affine, untracked */
}
END_TEST

/* ---- elementwise ---- */

START_TEST(test_elementwise)
{
    const size_t n = 100003; /* not a multiple of any block size */
    pair x = both_rnd(n, 11, -1, 1), b = both_rnd(n, 12, -1, 1), y = both_out(n);
    CK(g_cpu->relu_forward(g_cpu, n, x.c, y.c, &g_err));
    CK(g_gpu->relu_forward(g_gpu, n, x.g, y.g, &g_err));
    cmp("relu", y.c, y.g, n, 0);
    pair dy = both_rnd(n, 13, -1, 1), dx = both_out(n);
    CK(g_cpu->relu_backward(g_cpu, n, y.c, dy.c, dx.c, &g_err));
    CK(g_gpu->relu_backward(g_gpu, n, y.g, dy.g, dx.g, &g_err));
    cmp("relu backward", dx.c, dx.g, n, 0);
    pair s = both_out(n);
    CK(g_cpu->add(g_cpu, n, x.c, b.c, s.c, &g_err));
    CK(g_gpu->add(g_gpu, n, x.g, b.g, s.g, &g_err));
    cmp("add", s.c, s.g, n, 0);
    /* aliasing: y = y + b */
    CK(g_cpu->add(g_cpu, n, s.c, b.c, s.c, &g_err));
    CK(g_gpu->add(g_gpu, n, s.g, b.g, s.g, &g_err));
    cmp("add in place", s.c, s.g, n, 0);
    CK(g_cpu->axpy(g_cpu, n, -0.37f, x.c, s.c, &g_err));
    CK(g_gpu->axpy(g_gpu, n, -0.37f, x.g, s.g, &g_err));
    cmp("axpy", s.c, s.g, n, TOL_SMALL);
    pair z = both_out(n);
    CK(g_gpu->copy_d2d(g_gpu, z.g, s.g, n * sizeof(float), &g_err));
    CK(g_cpu->copy_d2d(g_cpu, z.c, s.c, n * sizeof(float), &g_err));
    cmp("copy_d2d", z.c, z.g, n, 0);
    CK(g_gpu->fill_zero(g_gpu, z.g, n * sizeof(float), &g_err));
    CK(g_cpu->fill_zero(g_cpu, z.c, n * sizeof(float), &g_err));
    cmp("fill_zero", z.c, z.g, n, 0);
    pfree(&x), pfree(&b), pfree(&y), pfree(&dy), pfree(&dx), pfree(&s), pfree(&z);
}
END_TEST

START_TEST(test_f32_to_f16)
{
    const size_t n = 70000;
    float *h = rnd(n, 21, -70000.0f, 70000.0f); /* beyond the f16 range: overflow to inf */
    /* special and boundary values, then many scales */
    const float special[] = {0.0f,     -0.0f,     1.0f,       65504.0f, 65520.0f, -65519.0f,
                             6.1e-5f,  5.96e-8f,  2.98e-8f,   1e-10f,   INFINITY, -INFINITY,
                             NAN,      0.33333f,  1.0009765f, 2049.0f,  2051.0f,  -3e-6f};
    memcpy(h, special, sizeof special);
    for (size_t i = sizeof special / sizeof special[0]; i < 20000; i++)
        h[i] *= ldexpf(1.0f, -(int)(i % 40)) / 70000.0f;
    float *d = up(g_gpu, h, n);
    void *o = NULL;
    CK(g_gpu->alloc(g_gpu, n * 2, &o, &g_err));
    CK(g_gpu->f32_to_f16(g_gpu, n, d, o, &g_err));
    uint16_t *got = malloc(n * 2), *ref = malloc(n * 2);
    ck_assert_ptr_nonnull(got);
    ck_assert_ptr_nonnull(ref);
    CK(g_gpu->copy_d2h(g_gpu, got, o, n * 2, &g_err));
    kdc_f32_to_f16_array(h, ref, n);
    for (size_t i = 0; i < n; i++) {
        int nan_both = (ref[i] & 0x7c00) == 0x7c00 && (ref[i] & 0x3ff) &&
                       (got[i] & 0x7c00) == 0x7c00 && (got[i] & 0x3ff);
        ck_assert_msg(got[i] == ref[i] || nan_both, "f16[%zu] of %a: gpu 0x%04x cpu 0x%04x", i,
                      (double)h[i], got[i], ref[i]);
    }
    g_gpu->free(g_gpu, d);
    g_gpu->free(g_gpu, o);
    free(h), free(got), free(ref);
}
END_TEST

/* ---- pooling ---- */

START_TEST(test_maxpool)
{
    kdc_pool2d_desc d = {2, 8, 17, 16, 3, 2, 1, 0, 0, 0};
    CK(kdc_pool2d_desc_init(&d, &g_err));
    size_t nx = (size_t)d.n * d.c * d.h_in * d.w_in, ny = (size_t)d.n * d.c * d.h_out * d.w_out;
    /* distinct values (a shuffled ramp) so that no window has a tie */
    float *h = malloc(nx * sizeof(float));
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < nx; i++)
        h[i] = (float)i / (float)nx - 0.5f;
    uint64_t st = 12345;
    for (size_t i = nx - 1; i > 0; i--) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        size_t j = (size_t)(st >> 33) % (i + 1);
        float t = h[i];
        h[i] = h[j];
        h[j] = t;
    }
    pair x = both(h, nx), y = both_out(ny);
    free(h);
    CK(g_cpu->maxpool2d_forward(g_cpu, &d, x.c, y.c, &g_err));
    CK(g_gpu->maxpool2d_forward(g_gpu, &d, x.g, y.g, &g_err));
    cmp("maxpool", y.c, y.g, ny, 0);
    pair dy = both_rnd(ny, 31, -1, 1), dx = both_out(nx);
    CK(g_cpu->maxpool2d_backward(g_cpu, &d, x.c, y.c, dy.c, dx.c, &g_err));
    CK(g_gpu->maxpool2d_backward(g_gpu, &d, x.g, y.g, dy.g, dx.g, &g_err));
    cmp("maxpool backward", dx.c, dx.g, nx, TOL_SMALL);
    pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
}
END_TEST

START_TEST(test_avgpool)
{
    const int n = 3, c = 40, hw = 49;
    size_t nx = (size_t)n * c * hw;
    pair x = both_rnd(nx, 41, -1, 2), y = both_out((size_t)n * c);
    CK(g_cpu->avgpool_global_forward(g_cpu, n, c, hw, x.c, y.c, &g_err));
    CK(g_gpu->avgpool_global_forward(g_gpu, n, c, hw, x.g, y.g, &g_err));
    cmp("avgpool", y.c, y.g, (size_t)n * c, TOL_SMALL);
    pair dy = both_rnd((size_t)n * c, 42, -1, 1), dx = both_out(nx);
    CK(g_cpu->avgpool_global_backward(g_cpu, n, c, hw, dy.c, dx.c, &g_err));
    CK(g_gpu->avgpool_global_backward(g_gpu, n, c, hw, dy.g, dx.g, &g_err));
    cmp("avgpool backward", dx.c, dx.g, nx, TOL_SMALL);
    pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
}
END_TEST

/* ---- linear ---- */

static void linear_case(int n, int in, int out, int bias, kdc_precision prec, double tol)
{
    pair x = both_rnd((size_t)n * in, 51 + in, -1, 1);
    pair w = both_rnd((size_t)out * in, 52 + out, -0.3f, 0.3f);
    pair b = bias ? both_rnd(out, 53, -1, 1) : (pair){0};
    pair y = both_out((size_t)n * out);
    CK(kdc_backend_set_precision(g_gpu, prec, &g_err));
    CK(g_cpu->linear_forward(g_cpu, n, in, out, x.c, w.c, b.c, y.c, &g_err));
    CK(g_gpu->linear_forward(g_gpu, n, in, out, x.g, w.g, b.g, y.g, &g_err));
    CK(kdc_backend_set_precision(g_gpu, KDC_PREC_FP32, &g_err));
    cmp(prec == KDC_PREC_FP32 ? "linear y" : "linear y (tensor cores)", y.c, y.g,
        (size_t)n * out, tol);
    if (prec == KDC_PREC_FP32) {
        pair dy = both_rnd((size_t)n * out, 54, -1, 1), dx = both_out((size_t)n * in);
        pair dw = both_out((size_t)out * in), db = bias ? both_out(out) : (pair){0};
        CK(g_cpu->linear_backward(g_cpu, n, in, out, x.c, w.c, dy.c, dx.c, dw.c, db.c, &g_err));
        CK(g_gpu->linear_backward(g_gpu, n, in, out, x.g, w.g, dy.g, dx.g, dw.g, db.g, &g_err));
        cmp("linear dx", dx.c, dx.g, (size_t)n * in, TOL_LINEAR);
        cmp("linear dw", dw.c, dw.g, (size_t)out * in, TOL_LINEAR);
        if (bias)
            cmp("linear db", db.c, db.g, out, TOL_LINEAR);
        pfree(&dy), pfree(&dx), pfree(&dw), pfree(&db);
    }
    pfree(&x), pfree(&w), pfree(&b), pfree(&y);
}

START_TEST(test_linear)
{
    linear_case(8, 512, 100, 1, KDC_PREC_FP32, TOL_LINEAR);
    linear_case(5, 37, 11, 0, KDC_PREC_FP32, TOL_LINEAR);
    linear_case(6000, 16, 3, 1, KDC_PREC_FP32, TOL_LINEAR); /* n above the initial ones buffer */
    linear_case(8, 512, 100, 1, KDC_PREC_TF32, TOL_LINEAR_TC);
    linear_case(8, 512, 100, 1, KDC_PREC_FP16, TOL_LINEAR_TC);
}
END_TEST

/* ---- loss kernels (train/losses_cuda.cu) vs train/losses.h ---- */
#ifdef KDC_HAVE_CUDA /* the kernels exist only in CUDA builds */

static void loss_case(size_t B, size_t C, float T, kd_grad_mode mode)
{
    float *zs = rnd(B * C, 71 + C, -6, 6), *zt = rnd(B * C, 72 + C, -6, 6);
    float *g0 = rnd(B * C, 73, -0.01f, 0.01f); /* existing gradient for KD_GRAD_ADD */
    int32_t *y = malloc(B * sizeof(int32_t));
    ck_assert_ptr_nonnull(y);
    for (size_t b = 0; b < B; b++)
        y[b] = (int32_t)((b * 7919 + 13) % C);
    CK(kd_cuda_check_labels(y, B, C, &g_err));
    float *ds = up(g_gpu, zs, B * C), *dt = up(g_gpu, zt, B * C);
    void *dy = NULL, *drow = NULL;
    CK(g_gpu->alloc(g_gpu, B * sizeof(int32_t), &dy, &g_err));
    CK(g_gpu->copy_h2d(g_gpu, dy, y, B * sizeof(int32_t), &g_err));
    CK(g_gpu->alloc(g_gpu, B * sizeof(double), &drow, &g_err));
    float *ref = malloc(B * C * sizeof(float));
    ck_assert_ptr_nonnull(ref);
    double lref, lgot;

    /* cross-entropy, w = 0.5 */
    float *dg = up(g_gpu, g0, B * C);
    memcpy(ref, g0, B * C * sizeof(float));
    CK(kd_ce_forward(&lref, zs, y, B, C, 0.5f, &g_err));
    CK(kd_ce_backward(ref, zs, y, B, C, 0.5f, mode, &g_err));
    CK(kd_cuda_ce(g_gpu, ds, dy, B, C, 0.5f, mode, dg, drow, &g_err));
    CK(kd_cuda_sum_rows(g_gpu, drow, B, &lgot, &g_err));
    ck_assert_msg(fabs(lgot - lref) <= 1e-6 * fabs(lref), "ce loss %.9g vs %.9g", lgot, lref);
    float *got = down(g_gpu, dg, B * C);
    double r = kdc_test_rel_err_f32(got, ref, B * C);
    ck_assert_msg(r <= 1e-5, "ce grad (C=%zu): relative error %.3g", C, r);
    free(got);
    g_gpu->free(g_gpu, dg);

    /* KD, w = 0.9 */
    dg = up(g_gpu, g0, B * C);
    memcpy(ref, g0, B * C * sizeof(float));
    CK(kd_kd_forward(&lref, zs, zt, B, C, T, 0.9f, &g_err));
    CK(kd_kd_backward(ref, zs, zt, B, C, T, 0.9f, mode, &g_err));
    CK(kd_cuda_kd(g_gpu, ds, dt, B, C, T, 0.9f, mode, dg, drow, &g_err));
    CK(kd_cuda_sum_rows(g_gpu, drow, B, &lgot, &g_err));
    ck_assert_msg(fabs(lgot - lref) <= 1e-6 * fabs(lref), "kd loss %.9g vs %.9g", lgot, lref);
    got = down(g_gpu, dg, B * C);
    r = kdc_test_rel_err_f32(got, ref, B * C);
    ck_assert_msg(r <= 1e-5, "kd grad (C=%zu, T=%g): relative error %.3g", C, (double)T, r);
    free(got);
    g_gpu->free(g_gpu, dg);

    g_gpu->free(g_gpu, ds);
    g_gpu->free(g_gpu, dt);
    g_gpu->free(g_gpu, dy);
    g_gpu->free(g_gpu, drow);
    free(zs), free(zt), free(g0), free(y), free(ref);
}

START_TEST(test_losses)
{
    loss_case(16, 1000, 1.0f, KD_GRAD_SET);
    loss_case(16, 1000, 4.0f, KD_GRAD_ADD);
    loss_case(3, 10, 4.0f, KD_GRAD_SET);
    loss_case(5, 300, 2.0f, KD_GRAD_ADD); /* C not a multiple of the block */
    int32_t bad[2] = {0, 10};
    ck_assert_int_eq(kd_cuda_check_labels(bad, 2, 10, &g_err), KDC_EINVAL);
    ck_assert_int_eq(kd_cuda_kd(g_gpu, NULL, NULL, 1, 1, 0.0f, 1, KD_GRAD_SET, NULL, NULL, &g_err),
                     KDC_EINVAL);
}
END_TEST
#endif

/* ---- whole models ---- */

static void model_case(const char *arch, int size)
{
    const int n = 4, classes = 10;
    kdc_model *mc = NULL, *mg = NULL;
    CK(kdc_model_create(arch, classes, g_cpu, 7, &mc, &g_err));
    CK(kdc_model_create(arch, classes, g_gpu, 7, &mg, &g_err));
    size_t nx = (size_t)n * 3 * size * size, nl = (size_t)n * classes;
    pair x = both_rnd(nx, 61, -2, 2);
    const float *lc, *lg;
    char what[96];

    /* eval forward, then BN-folded inference, in fp32 and tf32 */
    CK(kdc_model_forward(mc, x.c, n, size, size, 0, &lc, NULL, &g_err));
    CK(kdc_model_forward(mg, x.g, n, size, size, 0, &lg, NULL, &g_err));
    snprintf(what, sizeof what, "%s eval logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    CK(kdc_model_infer(mc, x.c, n, size, size, &lc, NULL, &g_err));
    CK(kdc_model_infer(mg, x.g, n, size, size, &lg, NULL, &g_err));
    snprintf(what, sizeof what, "%s infer logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    kdc_precision tc[2] = {KDC_PREC_TF32, KDC_PREC_FP16};
    for (int i = 0; i < 2; i++) {
        CK(kdc_backend_set_precision(g_gpu, tc[i], &g_err));
        CK(kdc_model_infer(mg, x.g, n, size, size, &lg, NULL, &g_err));
        CK(kdc_backend_set_precision(g_gpu, KDC_PREC_FP32, &g_err));
        snprintf(what, sizeof what, "%s infer logits %s", arch, kdc_precision_name(tc[i]));
        double r = cmp(what, lc, lg, nl, TOL_MODEL_TC);
        /* the measured difference, for docs/GPU.md */
        printf("check-gpu: %s %dpx: %s logits differ from the CPU's fp32 by %.3g (relative)\n",
               arch, size, kdc_precision_name(tc[i]), r);
    }

    /* train forward + backward with the same upstream gradients */
    const float *fc, *fg;
    CK(kdc_model_forward(mc, x.c, n, size, size, 1, &lc, &fc, &g_err));
    CK(kdc_model_forward(mg, x.g, n, size, size, 1, &lg, &fg, &g_err));
    snprintf(what, sizeof what, "%s train logits", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);
    int D = kdc_model_feature_dim(mc);
    pair dl = both_rnd(nl, 62, -0.1f, 0.1f), df = both_rnd((size_t)n * D, 63, -0.01f, 0.01f);
    kdc_grad_set *gc = NULL, *gg = NULL;
    CK(kdc_model_grads_alloc(mc, &gc, &g_err));
    CK(kdc_model_grads_alloc(mg, &gg, &g_err));
    CK(kdc_model_backward(mc, dl.c, df.c, gc, NULL, &g_err));
    CK(kdc_model_backward(mg, dl.g, df.g, gg, NULL, &g_err));
    ck_assert_uint_eq(gc->flat_numel, gg->flat_numel);
    snprintf(what, sizeof what, "%s all gradients", arch);
    cmp(what, gc->flat, gg->flat, gc->flat_numel, TOL_MODEL_GRAD);
    /* per tensor too, so that a small layer's error is not hidden by a big one */
    kdc_param_table *pt = kdc_model_params(mc);
    for (int i = 0; i < gc->count; i++) {
        if (!gc->grad[i].data)
            continue;
        snprintf(what, sizeof what, "%s grad %s", arch, pt->items[i].name);
        cmp(what, gc->grad[i].data, gg->grad[i].data, kdc_tensor_numel(&gc->grad[i]),
            TOL_MODEL_GRAD);
    }
    /* DOT's fused two-stream backward on the GPU (cuDNN backward-data of the 2n
     * batch, backward-filter with 2*c_out filters) against two single CPU passes */
    pair dl2 = both_rnd(2 * nl, 64, -0.1f, 0.1f);
    kdc_grad_set *gc2[2], *gg2[2];
    for (int s = 0; s < 2; s++) {
        CK(kdc_model_grads_alloc(mc, &gc2[s], &g_err));
        CK(kdc_model_grads_alloc(mg, &gg2[s], &g_err));
    }
    CK(kdc_model_backward(mc, dl2.c, NULL, gc2[0], NULL, &g_err));
    CK(kdc_model_backward(mc, dl2.c + nl, df.c, gc2[1], NULL, &g_err));
    CK(kdc_model_backward_dual(mg, dl2.g, NULL, df.g, gg2[0], gg2[1], &g_err));
    for (int s = 0; s < 2; s++) {
        snprintf(what, sizeof what, "%s fused backward, stream %d", arch, s);
        cmp(what, gc2[s]->flat, gg2[s]->flat, gc2[s]->flat_numel, TOL_MODEL_GRAD);
        kdc_model_grads_free(mc, gc2[s]);
        kdc_model_grads_free(mg, gg2[s]);
    }
    pfree(&dl2);

    /* running statistics after one train forward */
    kdc_param_table *pg = kdc_model_params(mg);
    for (int i = 0; i < pt->count; i++) {
        if (pt->items[i].kind != KDC_PARAM_BUFFER || pt->items[i].value.dtype != KDC_F32)
            continue;
        snprintf(what, sizeof what, "%s %s", arch, pt->items[i].name);
        cmp(what, pt->items[i].value.data, pg->items[i].value.data,
            kdc_tensor_numel(&pt->items[i].value), TOL_BN);
    }

    /* one SGD step on the flat weights, then the eval logits again */
    size_t nwc, nwg;
    float *wc = kdc_model_flat_weights(mc, &nwc), *wg = kdc_model_flat_weights(mg, &nwg);
    ck_assert_uint_eq(nwc, nwg);
    CK(g_cpu->axpy(g_cpu, nwc, -0.01f, gc->flat, wc, &g_err));
    CK(g_gpu->axpy(g_gpu, nwg, -0.01f, gg->flat, wg, &g_err));
    snprintf(what, sizeof what, "%s weights after a step", arch);
    cmp(what, wc, wg, nwc, TOL_SMALL * 10);
    CK(kdc_model_forward(mc, x.c, n, size, size, 0, &lc, NULL, &g_err));
    CK(kdc_model_forward(mg, x.g, n, size, size, 0, &lg, NULL, &g_err));
    snprintf(what, sizeof what, "%s eval logits after a step", arch);
    cmp(what, lc, lg, nl, TOL_MODEL);

    kdc_model_grads_free(mc, gc);
    kdc_model_grads_free(mg, gg);
    pfree(&x), pfree(&dl), pfree(&df);
    kdc_model_free(mc);
    kdc_model_free(mg);
}

START_TEST(test_model_resnet18)
{
    model_case("resnet18", 64);
}
END_TEST

START_TEST(test_model_mobilenet_v1)
{
    model_case("mobilenet_v1", 64);
}
END_TEST

/* ---- allocator, uploader, extras ---- */

START_TEST(test_allocator_reuse)
{
    kdc_cuda_mem_stats a, b;
    void *p = NULL, *q = NULL;
    CK(g_gpu->alloc(g_gpu, 3 << 20, &p, &g_err));
    CK(kdc_cuda_mem_stats_get(g_gpu, &a, &g_err));
    g_gpu->free(g_gpu, p);
    CK(g_gpu->alloc(g_gpu, (3 << 20) - 100, &q, &g_err)); /* rounds to the same block */
    CK(kdc_cuda_mem_stats_get(g_gpu, &b, &g_err));
    ck_assert_ptr_eq(p, q);
    ck_assert_uint_eq(b.device_mallocs, a.device_mallocs);
    ck_assert_uint_eq(b.cache_hits, a.cache_hits + 1);
    g_gpu->free(g_gpu, q);
    int dummy;
    g_gpu->free(g_gpu, &dummy); /* not ours: counted, not passed to cudaFree */
    CK(kdc_cuda_mem_stats_get(g_gpu, &b, &g_err));
    ck_assert_uint_eq(b.bad_frees, a.bad_frees + 1);
    CK(kdc_cuda_mem_release_cached(g_gpu, &g_err));
    CK(kdc_cuda_mem_stats_get(g_gpu, &b, &g_err));
    ck_assert_uint_eq(b.bytes_cached, 0);
}
END_TEST

START_TEST(test_uploader)
{
    const size_t n = 1 << 18;
    const int batches = 7;
    kdc_cuda_uploader *u = NULL;
    CK(kdc_cuda_uploader_create(g_gpu, n * sizeof(float), &u, &g_err));
    float *out[7];
    for (int k = 0; k < batches; k++) {
        void *host, *dev;
        CK(kdc_cuda_uploader_host_slot(u, &host, &g_err));
        kdc_test_fill_uniform(host, n, 100 + k, -1, 1);
        CK(kdc_cuda_uploader_submit(u, n * sizeof(float), &dev, &g_err));
        out[k] = out_buf(g_gpu, n);
        /* enqueued after submit: must see the whole copy */
        CK(g_gpu->relu_forward(g_gpu, n, dev, out[k], &g_err));
    }
    float *ref = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(ref);
    for (int k = 0; k < batches; k++) {
        kdc_test_fill_uniform(ref, n, 100 + k, -1, 1);
        for (size_t i = 0; i < n; i++)
            ref[i] = ref[i] > 0 ? ref[i] : 0;
        float *got = down(g_gpu, out[k], n);
        ck_assert_msg(memcmp(got, ref, n * sizeof(float)) == 0, "uploader batch %d differs", k);
        free(got);
        g_gpu->free(g_gpu, out[k]);
    }
    free(ref);
    void *host;
    CK(kdc_cuda_uploader_host_slot(u, &host, &g_err));
    void *dev;
    ck_assert_int_eq(kdc_cuda_uploader_submit(u, n * sizeof(float) + 1, &dev, &g_err), KDC_EINVAL);
    kdc_cuda_uploader_destroy(u);

    void *pinned = NULL;
    CK(kdc_cuda_host_alloc(g_gpu, 4096, &pinned, &g_err));
    kdc_cuda_host_free(g_gpu, pinned);
}
END_TEST

START_TEST(test_precision_api)
{
    kdc_precision p;
    CK(kdc_precision_parse("tf32", &p, &g_err));
    ck_assert_int_eq(p, KDC_PREC_TF32);
    ck_assert_int_eq(kdc_precision_parse("bf16", &p, &g_err), KDC_EINVAL);
    CK(kdc_backend_set_precision(g_cpu, KDC_PREC_FP32, &g_err));
    ck_assert_int_eq(kdc_backend_set_precision(g_cpu, KDC_PREC_FP16, &g_err), KDC_EUNSUPPORTED);
    kdc_cuda_mem_stats s;
    ck_assert_int_eq(kdc_cuda_mem_stats_get(g_cpu, &s, &g_err), KDC_EDEVICE);
    kdc_backend *none = NULL;
    ck_assert_int_eq(kdc_backend_cuda_create(4096, &none, &g_err), KDC_EDEVICE);
    ck_assert_ptr_null(none);
}
END_TEST

static Suite *gpu_suite(void)
{
    Suite *s = suite_create("gpu_ops");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 300);
    tcase_add_test(ops, test_conv2d);
    tcase_add_test(ops, test_conv2d_bad_desc);
    tcase_add_test(ops, test_batchnorm);
    tcase_add_test(ops, test_elementwise);
    tcase_add_test(ops, test_f32_to_f16);
    tcase_add_test(ops, test_maxpool);
    tcase_add_test(ops, test_avgpool);
    tcase_add_test(ops, test_linear);
#ifdef KDC_HAVE_CUDA
    tcase_add_test(ops, test_losses);
#endif
    tcase_add_test(ops, test_allocator_reuse);
    tcase_add_test(ops, test_uploader);
    tcase_add_test(ops, test_precision_api);
    suite_add_tcase(s, ops);
    TCase *models = tcase_create("models");
    tcase_set_timeout(models, 600);
    tcase_add_test(models, test_model_resnet18);
    tcase_add_test(models, test_model_mobilenet_v1);
    suite_add_tcase(s, models);
    return s;
}

int main(void)
{
    kdc_error err = {0};
    if (kdc_backend_cuda_create(0, &g_gpu, &err) != KDC_OK) {
        printf("check-gpu: not run, no usable GPU: %s\n", err.msg);
        return 0;
    }
    if (kdc_backend_cpu_create(0, &g_cpu, &err) != KDC_OK) {
        fprintf(stderr, "check-gpu: %s\n", err.msg);
        kdc_backend_destroy(g_gpu);
        return 1;
    }
    printf("check-gpu: %s vs %s\n", g_gpu->name, g_cpu->name);
    SRunner *sr = srunner_create(gpu_suite());
    /* no fork: a CUDA context does not survive fork() */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    kdc_backend_destroy(g_cpu);
    kdc_backend_destroy(g_gpu);
    return failed ? 1 : 0;
}
