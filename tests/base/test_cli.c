/* test_cli.c - flag value parsing and the option validation of kd-train and
 * kd-precompute: every bad value is refused with a message naming the flag;
 * -h/--help/--version; the recipes (values from ALGORITHMS.md, i.e. mdistiller's
 * configs), the loss weights a run settles on, and the --resume difference text. */
#include <check.h>
#include <string.h>

#include "common/base/cli.h"
#include "precompute/precompute_options.h"
#include "train/recipe.h"
#include "train/train_checkpoint.h"
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


START_TEST(test_help_and_version_actions)
{
    kd_train_options o;
    kd_precompute_options p;
    kdc_error e;
    int action;
    const char *flags[] = {"-h", "--help", "--version"};
    const int want[] = {KDC_CLI_HELP, KDC_CLI_HELP, KDC_CLI_VERSION};
    for (int i = 0; i < 3; i++) {
        char *a[] = {"prog", (char *)flags[i], NULL};
        ck_assert_int_eq(kd_train_parse_options(2, a, &o, &action, &e), KDC_OK);
        ck_assert_int_eq(action, want[i]);
        ck_assert_int_eq(kd_precompute_parse_options(2, a, &p, &action, &e), KDC_OK);
        ck_assert_int_eq(action, want[i]);
    }
    char **le = ARGV("--data", "d", "--student", "s", "--out", "r", "--log-every", "2.5");
    ck_assert_int_eq(kd_train_parse_options(9, le, &o, &action, &e), KDC_OK);
    ck_assert(o.log_every == 2.5 && action == KDC_CLI_RUN);
    char **dflt = ARGV("--data", "d", "--student", "s", "--out", "r");
    ck_assert_int_eq(kd_train_parse_options(7, dflt, &o, &action, &e), KDC_OK);
    ck_assert(o.log_every == 30.0);
    char **bad = ARGV("--data", "d", "--student", "s", "--out", "r", "--log-every", "-1");
    ck_assert_int_eq(kd_train_parse_options(9, bad, &o, &action, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "--log-every"));
}
END_TEST

/* mdistiller's CIFAR-100 and ImageNet settings (ALGORITHMS.md sections 1-2). */
static void assert_cifar_training(const kd_train_options *o)
{
    ck_assert(o->wd == 5e-4 && o->momentum == 0.9 && o->dot_delta == 0.075);
    ck_assert(o->lr_gamma == 0.1 && o->schedule == KD_SCHED_STEP);
    ck_assert_int_eq(o->epochs, 240);
    ck_assert_int_eq(o->n_lr_steps, 3);
    ck_assert(o->lr_steps[0] == 150 && o->lr_steps[1] == 180 && o->lr_steps[2] == 210);
}

START_TEST(test_recipes)
{
    kd_train_options o;
    kdc_error e;
    int action;
    char **c = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                    "--recipe", "cifar");
    ck_assert_int_eq(kd_train_parse_options(11, c, &o, &action, &e), KDC_OK);
    assert_cifar_training(&o);
    ck_assert(o.lr == 0.05 && o.batch == 64);
    /* explicit flags win, before or after the recipe */
    char **before = ARGV("--data", "d", "--student", "s", "--out", "r", "--lr", "0.1",
                         "--batch", "8", "--recipe", "cifar", "--epochs", "3");
    ck_assert_int_eq(kd_train_parse_options(15, before, &o, &action, &e), KDC_OK);
    ck_assert(o.lr == 0.1 && o.batch == 8 && o.epochs == 3);
    ck_assert(o.wd == 5e-4 && o.dot_delta == 0.075 && o.n_lr_steps == 3);
    char **after = ARGV("--data", "d", "--student", "s", "--out", "r", "--recipe", "imagenet",
                        "--lr-steps", "5,7", "--dot-delta", "0.05");
    ck_assert_int_eq(kd_train_parse_options(13, after, &o, &action, &e), KDC_OK);
    ck_assert(o.lr == 0.2 && o.batch == 512 && o.wd == 1e-4 && o.epochs == 100);
    ck_assert(o.momentum == 0.9 && o.dot_delta == 0.05 && o.schedule == KD_SCHED_STEP);
    ck_assert(o.n_lr_steps == 2 && o.lr_steps[0] == 5 && o.lr_steps[1] == 7);
    char **in = ARGV("--data", "d", "--student", "s", "--out", "r", "--recipe", "imagenet");
    ck_assert_int_eq(kd_train_parse_options(9, in, &o, &action, &e), KDC_OK);
    ck_assert(o.n_lr_steps == 3 && o.lr_steps[0] == 30 && o.lr_steps[1] == 60 &&
              o.lr_steps[2] == 90);
    char **unknown = ARGV("--data", "d", "--student", "s", "--out", "r", "--recipe", "tiny");
    ck_assert_int_eq(kd_train_parse_options(9, unknown, &o, &action, &e), KDC_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "--recipe"));
    ck_assert_ptr_nonnull(strstr(e.msg, "tiny"));
}
END_TEST

/* Parses argv, settles the losses for image size S, checks (ce, kd, T). */
static void check_losses(int argc, char **argv, int S, double ce, double kd, double T)
{
    kd_train_options o;
    kdc_error e;
    int action;
    char src[256];
    ck_assert_msg(kd_train_parse_options(argc, argv, &o, &action, &e) == KDC_OK, "%s", e.msg);
    kd_train_resolve_losses(&o, S, src, sizeof src);
    ck_assert_msg(o.ce_weight == ce && o.kd_weight == kd && o.temperature == T,
                  "S %d: ce %g kd %g T %g, expected %g %g %g (%s)", S, o.ce_weight, o.kd_weight,
                  o.temperature, ce, kd, T, src);
}

START_TEST(test_loss_weights)
{
    char **cache = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r");
    /* a cache distils; the cut-off between the recipes is 64 px */
    check_losses(9, cache, 32, 0.1, 0.9, 4);
    check_losses(9, cache, 64, 0.1, 0.9, 4);
    check_losses(9, cache, 65, 0.5, 0.5, 1);
    check_losses(9, cache, 224, 0.5, 0.5, 1);
    /* a named recipe whatever the size */
    char **rec = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                      "--recipe", "imagenet");
    check_losses(11, rec, 32, 0.5, 0.5, 1);
    /* each explicit value wins on its own */
    char **t = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                    "--temperature", "2");
    check_losses(11, t, 32, 0.1, 0.9, 2);
    char **k = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                    "--kd-weight", "1");
    check_losses(11, k, 224, 0.5, 1, 1);
    /* --kd-weight 0: the supervised baseline (CE weight 1), unless --ce-weight */
    char **off = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                      "--kd-weight", "0");
    check_losses(11, off, 32, 1, 0, 4);
    char **off2 = ARGV("--data", "d", "--cache", "c.h5", "--student", "s", "--out", "r",
                       "--kd-weight", "0", "--ce-weight", "0.3");
    check_losses(13, off2, 32, 0.3, 0, 4);
    /* no cache: CE 1, also under a recipe (the recipe's CE-only baseline) */
    char **none = ARGV("--data", "d", "--student", "s", "--out", "r", "--recipe", "cifar");
    check_losses(9, none, 32, 1, 0, 4);
    /* zero CE and nothing to distil is refused at parse time */
    kd_train_options o;
    kdc_error e;
    int action;
    char **zero = ARGV("--data", "d", "--student", "s", "--out", "r", "--ce-weight", "0");
    ck_assert_int_eq(kd_train_parse_options(9, zero, &o, &action, &e), KDC_EINVAL);
    char **zero_kd = ARGV("--data", "d", "--cache", "c", "--student", "s", "--out", "r",
                          "--ce-weight", "0");
    ck_assert_int_eq(kd_train_parse_options(11, zero_kd, &o, &action, &e), KDC_OK);
}
END_TEST

START_TEST(test_signature_diff)
{
    const char *a = "student=resnet8x4 classes=4 batch=64 lr=0.050000000000000003 "
                    "wd=0.00050000000000000001 schedule=0 warmup=0 lr_steps= gamma=0.1 "
                    "optimizer=0 momentum=0.90000000000000002 delta=0.074999999999999997 "
                    "ce=0.10000000000000001 kd=0.90000000000000002 T=4 proj=0 alpha=4 "
                    "proj_task=0 seed=0 shuffle=1 data=abc";
    const char *b = "student=resnet8x4 classes=4 batch=32 lr=0.10000000000000001 "
                    "wd=0.00050000000000000001 schedule=1 warmup=0 lr_steps=150,180 gamma=0.1 "
                    "optimizer=1 momentum=0.90000000000000002 delta=0.074999999999999997 "
                    "ce=0.10000000000000001 kd=0.90000000000000002 T=4 proj=0 alpha=4 "
                    "proj_task=0 seed=0 shuffle=0 data=abd";
    char d[1024];
    kd_signature_diff(a, b, d, sizeof d);
    const char *want[] = {"--batch was 64, now 32", "--lr was 0.05, now 0.1",
                          "--schedule was cosine, now step", "--lr-steps was (none), now 150,180",
                          "--optimizer was sgd, now dot", "--no-shuffle was not given, now given",
                          "the data (cache fingerprint, or online) was abc, now abd"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(d, want[i]), "no '%s' in '%s'", want[i], d);
    ck_assert_msg(!strstr(d, "--wd") && !strstr(d, "--student") && !strstr(d, "--momentum"),
                  "%s", d);
    /* numbers that %g would print alike are shown in full */
    kd_signature_diff("lr=0.10000000000000001", "lr=0.10000000000000002", d, sizeof d);
    ck_assert_msg(strstr(d, "--lr was 0.10000000000000001, now 0.10000000000000002"), "%s", d);
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
    tcase_add_test(tc, test_help_and_version_actions);
    tcase_add_test(tc, test_recipes);
    tcase_add_test(tc, test_loss_weights);
    tcase_add_test(tc, test_signature_diff);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
