/* test_image_resize.c - the resampler's bytes, exactly: against Pillow's resize
 * with box= on random noise (fixtures from scripts/ref/ref_image_resize.py), for every
 * kernel set this CPU can run (portable C, AVX2), including crops of the output
 * (out_offset); and AVX2 against portable on thousands of random geometries, with
 * source buffers of the exact size so that ASan sees any read past an image. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/cpu_features.h"
#include "common/image/image_resize.h"
#include "tests/helpers/testutil.h"

static uint8_t *load_u8(const char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/image_resize/%s", kdc_test_fixture_root(), name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "missing %s (make build/fixtures/image_resize/.stamp)", p);
    uint8_t *b = malloc(n ? n : 1);
    ck_assert(b != NULL);
    ck_assert_msg(fread(b, 1, n, f) == n && fgetc(f) == EOF, "%s: not %zu bytes", p, n);
    fclose(f);
    return b;
}

/* The kernel sets to check: portable always, AVX2 when the CPU has it. */
static int isas(img_resample_isa out[2])
{
    int n = 0;
    out[n++] = IMG_RESAMPLE_PORTABLE;
    kdc_cpu_features f = kdc_cpu_detect();
    if (f.avx2)
        out[n++] = IMG_RESAMPLE_AVX2;
    else
        printf("no AVX2 on this CPU: only the portable passes are checked\n");
    return n;
}

static int first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return (int)i;
    return -1;
}

START_TEST(matches_pillow_on_noise)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/image_resize/cases.txt", kdc_test_fixture_root());
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "missing %s (make build/fixtures/image_resize/.stamp)", p);
    img_resample_isa isa[2];
    int nisa = isas(isa), cases = 0;
    int k, W, H, ow, oh;
    double x0, y0, x1, y1;
    while (fscanf(f, "%d %d %d %lf %lf %lf %lf %d %d", &k, &W, &H, &x0, &y0, &x1, &y1, &ow, &oh) ==
           9) {
        char name[64];
        snprintf(name, sizeof name, "in_%d.u8", k);
        uint8_t *in = load_u8(name, (size_t)W * H * 3);
        snprintf(name, sizeof name, "out_%d.u8", k);
        uint8_t *ref = load_u8(name, (size_t)ow * oh * 3);
        for (int i = 0; i < nisa; i++) {
            img_resample_scratch s = {0};
            s.isa = isa[i];
            kdc_error err = {0};
            /* The whole output, then a window of it (out_offset): the window must
             * be the same bytes as that part of the whole. */
            /* Pillow holds the box in C floats and takes scale = (double)(in1 - in0) /
             * out with a float subtraction (the boxes in the fixtures are floats). */
            float fx0 = (float)x0, fx1 = (float)x1, fy0 = (float)y0, fy1 = (float)y1;
            img_axis ax = {W, fx0, (double)(fx1 - fx0) / ow, 0, ow};
            img_axis ay = {H, fy0, (double)(fy1 - fy0) / oh, 0, oh};
            uint8_t *out = malloc((size_t)ow * oh * 3);
            ck_assert_msg(img_resample_rgb8(in, (size_t)W * 3, &ax, &ay, out, (size_t)ow * 3, &s,
                                            &err) == KDC_OK,
                          "%s", err.msg);
            int d = first_diff(out, ref, (size_t)ow * oh * 3);
            ck_assert_msg(d < 0, "case %d (%dx%d box %g,%g,%g,%g -> %dx%d) isa %d: byte %d is %d, PIL %d",
                          k, W, H, x0, y0, x1, y1, ow, oh, isa[i], d, d < 0 ? 0 : out[d],
                          d < 0 ? 0 : ref[d]);
            ax.out_offset = ow / 3;
            ax.out_size = ow - ow / 3 - ow / 5;
            ay.out_offset = oh / 4;
            ay.out_size = oh - oh / 4 - oh / 7;
            if (ax.out_size > 0 && ay.out_size > 0) {
                ck_assert_int_eq(img_resample_rgb8(in, (size_t)W * 3, &ax, &ay, out,
                                                   (size_t)ax.out_size * 3, &s, &err),
                                 KDC_OK);
                for (int y = 0; y < ay.out_size; y++) {
                    const uint8_t *r = ref + ((size_t)(y + ay.out_offset) * ow + ax.out_offset) * 3;
                    d = first_diff(out + (size_t)y * ax.out_size * 3, r, (size_t)ax.out_size * 3);
                    ck_assert_msg(d < 0, "case %d isa %d window row %d: byte %d differs", k, isa[i],
                                  y, d);
                }
            }
            free(out);
            img_resample_scratch_free(&s);
        }
        free(in);
        free(ref);
        cases++;
    }
    fclose(f);
    printf("%d Pillow resize cases, %d kernel set(s): identical bytes\n", cases, nisa);
    ck_assert_int_ge(cases, 60);
}
END_TEST

static uint64_t next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int below(uint64_t *st, int n) { return (int)(next(st) % (uint64_t)n); }
static double unit(uint64_t *st) { return (double)(next(st) >> 11) * 0x1.0p-53; }

/* A random axis over n source pixels: resize, box with fractional ends, 1:1 shift
 * or strong downscale, and a random window of the output. */
static img_axis random_axis(uint64_t *st, int n)
{
    int kind = below(st, 4), m;
    double a = 0, b = n;
    switch (kind) {
    case 0: m = 1 + below(st, 300); break;
    case 1:
        a = unit(st) * n * 0.9;
        b = a + (n - a) * (0.05 + 0.95 * unit(st));
        m = 1 + below(st, 300);
        break;
    case 2: /* shift: scale 1 */
        m = 1 + below(st, n);
        a = below(st, n - m + 1);
        b = a + m;
        break;
    default: m = 1 + below(st, 8); break; /* n / m taps: up to hundreds */
    }
    img_axis ax = {n, a, (b - a) / m, 0, m};
    if (below(st, 2)) {
        ax.out_offset = below(st, m);
        ax.out_size = 1 + below(st, m - ax.out_offset);
    }
    return ax;
}

START_TEST(avx2_equals_portable_on_random_geometries)
{
    kdc_cpu_features f = kdc_cpu_detect();
    if (!f.avx2) {
        printf("no AVX2 on this CPU: nothing to compare\n");
        return;
    }
    uint64_t st = 42;
    img_resample_scratch sp = {0}, sv = {0};
    sp.isa = IMG_RESAMPLE_PORTABLE;
    sv.isa = IMG_RESAMPLE_AVX2;
    kdc_error err = {0};
    long bytes = 0;
    for (int c = 0; c < 3000; c++) {
        int W = 1 + below(&st, c % 10 == 0 ? 1500 : 200), H = 1 + below(&st, 200);
        size_t stride = (size_t)W * 3 + (below(&st, 2) ? 0 : (size_t)below(&st, 40));
        /* exactly the bytes of the image: the last row ends at the buffer's end */
        size_t n = stride * (size_t)(H - 1) + (size_t)W * 3;
        uint8_t *in = malloc(n);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(c % 3 == 0 ? (next(&st) & 1) * 255 : next(&st));
        img_axis ax = random_axis(&st, W), ay = random_axis(&st, H);
        size_t ostride = (size_t)ax.out_size * 3, on = ostride * (size_t)ay.out_size;
        uint8_t *op = malloc(on), *ov = malloc(on);
        ck_assert_int_eq(img_resample_rgb8(in, stride, &ax, &ay, op, ostride, &sp, &err), KDC_OK);
        ck_assert_int_eq(img_resample_rgb8(in, stride, &ax, &ay, ov, ostride, &sv, &err), KDC_OK);
        int d = first_diff(op, ov, on);
        ck_assert_msg(d < 0,
                      "case %d: %dx%d, x (%g + %g * (o + %d), %d), y (%g + %g * (o + %d), %d): byte %d "
                      "portable %d avx2 %d",
                      c, W, H, ax.in0, ax.scale, ax.out_offset, ax.out_size, ay.in0, ay.scale,
                      ay.out_offset, ay.out_size, d, d < 0 ? 0 : op[d], d < 0 ? 0 : ov[d]);
        bytes += (long)on;
        free(in);
        free(op);
        free(ov);
    }
    printf("3000 random geometries, %ld output bytes: AVX2 == portable\n", bytes);
    img_resample_scratch_free(&sp);
    img_resample_scratch_free(&sv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image_resize");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, matches_pillow_on_noise);
    tcase_add_test(tc, avx2_equals_portable_on_random_geometries);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
