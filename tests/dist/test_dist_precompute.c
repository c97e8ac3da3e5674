/* test_dist_precompute.c - `mpirun -np R kd-precompute ... --out C.h5`
 * (rank r computes shard r/R, rank 0 merges) against one process:
 *
 *   - 2 and 3 ranks (float32 logits; float16 + top-k) give C.h5 with every
 *     dataset and attribute of the one-process file, judged by
 *     tests/dist/same_cache.py with h5py (nothing may differ, not even the
 *     provenance); no shard is left beside it;
 *   - a rank that fails (strict mode, an unreadable image in its shard) ends
 *     the job non-zero, names itself and the file, and leaves no C.h5 and no
 *     C.h5.partial: nothing that looks like a cache;
 *   - a rank killed (SIGKILL) in its shard ends the job within seconds with
 *     no C.h5; the same command with --resume completes the shards and gives
 *     the one-process file;
 *   - --shard with ranks, and --plan-only with ranks, are refused. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/progress.h"
#include "tests/helpers/make_inputs.h"
#include "tests/helpers/testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

#define MPIRUN                                                                                     \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "                                   \
    "OMPI_MCA_btl_vader_single_copy_mechanism=none "                                               \
    "mpirun --oversubscribe -np "

static char g_tmp[1024];
static char fx[2048]; /* scripts/ref/ref_precompute.py's folder */

static const char *python(void)
{
    return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* test_precompute's small recipe: 192 images, 2 pad-crop views, 24 chunks. */
static void small_args(char *buf, size_t len, const char *data, const char *out, const char *extra)
{
    snprintf(buf, len,
             "--data %s --teacher resnet18 --weights %s/resnet18_c10.safetensors --out %s "
             "--view-policy pad-crop --views 2 --image-size 32 --threads 1 --batch 8 "
             "--chunk-images 8 --seed 3 --quiet %s",
             data, fx, out, extra);
}

static int run_pc(const char *launch, const char *args, const char *log)
{
    return kdc_test_system("%s %s/kd-precompute %s > %s 2>&1", launch, kdc_test_bin_dir(), args,
                           log);
}

static char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void assert_same_cache(const char *a, const char *b)
{
    char log[1100];
    snprintf(log, sizeof log, "%s/same.log", g_tmp);
    int rc = kdc_test_system("%s %s/tests/dist/same_cache.py %s %s > %s 2>&1", python(),
                             kdc_test_repo_root(), a, b, log);
    ck_assert_msg(rc == 0, "%s vs %s: %s", a, b, slurp(log));
}

/* No OUT.shard-* left beside OUT. */
static void assert_no_shards(const char *out)
{
    ck_assert_int_ne(kdc_test_system("ls %s.shard-* > /dev/null 2>&1", out), 0);
}

static void one_process(const char *out, const char *extra)
{
    char args[8192], log[1100];
    snprintf(log, sizeof log, "%s/one.log", g_tmp);
    char data[2100];
    snprintf(data, sizeof data, "%s/small", fx);
    if (exists(out))
        return;
    small_args(args, sizeof args, data, out, extra);
    ck_assert_msg(run_pc("", args, log) == 0, "%s", slurp(log));
}

static void ranks_equal_one(int R, const char *tag, const char *extra)
{
    char ref[1100], out[1100], args[8192], log[1100], data[2100], launch[256];
    snprintf(ref, sizeof ref, "%s/%s_one.h5", g_tmp, tag);
    snprintf(out, sizeof out, "%s/%s_r%d.h5", g_tmp, tag, R);
    snprintf(log, sizeof log, "%s/%s_r%d.log", g_tmp, tag, R);
    snprintf(data, sizeof data, "%s/small", fx);
    snprintf(launch, sizeof launch, MPIRUN "%d", R);
    one_process(ref, extra);
    small_args(args, sizeof args, data, out, extra);
    ck_assert_msg(run_pc(launch, args, log) == 0, "%d ranks: %s", R, slurp(log));
    assert_same_cache(ref, out);
    assert_no_shards(out);
    char partial[1200];
    snprintf(partial, sizeof partial, "%s.partial", out);
    ck_assert(!exists(partial));
}

START_TEST(test_two_ranks_equal_one_process)
{
    ranks_equal_one(2, "f32", "--logits float32");
}
END_TEST

/* 24 chunks on 3 ranks; float16 features and top-k logits stored as such. */
START_TEST(test_three_ranks_topk_equal_one_process)
{
    ranks_equal_one(3, "topk", "--logits topk:4");
}
END_TEST

/* bad/: a/img000 a/img002 b/img001 b/img003 c/empty c/truncated in dataset
 * order; chunks of 3 put both unreadable files in chunk 1, rank 1's shard.
 * Strict mode makes them an error on rank 1 only. */
START_TEST(test_failing_rank_leaves_no_cache)
{
    char out[1100], args[8192], log[1100], partial[1200];
    snprintf(out, sizeof out, "%s/strict.h5", g_tmp);
    snprintf(partial, sizeof partial, "%s.partial", out);
    snprintf(log, sizeof log, "%s/strict.log", g_tmp);
    snprintf(args, sizeof args,
             "--data %s/bad --teacher resnet18 --weights %s/resnet18_c10.safetensors --out %s "
             "--view-policy center --resize-size 32 --image-size 32 --threads 1 --batch 3 "
             "--chunk-images 3 --order dataset --logits float32 --strict --quiet",
             fx, fx, out);
    double t0 = kdc_now_seconds();
    int rc = run_pc(MPIRUN "2", args, log);
    double secs = kdc_now_seconds() - t0;
    const char *text = slurp(log);
    ck_assert_msg(rc != 0, "mpirun exited 0: %s", text);
    ck_assert_msg(secs < 60, "the job took %.0f s to end", secs);
    ck_assert_msg(strstr(text, "rank 1 of 2") &&
                      (strstr(text, "empty.jpg") || strstr(text, "truncated.jpg")),
                  "the log names neither the rank nor the file: %s", text);
    ck_assert_msg(!exists(out), "%s exists after a failed rank", out);
    ck_assert_msg(!exists(partial), "%s exists after a failed rank", partial);
}
END_TEST

static int mpirun_children(int mpid)
{
    return kdc_test_system("pgrep -P %d > /dev/null", mpid) == 0;
}

/* Rank 1 killed while it computes its shard of 600 images: mpirun and rank 0
 * end, no OUT; --resume on 2 ranks then gives the one-process file. */
START_TEST(test_killed_rank_then_resume)
{
    char data[1100], ref[1100], out[1100], args[8192], log[1100], pidf[1100], shard1[1200];
    snprintf(data, sizeof data, "%s/many", g_tmp);
    snprintf(ref, sizeof ref, "%s/many_one.h5", g_tmp);
    snprintf(out, sizeof out, "%s/many_r2.h5", g_tmp);
    snprintf(shard1, sizeof shard1, "%s.shard-1-of-2.partial", out);
    snprintf(log, sizeof log, "%s/many.log", g_tmp);
    snprintf(pidf, sizeof pidf, "%s/mpirun.pid", g_tmp);
    kdc_test_make_image_folder(data, 3, 200, 32, 32, 0, 500);
    small_args(args, sizeof args, data, ref, "--logits float16");
    ck_assert_msg(run_pc("", args, log) == 0, "%s", slurp(log));

    small_args(args, sizeof args, data, out, "--logits float16");
    int killed = 0;
    for (int attempt = 0; attempt < 3 && !killed; attempt++) {
        kdc_test_system("rm -f %s %s.*", out, out);
        ck_assert_int_eq(kdc_test_system("(" MPIRUN "2 %s/kd-precompute %s > %s 2>&1 & "
                                         "echo $! > %s)",
                                         kdc_test_bin_dir(), args, log, pidf),
                         0);
        int mpid = atoi(slurp(pidf));
        double t0 = kdc_now_seconds();
        while (!exists(shard1) && kill(mpid, 0) == 0 && kdc_now_seconds() - t0 < 60)
            usleep(5000);
        /* rank 1 is the second kd-precompute child of mpirun */
        if (exists(shard1) &&
            kdc_test_system("kill -9 $(pgrep -P %d -f kd-precompute | tail -1)", mpid) == 0)
            killed = 1;
        t0 = kdc_now_seconds();
        while (kill(mpid, 0) == 0 && kdc_now_seconds() - t0 < 60)
            usleep(20000);
        ck_assert_msg(kill(mpid, 0) != 0, "mpirun still runs 60 s after a rank was killed");
        ck_assert(!mpirun_children(mpid));
        if (killed)
            ck_assert_msg(!exists(out), "%s exists after a rank was killed: %s", out, slurp(log));
    }
    ck_assert_msg(killed, "rank 1 finished its shard before it could be killed, 3 times");
    /* the same command with --resume: shards completed, merged */
    char resume[8300];
    snprintf(resume, sizeof resume, "%s --resume", args);
    ck_assert_msg(run_pc(MPIRUN "2", resume, log) == 0, "%s", slurp(log));
    assert_same_cache(ref, out);
    assert_no_shards(out);
}
END_TEST

START_TEST(test_refusals)
{
    char out[1100], args[8192], log[1100], data[2100];
    snprintf(out, sizeof out, "%s/refused.h5", g_tmp);
    snprintf(log, sizeof log, "%s/refused.log", g_tmp);
    snprintf(data, sizeof data, "%s/small", fx);
    small_args(args, sizeof args, data, out, "--shard 0/2");
    ck_assert_int_ne(run_pc(MPIRUN "2", args, log), 0);
    ck_assert_msg(strstr(slurp(log), "the ranks are the shards"), "%s", slurp(log));
    snprintf(args, sizeof args, "--data %s --out %s --plan-only --quiet", data, out);
    ck_assert_int_ne(run_pc(MPIRUN "2", args, log), 0);
    ck_assert_msg(strstr(slurp(log), "--plan-only runs as one process"), "%s", slurp(log));
    ck_assert(!exists(out));
    assert_no_shards(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dist_precompute");
    TCase *tc = tcase_create("kd-precompute on ranks");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_two_ranks_equal_one_process);
    tcase_add_test(tc, test_three_ranks_topk_equal_one_process);
    tcase_add_test(tc, test_failing_rank_leaves_no_cache);
    tcase_add_test(tc, test_killed_rank_then_resume);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/kdc-distpc-XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(fx, sizeof fx, "%s/precompute", kdc_test_fixture_root());
    kdc_test_mpi_ranks_env();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!getenv("KDC_KEEP_TMP"))
        kdc_test_system("rm -rf %s", g_tmp);
    else
        fprintf(stderr, "kept %s\n", g_tmp);
    return failed ? 1 : 0;
}
