/* test_tools.c - the command-line habits every tool shares, checked on the built
 * kd-precompute, kd-train and kd-cache (KDC_BIN): -h/--help on stdout with exit
 * 0 (kd-cache: each subcommand too), --version with the release, the git commit
 * and the build options, exit 2 for a bad command line and 1 for a failure while
 * running, and "cannot create X.partial: <reason>" when an output cannot be made.
 *
 * Expected values are computed here, not taken from the tools: the release from
 * the Makefile, the commit from git itself, the build options from the macros
 * this suite was compiled with (the same build). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers/testutil.h"

static char *g_tmp;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

/* Runs KDC_BIN/<args> with stdout and stderr to files; returns the exit status
 * and the two texts (malloc'd). */
static int run(const char *args, char **out, char **err)
{
    char o[1100], e[1100];
    snprintf(o, sizeof o, "%s/out.txt", g_tmp);
    snprintf(e, sizeof e, "%s/err.txt", g_tmp);
    int rc = kdc_test_system("%s/%s >%s 2>%s </dev/null", kdc_test_bin_dir(), args, o, e);
    *out = slurp(o);
    *err = slurp(e);
    return rc;
}

static const char *const HELP_COMMANDS[] = {
    "kd-precompute",   "kd-train",       "kd-cache",        "kd-cache info",
    "kd-cache verify", "kd-cache merge", "kd-cache export", "kd-cache upgrade",
};

START_TEST(test_help)
{
    const char *flags[] = {"-h", "--help"};
    for (size_t i = 0; i < sizeof HELP_COMMANDS / sizeof HELP_COMMANDS[0]; i++)
        for (int f = 0; f < 2; f++) {
            char cmd[256], *out, *err;
            snprintf(cmd, sizeof cmd, "%s %s", HELP_COMMANDS[i], flags[f]);
            int rc = run(cmd, &out, &err);
            ck_assert_msg(rc == 0, "%s: exit %d (%s)", cmd, rc, err);
            ck_assert_msg(!strncmp(out, "usage: ", 7), "%s: stdout starts '%.40s'", cmd, out);
            ck_assert_msg(err[0] == '\0', "%s: wrote to stderr: %s", cmd, err);
            free(out);
            free(err);
        }
    /* the help names the new flags */
    char *out, *err;
    ck_assert_int_eq(run("kd-train --help", &out, &err), 0);
    const char *train_flags[] = {"--recipe cifar", "--recipe imagenet", "--log-every",
                                 "--version",      "--force",           "--eval-only"};
    for (size_t i = 0; i < sizeof train_flags / sizeof train_flags[0]; i++)
        ck_assert_msg(strstr(out, train_flags[i]), "kd-train --help lacks %s", train_flags[i]);
    free(out);
    free(err);
    ck_assert_int_eq(run("kd-precompute --help", &out, &err), 0);
    ck_assert_msg(strstr(out, "--log-every") && strstr(out, "--version"), "%s", out);
    free(out);
    free(err);
}
END_TEST

/* The commit as git sees it now, "-dirty" when tracked files differ from it;
 * "unknown" without a git checkout (as the Makefile decides). */
static void expected_commit(char *buf, size_t len)
{
    char git[1100], p[1100];
    snprintf(git, sizeof git, "%s/.git", kdc_test_repo_root());
    snprintf(p, sizeof p, "%s/commit.txt", g_tmp);
    if (access(git, F_OK) != 0 ||
        kdc_test_system("git -C %s rev-parse --short HEAD >%s 2>/dev/null", kdc_test_repo_root(),
                        p) != 0) {
        snprintf(buf, len, "unknown");
        return;
    }
    char *c = slurp(p);
    c[strcspn(c, "\n")] = '\0';
    int dirty =
        kdc_test_system("git -C %s diff --quiet HEAD -- 2>/dev/null", kdc_test_repo_root()) != 0;
    snprintf(buf, len, "%s%s", c, dirty ? "-dirty" : "");
    free(c);
}

/* KDC_VERSION ?= X in the Makefile. */
static void expected_version(char *buf, size_t len)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/Makefile", kdc_test_repo_root());
    char *mk = slurp(p), *v = strstr(mk, "KDC_VERSION ?= ");
    ck_assert_msg(v != NULL, "no KDC_VERSION in %s", p);
    v += strlen("KDC_VERSION ?= ");
    snprintf(buf, len, "%.*s", (int)strcspn(v, " \n"), v);
    free(mk);
}

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif
#ifndef BUILT_WITH_ASAN
#define BUILT_WITH_ASAN 0
#endif

START_TEST(test_version)
{
    char commit[128], version[64], want[512];
    expected_commit(commit, sizeof commit);
    expected_version(version, sizeof version);
    const char *tools[][2] = {{"kd-precompute", "kd-precompute --version"},
                              {"kd-train", "kd-train --version"},
                              {"kd-cache", "kd-cache --version"},
                              {"kd-cache", "kd-cache info --version"},
                              {"kd-cache", "kd-cache verify --version"}};
#ifdef KDC_HAVE_CUDA
    const char *cuda = "CUDA on";
#else
    const char *cuda = "CUDA off";
#endif
    const char *san = BUILT_WITH_ASAN ? "sanitizers on" : "sanitizers off";
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        char *out, *err;
        int rc = run(tools[i][1], &out, &err);
        ck_assert_msg(rc == 0, "%s: exit %d (%s)", tools[i][1], rc, err);
        snprintf(want, sizeof want, "%s (kdcache) %s\ncommit %s\nbuild: %s, %s", tools[i][0],
                 version, commit, cuda, san);
        ck_assert_msg(!strncmp(out, want, strlen(want)),
                      "%s printed:\n%s\nexpected:\n%s...\n(a commit or an edit since the "
                      "tools were built? make tools, then rerun)",
                      tools[i][1], out, want);
        ck_assert_msg(err[0] == '\0', "%s: wrote to stderr: %s", tools[i][1], err);
        free(out);
        free(err);
    }
}
END_TEST

/* A bad command line: exit 2 and a first line "tool: ..." on stderr. */
START_TEST(test_usage_errors_exit_2)
{
    const char *cases[] = {
        "kd-train",
        "kd-train --bogus",
        "kd-train --data d --student resnet8x4 --out r --epochs abc",
        "kd-train --data d --student resnet8x4 --out r --recipe cifar100",
        "kd-train --data d --student resnet8x4 --out r --log-every -1",
        "kd-train --data d --student resnet8x4 --out r --force",
        "kd-train --data d --student resnet8x4 --out r --warmup-epochs 2 --schedule step "
        "--lr-steps 3",
        "kd-train --eval-only --val v",
        "kd-precompute",
        "kd-precompute --bogus",
        "kd-precompute --data d --teacher resnet18 --weights w --out o --log-every x",
        "kd-cache",
        "kd-cache bogus",
        "kd-cache info",
        "kd-cache info a.h5 b.h5",
        "kd-cache verify --bogus x.h5",
        "kd-cache merge out.h5",
        "kd-cache export x.h5",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = run(cases[i], &out, &err);
        ck_assert_msg(rc == 2, "'%s': exit %d, expected 2 (stderr: %s)", cases[i], rc, err);
        const char *tool = !strncmp(cases[i], "kd-train", 8)         ? "kd-train"
                           : !strncmp(cases[i], "kd-precompute", 13) ? "kd-precompute"
                                                                     : "kd-cache";
        /* kd-cache with no command prints its usage only */
        if (strcmp(cases[i], "kd-cache"))
            ck_assert_msg(!strncmp(err, tool, strlen(tool)) && err[strlen(tool)] == ':',
                          "'%s': stderr '%s'", cases[i], err);
        free(out);
        free(err);
    }
}
END_TEST

/* A failure while running (missing or corrupt input): exit 1, one line. */
START_TEST(test_runtime_errors_exit_1)
{
    char junk[1100];
    snprintf(junk, sizeof junk, "%s/junk.h5", g_tmp);
    FILE *f = fopen(junk, "w");
    ck_assert(f != NULL);
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    const char *fx = kdc_test_fixture_root();
    char cases[10][2048];
    int n = 0;
    snprintf(cases[n++], sizeof cases[0],
             "kd-train --data %s/nosuch --student resnet8x4 --out %s/r1", g_tmp, g_tmp);
    snprintf(cases[n++], sizeof cases[0],
             "kd-train --data %s/train/data --cache %s --student resnet8x4 --out %s/r2", fx, junk,
             g_tmp);
    snprintf(cases[n++], sizeof cases[0], "kd-train --eval-only --weights %s --val %s/train/data",
             junk, fx);
    snprintf(cases[n++], sizeof cases[0],
             "kd-precompute --data %s/nosuch --teacher resnet18 --weights %s --out %s/c.h5 --quiet",
             g_tmp, junk, g_tmp);
    snprintf(cases[n++], sizeof cases[0],
             "kd-precompute --data %s/train/data --teacher resnet18 --weights %s --out %s/c2.h5 "
             "--quiet",
             fx, junk, g_tmp);
    snprintf(cases[n++], sizeof cases[0], "kd-cache info %s", junk);
    snprintf(cases[n++], sizeof cases[0], "kd-cache info %s/nosuch.h5", g_tmp);
    snprintf(cases[n++], sizeof cases[0], "kd-cache verify %s", junk);
    snprintf(cases[n++], sizeof cases[0], "kd-cache merge %s/m.h5 %s", g_tmp, junk);
    snprintf(cases[n++], sizeof cases[0], "kd-cache export %s --out %s/exp", junk, g_tmp);
    for (int i = 0; i < n; i++) {
        char *out, *err;
        int rc = run(cases[i], &out, &err);
        ck_assert_msg(rc == 1, "'%s': exit %d, expected 1 (stderr: %s)", cases[i], rc, err);
        size_t len = strlen(err);
        ck_assert_msg(len > 0 && strchr(err, '\n') == err + len - 1, "'%s': not one line: %s",
                      cases[i], err);
        free(out);
        free(err);
    }
}
END_TEST

/* An output that cannot be created says why, with the system's reason. */
START_TEST(test_cannot_create_says_why)
{
    const char *fx = kdc_test_fixture_root();
    char *out, *err, cmd[4096], name[300];
    /* kd-precompute: a file name longer than the file system allows */
    memset(name, 'x', 250);
    name[250] = '\0';
    snprintf(cmd, sizeof cmd,
             "kd-precompute --data %s/precompute/small --teacher resnet18 --weights "
             "%s/precompute/resnet18_c10.safetensors --out %s/%s.h5 --image-size 32 "
             "--resize-size 32 --threads 2 --quiet",
             fx, fx, g_tmp, name);
    ck_assert_int_eq(run(cmd, &out, &err), 1);
    ck_assert_msg(strstr(err, "cannot create") && strstr(err, ".h5.partial: ") &&
                      strstr(err, strerror(ENAMETOOLONG)),
                  "%s", err);
    free(out);
    free(err);
    /* kd-train: the temporary name of an output is taken by a folder */
    const char *files[] = {"student.safetensors", "metrics.csv"};
    for (int i = 0; i < 2; i++) {
        char run_dir[1100], blocker[1200];
        snprintf(run_dir, sizeof run_dir, "%s/run_%d", g_tmp, i);
        snprintf(blocker, sizeof blocker, "%s/%s.partial", run_dir, files[i]);
        ck_assert_int_eq(kdc_test_system("mkdir -p %s", blocker), 0);
        snprintf(cmd, sizeof cmd,
                 "kd-train --data %s/train/data --student resnet8x4 --out %s --epochs 1 "
                 "--batch 8 --view-policy pad-crop --image-size 32 --threads 2 --quiet",
                 fx, run_dir);
        ck_assert_int_eq(run(cmd, &out, &err), 1);
        char want[1300];
        snprintf(want, sizeof want, "cannot create %s: %s", blocker, strerror(EISDIR));
        ck_assert_msg(strstr(err, want), "expected '%s' in: %s", want, err);
        free(out);
        free(err);
    }
}
END_TEST

int main(void)
{
    char tmpl[1024];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/kdc-tools-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_tmp = strdup(tmpl);
    Suite *s = suite_create("tools");
    TCase *tc = tcase_create("tools");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_usage_errors_exit_2);
    tcase_add_test(tc, test_runtime_errors_exit_1);
    tcase_add_test(tc, test_cannot_create_says_why);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    kdc_test_system("rm -rf %s", g_tmp);
    free(g_tmp);
    return failed ? 1 : 0;
}
