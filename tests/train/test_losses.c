/* test_losses.c - the training losses (train/losses.h) against PyTorch autograd in
 * float64 (fixtures from scripts/ref/ref_losses.py): cross-entropy, vanilla KD at several
 * temperatures and weights (incl. logits at +-80 and teacher probabilities that are
 * exactly 0), KD from a top-k cache, and the projector loss w.r.t. its input and,
 * through a Linear layer written here, w.r.t. the projector's weights. Plus the
 * accumulate mode and bad input. Tolerance: relative error < 1e-5 (float32 vs float64). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/half.h"
#include "tests/helpers/testutil.h"
#include "train/losses.h"
#include "train/metrics.h"

#define SUITE "losses"
#define TOL 1e-5

static double *meta(const char *name, size_t n)
{
    char key[128];
    snprintf(key, sizeof key, "%s_meta", name);
    return kdc_test_load_f64(SUITE, key, n, NULL);
}

static float *load32(const char *name, const char *what, size_t n)
{
    char key[128];
    snprintf(key, sizeof key, "%s_%s", name, what);
    return kdc_test_load_f32(SUITE, key, n, NULL);
}

static double *load64(const char *name, const char *what, size_t n)
{
    char key[128];
    snprintf(key, sizeof key, "%s_%s", name, what);
    return kdc_test_load_f64(SUITE, key, n, NULL);
}

static int32_t *load_idx(const char *name, const char *what, size_t n)
{
    char key[128];
    snprintf(key, sizeof key, "%s_%s", name, what);
    int64_t *v = kdc_test_load_i64(SUITE, key, n, NULL);
    int32_t *out = malloc(n * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)v[i];
    free(v);
    return out;
}

static void assert_loss(const char *name, double got, double ref)
{
    double rel = fabs(got - ref) / fmax(fabs(ref), 1e-30);
    ck_assert_msg(rel < TOL, "%s: loss %.10g vs reference %.10g (relative error %.3g)", name, got,
                  ref, rel);
}

static void assert_grad(const char *name, const float *got, const double *ref, size_t n)
{
    double rel = kdc_test_rel_err_f64(got, ref, n);
    ck_assert_msg(rel < TOL, "%s: gradient relative error %.3g", name, rel);
}

/* A second backward in ADD mode on top of a SET one must give twice it (to rounding:
 * top-k adds the student and teacher parts in two passes). */
static void assert_add_doubles(const char *name, const float *once, const float *twice, size_t n)
{
    float *ref = malloc(n * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    for (size_t i = 0; i < n; i++)
        ref[i] = 2.0f * once[i];
    double rel = kdc_test_rel_err_f32(twice, ref, n);
    free(ref);
    ck_assert_msg(rel < 1e-6, "%s: KD_GRAD_ADD is not SET + SET (relative error %.3g)", name, rel);
}

/* ---- cross-entropy ------------------------------------------------------------------ */

static const char *ce_cases[] = {"ce_small", "ce_wide", "ce_extreme"};

START_TEST(test_ce_vs_torch)
{
    const char *name = ce_cases[_i];
    double *m = meta(name, 3);
    size_t B = (size_t)m[0], C = (size_t)m[1];
    float w = (float)m[2];
    float *z = load32(name, "logits", B * C);
    int32_t *y = load_idx(name, "labels", B);
    double *ref_loss = load64(name, "loss", 1), *ref_grad = load64(name, "grad", B * C);
    float *g = malloc(B * C * sizeof *g), *g2 = malloc(B * C * sizeof *g2);
    kdc_error err = {0};
    double loss = 0;
    ck_assert_int_eq(kd_ce_forward(&loss, z, y, B, C, w, &err), KDC_OK);
    assert_loss(name, loss, ref_loss[0]);
    ck_assert_int_eq(kd_ce_backward(g, z, y, B, C, w, KD_GRAD_SET, &err), KDC_OK);
    assert_grad(name, g, ref_grad, B * C);
    memcpy(g2, g, B * C * sizeof *g);
    ck_assert_int_eq(kd_ce_backward(g2, z, y, B, C, w, KD_GRAD_ADD, &err), KDC_OK);
    assert_add_doubles(name, g, g2, B * C);
    free(m), free(z), free(y), free(ref_loss), free(ref_grad), free(g), free(g2);
}
END_TEST

/* ---- KD from full logits ---------------------------------------------------------------- */

static const char *kd_cases[] = {"kd_t1",         "kd_t4",      "kd_t2_5", "kd_extreme_t1",
                                 "kd_extreme_t4", "kd_zero_pt", "kd_close"};

START_TEST(test_kd_vs_torch)
{
    const char *name = kd_cases[_i];
    double *m = meta(name, 4);
    size_t B = (size_t)m[0], C = (size_t)m[1];
    float T = (float)m[2], w = (float)m[3];
    float *zs = load32(name, "student", B * C), *zt = load32(name, "teacher", B * C);
    double *ref_loss = load64(name, "loss", 1), *ref_grad = load64(name, "grad", B * C);
    float *g = malloc(B * C * sizeof *g), *g2 = malloc(B * C * sizeof *g2);
    kdc_error err = {0};
    double loss = 0;
    ck_assert_int_eq(kd_kd_forward(&loss, zs, zt, B, C, T, w, &err), KDC_OK);
    assert_loss(name, loss, ref_loss[0]);
    ck_assert_int_eq(kd_kd_backward(g, zs, zt, B, C, T, w, KD_GRAD_SET, &err), KDC_OK);
    assert_grad(name, g, ref_grad, B * C);
    memcpy(g2, g, B * C * sizeof *g);
    ck_assert_int_eq(kd_kd_backward(g2, zs, zt, B, C, T, w, KD_GRAD_ADD, &err), KDC_OK);
    assert_add_doubles(name, g, g2, B * C);
    free(m), free(zs), free(zt), free(ref_loss), free(ref_grad), free(g), free(g2);
}
END_TEST

/* ---- KD from a top-k cache -------------------------------------------------------------- */

static const char *topk_cases[] = {"topk_k5_t4", "topk_k10_t1", "topk_k1_t2", "topk_extreme",
                                   "topk_full"};

static uint16_t *to_half(const float *v, size_t n)
{
    uint16_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++) {
        h[i] = kdc_f32_to_f16(v[i]);
        ck_assert_msg(kdc_f16_to_f32(h[i]) == v[i], "fixture value %g is not a float16",
                      (double)v[i]);
    }
    return h;
}

START_TEST(test_kd_topk_vs_reference)
{
    const char *name = topk_cases[_i];
    double *m = meta(name, 5);
    size_t B = (size_t)m[0], C = (size_t)m[1], K = (size_t)m[2];
    float T = (float)m[3], w = (float)m[4];
    float *zs = load32(name, "student", B * C), *v32 = load32(name, "value", B * K);
    int32_t *idx = load_idx(name, "index", B * K);
    uint16_t *v = to_half(v32, B * K);
    double *ref_loss = load64(name, "loss", 1), *ref_grad = load64(name, "grad", B * C);
    float *g = malloc(B * C * sizeof *g), *g2 = malloc(B * C * sizeof *g2);
    kdc_error err = {0};
    double loss = 0;
    ck_assert_int_eq(kd_kd_topk_forward(&loss, zs, v, idx, B, C, K, T, w, &err), KDC_OK);
    assert_loss(name, loss, ref_loss[0]);
    ck_assert_int_eq(kd_kd_topk_backward(g, zs, v, idx, B, C, K, T, w, KD_GRAD_SET, &err), KDC_OK);
    assert_grad(name, g, ref_grad, B * C);
    memcpy(g2, g, B * C * sizeof *g);
    ck_assert_int_eq(kd_kd_topk_backward(g2, zs, v, idx, B, C, K, T, w, KD_GRAD_ADD, &err), KDC_OK);
    assert_add_doubles(name, g, g2, B * C);
    free(m), free(zs), free(v32), free(idx), free(v), free(ref_loss), free(ref_grad), free(g),
        free(g2);
}
END_TEST

/* With K = C the top-k rule is KD on the same float16 logits: two code paths agree. */
START_TEST(test_kd_topk_all_classes_equals_full)
{
    const char *name = "topk_full";
    double *m = meta(name, 5);
    size_t B = (size_t)m[0], C = (size_t)m[1], K = (size_t)m[2];
    ck_assert_uint_eq(K, C);
    float T = (float)m[3], w = (float)m[4];
    float *zs = load32(name, "student", B * C), *v32 = load32(name, "value", B * K);
    float *full = load32(name, "teacher_full", B * C);
    int32_t *idx = load_idx(name, "index", B * K);
    uint16_t *v = to_half(v32, B * K);
    float *g_topk = malloc(B * C * sizeof(float)), *g_full = malloc(B * C * sizeof(float));
    double l_topk, l_full;
    kdc_error err = {0};
    ck_assert_int_eq(kd_kd_topk_forward(&l_topk, zs, v, idx, B, C, K, T, w, &err), KDC_OK);
    ck_assert_int_eq(kd_kd_forward(&l_full, zs, full, B, C, T, w, &err), KDC_OK);
    ck_assert_double_le(fabs(l_topk - l_full), 1e-12 * fabs(l_full));
    ck_assert_int_eq(kd_kd_topk_backward(g_topk, zs, v, idx, B, C, K, T, w, KD_GRAD_SET, &err),
                     KDC_OK);
    ck_assert_int_eq(kd_kd_backward(g_full, zs, full, B, C, T, w, KD_GRAD_SET, &err), KDC_OK);
    KDC_ASSERT_CLOSE_F32("top-k K=C vs full gradient", g_topk, g_full, B * C, 1e-6);
    free(m), free(zs), free(v32), free(full), free(idx), free(v), free(g_topk), free(g_full);
}
END_TEST

/* ---- projector loss --------------------------------------------------------------------- */

static const char *proj_cases[] = {"proj_a4",   "proj_a2",       "proj_a3",
                                   "proj_a1_5", "proj_big_mean", "proj_b2"};

START_TEST(test_proj_vs_torch)
{
    const char *name = proj_cases[_i];
    double *m = meta(name, 4);
    size_t B = (size_t)m[0], D = (size_t)m[1];
    double alpha = m[2];
    float w = (float)m[3];
    float *f = load32(name, "f", B * D), *t = load32(name, "t", B * D);
    double *ref_loss = load64(name, "loss", 1), *ref_grad = load64(name, "grad", B * D);
    float *g = malloc(B * D * sizeof *g), *g2 = malloc(B * D * sizeof *g2);
    kd_proj_ws ws;
    kdc_error err = {0};
    /* a workspace for a larger batch serves a smaller one (the last batch of an epoch) */
    ck_assert_int_eq(kd_proj_ws_init(&ws, B + 3, D, &err), KDC_OK);
    double loss = 0;
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, f, t, B, alpha, w, &err), KDC_OK);
    assert_loss(name, loss, ref_loss[0]);
    ck_assert_int_eq(kd_proj_backward(g, &ws, f, w, KD_GRAD_SET, &err), KDC_OK);
    assert_grad(name, g, ref_grad, B * D);
    memcpy(g2, g, B * D * sizeof *g);
    ck_assert_int_eq(kd_proj_backward(g2, &ws, f, w, KD_GRAD_ADD, &err), KDC_OK);
    assert_add_doubles(name, g, g2, B * D);
    kd_proj_ws_free(&ws);
    free(m), free(f), free(t), free(ref_loss), free(ref_grad), free(g), free(g2);
}
END_TEST

/* f = z_s W^T + b, then the projector loss; dW = df^T z_s and db = sum_b df compared
 * with autograd through the whole chain. */
START_TEST(test_proj_through_linear)
{
    const char *name = "proj_linear";
    double *m = meta(name, 5);
    size_t B = (size_t)m[0], Ds = (size_t)m[1], Dt = (size_t)m[2];
    double alpha = m[3];
    float w = (float)m[4];
    float *zs = load32(name, "zs", B * Ds), *W = load32(name, "W", Dt * Ds);
    float *bias = load32(name, "b", Dt), *t = load32(name, "t", B * Dt);
    double *ref_loss = load64(name, "loss", 1);
    double *ref_gW = load64(name, "gradW", Dt * Ds), *ref_gb = load64(name, "gradb", Dt);
    float *f = malloc(B * Dt * sizeof *f), *df = malloc(B * Dt * sizeof *df);
    float *gW = malloc(Dt * Ds * sizeof *gW), *gb = malloc(Dt * sizeof *gb);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < Dt; j++) {
            double s = bias[j];
            for (size_t i = 0; i < Ds; i++)
                s += (double)zs[b * Ds + i] * W[j * Ds + i];
            f[b * Dt + j] = (float)s;
        }
    kd_proj_ws ws;
    kdc_error err = {0};
    double loss;
    ck_assert_int_eq(kd_proj_ws_init(&ws, B, Dt, &err), KDC_OK);
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, f, t, B, alpha, w, &err), KDC_OK);
    assert_loss(name, loss, ref_loss[0]);
    ck_assert_int_eq(kd_proj_backward(df, &ws, f, w, KD_GRAD_SET, &err), KDC_OK);
    for (size_t j = 0; j < Dt; j++) {
        double sb = 0;
        for (size_t b = 0; b < B; b++)
            sb += df[b * Dt + j];
        gb[j] = (float)sb;
        for (size_t i = 0; i < Ds; i++) {
            double s = 0;
            for (size_t b = 0; b < B; b++)
                s += (double)df[b * Dt + j] * zs[b * Ds + i];
            gW[j * Ds + i] = (float)s;
        }
    }
    assert_grad("proj_linear dW", gW, ref_gW, Dt * Ds);
    /* BN removes the batch mean, so db is 0 up to rounding: compare on dW's scale */
    double max_gb = 0, max_gw = 0;
    for (size_t j = 0; j < Dt; j++)
        max_gb = fmax(max_gb, fabs(gb[j] - ref_gb[j]));
    for (size_t i = 0; i < Dt * Ds; i++)
        max_gw = fmax(max_gw, fabs(ref_gW[i]));
    ck_assert_msg(max_gb < TOL * max_gw, "proj_linear db: error %.3g vs dW scale %.3g", max_gb,
                  max_gw);
    kd_proj_ws_free(&ws);
    free(m), free(zs), free(W), free(bias), free(t), free(ref_loss), free(ref_gW), free(ref_gb);
    free(f), free(df), free(gW), free(gb);
}
END_TEST

/* ---- bad input: a clear error, nothing written ---------------------------------------- */

START_TEST(test_bad_input)
{
    float z[6] = {1, 2, 3, 4, 5, 6}, g[6], t[6] = {0, 1, 0, 1, 0, 1};
    const float sentinel = 12345.0f;
    for (int i = 0; i < 6; i++)
        g[i] = sentinel;
    int32_t y_bad[2] = {0, 3}, y_neg[2] = {-1, 0};
    kdc_error err = {0};
    double loss;
    ck_assert_int_eq(kd_ce_forward(&loss, z, y_bad, 2, 3, 1, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "label 3"));
    ck_assert_int_eq(kd_ce_backward(g, z, y_neg, 2, 3, 1, KD_GRAD_SET, &err), KDC_EINVAL);
    for (int i = 0; i < 6; i++)
        ck_assert(g[i] == sentinel);
    ck_assert_int_eq(kd_ce_forward(&loss, z, y_bad, 0, 3, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_kd_forward(&loss, z, t, 2, 3, 0.0f, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_kd_backward(g, z, t, 2, 3, -1.0f, 1, KD_GRAD_SET, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_kd_forward(&loss, z, t, 2, 3, NAN, 1, &err), KDC_EINVAL);

    uint16_t v[4] = {kdc_f32_to_f16(3), kdc_f32_to_f16(1), kdc_f32_to_f16(2), kdc_f32_to_f16(0)};
    int32_t idx_bad[4] = {0, 1, 2, 7}, idx_ok[4] = {0, 1, 2, 0};
    ck_assert_int_eq(kd_kd_topk_forward(&loss, z, v, idx_bad, 2, 3, 2, 1, 1, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "class index 7"));
    ck_assert_int_eq(kd_kd_topk_forward(&loss, z, v, idx_ok, 2, 3, 4, 1, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_kd_topk_backward(g, z, v, idx_ok, 2, 3, 0, 1, 1, KD_GRAD_SET, &err),
                     KDC_EINVAL);
    uint16_t v_inf[4] = {0xFC00, 0xFC00, kdc_f32_to_f16(1), kdc_f32_to_f16(0)};
    ck_assert_int_eq(kd_kd_topk_forward(&loss, z, v_inf, idx_ok, 2, 3, 2, 1, 1, &err), KDC_EINVAL);
    for (int i = 0; i < 6; i++)
        ck_assert(g[i] == sentinel);

    kd_proj_ws ws;
    ck_assert_int_eq(kd_proj_ws_init(&ws, 1, 3, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_ws_init(&ws, 2, 3, &err), KDC_OK);
    ck_assert_int_eq(kd_proj_backward(g, &ws, z, 1, KD_GRAD_SET, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z, t, 1, 4, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z, t, 3, 4, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z, t, 2, 0.5, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z, t, 2, NAN, 1, &err), KDC_EINVAL);
    /* identical features normalise identically: S = 0, log undefined */
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z, z, 2, 4, 1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_proj_backward(g, &ws, z, 1, KD_GRAD_SET, &err), KDC_EINVAL);
    float z_nan[6] = {1, NAN, 3, 4, 5, 6};
    ck_assert_int_eq(kd_proj_forward(&loss, &ws, z_nan, t, 2, 4, 1, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "NaN"));
    for (int i = 0; i < 6; i++)
        ck_assert(g[i] == sentinel);
    kd_proj_ws_free(&ws);
}
END_TEST

/* Top-1/top-5 counting: a row with any NaN or infinite logit is wrong, wherever
 * the bad value sits (NaN compares false with everything, so the label used
 * to rank first and a NaN student scored 100%). Closed form: rows built so the
 * label is first (or fifth, or sixth) among finite logits. */
START_TEST(test_count_correct_nonfinite_rows)
{
    enum { C = 7, B = 11 };
    float z[B][C];
    int32_t y[B];
    for (int b = 0; b < B; b++) {
        y[b] = b % C;
        for (int c = 0; c < C; c++)
            z[b][c] = (float)(c == y[b] ? 10 : -c); /* the label first */
    }
    /* rows 0-2 stay finite: row 1 with the label 5th, row 2 with it 6th */
    z[1][y[1]] = -3.5f; /* above it: the classes with -c > -3.5 except itself */
    z[2][y[2]] = -5.5f;
    z[3][y[3]] = NAN;          /* NaN at the label */
    z[4][(y[4] + 1) % C] = NAN; /* NaN elsewhere */
    for (int c = 0; c < C; c++)
        z[5][c] = NAN;              /* all NaN */
    z[6][y[6]] = INFINITY;         /* +inf at the label */
    z[7][(y[7] + 2) % C] = -INFINITY; /* -inf elsewhere */
    z[8][(y[8] + 3) % C] = INFINITY;  /* +inf elsewhere */
    /* 9, 10 finite, label first */
    int64_t top1 = 0, top5 = 0;
    kd_count_correct(&z[0][0], y, B, C, &top1, &top5);
    /* finite rows: 0, 9, 10 (label first), 1 (among the top 5), 2 (6th) */
    int above1 = 0, above2 = 0;
    for (int c = 0; c < C; c++) {
        above1 += c != y[1] && (z[1][c] > z[1][y[1]] || (z[1][c] == z[1][y[1]] && c < y[1]));
        above2 += c != y[2] && (z[2][c] > z[2][y[2]] || (z[2][c] == z[2][y[2]] && c < y[2]));
    }
    ck_assert_int_lt(above1, 5);
    ck_assert_int_ge(above2, 5);
    ck_assert_int_eq(top1, 3);
    ck_assert_int_eq(top5, 4);
    ck_assert_uint_eq(kd_count_nonfinite_rows(&z[0][0], B, C), 6);
    ck_assert_uint_eq(kd_count_nonfinite_rows(&z[0][0], 3, C), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_ce_vs_torch, 0, (int)(sizeof ce_cases / sizeof *ce_cases));
    tcase_add_loop_test(tc, test_kd_vs_torch, 0, (int)(sizeof kd_cases / sizeof *kd_cases));
    tcase_add_loop_test(tc, test_kd_topk_vs_reference, 0,
                        (int)(sizeof topk_cases / sizeof *topk_cases));
    tcase_add_test(tc, test_kd_topk_all_classes_equals_full);
    tcase_add_loop_test(tc, test_proj_vs_torch, 0, (int)(sizeof proj_cases / sizeof *proj_cases));
    tcase_add_test(tc, test_proj_through_linear);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_count_correct_nonfinite_rows);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
