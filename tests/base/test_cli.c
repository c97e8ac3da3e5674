/* test_cli.c - flag value parsing and the option validation of kd-train and
 * kd-precompute: every bad value is refused with a message naming the flag. */
#include <check.h>
#include <string.h>

#include "common/base/cli.h"
#include "precompute/precompute_options.h"
#include "train/train_options.h"

START_TEST(test_numbers)
{
    kdc_error e;
    long v;
    double d, pair[2];
    ck_assert_int_eq(kdc_cli_int("--x", "42", 0, 100, &v, &e), KDC_OK);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(kdc_cli_int("--x", "42a", 0, 100, &v, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "--x"));
    ck_assert_int_eq(kdc_cli_int("--x", "101", 0, 100, &v, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_int("--x", "", 0, 100, &v, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_int("--x", "99999999999999999999", 0, 100, &v, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_double("--lr", "0.05", 0, 1, &d, &e), KDC_OK);
    ck_assert(d == 0.05);
    ck_assert_int_eq(kdc_cli_double("--lr", "nan", 0, 1, &d, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_double("--lr", "inf", 0, 1, &d, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_pair("--scale", "0.08,1", 0, 1, pair, &e), KDC_OK);
    ck_assert(pair[0] == 0.08 && pair[1] == 1.0);
    ck_assert_int_eq(kdc_cli_pair("--scale", "1,0.5", 0, 1, pair, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_pair("--scale", "0.5", 0, 1, pair, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_pair("--scale", "0.5,0.6,0.7", 0, 1, pair, &e), KDC_EINVAL);
}
END_TEST

START_TEST(test_lists_and_shards)
{
    kdc_error e;
    long l[4];
    int n, i, cnt;
    ck_assert_int_eq(kdc_cli_int_list("--lr-steps", "150,180,210", 1, 1000, 4, l, &n, &e),
                     KDC_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(l[2], 210);
    ck_assert_int_eq(kdc_cli_int_list("--lr-steps", "180,150", 1, 1000, 4, l, &n, &e),
                     KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_int_list("--lr-steps", "1,2,3,4,5", 1, 1000, 4, l, &n, &e),
                     KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_int_list("--lr-steps", "1,,2", 1, 1000, 4, l, &n, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_shard("--shard", "2/4", &i, &cnt, &e), KDC_OK);
    ck_assert(i == 2 && cnt == 4);
    ck_assert_int_eq(kdc_cli_shard("--shard", "4/4", &i, &cnt, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_shard("--shard", "1/0", &i, &cnt, &e), KDC_EINVAL);
    ck_assert_int_eq(kdc_cli_shard("--shard", "1-2", &i, &cnt, &e), KDC_EINVAL);
}
END_TEST

#define ARGV(...) (char *[]){"prog", __VA_ARGS__, NULL}
#define ARGC(a) ((int)(sizeof(a) / sizeof(a[0])) - 1)

START_TEST(test_train_options)
{
    kd_train_options o;
    kdc_error e;
    int help;
    char **ok = ARGV("--data", "d", "--cache", "c.h5", "--student", "resnet8x4", "--out", "r",
                     "--optimizer", "dot", "--kd-weight", "0.9", "--ce-weight", "0.1",
                     "--schedule", "step", "--lr-steps", "150,180,210");
    ck_assert_int_eq(kd_train_parse_options(19, ok, &o, &help, &e), KDC_OK);
    ck_assert_int_eq(o.optimizer, KD_OPT_DOT);
    ck_assert_int_eq(o.n_lr_steps, 3);
    ck_assert(o.kd_weight == 0.9 && o.ce_weight == 0.1);

    /* distillation without a cache is refused: the teacher is never loaded */
    char **nocache = ARGV("--data", "d", "--student", "resnet8x4", "--out", "r", "--kd-weight",
                          "1");
    ck_assert_int_eq(kd_train_parse_options(9, nocache, &o, &help, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "--cache"));

    char **badsched = ARGV("--data", "d", "--student", "s", "--out", "r", "--schedule", "step");
    ck_assert_int_eq(kd_train_parse_options(9, badsched, &o, &help, &e), KDC_EINVAL);
    char **unknown = ARGV("--data", "d", "--bogus");
    ck_assert_int_eq(kd_train_parse_options(4, unknown, &o, &help, &e), KDC_EINVAL);
    char **h = ARGV("--help");
    ck_assert_int_eq(kd_train_parse_options(2, h, &o, &help, &e), KDC_OK);
    ck_assert_int_eq(help, 1);
    char **eval = ARGV("--eval-only", "--student", "s", "--val", "v");
    ck_assert_int_eq(kd_train_parse_options(6, eval, &o, &help, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "--weights"));
}
END_TEST

START_TEST(test_precompute_options)
{
    kd_precompute_options o;
    kdc_error e;
    int help;
    char **ok = ARGV("--data", "d", "--teacher", "resnet18", "--weights", "w.safetensors",
                     "--out", "c.h5", "--view-policy", "rrc", "--views", "8", "--logits",
                     "topk:5", "--shard", "1/3");
    ck_assert_int_eq(kd_precompute_parse_options(17, ok, &o, &help, &e), KDC_OK);
    ck_assert_int_eq(o.logits, KD_LOGITS_TOPK);
    ck_assert_int_eq(o.topk, 5);
    ck_assert_int_eq(o.views, 8);
    ck_assert(o.shard_index == 1 && o.shard_count == 3);

    char **both = ARGV("--data", "d", "--list", "l", "--teacher", "t", "--weights", "w", "--out",
                       "o");
    ck_assert_int_eq(kd_precompute_parse_options(11, both, &o, &help, &e), KDC_EINVAL);
    char **center = ARGV("--data", "d", "--teacher", "t", "--weights", "w", "--out", "o",
                         "--views", "4");
    ck_assert_int_eq(kd_precompute_parse_options(11, center, &o, &help, &e), KDC_EINVAL);
    char **badlog = ARGV("--data", "d", "--teacher", "t", "--weights", "w", "--out", "o",
                         "--logits", "topk:0");
    ck_assert_int_eq(kd_precompute_parse_options(11, badlog, &o, &help, &e), KDC_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_lists_and_shards);
    tcase_add_test(tc, test_train_options);
    tcase_add_test(tc, test_precompute_options);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
