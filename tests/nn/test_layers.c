/* test_layers.c - every op of the CPU backend against PyTorch in float64.
 *
 * Fixtures come from scripts/ref/ref_layers.py (random inputs, PyTorch float64
 * outputs and gradients). Each op runs through the backend table
 * (kdc_backend_cpu_create, 2 threads) and, for conv2d, batch norm and pooling,
 * also through the raw layer functions single-threaded (pool = NULL), so the
 * threaded split and the serial loop must both be right. Convolutions run three
 * ways: the backend (oneDNN, or the reference with KDC_CONV=ref), the reference
 * im2col + GEMM of conv2d.c, and oneDNN directly (conv2d_dnnl.h), so every run
 * checks both implementations; oneDNN's results must also be bit-identical run
 * to run at a fixed thread count (kd-train's reproducibility rests on it). Tolerances: relative
 * error (max |got - ref| / max |ref|) < 1e-5 forward, < 1e-4 gradients. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/backend_cpu.h"
#include "common/nn/batchnorm.h"
#include "common/nn/conv2d.h"
#include "common/nn/conv2d_dnnl.h"
#include "common/nn/conv2d_point.h"
#include "common/base/half.h"
#include "common/nn/pool.h"
#include "tests/helpers/testutil.h"

#define SUITE "layers"
#define TOL_FWD 1e-5
#define TOL_BWD 1e-4

static kdc_backend *be;

static void setup(void)
{
    kdc_error err;
    ck_assert_msg(kdc_backend_cpu_create(2, &be, &err) == KDC_OK, "%s", err.msg);
}

static void teardown(void)
{
    kdc_backend_destroy(be);
    be = NULL;
}

static float *load(const char *fmt, int i, size_t n)
{
    char name[128];
    snprintf(name, sizeof name, fmt, i);
    return kdc_test_load_f32(SUITE, name, n, NULL);
}

static double *load64(const char *fmt, int i, size_t n)
{
    char name[128];
    snprintf(name, sizeof name, fmt, i);
    return kdc_test_load_f64(SUITE, name, n, NULL);
}

static float *buf(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    /* NaN-fill: an output the op forgets to write fails the comparison. */
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static void expect(const char *what, int i, const float *got, const double *ref, size_t n,
                   double tol)
{
    double r = kdc_test_rel_err_f64(got, ref, n);
    ck_assert_msg(r <= tol, "%s case %d: relative error %.3g > %.3g", what, i, r, tol);
}

/* ------------------------------------------------------------- conv2d */

enum { CONV_BACKEND, CONV_RAW, CONV_DNNL, CONV_POINT };

static int run_conv_case(int i, const int64_t *cs, int mode)
{
    int raw = mode == CONV_RAW;
    kdc_error err;
    kdc_conv2d_desc d = {.n = (int)cs[0], .c_in = (int)cs[1], .h_in = (int)cs[2],
                         .w_in = (int)cs[3], .c_out = (int)cs[4], .kh = (int)cs[5],
                         .kw = (int)cs[5], .stride = (int)cs[6], .pad = (int)cs[7],
                         .groups = (int)cs[8]};
    int has_bias = (int)cs[9];
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_OK);
    if (mode == CONV_POINT && !kdc_conv2d_point_applies(&d))
        return 0;
    size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
    size_t nw = (size_t)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
    size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
    float *x = load("conv%d_x", i, nx), *w = load("conv%d_w", i, nw);
    float *b = load("conv%d_b", i, (size_t)d.c_out), *dy = load("conv%d_dy", i, ny);
    double *ry = load64("conv%d_y", i, ny), *rdx = load64("conv%d_dx", i, nx);
    double *rdw = load64("conv%d_dw", i, nw), *rdb = load64("conv%d_db", i, (size_t)d.c_out);
    float *y = buf(ny), *dx = buf(nx), *dw = buf(nw), *db = buf((size_t)d.c_out);
    const float *bias = has_bias ? b : NULL;
    if (raw) {
        size_t wf = kdc_conv2d_workspace_floats(&d);
        float *work = buf(wf);
        ck_assert_msg(kdc_conv2d_forward(&d, x, w, bias, y, work, wf, NULL, &err) == KDC_OK,
                      "%s", err.msg);
        ck_assert_msg(kdc_conv2d_backward(&d, x, w, dy, dx, dw, db, work, wf, NULL, &err) ==
                          KDC_OK,
                      "%s", err.msg);
        free(work);
    } else if (mode == CONV_POINT) {
        size_t wf = kdc_conv2d_point_workspace_floats(&d);
        float *work = buf(wf);
        ck_assert_msg(kdc_conv2d_point_forward(&d, x, w, bias, y, work, wf, &err) == KDC_OK,
                      "%s", err.msg);
        ck_assert_msg(kdc_conv2d_point_backward(&d, x, w, dy, dx, dw, db, work, wf, &err) ==
                          KDC_OK,
                      "%s", err.msg);
        free(work);
    } else if (mode == CONV_DNNL) {
        kdc_dnnl *ctx;
        ck_assert_msg(kdc_dnnl_create(2, &ctx, &err) == KDC_OK, "%s", err.msg);
        ck_assert_msg(kdc_dnnl_conv2d_forward(ctx, &d, x, w, bias, y, &err) == KDC_OK, "%s",
                      err.msg);
        ck_assert_msg(kdc_dnnl_conv2d_backward(ctx, &d, x, w, dy, dx, dw, db, &err) == KDC_OK,
                      "%s", err.msg);
        kdc_dnnl_destroy(ctx);
    } else {
        ck_assert_msg(be->conv2d_forward(be, &d, x, w, bias, y, &err) == KDC_OK, "%s", err.msg);
        ck_assert_msg(be->conv2d_backward(be, &d, x, w, dy, dx, dw, db, &err) == KDC_OK, "%s",
                      err.msg);
    }
    static const char *tag[] = {"", " (serial)", " (oneDNN)", " (1x1 map)"};
    char what[64];
    snprintf(what, sizeof what, "conv y%s", tag[mode]);
    expect(what, i, y, ry, ny, TOL_FWD);
    snprintf(what, sizeof what, "conv dx%s", tag[mode]);
    expect(what, i, dx, rdx, nx, TOL_BWD);
    snprintf(what, sizeof what, "conv dw%s", tag[mode]);
    expect(what, i, dw, rdw, nw, TOL_BWD);
    snprintf(what, sizeof what, "conv db%s", tag[mode]);
    expect(what, i, db, rdb, (size_t)d.c_out, TOL_BWD);

    /* Optional outputs: dx and dbias NULL must leave dw unchanged. */
    if (mode == CONV_BACKEND) {
        float *dw2 = buf(nw);
        ck_assert_int_eq(be->conv2d_backward(be, &d, x, w, dy, NULL, dw2, NULL, &err), KDC_OK);
        expect("conv dw (dx NULL)", i, dw2, rdw, nw, TOL_BWD);
        free(dw2);
    }
    free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
    free(y), free(dx), free(dw), free(db);
    return 1;
}

/* Runs every fixture case that the mode handles; returns how many ran. */
static int conv_all(int mode)
{
    size_t n;
    int64_t *cases = kdc_test_load_i64(SUITE, "conv_cases", 0, &n);
    ck_assert_uint_eq(n % 10, 0);
    int ran = 0;
    for (int i = 0; i < (int)(n / 10); i++)
        ran += run_conv_case(i, cases + 10 * i, mode);
    free(cases);
    return ran;
}

START_TEST(test_conv_dnnl)
{
    conv_all(CONV_DNNL);
}
END_TEST

START_TEST(test_conv_point)
{
    ck_assert_int_ge(conv_all(CONV_POINT), 2); /* the 1x1-map fixture cases */
    kdc_error err;
    kdc_conv2d_desc d = {.n = 2, .c_in = 4, .h_in = 1, .w_in = 1, .c_out = 4, .kh = 3,
                         .kw = 3, .stride = 1, .pad = 1, .groups = 1};
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_OK);
    ck_assert(kdc_conv2d_point_applies(&d));
    d.h_in = d.w_in = 3; /* a 3x3 map is not a point */
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_OK);
    ck_assert(!kdc_conv2d_point_applies(&d));
    float x[36] = {0}, w[144] = {0}, y[72], work[16];
    ck_assert_int_eq(kdc_conv2d_point_forward(&d, x, w, NULL, y, work, 16, &err), KDC_EINVAL);
    d.h_in = d.w_in = 1;
    d.kh = d.kw = 5; /* pad 1 < 2: the window misses the pixel, h_out would be <= 0 */
    d.h_out = d.w_out = 1;
    ck_assert(!kdc_conv2d_point_applies(&d));
}
END_TEST

/* Two oneDNN contexts (fresh primitives, like two kd-train runs) on a layer
 * big enough that backward-weights splits its reduction over both threads:
 * y, dx, dw and db must agree bit for bit. */
START_TEST(test_conv_dnnl_deterministic)
{
    kdc_error err;
    kdc_conv2d_desc d = {.n = 16, .c_in = 64, .h_in = 14, .w_in = 14, .c_out = 64, .kh = 3,
                         .kw = 3, .stride = 1, .pad = 1, .groups = 1};
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_OK);
    size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in, nw = (size_t)d.c_out * d.c_in * 9;
    size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out, nb = (size_t)d.c_out;
    float *x = buf(nx), *w = buf(nw), *dy = buf(ny), *out[2][4];
    uint32_t s = 12345;
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
    for (size_t i = 0; i < nw; i++)
        w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-28f;
    for (size_t i = 0; i < ny; i++)
        dy[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
    for (int r = 0; r < 2; r++) {
        kdc_dnnl *ctx;
        ck_assert_msg(kdc_dnnl_create(2, &ctx, &err) == KDC_OK, "%s", err.msg);
        out[r][0] = buf(ny), out[r][1] = buf(nx), out[r][2] = buf(nw), out[r][3] = buf(nb);
        ck_assert_int_eq(kdc_dnnl_conv2d_forward(ctx, &d, x, w, NULL, out[r][0], &err), KDC_OK);
        ck_assert_int_eq(kdc_dnnl_conv2d_backward(ctx, &d, x, w, dy, out[r][1], out[r][2],
                                                  out[r][3], &err),
                         KDC_OK);
        kdc_dnnl_destroy(ctx);
    }
    size_t sizes[4] = {ny, nx, nw, nb};
    for (int k = 0; k < 4; k++) {
        ck_assert_msg(memcmp(out[0][k], out[1][k], sizes[k] * sizeof(float)) == 0,
                      "oneDNN output %d differs between two runs", k);
        free(out[0][k]), free(out[1][k]);
    }
    free(x), free(w), free(dy);
}
END_TEST

START_TEST(test_conv_backend)
{
    conv_all(CONV_BACKEND);
}
END_TEST

START_TEST(test_conv_raw_serial)
{
    conv_all(CONV_RAW);
}
END_TEST

START_TEST(test_conv_bad_input)
{
    kdc_error err;
    kdc_conv2d_desc d = {.n = 1, .c_in = 3, .h_in = 4, .w_in = 4, .c_out = 4, .kh = 3,
                         .kw = 3, .stride = 1, .pad = 0, .groups = 2};
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_EINVAL);
    float x[48] = {0}, w[108] = {0}, y[64];
    /* a descriptor that skipped kdc_conv2d_desc_init is refused, not run */
    ck_assert_int_eq(be->conv2d_forward(be, &d, x, w, NULL, y, &err), KDC_EINVAL);
    d.groups = 1;
    ck_assert_int_eq(kdc_conv2d_desc_init(&d, &err), KDC_OK);
    ck_assert_int_eq(kdc_conv2d_forward(&d, x, w, NULL, y, NULL, 0, NULL, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "workspace"));
    ck_assert_int_eq(be->conv2d_backward(be, &d, x, w, y, NULL, NULL, NULL, &err), KDC_EINVAL);
    /* the oneDNN path refuses the same, whichever the backend runs */
    kdc_dnnl *ctx;
    ck_assert_int_eq(kdc_dnnl_create(0, &ctx, &err), KDC_EINVAL);
    ck_assert_int_eq(kdc_dnnl_create(1, &ctx, &err), KDC_OK);
    ck_assert_int_eq(kdc_dnnl_conv2d_backward(ctx, &d, x, w, y, NULL, NULL, NULL, &err),
                     KDC_EINVAL);
    d.h_out = 0;
    ck_assert_int_eq(kdc_dnnl_conv2d_forward(ctx, &d, x, w, NULL, y, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "kdc_conv2d_desc_init"));
    kdc_dnnl_destroy(ctx);
}
END_TEST

/* ---------------------------------------------------------- batch norm */

static void run_bn_case(int i, const int64_t *cs, int raw)
{
    kdc_error err;
    kdc_bn_desc d = {.n = (int)cs[0], .c = (int)cs[1], .hw = (int)(cs[2] * cs[3]),
                     .eps = 1e-5f, .momentum = 0.1f};
    int affine = (int)cs[4], track = (int)cs[5];
    size_t nx = (size_t)d.n * d.c * d.hw, c = (size_t)d.c;
    float *x = load("bn%d_x", i, nx), *gamma = load("bn%d_gamma", i, c);
    float *beta = load("bn%d_beta", i, c), *rm = load("bn%d_rm", i, c);
    float *rv = load("bn%d_rv", i, c), *dy = load("bn%d_dy", i, nx);
    double *ry = load64("bn%d_y", i, nx), *rdx = load64("bn%d_dx", i, nx);
    double *rdg = load64("bn%d_dgamma", i, c), *rdb = load64("bn%d_dbeta", i, c);
    double *rrm = load64("bn%d_rm_after", i, c), *rrv = load64("bn%d_rv_after", i, c);
    double *rmean = load64("bn%d_mean", i, c), *rinv = load64("bn%d_invstd", i, c);
    double *ryev = load64("bn%d_y_eval", i, nx);
    float *y = buf(nx), *dx = buf(nx), *dg = buf(c), *dbt = buf(c), *sm = buf(c), *si = buf(c);
    float *yev = buf(nx);
    float *rm_run = buf(c), *rv_run = buf(c);
    memcpy(rm_run, rm, c * sizeof(float));
    memcpy(rv_run, rv, c * sizeof(float));
    const float *g = affine ? gamma : NULL, *bt = affine ? beta : NULL;
    kdc_status st;
    if (raw) {
        st = kdc_batchnorm_forward_eval(&d, x, g, bt, rm, rv, yev, NULL, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
        st = kdc_batchnorm_forward_train(&d, x, g, bt, track ? rm_run : NULL,
                                         track ? rv_run : NULL, sm, si, y, NULL, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
        st = kdc_batchnorm_backward(&d, x, dy, g, sm, si, dx, affine ? dg : NULL,
                                    affine ? dbt : NULL, NULL, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
    } else {
        st = be->batchnorm_forward_eval(be, &d, x, g, bt, rm, rv, yev, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
        st = be->batchnorm_forward_train(be, &d, x, g, bt, track ? rm_run : NULL,
                                         track ? rv_run : NULL, sm, si, y, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
        st = be->batchnorm_backward(be, &d, x, dy, g, sm, si, dx, affine ? dg : NULL,
                                    affine ? dbt : NULL, &err);
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
    }
    expect("bn y_eval", i, yev, ryev, nx, TOL_FWD);
    expect("bn y", i, y, ry, nx, TOL_FWD);
    expect("bn save_mean", i, sm, rmean, c, TOL_FWD);
    expect("bn save_invstd", i, si, rinv, c, TOL_FWD);
    expect("bn dx", i, dx, rdx, nx, TOL_BWD);
    if (affine) {
        expect("bn dgamma", i, dg, rdg, c, TOL_BWD);
        expect("bn dbeta", i, dbt, rdb, c, TOL_BWD);
    }
    /* Running stats: updated with momentum 0.1 when tracked, untouched otherwise. */
    expect("bn running_mean", i, rm_run, rrm, c, TOL_FWD);
    expect("bn running_var", i, rv_run, rrv, c, TOL_FWD);
    free(x), free(gamma), free(beta), free(rm), free(rv), free(dy), free(ry), free(rdx);
    free(rdg), free(rdb), free(rrm), free(rrv), free(rmean), free(rinv), free(ryev);
    free(y), free(dx), free(dg), free(dbt), free(sm), free(si), free(yev), free(rm_run);
    free(rv_run);
}

static void bn_all(int raw)
{
    size_t n;
    int64_t *cases = kdc_test_load_i64(SUITE, "bn_cases", 0, &n);
    ck_assert_uint_eq(n % 6, 0);
    for (int i = 0; i < (int)(n / 6); i++)
        run_bn_case(i, cases + 6 * i, raw);
    free(cases);
}

START_TEST(test_bn_backend)
{
    bn_all(0);
}
END_TEST

START_TEST(test_bn_raw_serial)
{
    bn_all(1);
}
END_TEST

START_TEST(test_bn_bad_input)
{
    kdc_error err;
    float x[4] = {1, 2, 3, 4}, y[4], m[4], s[4];
    kdc_bn_desc d = {.n = 1, .c = 4, .hw = 1, .eps = 1e-5f, .momentum = 0.1f};
    /* one value per channel: PyTorch refuses train mode, so do we */
    ck_assert_int_eq(be->batchnorm_forward_train(be, &d, x, NULL, NULL, NULL, NULL, m, s, y,
                                                 &err),
                     KDC_EINVAL);
    ck_assert_int_eq(be->batchnorm_forward_eval(be, &d, x, NULL, NULL, NULL, NULL, y, &err),
                     KDC_EINVAL);
    d.eps = 0.0f;
    d.n = 2;
    d.c = 2;
    ck_assert_int_eq(be->batchnorm_forward_train(be, &d, x, NULL, NULL, NULL, NULL, m, s, y,
                                                 &err),
                     KDC_EINVAL);
}
END_TEST

/* ------------------------------------------------------------- pooling */

static void run_pool_case(int i, const int64_t *cs, int raw)
{
    kdc_error err;
    kdc_pool2d_desc d = {.n = (int)cs[0], .c = (int)cs[1], .h_in = (int)cs[2],
                         .w_in = (int)cs[3], .k = (int)cs[4], .stride = (int)cs[5],
                         .pad = (int)cs[6]};
    ck_assert_int_eq(kdc_pool2d_desc_init(&d, &err), KDC_OK);
    size_t nx = (size_t)d.n * d.c * d.h_in * d.w_in, ny = (size_t)d.n * d.c * d.h_out * d.w_out;
    float *x = load("pool%d_x", i, nx), *dy = load("pool%d_dy", i, ny);
    double *ry = load64("pool%d_y", i, ny), *rdx = load64("pool%d_dx", i, nx);
    float *y = buf(ny), *dx = buf(nx);
    if (raw) {
        ck_assert_int_eq(kdc_maxpool2d_forward(&d, x, y, NULL, &err), KDC_OK);
        ck_assert_int_eq(kdc_maxpool2d_backward(&d, x, dy, dx, NULL, &err), KDC_OK);
    } else {
        ck_assert_int_eq(be->maxpool2d_forward(be, &d, x, y, &err), KDC_OK);
        ck_assert_int_eq(be->maxpool2d_backward(be, &d, x, y, dy, dx, &err), KDC_OK);
    }
    expect("maxpool y", i, y, ry, ny, TOL_FWD);
    /* Ties: a gradient sent to another maximum than PyTorch's is an O(1) error. */
    expect("maxpool dx", i, dx, rdx, nx, TOL_BWD);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
}

START_TEST(test_maxpool)
{
    size_t n;
    int64_t *cases = kdc_test_load_i64(SUITE, "pool_cases", 0, &n);
    ck_assert_uint_eq(n % 7, 0);
    for (int i = 0; i < (int)(n / 7); i++) {
        run_pool_case(i, cases + 7 * i, 0);
        run_pool_case(i, cases + 7 * i, 1);
    }
    free(cases);
}
END_TEST

START_TEST(test_avgpool)
{
    kdc_error err;
    size_t n;
    int64_t *cases = kdc_test_load_i64(SUITE, "gap_cases", 0, &n);
    ck_assert_uint_eq(n % 3, 0);
    for (int i = 0; i < (int)(n / 3); i++) {
        int nn = (int)cases[3 * i], c = (int)cases[3 * i + 1], hw = (int)cases[3 * i + 2];
        size_t nx = (size_t)nn * c * hw, ny = (size_t)nn * c;
        float *x = load("gap%d_x", i, nx), *dy = load("gap%d_dy", i, ny);
        double *ry = load64("gap%d_y", i, ny), *rdx = load64("gap%d_dx", i, nx);
        float *y = buf(ny), *dx = buf(nx);
        ck_assert_int_eq(be->avgpool_global_forward(be, nn, c, hw, x, y, &err), KDC_OK);
        ck_assert_int_eq(be->avgpool_global_backward(be, nn, c, hw, dy, dx, &err), KDC_OK);
        expect("avgpool y", i, y, ry, ny, TOL_FWD);
        expect("avgpool dx", i, dx, rdx, nx, TOL_BWD);
        free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
    }
    free(cases);
    float x[1], y[1];
    ck_assert_int_eq(be->avgpool_global_forward(be, 1, 1, 0, x, y, &err), KDC_EINVAL);
}
END_TEST

/* -------------------------------------------------------------- linear */

START_TEST(test_linear)
{
    kdc_error err;
    size_t n;
    int64_t *cases = kdc_test_load_i64(SUITE, "lin_cases", 0, &n);
    ck_assert_uint_eq(n % 4, 0);
    for (int i = 0; i < (int)(n / 4); i++) {
        int nn = (int)cases[4 * i], in = (int)cases[4 * i + 1], out = (int)cases[4 * i + 2];
        int hb = (int)cases[4 * i + 3];
        size_t nx = (size_t)nn * in, nw = (size_t)out * in, ny = (size_t)nn * out;
        float *x = load("lin%d_x", i, nx), *w = load("lin%d_w", i, nw);
        float *b = load("lin%d_b", i, (size_t)out), *dy = load("lin%d_dy", i, ny);
        double *ry = load64("lin%d_y", i, ny), *rdx = load64("lin%d_dx", i, nx);
        double *rdw = load64("lin%d_dw", i, nw), *rdb = load64("lin%d_db", i, (size_t)out);
        float *y = buf(ny), *dx = buf(nx), *dw = buf(nw), *db = buf((size_t)out);
        ck_assert_int_eq(be->linear_forward(be, nn, in, out, x, w, hb ? b : NULL, y, &err),
                         KDC_OK);
        ck_assert_int_eq(be->linear_backward(be, nn, in, out, x, w, dy, dx, dw, db, &err),
                         KDC_OK);
        expect("linear y", i, y, ry, ny, TOL_FWD);
        expect("linear dx", i, dx, rdx, nx, TOL_BWD);
        expect("linear dw", i, dw, rdw, nw, TOL_BWD);
        if (hb)
            expect("linear db", i, db, rdb, (size_t)out, TOL_BWD);
        free(x), free(w), free(b), free(dy), free(ry), free(rdx), free(rdw), free(rdb);
        free(y), free(dx), free(dw), free(db);
    }
    free(cases);
    float z[1];
    ck_assert_int_eq(be->linear_forward(be, 0, 1, 1, z, z, NULL, z, &err), KDC_EINVAL);
}
END_TEST

/* --------------------------------------------------------- elementwise */

START_TEST(test_relu)
{
    kdc_error err;
    size_t n;
    float *x = kdc_test_load_f32(SUITE, "relu_x", 0, &n);
    float *dy = kdc_test_load_f32(SUITE, "relu_dy", n, NULL);
    double *ry = kdc_test_load_f64(SUITE, "relu_y", n, NULL);
    double *rdx = kdc_test_load_f64(SUITE, "relu_dx", n, NULL);
    float *y = buf(n), *dx = buf(n);
    ck_assert_int_eq(be->relu_forward(be, n, x, y, &err), KDC_OK);
    ck_assert_int_eq(be->relu_backward(be, n, y, dy, dx, &err), KDC_OK);
    expect("relu y", 0, y, ry, n, 0.0); /* exact */
    expect("relu dx", 0, dx, rdx, n, 0.0);
    /* in place, as the models use it */
    ck_assert_int_eq(be->relu_forward(be, n, x, x, &err), KDC_OK);
    expect("relu y in place", 0, x, ry, n, 0.0);
    float nan_in[2] = {NAN, -1.0f}, nan_out[2];
    ck_assert_int_eq(be->relu_forward(be, 2, nan_in, nan_out, &err), KDC_OK);
    ck_assert(isnan(nan_out[0]) && nan_out[1] == 0.0f);
    free(x), free(dy), free(ry), free(rdx), free(y), free(dx);
}
END_TEST

START_TEST(test_add_axpy)
{
    kdc_error err;
    size_t n = 200003; /* several chunks plus a ragged tail */
    float *a = buf(n), *b = buf(n), *y = buf(n), *y0 = buf(n);
    kdc_test_fill_uniform(a, n, 1, -1, 1);
    kdc_test_fill_uniform(b, n, 2, -1, 1);
    ck_assert_int_eq(be->add(be, n, a, b, y, &err), KDC_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(y[i] == a[i] + b[i], "add at %zu", i);
    memcpy(y0, y, n * sizeof(float));
    ck_assert_int_eq(be->axpy(be, n, -0.25f, a, y, &err), KDC_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(y[i] == y0[i] + -0.25f * a[i], "axpy at %zu", i);
    ck_assert_int_eq(be->add(be, n, y, b, y, &err), KDC_OK); /* y aliases a */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(y[i] == (y0[i] + -0.25f * a[i]) + b[i], "add in place at %zu", i);
    free(a), free(b), free(y), free(y0);
}
END_TEST

START_TEST(test_f32_to_f16)
{
    kdc_error err;
    size_t n;
    float *x = kdc_test_load_f32(SUITE, "f16_x", 0, &n);
    int64_t *ref = kdc_test_load_i64(SUITE, "f16_bits", n, NULL);
    uint16_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(be->f32_to_f16(be, n, x, h, &err), KDC_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h[i] == (uint16_t)ref[i], "f16 of %.9g: 0x%04x, torch 0x%04x", x[i],
                      h[i], (unsigned)ref[i]);
    free(x), free(ref), free(h);
}
END_TEST

START_TEST(test_memory_ops)
{
    kdc_error err;
    void *p, *q;
    ck_assert_int_eq(be->alloc(be, 1000, &p, &err), KDC_OK);
    ck_assert_int_eq(be->alloc(be, 1000, &q, &err), KDC_OK);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    memset(p, 7, 1000);
    ck_assert_int_eq(be->copy_d2d(be, q, p, 1000, &err), KDC_OK);
    ck_assert_int_eq(memcmp(p, q, 1000), 0);
    ck_assert_int_eq(be->fill_zero(be, q, 1000, &err), KDC_OK);
    ck_assert_int_eq(((unsigned char *)q)[999], 0);
    ck_assert_int_eq(be->copy_h2d(be, q, p, 10, &err), KDC_OK);
    ck_assert_int_eq(be->copy_d2h(be, p, q, 10, &err), KDC_OK);
    ck_assert_int_eq(be->synchronize(be, &err), KDC_OK);
    be->free(be, p);
    be->free(be, q);
    ck_assert_int_eq(be->alloc(be, (size_t)-1, &p, &err), KDC_ENOMEM);
    ck_assert_str_eq(be->name, "cpu");
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conv_backend);
    tcase_add_test(tc, test_conv_raw_serial);
    tcase_add_test(tc, test_conv_dnnl);
    tcase_add_test(tc, test_conv_point);
    tcase_add_test(tc, test_conv_dnnl_deterministic);
    tcase_add_test(tc, test_conv_bad_input);
    tcase_add_test(tc, test_bn_backend);
    tcase_add_test(tc, test_bn_raw_serial);
    tcase_add_test(tc, test_bn_bad_input);
    tcase_add_test(tc, test_maxpool);
    tcase_add_test(tc, test_avgpool);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_add_axpy);
    tcase_add_test(tc, test_f32_to_f16);
    tcase_add_test(tc, test_memory_ops);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
