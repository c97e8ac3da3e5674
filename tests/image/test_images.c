/* test_images.c - JPEG decoding and the center view against PIL/torchvision on
 * real photographs (fixtures from scripts/ref/ref_images.py), and the errors for bad
 * files. Pixel differences are printed in 0..255 units. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/image_batch.h"
#include "common/image/jpeg_decode.h"
#include "common/image/views.h"
#include "tests/helpers/bad_images.h"
#include "tests/helpers/testutil.h"

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s (make build/fixtures/images/.stamp)", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    ck_assert(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static uint8_t *fixture_u8(const char *name, size_t expect)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/images/%s.u8", kdc_test_fixture_root(), name);
    size_t n;
    uint8_t *b = read_all(p, &n);
    ck_assert_msg(n == expect, "%s: %zu bytes, expected %zu", p, n, expect);
    return b;
}

static void diff_stats(const uint8_t *a, const uint8_t *b, size_t n, int *maxd, double *meand)
{
    long sum = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        sum += d;
        if (d > *maxd)
            *maxd = d;
    }
    *meand = (double)sum / (double)n;
}

typedef struct photo {
    char name[128];
    int w, h;
} photo;

static int load_photos(photo *out, int max)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/images/photos.txt", kdc_test_fixture_root());
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "missing %s", p);
    int n = 0;
    while (n < max && fscanf(f, "%127s %d %d", out[n].name, &out[n].w, &out[n].h) == 3)
        n++;
    fclose(f);
    ck_assert_int_ge(n, 9);
    return n;
}

static void photo_path(char *buf, size_t len, const char *sub, const char *name)
{
    snprintf(buf, len, "%s/images/%s/%s", kdc_test_fixture_root(), sub, name);
}

START_TEST(decode_matches_pil)
{
    photo ph[32];
    int n = load_photos(ph, 32);
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    for (int i = 0; i < n; i++) {
        char p[8192], file[4400];
        snprintf(file, sizeof file, "%s.jpg", ph[i].name);
        photo_path(p, sizeof p, "photos", file);
        ck_assert_msg(img_decoder_load_file(d, p, &err) == KDC_OK, "%s", err.msg);
        ck_assert_int_eq(img_decoder_width(d), ph[i].w);
        ck_assert_int_eq(img_decoder_height(d), ph[i].h);
        const uint8_t *rgb;
        int w, h;
        ck_assert_msg(img_decoder_decode(d, 8, &rgb, &w, &h, &err) == KDC_OK, "%s", err.msg);
        char ref[4400];
        snprintf(ref, sizeof ref, "decoded_%s", ph[i].name);
        size_t npx = (size_t)w * h * 3;
        uint8_t *pil = fixture_u8(ref, npx);
        int maxd;
        double meand;
        diff_stats(rgb, pil, npx, &maxd, &meand);
        printf("decode %-22s %4dx%-4d vs PIL: max |diff| %d, mean %.4f\n", ph[i].name, w, h, maxd, meand);
        /* Same libjpeg-turbo, same IDCT and upsampling: identical bytes expected. */
        ck_assert_msg(maxd == 0, "%s: decoded pixels differ from PIL's (max %d)", ph[i].name, maxd);
        free(pil);
    }
    img_decoder_free(d);
}
END_TEST

START_TEST(center_view_matches_torchvision)
{
    photo ph[32];
    int n = load_photos(ph, 32);
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    img_view_params vp;
    img_view_params_default(&vp);
    img_norm norm;
    img_norm_default(&norm);
    img_view_scratch sc = {0};
    const int S = 224;
    uint8_t *out = malloc(S * S * 3);
    float *chw = malloc(sizeof(float) * 3 * S * S);
    for (int i = 0; i < n; i++) {
        char p[8192], file[4400], ref[4400];
        snprintf(file, sizeof file, "%s.jpg", ph[i].name);
        photo_path(p, sizeof p, "photos", file);
        ck_assert_msg(img_decoder_load_file(d, p, &err) == KDC_OK, "%s", err.msg);
        const uint8_t *rgb;
        int w, h;
        ck_assert_int_eq(img_decoder_decode(d, 8, &rgb, &w, &h, &err), KDC_OK);
        img_view v;
        ck_assert_int_eq(img_view_draw(&vp, w, h, (uint64_t)i, 0, &v, &err), KDC_OK);
        ck_assert_msg(img_view_render(&vp, rgb, w, h, (size_t)w * 3, &v, out, &sc, &err) == KDC_OK,
                      "%s", err.msg);
        snprintf(ref, sizeof ref, "center_%s", ph[i].name);
        uint8_t *tv = fixture_u8(ref, (size_t)S * S * 3);
        int maxd;
        double meand;
        diff_stats(out, tv, (size_t)S * S * 3, &maxd, &meand);
        printf("center %-22s box (%d,%d,%d,%d) vs torchvision: max |diff| %d, mean %.4f\n", ph[i].name,
               v.y0, v.x0, v.h, v.w, maxd, meand);
        ck_assert_msg(maxd <= 1 && meand < 0.01, "%s: center view differs from torchvision", ph[i].name);
        /* Normalised floats: torchvision's ToTensor + Normalize. */
        img_normalize_chw(out, S, &norm, chw);
        snprintf(ref, sizeof ref, "center_norm_%s", ph[i].name);
        float *tn = kdc_test_load_f32("images", ref, (size_t)3 * S * S, NULL);
        KDC_ASSERT_CLOSE_F32(ref, chw, tn, (size_t)3 * S * S, maxd == 0 ? 1e-7 : 2e-2);
        free(tn);
        free(tv);
    }
    free(out);
    free(chw);
    img_view_scratch_free(&sc);
    img_decoder_free(d);
}
END_TEST

static void expect_error(const char *file, const char *needle)
{
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    char p[1024];
    photo_path(p, sizeof p, "bad", file);
    kdc_status st = img_decoder_load_file(d, p, &err);
    if (st == KDC_OK) {
        const uint8_t *rgb;
        int w, h;
        st = img_decoder_decode(d, 8, &rgb, &w, &h, &err);
    }
    printf("%-14s -> %s: %s\n", file, kdc_status_name(st), err.msg);
    ck_assert_msg(st == KDC_EIMAGE, "%s: status %d", file, st);
    ck_assert_msg(strstr(err.msg, p) != NULL, "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "expected '%s' in: %s", needle, err.msg);
    img_decoder_free(d);
}

START_TEST(bad_files_give_their_errors)
{
    expect_error("truncated.jpg", "truncated");
    expect_error("empty.jpg", "empty file");
    expect_error("huge.jpg", "decompression-bomb");
    expect_error("notimage.jpg", "not a JPEG");
    /* A missing file is an I/O error naming it. */
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    ck_assert_int_eq(img_decoder_load_file(d, "/nonexistent/x.jpg", &err), KDC_EIO);
    ck_assert(strstr(err.msg, "/nonexistent/x.jpg") != NULL);
    /* The pixel limit is the guard, not the allocation: lower it and a real photo fails. */
    char p[1024];
    photo_path(p, sizeof p, "photos", "flower_500x375.jpg");
    img_decoder_set_max_pixels(d, 500 * 375 - 1);
    ck_assert_int_eq(img_decoder_load_file(d, p, &err), KDC_EIMAGE);
    img_decoder_set_max_pixels(d, 500 * 375);
    ck_assert_int_eq(img_decoder_load_file(d, p, &err), KDC_OK);
    img_decoder_free(d);
}
END_TEST

/* Decodes path with decoder d; returns the status and, on success, a malloc'd
 * copy of the pixels. */
static kdc_status decode_copy(img_decoder *d, const char *path, uint8_t **px, size_t *n,
                              kdc_error *err)
{
    *px = NULL;
    *n = 0;
    kdc_status st = img_decoder_load_file(d, path, err);
    const uint8_t *rgb;
    int w, h;
    if (st == KDC_OK)
        st = img_decoder_decode(d, 8, &rgb, &w, &h, err);
    if (st == KDC_OK) {
        *n = (size_t)w * (size_t)h * 3;
        *px = malloc(*n);
        memcpy(*px, rgb, *n);
    }
    return st;
}

/* One bad file costs one image: after any bad file, the same decoder decodes
 * the next files (baseline, progressive, grayscale, CMYK) to the bytes a
 * fresh decoder gives. libjpeg-turbo 2.1 leaves its handle inside a header
 * that failed to parse, so without a reset every later file failed with the
 * bad file's message. */
START_TEST(one_bad_file_costs_one_image)
{
    char *dir = kdc_test_tmpdir("badimg");
    char good[1024], cmyk[1024], bad[1100];
    photo_path(good, sizeof good, "photos", "flower_500x375.jpg");
    snprintf(cmyk, sizeof cmyk, "%s/cmyk.jpg", dir);
    kdc_test_write_cmyk_jpeg(cmyk, 40, 30, 77);
    const char *next_names[] = {"tiny_32x32.jpg", "storm_500x333_prog.jpg", "flower_gray.jpg",
                                "ladybird_cmyk.jpg"};
    enum { NNEXT = 5 };
    char next[NNEXT][1100];
    for (int i = 0; i < NNEXT - 1; i++)
        photo_path(next[i], sizeof next[i], "photos", next_names[i]);
    snprintf(next[NNEXT - 1], sizeof next[NNEXT - 1], "%s", cmyk);
    /* what a fresh decoder gives for each */
    uint8_t *ref[NNEXT];
    size_t nref[NNEXT];
    kdc_error err = {0};
    for (int i = 0; i < NNEXT; i++) {
        img_decoder *d;
        ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
        ck_assert_msg(decode_copy(d, next[i], &ref[i], &nref[i], &err) == KDC_OK, "%s", err.msg);
        img_decoder_free(d);
    }
    const char *want[KDC_BAD_KINDS] = {"bad JPEG header", "JPEG", "JPEG", "JPEG",
                                       "not a JPEG file", "empty file"};
    img_decoder *d;
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    for (int k = 0; k < KDC_BAD_KINDS; k++) {
        snprintf(bad, sizeof bad, "%s/bad_%s.JPEG", dir, kdc_test_bad_name((kdc_test_bad_kind)k));
        kdc_test_write_bad_image(bad, (kdc_test_bad_kind)k, good);
        uint8_t *px;
        size_t n;
        kdc_status st = decode_copy(d, bad, &px, &n, &err);
        printf("%-10s -> %s: %s\n", kdc_test_bad_name((kdc_test_bad_kind)k),
               kdc_status_name(st), err.msg);
        ck_assert_msg(st == KDC_EIMAGE, "%s: status %d", bad, st);
        ck_assert_msg(strstr(err.msg, bad) && strstr(err.msg, want[k]), "%s", err.msg);
        for (int i = 0; i < NNEXT; i++) {
            st = decode_copy(d, next[i], &px, &n, &err);
            ck_assert_msg(st == KDC_OK, "after %s, %s fails: %s",
                          kdc_test_bad_name((kdc_test_bad_kind)k), next[i], err.msg);
            ck_assert_msg(n == nref[i] && !memcmp(px, ref[i], n), "after %s, %s decodes "
                          "differently", kdc_test_bad_name((kdc_test_bad_kind)k), next[i]);
            free(px);
        }
    }
    /* two bad files in a row, then a good one */
    snprintf(bad, sizeof bad, "%s/bad_marker.JPEG", dir);
    uint8_t *px;
    size_t n;
    ck_assert_int_eq(decode_copy(d, bad, &px, &n, &err), KDC_EIMAGE);
    snprintf(bad, sizeof bad, "%s/bad_huge_dims.JPEG", dir);
    ck_assert_int_eq(decode_copy(d, bad, &px, &n, &err), KDC_EIMAGE);
    ck_assert_msg(decode_copy(d, next[0], &px, &n, &err) == KDC_OK, "%s", err.msg);
    ck_assert(n == nref[0] && !memcmp(px, ref[0], n));
    free(px);
    img_decoder_free(d);
    for (int i = 0; i < NNEXT; i++)
        free(ref[i]);
    kdc_test_system("rm -rf %s", dir);
    free(dir);
}
END_TEST

START_TEST(crc32_is_zlibs)
{
    /* "123456789" -> 0xCBF43926, the CRC-32 check value (and Python's zlib.crc32). */
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    ck_assert_int_eq(img_decoder_load_mem(d, (const uint8_t *)"123456789", 9, "check", &err), KDC_EIMAGE);
    ck_assert_uint_eq(img_decoder_file_crc32(d), 0xCBF43926u);
    ck_assert_uint_eq(img_decoder_file_size(d), 9);
    img_decoder_free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, decode_matches_pil);
    tcase_add_test(tc, center_view_matches_torchvision);
    tcase_add_test(tc, bad_files_give_their_errors);
    tcase_add_test(tc, one_bad_file_costs_one_image);
    tcase_add_test(tc, crc32_is_zlibs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
