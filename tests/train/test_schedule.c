/* test_schedule.c - learning-rate schedules (train/schedule.h) against the values
 * torch.optim.lr_scheduler gives at every step of short runs (scripts/ref/ref_schedule.py):
 * MultiStepLR per epoch, CosineAnnealingLR per step, warm-up chained with SequentialLR,
 * constant; plus the closed form at the ends, parsing and validation errors. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/testutil.h"
#include "train/schedule.h"

#define SUITE "schedule"

static const char *cases[] = {"step_cifar",    "step_half",         "cosine",  "cosine_min",
                              "cosine_warmup", "cosine_warmup_min", "constant"};

START_TEST(test_schedule_vs_torch)
{
    const char *name = cases[_i];
    char key[128];
    snprintf(key, sizeof key, "%s_meta", name);
    double *m = kdc_test_load_f64(SUITE, key, 8, NULL);
    kd_schedule s;
    kd_schedule_defaults(&s, (kd_schedule_kind)(int)m[0], m[1], (long)m[2], (long)m[3]);
    s.gamma = m[4];
    s.lr_min = m[5];
    s.warmup_epochs = (long)m[6];
    s.warmup_start_factor = m[7];
    size_t n_ms;
    snprintf(key, sizeof key, "%s_milestones", name);
    int64_t *ms = kdc_test_load_i64(SUITE, key, 0, &n_ms);
    if (s.kind == KD_SCHEDULE_STEP) {
        s.n_milestones = n_ms;
        for (size_t i = 0; i < n_ms; i++)
            s.milestones[i] = (long)ms[i];
    }
    kdc_error err = {0};
    ck_assert_msg(kd_schedule_validate(&s, &err) == KDC_OK, "%s: %s", name, err.msg);
    size_t n = (size_t)(s.epochs * s.steps_per_epoch);
    snprintf(key, sizeof key, "%s_lr", name);
    double *ref = kdc_test_load_f64(SUITE, key, n, NULL);
    for (long e = 0; e < s.epochs; e++)
        for (long k = 0; k < s.steps_per_epoch; k++) {
            double got = kd_schedule_lr(&s, e, k), want = ref[e * s.steps_per_epoch + k];
            ck_assert_msg(fabs(got - want) <= 1e-12 * s.lr,
                          "%s epoch %ld step %ld: lr %.15g, torch %.15g", name, e, k, got, want);
        }
    free(m), free(ms), free(ref);
}
END_TEST

START_TEST(test_cosine_ends)
{
    kd_schedule s;
    kd_schedule_defaults(&s, KD_SCHEDULE_COSINE, 0.1, 10, 100);
    s.lr_min = 1e-4;
    ck_assert_double_eq(kd_schedule_lr(&s, 0, 0), 0.1);
    ck_assert_double_eq_tol(kd_schedule_lr(&s, 5, 0), (0.1 + 1e-4) / 2, 1e-15);
    ck_assert_double_eq(kd_schedule_lr(&s, 10, 0), 1e-4); /* past the run: lr_min */
    ck_assert_double_eq(kd_schedule_lr(&s, 12, 7), 1e-4);
    s.warmup_epochs = 2;
    s.warmup_start_factor = 0.5;
    ck_assert_double_eq(kd_schedule_lr(&s, 0, 0), 0.05);
    ck_assert_double_eq_tol(kd_schedule_lr(&s, 1, 0), 0.075, 1e-15);
    ck_assert_double_eq(kd_schedule_lr(&s, 2, 0), 0.1);
}
END_TEST

START_TEST(test_parse_and_validate)
{
    kd_schedule s;
    kdc_error err = {0};
    kd_schedule_kind kind;
    ck_assert_int_eq(kd_schedule_parse_kind("cosine", &kind, &err), KDC_OK);
    ck_assert_int_eq(kind, KD_SCHEDULE_COSINE);
    ck_assert_int_eq(kd_schedule_parse_kind("linear", &kind, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "linear"));

    kd_schedule_defaults(&s, KD_SCHEDULE_STEP, 0.05, 240, 782);
    ck_assert_int_eq(kd_schedule_parse_milestones(&s, "150,180,210", &err), KDC_OK);
    ck_assert_uint_eq(s.n_milestones, 3);
    ck_assert_int_eq(s.milestones[2], 210);
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_OK);
    ck_assert_double_eq(kd_schedule_lr(&s, 149, 781), 0.05);
    ck_assert_double_eq_tol(kd_schedule_lr(&s, 150, 0), 0.005, 1e-18);
    ck_assert_double_eq_tol(kd_schedule_lr(&s, 239, 0), 0.05 * 0.1 * 0.1 * 0.1, 1e-18);
    const char *bad[] = {"", "150,,180", "180,150", "150,180,", "0", "-5", "abc", "150;180"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(kd_schedule_parse_milestones(&s, bad[i], &err) == KDC_EINVAL, "'%s' accepted",
                      bad[i]);
    ck_assert_uint_eq(s.n_milestones, 3); /* a failed parse leaves the schedule as it was */
    ck_assert_int_eq(s.milestones[0], 150);
    s.gamma = 0;
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);

    kd_schedule_defaults(&s, KD_SCHEDULE_STEP, 0.1, 10, 10);
    s.warmup_epochs = 1;
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "warmup"));
    kd_schedule_defaults(&s, KD_SCHEDULE_COSINE, 0.1, 10, 10);
    s.warmup_epochs = 10;
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
    s.warmup_epochs = 2;
    s.warmup_start_factor = 0;
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
    kd_schedule_defaults(&s, KD_SCHEDULE_COSINE, 0.1, 0, 10);
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
    kd_schedule_defaults(&s, KD_SCHEDULE_COSINE, 0.1, 10, 10);
    s.lr_min = 0.2;
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
    kd_schedule_defaults(&s, KD_SCHEDULE_CONSTANT, -1, 10, 10);
    ck_assert_int_eq(kd_schedule_validate(&s, &err), KDC_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_schedule_vs_torch, 0, (int)(sizeof cases / sizeof *cases));
    tcase_add_test(tc, test_cosine_ends);
    tcase_add_test(tc, test_parse_and_validate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
