/* test_optim.c - the optimisers (train/optim.h): SGD over 5 steps against
 * torch.optim.SGD, DOT over 5 steps against a line-by-line re-statement of mdistiller's
 * DistillationOrientedTrainer (scripts/ref/ref_optim.py, float64), including projector-only
 * and task-only parameters and mdistiller's m_task = 0 case; the invariant that DOT
 * with delta = 0 is SGD on g_task + g_kd; save/restore of the momentum buffers giving
 * bit-identical resumed runs; and bad input. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/testutil.h"
#include "train/optim.h"

#define SUITE "optim"
#define TOL 1e-5

typedef struct opt_case {
    size_t n_params, steps, total;
    double momentum, delta, wd;
    size_t sizes[8], off[9];
    int sides[8]; /* 1 task, 2 distillation, 3 both */
    double *lr, *ref_params, *ref_buf_task, *ref_buf_kd;
    float *init, *gtask, *gkd;
    size_t n_buf_task, n_buf_kd;
    /* the parameters and gradient buffers the optimiser sees */
    float *value, *gt, *gk;
    kd_param_ref refs[8];
} opt_case;

static void load_case(opt_case *c, const char *name)
{
    char key[128];
    memset(c, 0, sizeof *c);
    snprintf(key, sizeof key, "%s_meta", name);
    double *m = kdc_test_load_f64(SUITE, key, 5, NULL);
    c->n_params = (size_t)m[0];
    c->steps = (size_t)m[1];
    c->momentum = m[2];
    c->delta = m[3];
    c->wd = m[4];
    free(m);
    ck_assert_uint_le(c->n_params, 8);
    snprintf(key, sizeof key, "%s_sizes", name);
    int64_t *sz = kdc_test_load_i64(SUITE, key, c->n_params, NULL);
    snprintf(key, sizeof key, "%s_sides", name);
    int64_t *sd = kdc_test_load_i64(SUITE, key, c->n_params, NULL);
    for (size_t i = 0; i < c->n_params; i++) {
        c->sizes[i] = (size_t)sz[i];
        c->sides[i] = (int)sd[i];
        c->off[i + 1] = c->off[i] + c->sizes[i];
    }
    free(sz), free(sd);
    c->total = c->off[c->n_params];
    snprintf(key, sizeof key, "%s_lr", name);
    c->lr = kdc_test_load_f64(SUITE, key, c->steps, NULL);
    snprintf(key, sizeof key, "%s_init", name);
    c->init = kdc_test_load_f32(SUITE, key, c->total, NULL);
    snprintf(key, sizeof key, "%s_gtask", name);
    c->gtask = kdc_test_load_f32(SUITE, key, c->steps * c->total, NULL);
    snprintf(key, sizeof key, "%s_gkd", name);
    c->gkd = kdc_test_load_f32(SUITE, key, c->steps * c->total, NULL);
    snprintf(key, sizeof key, "%s_params", name);
    c->ref_params = kdc_test_load_f64(SUITE, key, c->steps * c->total, NULL);
    snprintf(key, sizeof key, "%s_buf_task", name);
    c->ref_buf_task = kdc_test_load_f64(SUITE, key, 0, &c->n_buf_task);
    snprintf(key, sizeof key, "%s_buf_kd", name);
    c->ref_buf_kd = kdc_test_load_f64(SUITE, key, 0, &c->n_buf_kd);
    c->value = malloc(c->total * sizeof(float));
    c->gt = malloc(c->total * sizeof(float));
    c->gk = malloc(c->total * sizeof(float));
    ck_assert(c->value && c->gt && c->gk);
    memcpy(c->value, c->init, c->total * sizeof(float));
    for (size_t i = 0; i < c->n_params; i++) {
        c->refs[i].value = c->value + c->off[i];
        c->refs[i].n = c->sizes[i];
        c->refs[i].grad_task = (c->sides[i] & 1) ? c->gt + c->off[i] : NULL;
        c->refs[i].grad_distill = (c->sides[i] & 2) ? c->gk + c->off[i] : NULL;
    }
}

static void free_case(opt_case *c)
{
    free(c->lr), free(c->ref_params), free(c->ref_buf_task), free(c->ref_buf_kd);
    free(c->init), free(c->gtask), free(c->gkd), free(c->value), free(c->gt), free(c->gk);
}

/* The gradients of step s into the buffers the optimiser reads. */
static void load_grads(opt_case *c, size_t s)
{
    memcpy(c->gt, c->gtask + s * c->total, c->total * sizeof(float));
    memcpy(c->gk, c->gkd + s * c->total, c->total * sizeof(float));
}

/* Parameters after step s vs the reference, as error relative to the total update
 * theta_s - theta_0 (the parameters themselves would hide a wrong update). */
static void check_params(const char *name, const opt_case *c, size_t s)
{
    double num = 0, den = 0;
    for (size_t j = 0; j < c->total; j++) {
        double ref_upd = c->ref_params[s * c->total + j] - c->init[j];
        double got_upd = (double)c->value[j] - c->init[j];
        num = fmax(num, fabs(got_upd - ref_upd));
        den = fmax(den, fabs(ref_upd));
    }
    ck_assert_msg(den > 0, "%s: reference did not move", name);
    ck_assert_msg(num / den < TOL, "%s step %zu: update relative error %.3g", name, s + 1,
                  num / den);
}

static void check_buf(const char *what, const float *got, size_t n_got, const double *ref,
                      size_t n_ref)
{
    ck_assert_uint_eq(n_got, n_ref);
    if (n_ref == 0)
        return;
    double rel = kdc_test_rel_err_f64(got, ref, n_ref);
    ck_assert_msg(rel < TOL, "%s: momentum buffer relative error %.3g", what, rel);
}

static const char *sgd_cases[] = {"sgd", "sgd_nomomentum"};

START_TEST(test_sgd_vs_torch)
{
    const char *name = sgd_cases[_i];
    opt_case c;
    load_case(&c, name);
    kd_sgd opt;
    kdc_error err = {0};
    ck_assert_int_eq(kd_sgd_init(&opt, c.refs, c.n_params, c.momentum, c.wd, &err), KDC_OK);
    for (size_t s = 0; s < c.steps; s++) {
        load_grads(&c, s);
        ck_assert_int_eq(kd_sgd_step(&opt, c.lr[s], &err), KDC_OK);
        check_params(name, &c, s);
    }
    if (c.momentum != 0)
        check_buf(name, opt.buf, opt.n_buf, c.ref_buf_task, c.n_buf_task);
    ck_assert_uint_eq(opt.steps, c.steps);
    kd_sgd_free(&opt);
    free_case(&c);
}
END_TEST

static const char *dot_cases[] = {"dot", "dot_mtask0", "dot_delta0"};

START_TEST(test_dot_vs_mdistiller)
{
    const char *name = dot_cases[_i];
    opt_case c;
    load_case(&c, name);
    kd_dot opt;
    kdc_error err = {0};
    ck_assert_int_eq(kd_dot_init(&opt, c.refs, c.n_params, c.momentum, c.delta, c.wd, &err),
                     KDC_OK);
    for (size_t s = 0; s < c.steps; s++) {
        load_grads(&c, s);
        ck_assert_int_eq(kd_dot_step(&opt, c.lr[s], &err), KDC_OK);
        check_params(name, &c, s);
    }
    check_buf("DOT task", opt.buf_task, opt.n_task, c.ref_buf_task, c.n_buf_task);
    check_buf("DOT distill", opt.buf_distill, opt.n_distill, c.ref_buf_kd, c.n_buf_kd);
    /* the projector-only parameters move (the SRD release never trained its projector) */
    for (size_t i = 0; i < c.n_params; i++) {
        if (c.sides[i] != 2)
            continue;
        int moved = 0;
        for (size_t j = c.off[i]; j < c.off[i + 1]; j++)
            moved |= c.value[j] != c.init[j];
        ck_assert_msg(moved, "%s: distillation-only parameter %zu did not move", name, i);
    }
    kd_dot_free(&opt);
    free_case(&c);
}
END_TEST

/* DOT with delta = 0 is SGD(momentum, wd) on g_task + g_kd for every parameter with both
 * gradients, to float rounding. A distillation-only parameter differs on the first step
 * by exactly mdistiller's skipped weight decay, lr * wd * theta_0. */
START_TEST(test_dot_delta0_is_sgd)
{
    enum { N0 = 300, N1 = 17, NP = 40, STEPS = 6 };
    const size_t total = N0 + N1 + NP;
    float *a = malloc(total * sizeof(float)), *b = malloc(total * sizeof(float));
    float *init = malloc(total * sizeof(float));
    float *gt = malloc(total * sizeof(float)), *gk = malloc(total * sizeof(float));
    float *gsum = malloc(total * sizeof(float));
    kdc_test_fill_uniform(init, total, 1, -1, 1);
    memcpy(a, init, total * sizeof(float));
    memcpy(b, init, total * sizeof(float));
    size_t n[3] = {N0, N1, NP}, off[3] = {0, N0, N0 + N1};
    kd_param_ref pd[3], ps[3];
    for (int i = 0; i < 3; i++) {
        pd[i] = (kd_param_ref){a + off[i], i < 2 ? gt + off[i] : NULL, gk + off[i], n[i]};
        /* SGD gets the summed gradient as one stream, the way a trainer seeds it */
        ps[i] = (kd_param_ref){b + off[i], NULL, gsum + off[i], n[i]};
    }
    const double wd = 5e-4, lr0 = 0.1;
    kd_dot dot;
    kd_sgd sgd;
    kdc_error err = {0};
    ck_assert_int_eq(kd_dot_init(&dot, pd, 3, 0.9, 0.0, wd, &err), KDC_OK);
    ck_assert_int_eq(kd_sgd_init(&sgd, ps, 3, 0.9, wd, &err), KDC_OK);
    for (int s = 0; s < STEPS; s++) {
        kdc_test_fill_uniform(gt, total, 100 + s, -1, 1);
        kdc_test_fill_uniform(gk, total, 200 + s, -0.5f, 0.5f);
        for (size_t j = 0; j < total; j++)
            gsum[j] = j < N0 + N1 ? gt[j] + gk[j] : gk[j];
        double lr = lr0 / (1 + s);
        ck_assert_int_eq(kd_dot_step(&dot, lr, &err), KDC_OK);
        ck_assert_int_eq(kd_sgd_step(&sgd, lr, &err), KDC_OK);
        double num = 0, den = 0;
        for (size_t j = 0; j < N0 + N1; j++) {
            num = fmax(num, fabs((double)a[j] - b[j]));
            den = fmax(den, fabs((double)b[j] - init[j]));
        }
        ck_assert_msg(num / den < 1e-6, "step %d: DOT(delta=0) vs SGD relative error %.3g", s,
                      num / den);
        if (s == 0)
            for (size_t j = N0 + N1; j < total; j++) {
                double gap = (double)a[j] - b[j], want = lr0 * wd * init[j];
                ck_assert_msg(fabs(gap - want) < 1e-7 + 1e-3 * fabs(want),
                              "projector step 1: DOT - SGD = %.3g, expected lr*wd*theta = %.3g",
                              gap, want);
            }
    }
    kd_dot_free(&dot);
    kd_sgd_free(&sgd);
    free(a), free(b), free(init), free(gt), free(gk), free(gsum);
}
END_TEST

/* Resume: 2 steps, save the buffers as plain arrays, a fresh optimiser restores them and
 * takes 3 more; bit-identical to 5 uninterrupted steps. */
START_TEST(test_resume_is_bit_identical)
{
    opt_case c1, c2;
    load_case(&c1, "dot");
    load_case(&c2, "dot");
    kdc_error err = {0};
    kd_dot a, b;
    ck_assert_int_eq(kd_dot_init(&a, c1.refs, c1.n_params, c1.momentum, c1.delta, c1.wd, &err),
                     KDC_OK);
    ck_assert_int_eq(kd_dot_init(&b, c2.refs, c2.n_params, c2.momentum, c2.delta, c2.wd, &err),
                     KDC_OK);
    for (size_t s = 0; s < c1.steps; s++) {
        load_grads(&c1, s);
        ck_assert_int_eq(kd_dot_step(&a, c1.lr[s], &err), KDC_OK);
    }
    for (size_t s = 0; s < 2; s++) {
        load_grads(&c2, s);
        ck_assert_int_eq(kd_dot_step(&b, c2.lr[s], &err), KDC_OK);
    }
    float *st = malloc(b.n_task * sizeof(float)), *sd = malloc(b.n_distill * sizeof(float));
    memcpy(st, b.buf_task, b.n_task * sizeof(float));
    memcpy(sd, b.buf_distill, b.n_distill * sizeof(float));
    uint64_t steps = b.steps;
    kd_dot_free(&b);
    ck_assert_int_eq(kd_dot_init(&b, c2.refs, c2.n_params, c2.momentum, c2.delta, c2.wd, &err),
                     KDC_OK);
    ck_assert_int_eq(kd_dot_set_state(&b, st, b.n_task + 1, sd, b.n_distill, steps, &err),
                     KDC_EMISMATCH);
    ck_assert_int_eq(kd_dot_set_state(&b, st, b.n_task, sd, b.n_distill, steps, &err), KDC_OK);
    for (size_t s = 2; s < c2.steps; s++) {
        load_grads(&c2, s);
        ck_assert_int_eq(kd_dot_step(&b, c2.lr[s], &err), KDC_OK);
    }
    ck_assert_mem_eq(c1.value, c2.value, c1.total * sizeof(float));
    kd_dot_free(&a), kd_dot_free(&b), free(st), free(sd);

    /* the same for SGD */
    memcpy(c1.value, c1.init, c1.total * sizeof(float));
    memcpy(c2.value, c2.init, c2.total * sizeof(float));
    kd_sgd sa, sb;
    ck_assert_int_eq(kd_sgd_init(&sa, c1.refs, c1.n_params, 0.9, 5e-4, &err), KDC_OK);
    ck_assert_int_eq(kd_sgd_init(&sb, c2.refs, c2.n_params, 0.9, 5e-4, &err), KDC_OK);
    for (size_t s = 0; s < c1.steps; s++) {
        load_grads(&c1, s);
        ck_assert_int_eq(kd_sgd_step(&sa, c1.lr[s], &err), KDC_OK);
    }
    for (size_t s = 0; s < 3; s++) {
        load_grads(&c2, s);
        ck_assert_int_eq(kd_sgd_step(&sb, c2.lr[s], &err), KDC_OK);
    }
    float *sv = malloc(sb.n_buf * sizeof(float));
    memcpy(sv, sb.buf, sb.n_buf * sizeof(float));
    steps = sb.steps;
    kd_sgd_free(&sb);
    ck_assert_int_eq(kd_sgd_init(&sb, c2.refs, c2.n_params, 0.9, 5e-4, &err), KDC_OK);
    ck_assert_int_eq(kd_sgd_set_state(&sb, sv, sb.n_buf - 1, steps, &err), KDC_EMISMATCH);
    ck_assert_int_eq(kd_sgd_set_state(&sb, sv, sb.n_buf, steps, &err), KDC_OK);
    for (size_t s = 3; s < c2.steps; s++) {
        load_grads(&c2, s);
        ck_assert_int_eq(kd_sgd_step(&sb, c2.lr[s], &err), KDC_OK);
    }
    ck_assert_mem_eq(c1.value, c2.value, c1.total * sizeof(float));
    kd_sgd_free(&sa), kd_sgd_free(&sb), free(sv);
    free_case(&c1), free_case(&c2);
}
END_TEST

/* The update loops split over a pool (kd-train's CPU step) give the same floats as
 * the caller's thread alone: first step, later steps, both gradients, one side only
 * (the projector's case), sizes that leave ragged chunks. */
static void fill_seq(float *p, size_t n, float a, float b)
{
    for (size_t i = 0; i < n; i++)
        p[i] = a * sinf((float)i * b);
}

START_TEST(test_pool_is_bit_identical)
{
    kdc_error e;
    kdc_pool *pool;
    ck_assert(kdc_pool_create(3, &pool, &e) == KDC_OK);
    const size_t n0 = 400001, n1 = 70001, n = n0 + n1;
    float *w[2], *gt = malloc(n * sizeof(float)), *gk = malloc(n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        w[k] = malloc(n * sizeof(float));
        fill_seq(w[k], n, 0.5f, 0.001f);
    }
    for (int dot = 0; dot < 2; dot++) {
        kd_sgd sgd[2];
        kd_dot dt[2];
        for (int k = 0; k < 2; k++) {
            fill_seq(w[k], n, 0.5f, 0.001f);
            kd_param_ref refs[2] = {{w[k], gt, gk, n0}, {w[k] + n0, NULL, gk + n0, n1}};
            if (dot) {
                ck_assert(kd_dot_init(&dt[k], refs, 2, 0.9, 0.075, 5e-4, &e) == KDC_OK);
                dt[k].pool = k ? pool : NULL;
            } else {
                ck_assert(kd_sgd_init(&sgd[k], refs, 2, 0.9, 5e-4, &e) == KDC_OK);
                sgd[k].pool = k ? pool : NULL;
            }
        }
        for (int step = 0; step < 4; step++) {
            fill_seq(gt, n, 0.01f, 0.0031f * (float)(step + 1));
            fill_seq(gk, n, 0.02f, 0.0017f * (float)(step + 2));
            for (int k = 0; k < 2; k++)
                ck_assert(dot ? kd_dot_step(&dt[k], 0.05, &e) == KDC_OK
                              : kd_sgd_step(&sgd[k], 0.05, &e) == KDC_OK);
            ck_assert_msg(memcmp(w[0], w[1], n * sizeof(float)) == 0,
                          "%s step %d: pooled update differs", dot ? "DOT" : "SGD", step);
        }
        fill_seq(gt, n, 0.5f, 0.001f); /* the starting weights: they did move */
        ck_assert(memcmp(w[0], gt, n * sizeof(float)) != 0);
        for (int k = 0; k < 2; k++) {
            if (dot)
                kd_dot_free(&dt[k]);
            else
                kd_sgd_free(&sgd[k]);
        }
    }
    free(w[0]), free(w[1]), free(gt), free(gk);
    kdc_pool_destroy(pool);
}
END_TEST

START_TEST(test_bad_input)
{
    float v[4] = {0}, g[4] = {0};
    kd_param_ref ok = {v, g, NULL, 4}, none = {v, NULL, NULL, 4}, empty = {v, g, NULL, 0};
    kd_sgd sgd;
    kd_dot dot;
    kdc_error err = {0};
    ck_assert_int_eq(kd_sgd_init(&sgd, &none, 1, 0.9, 0, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "no gradient"));
    ck_assert_int_eq(kd_sgd_init(&sgd, &empty, 1, 0.9, 0, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_sgd_init(&sgd, &ok, 0, 0.9, 0, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_sgd_init(&sgd, &ok, 1, 1.0, 0, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_sgd_init(&sgd, &ok, 1, 0.9, -1e-4, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_dot_init(&dot, &ok, 1, 0.9, 0.1, 0, &err), KDC_EINVAL); /* m_kd = 1 */
    ck_assert_int_eq(kd_dot_init(&dot, &ok, 1, 0.05, 0.075, 0, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_dot_init(&dot, &ok, 1, 0.9, -0.01, 0, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_dot_init(&dot, &none, 1, 0.9, 0.075, 0, &err), KDC_EINVAL);

    ck_assert_int_eq(kd_sgd_init(&sgd, &ok, 1, 0.9, 0, &err), KDC_OK);
    ck_assert_int_eq(kd_sgd_step(&sgd, -0.1, &err), KDC_EINVAL);
    ck_assert_int_eq(kd_sgd_step(&sgd, NAN, &err), KDC_EINVAL);
    sgd.params[0].grad_task = NULL;
    ck_assert_int_eq(kd_sgd_step(&sgd, 0.1, &err), KDC_EINVAL);
    kd_sgd_free(&sgd);
    ck_assert_int_eq(kd_sgd_step(&sgd, 0.1, &err), KDC_EINVAL); /* freed: not initialised */

    ck_assert_int_eq(kd_dot_init(&dot, &ok, 1, 0.9, 0.075, 5e-4, &err), KDC_OK);
    dot.params[0].grad_distill = g; /* it was declared task-only */
    ck_assert_int_eq(kd_dot_step(&dot, 0.1, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "changed which gradients"));
    kd_dot_free(&dot);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_sgd_vs_torch, 0, (int)(sizeof sgd_cases / sizeof *sgd_cases));
    tcase_add_loop_test(tc, test_dot_vs_mdistiller, 0, (int)(sizeof dot_cases / sizeof *dot_cases));
    tcase_add_test(tc, test_dot_delta0_is_sgd);
    tcase_add_test(tc, test_resume_is_bit_identical);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_pool_is_bit_identical);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
