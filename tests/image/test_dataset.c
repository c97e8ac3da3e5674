/* test_dataset.c - ImageFolder order, labels, sizes, CRC-32s and fingerprint
 * against torchvision's ImageFolder + zlib + hashlib (scripts/ref/ref_images.py), the
 * list-file form, and the refusal of bad list lines. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/dataset.h"
#include "tests/helpers/testutil.h"

static void fixture_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/images/%s", kdc_test_fixture_root(), name);
}

START_TEST(folder_matches_torchvision_and_python)
{
    char root[2048], exp[2048];
    fixture_path(root, sizeof root, "folder");
    fixture_path(exp, sizeof exp, "folder_expected.txt");
    img_dataset *ds;
    kdc_error err = {0};
    ck_assert_msg(img_dataset_open_folder(&ds, root, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(img_dataset_checksum(ds, 3, &err) == KDC_OK, "%s", err.msg);
    FILE *f = fopen(exp, "r");
    ck_assert(f != NULL);
    char line[4096];
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *tab = strchr(line, '\t');
        ck_assert(tab);
        *tab = '\0';
        if (strcmp(line, "fingerprint") == 0) {
            ck_assert_str_eq(ds->fingerprint, tab + 1);
            continue;
        }
        if (strcmp(line, "classes") == 0) {
            char *c = tab + 1;
            for (int k = 0; k < ds->num_classes; k++) {
                char *e = strchr(c, '\t');
                if (e)
                    *e = '\0';
                ck_assert_str_eq(ds->classes[k], c);
                c = e ? e + 1 : c + strlen(c);
            }
            continue;
        }
        long label;
        unsigned long long size;
        unsigned long crc;
        ck_assert_int_eq(sscanf(tab + 1, "%ld\t%llu\t%lu", &label, &size, &crc), 3);
        ck_assert_uint_lt(i, ds->count);
        ck_assert_msg(strcmp(ds->items[i].path, line) == 0, "image %zu: %s, torchvision %s", i,
                      ds->items[i].path, line);
        ck_assert_int_eq(ds->items[i].label, label);
        ck_assert_uint_eq(ds->items[i].size, size);
        ck_assert_uint_eq(ds->items[i].crc32, crc);
        i++;
    }
    fclose(f);
    ck_assert_uint_eq(i, ds->count);
    ck_assert_int_eq(ds->num_classes, 5);
    /* One thread gives the same checksums. */
    char fp[65];
    memcpy(fp, ds->fingerprint, 65);
    ck_assert_int_eq(img_dataset_checksum(ds, 1, &err), KDC_OK);
    ck_assert_str_eq(fp, ds->fingerprint);
    /* The fingerprint depends on order and content. */
    img_entry t = ds->items[0];
    ds->items[0] = ds->items[1];
    ds->items[1] = t;
    img_dataset_fingerprint_of(ds->items, ds->count, fp);
    ck_assert_str_ne(fp, ds->fingerprint);
    img_dataset_free(ds);
}
END_TEST

START_TEST(list_file)
{
    char root[2048], list[2048], exp[2048];
    fixture_path(root, sizeof root, "folder");
    fixture_path(list, sizeof list, "list.txt");
    fixture_path(exp, sizeof exp, "list_expected.txt");
    img_dataset *ds;
    kdc_error err = {0};
    ck_assert_msg(img_dataset_open_list(&ds, root, list, &err) == KDC_OK, "%s", err.msg);
    ck_assert_uint_eq(ds->count, 3);
    ck_assert_str_eq(ds->items[0].path, "a/Z.jpg");
    ck_assert_int_eq(ds->items[0].label, 7);
    ck_assert_int_eq(ds->items[2].label, -1);
    ck_assert_int_eq(ds->num_classes, 8);
    ck_assert_int_eq(img_dataset_checksum(ds, 2, &err), KDC_OK);
    FILE *f = fopen(exp, "r");
    char want[80] = {0};
    ck_assert(fscanf(f, "%79s", want) == 1);
    fclose(f);
    ck_assert_str_eq(ds->fingerprint, want);
    img_dataset_free(ds);
}
END_TEST

static kdc_status open_list_text(const char *text, kdc_error *err)
{
    char *dir = kdc_test_tmpdir("dslist");
    char path[4096], root[2048];
    snprintf(path, sizeof path, "%s/list.txt", dir);
    fixture_path(root, sizeof root, "folder");
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    img_dataset *ds = NULL;
    kdc_status st = img_dataset_open_list(&ds, root, path, err);
    img_dataset_free(ds);
    remove(path);
    remove(dir);
    free(dir);
    return st;
}

START_TEST(bad_lists_are_refused)
{
    kdc_error err = {0};
    ck_assert_int_eq(open_list_text("B/A.jpg\t0\n", &err), KDC_OK);
    ck_assert_int_eq(open_list_text("/etc/passwd\t0\n", &err), KDC_EFORMAT);
    ck_assert_int_eq(open_list_text("a/../B/A.jpg\t0\n", &err), KDC_EFORMAT);
    ck_assert_int_eq(open_list_text("B/A.jpg\tcat\n", &err), KDC_EFORMAT);
    ck_assert_int_eq(open_list_text("B/A.jpg\n", &err), KDC_EFORMAT);
    ck_assert_int_eq(open_list_text("B/missing.jpg\t1\n", &err), KDC_EIO);
    ck_assert_msg(strstr(err.msg, "missing.jpg") && strstr(err.msg, ":1:"), "%s", err.msg);
    ck_assert_int_eq(open_list_text("", &err), KDC_EINVAL);
    img_dataset *ds;
    ck_assert_int_ne(img_dataset_open_folder(&ds, "/nonexistent-root", &err), KDC_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, folder_matches_torchvision_and_python);
    tcase_add_test(tc, list_file);
    tcase_add_test(tc, bad_lists_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
