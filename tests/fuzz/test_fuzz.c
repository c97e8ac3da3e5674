/* test_fuzz.c - the bounded fuzz pass of `make check` (docs/FUZZ.md): fixed
 * seeds, seed files made by our own writers (tests/fuzz/fuzz_main.c
 * --make-seeds), and the committed corpus of inputs that once crashed. Every
 * v2 mutant must end in "accepted" or a one-line refusal: no signal, no
 * sanitizer report, no hang, nothing printed by a library. The long run is
 * tests/fuzz/run.sh. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/testutil.h"

static char *tmp;
static char fuzz[4096];

static void setup(void)
{
    tmp = kdc_test_tmpdir("fuzz");
    snprintf(fuzz, sizeof fuzz, "%s/../fuzz/kd-fuzz", kdc_test_bin_dir());
}

static void teardown(void)
{
    kdc_test_system("rm -rf '%s'", tmp);
    free(tmp);
}

/* Runs kd-fuzz with args; its last line must report zero bad outcomes and
 * `runs` runs. */
static void expect_clean(const char *args, long runs)
{
    char out[4096];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    int rc = kdc_test_system("'%s' --quiet %s > '%s' 2>&1", fuzz, args, out);
    char line[1024] = "", last[1024] = "";
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        snprintf(last, sizeof last, "%s", line);
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "total: %ld runs:", runs);
    ck_assert_msg(strstr(last, want) != NULL, "kd-fuzz %s: %s", args, last);
    ck_assert_msg(strstr(last, "signals 0, hangs 0, printed 0, bad messages 0") != NULL,
                  "kd-fuzz %s: %s (crashing inputs in %s/crashes)", args, last, tmp);
    ck_assert_msg(rc == 0, "kd-fuzz %s: exit %d", args, rc);
}

START_TEST(test_cache_mutants)
{
    ck_assert_int_eq(kdc_test_system("'%s' --make-seeds '%s/seeds' >/dev/null", fuzz, tmp), 0);
    char args[8192];
    /* six storage modes x 150 mutants, fixed seed */
    snprintf(args, sizeof args,
             "--target cache --mutants 150 --seed 11 --timeout 60 --crash-dir '%s/crashes' "
             "'%s'/seeds/v2_*.h5",
             tmp, tmp);
    expect_clean(args, 6 * 150);
    /* the seeds themselves are accepted: the fuzzer exercises real files */
    snprintf(args, sizeof args, "--target cache --replay '%s'/seeds/v2_*.h5", tmp);
    expect_clean(args, 6);
    char out[4096];
    snprintf(out, sizeof out, "%s/acc.txt", tmp);
    ck_assert_int_eq(kdc_test_system("'%s' --target cache --replay '%s'/seeds/v2_topk.h5 | "
                                     "grep -q 'accepted 1,'",
                                     fuzz, tmp),
                     0);
}
END_TEST

START_TEST(test_corpus_replays_clean)
{
    char args[8192];
    snprintf(args, sizeof args, "--target cache --replay --timeout 60 '%s'/tests/fuzz/corpus/cache/*",
             kdc_test_repo_root());
    long n = 0;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ls '%s'/tests/fuzz/corpus/cache | wc -l", kdc_test_repo_root());
    FILE *p = popen(cmd, "r");
    ck_assert_int_eq(fscanf(p, "%ld", &n), 1);
    pclose(p);
    ck_assert_int_gt(n, 0);
    expect_clean(args, n);
}
END_TEST

START_TEST(test_safetensors_and_list_mutants)
{
    ck_assert_int_eq(kdc_test_system("'%s' --make-seeds '%s/seeds' >/dev/null", fuzz, tmp), 0);
    char args[8192];
    snprintf(args, sizeof args,
             "--target safetensors --mutants 400 --seed 12 --crash-dir '%s/crashes' "
             "'%s/seeds/weights.safetensors'",
             tmp, tmp);
    expect_clean(args, 400);
    snprintf(args, sizeof args,
             "--target list --mutants 400 --seed 13 --root '%s/seeds/list_root' "
             "--crash-dir '%s/crashes' '%s/seeds/images.txt'",
             tmp, tmp, tmp);
    expect_clean(args, 400);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cache_mutants);
    tcase_add_test(tc, test_corpus_replays_clean);
    tcase_add_test(tc, test_safetensors_and_list_mutants);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
