/* test_zoo_student.c - CIFAR students of the zoo trained by kd-train load in
 * their PyTorch definitions (scripts/ref/score_student.py: mdistiller's names,
 * load_state_dict strict) and score there what kd-train reported: one online
 * epoch (CE, pad-crop) on a 32-image, 4-class folder (scripts/ref/
 * ref_zoo_student.py), --val on the same folder; the val_top1 of metrics.csv,
 * kd-train --eval-only's top1 and PyTorch's float64 top1 must be equal (32
 * images: one image is 3.125 points, so any disagreement shows). A student
 * near chance predicts one class for most images, so the top-1 alone would let a
 * wrong network pass: --eval-only's mean CE must also equal PyTorch's float64 one. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* short temporary paths */

#define SUITE "zoo_student"

static const char *const STUDENTS[] = {"ShuffleV2", "MobileNetV2", "ShuffleV1", "vgg8", "resnet20",
                                       "wrn_40_1", "mobilenetv2_tinyimagenet"};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The top1 of a line "images N top1 T ..." in the file. */
static double top1_of(const char *path)
{
    const char *s = strstr(slurp(path), "top1 ");
    ck_assert_msg(s != NULL, "%s: no top1", path);
    return atof(s + 5);
}

/* The mean loss of a line "... loss L ..." in the file. */
static double loss_of(const char *path)
{
    const char *s = strstr(slurp(path), "loss ");
    ck_assert_msg(s != NULL, "%s: no loss", path);
    return atof(s + 5);
}

/* val_top1 (the 10th column) of the last row of metrics.csv */
static double csv_val_top1(const char *path)
{
    char *s = slurp(path);
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n')
        s[--n] = '\0';
    char *row = strrchr(s, '\n');
    ck_assert_ptr_nonnull(row);
    row++;
    for (int col = 0; col < 9; col++) {
        row = strchr(row, ',');
        ck_assert_ptr_nonnull(row);
        row++;
    }
    return atof(row);
}

START_TEST(test_student_scores_in_pytorch)
{
    const char *arch = STUDENTS[_i];
    char data[4096], *dir = kdc_test_tmpdir("zoo-student"), p[4096];
    snprintf(data, sizeof data, "%s/%s/data", kdc_test_fixture_root(), SUITE);
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    ck_assert_int_eq(kdc_test_system("%s/kd-train --data %s --val %s --student %s --out %s/run "
                                     "--epochs 1 --batch 8 --lr 0.05 --view-policy pad-crop "
                                     "--image-size 32 --threads 2 --quiet",
                                     kdc_test_bin_dir(), data, data, arch, dir),
                     0);
    ck_assert_int_eq(kdc_test_system("%s/kd-train --eval-only --weights %s/run/student.safetensors "
                                     "--val %s --student %s --image-size 32 --resize-size 32 "
                                     "--threads 2 > %s/eval.txt",
                                     kdc_test_bin_dir(), dir, data, arch, dir),
                     0);
    ck_assert_int_eq(kdc_test_system("%s %s/scripts/ref/score_student.py --arch %s --weights "
                                     "%s/run/student.safetensors --val %s --image-size 32 > "
                                     "%s/torch.txt",
                                     py, kdc_test_repo_root(), arch, dir, data, dir),
                     0);
    snprintf(p, sizeof p, "%s/run/metrics.csv", dir);
    double reported = csv_val_top1(p);
    snprintf(p, sizeof p, "%s/eval.txt", dir);
    double eval_only = top1_of(p);
    double eval_loss = loss_of(p);
    snprintf(p, sizeof p, "%s/torch.txt", dir);
    double torch = top1_of(p), torch_loss = loss_of(p);
    fprintf(stderr,
            "test_zoo_student: %s: kd-train val_top1 %.4f, --eval-only %.4f, PyTorch %.4f; "
            "loss %.6f, PyTorch %.6f\n",
            arch, reported, eval_only, torch, eval_loss, torch_loss);
    ck_assert_msg(reported > torch - 1e-3 && reported < torch + 1e-3,
                  "%s: kd-train reported %.4f, PyTorch scores %.4f", arch, reported, torch);
    ck_assert_msg(eval_only > torch - 1e-3 && eval_only < torch + 1e-3,
                  "%s: --eval-only %.4f, PyTorch %.4f", arch, eval_only, torch);
    ck_assert_msg(fabs(eval_loss - torch_loss) <= 1e-4 * torch_loss,
                  "%s: --eval-only loss %.6f, PyTorch float64 %.6f", arch, eval_loss, torch_loss);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("students");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_student_scores_in_pytorch, 0,
                        (int)(sizeof STUDENTS / sizeof STUDENTS[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
