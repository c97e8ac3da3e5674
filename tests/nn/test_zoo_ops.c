/* test_zoo_ops.c - the ops of MobileNetV2, ShuffleNet V1/V2 and RegNetY
 * (ReLU6, sigmoid, squeeze-excitation scale, channel concatenation, split and
 * shuffle, windowed average pooling, grouped convolution with bias) through
 * the CPU backend's op table, against PyTorch autograd in float64
 * (scripts/ref/ref_zoo_ops.py). Tolerances as test_layers.c: 1e-5 forward,
 * 1e-4 gradients (relative to the tensor's largest value). The grouped
 * convolution runs on both CPU convolution paths (oneDNN and KDC_CONV=ref). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/backend_cpu.h"
#include "tests/helpers/testutil.h"

#define SUITE "zoo_ops"
#define TOL_FWD 1e-5
#define TOL_BWD 1e-4

static kdc_backend *be;
static kdc_error err;

static void setup(void)
{
    ck_assert_msg(kdc_backend_cpu_create(2, &be, &err) == KDC_OK, "%s", err.msg);
}

static void teardown(void)
{
    kdc_backend_destroy(be);
    be = NULL;
}

static float *in(const char *name, size_t n)
{
    return kdc_test_load_f32(SUITE, name, n, NULL);
}

static double *ref(const char *name, size_t n)
{
    return kdc_test_load_f64(SUITE, name, n, NULL);
}

static float *buf(size_t n)
{
    float *p = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN; /* an output the op forgets to write fails the comparison */
    return p;
}

static void expect(const char *what, const float *got, const char *ref_name, size_t n, double tol)
{
    double *r = ref(ref_name, n);
    double e = kdc_test_rel_err_f64(got, r, n);
    ck_assert_msg(e <= tol, "%s: relative error %.3g > %.3g", what, e, tol);
    free(r);
}

#define CK_OK(call) ck_assert_msg((call) == KDC_OK, "%s", err.msg)

START_TEST(test_relu6_sigmoid)
{
    const size_t n = 1000;
    float *y = buf(n), *dx = buf(n);
    float *x = in("relu6_x", n), *dy = in("relu6_dy", n);
    CK_OK(be->relu6_forward(be, n, x, y, &err));
    expect("relu6 forward", y, "relu6_y", n, TOL_FWD);
    CK_OK(be->relu6_backward(be, n, y, dy, dx, &err));
    expect("relu6 backward", dx, "relu6_dx", n, TOL_BWD);
    CK_OK(be->relu6_forward(be, n, x, x, &err)); /* in place */
    expect("relu6 in place", x, "relu6_y", n, TOL_FWD);
    free(x);
    free(dy);
    x = in("sigmoid_x", n);
    dy = in("sigmoid_dy", n);
    CK_OK(be->sigmoid_forward(be, n, x, y, &err));
    expect("sigmoid forward", y, "sigmoid_y", n, TOL_FWD);
    CK_OK(be->sigmoid_backward(be, n, y, dy, dx, &err));
    expect("sigmoid backward", dx, "sigmoid_dx", n, TOL_BWD);
    free(x);
    free(dy);
    free(y);
    free(dx);
}
END_TEST

START_TEST(test_channel_scale)
{
    const int n = 2, c = 5, hw = 21;
    const size_t nx = (size_t)n * c * hw, ns = (size_t)n * c;
    float *x = in("scale_x", nx), *s = in("scale_s", ns), *dy = in("scale_dy", nx);
    float *y = buf(nx), *dx = buf(nx), *ds = buf(ns);
    CK_OK(be->channel_scale_forward(be, n, c, hw, x, s, y, &err));
    expect("scale forward", y, "scale_y", nx, TOL_FWD);
    CK_OK(be->channel_scale_backward(be, n, c, hw, x, s, dy, dx, ds, &err));
    expect("scale dx", dx, "scale_dx", nx, TOL_BWD);
    expect("scale ds", ds, "scale_ds", ns, TOL_BWD);
    /* either output alone */
    float *ds2 = buf(ns), *dx2 = buf(nx);
    CK_OK(be->channel_scale_backward(be, n, c, hw, x, s, dy, NULL, ds2, &err));
    expect("scale ds alone", ds2, "scale_ds", ns, TOL_BWD);
    CK_OK(be->channel_scale_backward(be, n, c, hw, x, s, dy, dx2, NULL, &err));
    expect("scale dx alone", dx2, "scale_dx", nx, TOL_BWD);
    ck_assert_int_eq(be->channel_scale_forward(be, 0, c, hw, x, s, y, &err), KDC_EINVAL);
    free(x);
    free(s);
    free(dy);
    free(y);
    free(dx);
    free(ds);
    free(ds2);
    free(dx2);
}
END_TEST

START_TEST(test_concat_split)
{
    const int n = 2, hw = 20, ca = 3, cb = 5, cy = 8;
    const size_t na = (size_t)n * ca * hw, nb = (size_t)n * cb * hw, ny = (size_t)n * cy * hw;
    float *a = in("cat_a", na), *b = in("cat_b", nb), *dy = in("cat_dy", ny);
    float *y = buf(ny), *da = buf(na), *db = buf(nb);
    kdc_chan_copy_desc d1 = {
        .n = n, .hw = hw, .c = ca, .x_c = ca, .x_off = 0, .y_c = cy, .y_off = 0};
    kdc_chan_copy_desc d2 = {
        .n = n, .hw = hw, .c = cb, .x_c = cb, .x_off = 0, .y_c = cy, .y_off = ca};
    CK_OK(be->channel_copy(be, &d1, a, y, &err));
    CK_OK(be->channel_copy(be, &d2, b, y, &err));
    expect("concat forward", y, "cat_y", ny, TOL_FWD);
    /* the backward of a concatenation is a split of dy */
    kdc_chan_copy_desc s1 = {
        .n = n, .hw = hw, .c = ca, .x_c = cy, .x_off = 0, .y_c = ca, .y_off = 0};
    kdc_chan_copy_desc s2 = {
        .n = n, .hw = hw, .c = cb, .x_c = cy, .x_off = ca, .y_c = cb, .y_off = 0};
    CK_OK(be->channel_copy(be, &s1, dy, da, &err));
    CK_OK(be->channel_copy(be, &s2, dy, db, &err));
    expect("concat backward a", da, "cat_da", na, TOL_BWD);
    expect("concat backward b", db, "cat_db", nb, TOL_BWD);
    /* a range that does not fit is refused */
    kdc_chan_copy_desc bad = d2;
    bad.y_off = 4;
    ck_assert_int_eq(be->channel_copy(be, &bad, b, y, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "do not fit"));
    /* a split of x 2x8x3x3 at channel 3 holds exactly those planes */
    float *x = in("split_x", 2 * 8 * 9), *hi = buf(2 * 5 * 9);
    kdc_chan_copy_desc sp = {.n = 2, .hw = 9, .c = 5, .x_c = 8, .x_off = 3, .y_c = 5, .y_off = 0};
    CK_OK(be->channel_copy(be, &sp, x, hi, &err));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 45; j++)
            ck_assert_float_eq(hi[i * 45 + j], x[i * 72 + 27 + j]);
    free(x);
    free(hi);
    free(a);
    free(b);
    free(dy);
    free(y);
    free(da);
    free(db);
}
END_TEST

START_TEST(test_shuffle)
{
    const int n = 2, c = 12, hw = 9;
    const size_t nx = (size_t)n * c * hw;
    for (int g = 2; g <= 3; g++) {
        char name[32];
        snprintf(name, sizeof name, "shuffle%d_x", g);
        float *x = in(name, nx);
        snprintf(name, sizeof name, "shuffle%d_dy", g);
        float *dy = in(name, nx), *y = buf(nx), *dx = buf(nx);
        CK_OK(be->channel_shuffle(be, n, c, g, hw, x, y, &err));
        snprintf(name, sizeof name, "shuffle%d_y", g);
        expect("shuffle forward", y, name, nx, TOL_FWD);
        /* backward: the inverse permutation, a shuffle with c / g groups */
        CK_OK(be->channel_shuffle(be, n, c, c / g, hw, dy, dx, &err));
        snprintf(name, sizeof name, "shuffle%d_dx", g);
        expect("shuffle backward", dx, name, nx, TOL_BWD);
        free(x);
        free(dy);
        free(y);
        free(dx);
    }
    float z[10];
    ck_assert_int_eq(be->channel_shuffle(be, 1, 10, 3, 1, z, z, &err), KDC_EINVAL);
}
END_TEST

START_TEST(test_avgpool)
{
    size_t ncase = 0;
    int64_t *cs = kdc_test_load_i64(SUITE, "avgpool_cases", 0, &ncase);
    ck_assert_uint_eq(ncase % 7, 0);
    for (size_t i = 0; i < ncase / 7; i++) {
        const int64_t *r = cs + 7 * i;
        kdc_pool2d_desc d = {.n = (int)r[0],
                             .c = (int)r[1],
                             .h_in = (int)r[2],
                             .w_in = (int)r[3],
                             .k = (int)r[4],
                             .stride = (int)r[5],
                             .pad = (int)r[6]};
        CK_OK(kdc_pool2d_desc_init(&d, &err));
        size_t nx = (size_t)d.n * d.c * d.h_in * d.w_in, ny = (size_t)d.n * d.c * d.h_out * d.w_out;
        char name[32], rn[32];
        snprintf(name, sizeof name, "avgpool%zu_x", i);
        float *x = in(name, nx);
        snprintf(name, sizeof name, "avgpool%zu_dy", i);
        float *dy = in(name, ny), *y = buf(ny), *dx = buf(nx);
        CK_OK(be->avgpool2d_forward(be, &d, x, y, &err));
        snprintf(rn, sizeof rn, "avgpool%zu_y", i);
        expect("avgpool forward", y, rn, ny, TOL_FWD);
        CK_OK(be->avgpool2d_backward(be, &d, dy, dx, &err));
        snprintf(rn, sizeof rn, "avgpool%zu_dx", i);
        expect("avgpool backward", dx, rn, nx, TOL_BWD);
        free(x);
        free(dy);
        free(y);
        free(dx);
    }
    free(cs);
}
END_TEST

static void gconv_on(kdc_backend *b)
{
    kdc_conv2d_desc d = {.n = 2,
                         .c_in = 16,
                         .h_in = 6,
                         .w_in = 6,
                         .c_out = 24,
                         .kh = 3,
                         .kw = 3,
                         .stride = 2,
                         .pad = 1,
                         .groups = 4};
    CK_OK(kdc_conv2d_desc_init(&d, &err));
    const size_t nx = 2 * 16 * 36, nw = 24 * 4 * 9, ny = 2 * 24 * 9;
    float *x = in("gconv_x", nx), *w = in("gconv_w", nw), *bias = in("gconv_b", 24);
    float *dy = in("gconv_dy", ny), *y = buf(ny), *dx = buf(nx), *dw = buf(nw), *db = buf(24);
    CK_OK(b->conv2d_forward(b, &d, x, w, bias, y, &err));
    expect("grouped conv forward", y, "gconv_y", ny, TOL_FWD);
    CK_OK(b->conv2d_backward(b, &d, x, w, dy, dx, dw, db, &err));
    expect("grouped conv dx", dx, "gconv_dx", nx, TOL_BWD);
    expect("grouped conv dw", dw, "gconv_dw", nw, TOL_BWD);
    expect("grouped conv dbias", db, "gconv_db", 24, TOL_BWD);
    free(x);
    free(w);
    free(bias);
    free(dy);
    free(y);
    free(dx);
    free(dw);
    free(db);
}

START_TEST(test_grouped_conv_bias)
{
    gconv_on(be);
    setenv("KDC_CONV", "ref", 1);
    kdc_backend *r;
    kdc_status st = kdc_backend_cpu_create(2, &r, &err);
    unsetenv("KDC_CONV");
    ck_assert_msg(st == KDC_OK, "%s", err.msg);
    gconv_on(r);
    kdc_backend_destroy(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_relu6_sigmoid);
    tcase_add_test(tc, test_channel_scale);
    tcase_add_test(tc, test_concat_split);
    tcase_add_test(tc, test_shuffle);
    tcase_add_test(tc, test_avgpool);
    tcase_add_test(tc, test_grouped_conv_bias);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
