/* test_zoo_teachers.c - kd-precompute with the torchvision teachers of the zoo
 * (mobilenet_v2, shufflenet_v2_x0_5, regnet_y_400mf) and mdistiller's CIFAR
 * ResNet50 and resnet110 (random weights and BN statistics, 1000 classes)
 * against PyTorch's float64 outputs on four
 * 64 px photographs (scripts/ref/ref_zoo_teachers.py): float32 logits within
 * 1e-4, float16 features within 1e-3 (half an ulp of float16 is 2^-11), the
 * ImageFolder order, the teacher's name and feature width in the header. The
 * teacher runs the BN-folded inference path (kdc_model_infer). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/cache_reader.h"
#include "tests/helpers/testutil.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* short temporary paths */

#define SUITE "zoo_teachers"
#define N_IMAGES 4
#define CLASSES 1000

static const struct {
    const char *arch;
    int dim;
} TEACHERS[] = {{"mobilenet_v2", 1280}, {"shufflenet_v2_x0_5", 1024}, {"regnet_y_400mf", 440},
                {"ResNet50", 2048},      {"resnet110", 64}};

START_TEST(test_teacher_matches_torchvision)
{
    const char *arch = TEACHERS[_i].arch;
    const int D = TEACHERS[_i].dim;
    char fx[4096], out[4096], errf[4096];
    snprintf(fx, sizeof fx, "%s/%s", kdc_test_fixture_root(), SUITE);
    char *dir = kdc_test_tmpdir("zoo-teacher");
    snprintf(out, sizeof out, "%s/c.h5", dir);
    snprintf(errf, sizeof errf, "%s/err", dir);
    int rc = kdc_test_system("%s/kd-precompute --data %s/photos --teacher %s --weights "
                             "%s/%s.safetensors --out %s --view-policy center --resize-size 64 "
                             "--image-size 64 --logits float32 --threads 2 --batch 3 --order "
                             "dataset --quiet 2>%s >/dev/null",
                             kdc_test_bin_dir(), fx, arch, fx, arch, out, errf);
    if (rc) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "cat %s >&2", errf);
        kdc_test_system("%s", cmd);
    }
    ck_assert_msg(rc == 0, "kd-precompute --teacher %s failed (stderr above)", arch);

    cache_reader *r;
    kdc_error e;
    ck_assert_msg(cache_reader_open(out, 0, &r, &e) == KDC_OK, "%s", e.msg);
    const cache_header *h = cache_reader_header(r);
    ck_assert_int_eq(h->num_images, N_IMAGES);
    ck_assert_int_eq(h->views_per_image, 1);
    ck_assert_int_eq(h->num_classes, CLASSES);
    ck_assert_int_eq(h->feature_dim, D);
    ck_assert_str_eq(h->teacher_arch, arch);
    const cache_image_table *t = cache_reader_images(r);
    char pf[4096];
    snprintf(pf, sizeof pf, "%s/photos_paths.txt", fx);
    FILE *f = fopen(pf, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    for (int i = 0; i < N_IMAGES; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        line[strcspn(line, "\n")] = '\0';
        ck_assert_str_eq(t->path[i], line);
        ck_assert_int_eq(t->skipped[i], 0);
    }
    fclose(f);
    float *logits = malloc((size_t)N_IMAGES * CLASSES * sizeof(float));
    float *feats = malloc((size_t)N_IMAGES * D * sizeof(float));
    cache_batch b;
    ck_assert_int_eq(cache_batch_alloc(&b, h, 1, &e), KDC_OK);
    for (int i = 0; i < N_IMAGES; i++) {
        ck_assert_msg(cache_reader_read_image(r, i, &b, &e) == KDC_OK, "%s", e.msg);
        memcpy(logits + (size_t)i * CLASSES, b.logits, CLASSES * sizeof(float));
        memcpy(feats + (size_t)i * D, b.features, (size_t)D * sizeof(float));
    }
    cache_batch_free(&b);
    cache_reader_close(r);
    char name[128];
    snprintf(name, sizeof name, "logits_%s", arch);
    double *rl = kdc_test_load_f64(SUITE, name, (size_t)N_IMAGES * CLASSES, NULL);
    snprintf(name, sizeof name, "features_%s", arch);
    double *rf = kdc_test_load_f64(SUITE, name, (size_t)N_IMAGES * D, NULL);
    double el = kdc_test_rel_err_f64(logits, rl, (size_t)N_IMAGES * CLASSES);
    double ef = kdc_test_rel_err_f64(feats, rf, (size_t)N_IMAGES * D);
    ck_assert_msg(el < 1e-4, "%s float32 logits: relative error %.3g", arch, el);
    ck_assert_msg(ef < 1e-3, "%s float16 features: relative error %.3g", arch, ef);
    free(rl);
    free(rf);
    free(logits);
    free(feats);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("teachers");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_teacher_matches_torchvision, 0,
                        (int)(sizeof TEACHERS / sizeof TEACHERS[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
