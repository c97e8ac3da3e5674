/* test_views.c - Philox known answers, RandomResizedCrop boxes against
 * torchvision's get_params (exact with the same uniform draws, and statistically
 * with torch's own RNG), rrc and pad-crop pixels against torchvision, view
 * reproducibility across runs and thread counts, and bit-exact replay. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/jpeg_decode.h"
#include "common/base/rng.h"
#include "common/image/views.h"
#include "tests/helpers/testutil.h"

static FILE *fixture_text(const char *name)
{
    char p[2048];
    snprintf(p, sizeof p, "%s/images/%s", kdc_test_fixture_root(), name);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "missing %s (make build/fixtures/images/.stamp)", p);
    return f;
}

START_TEST(philox_known_answers)
{
    /* Random123's kat_vectors for philox4x32_R(10). */
    static const uint32_t cases[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        kdc_philox4x32_10(cases[c], cases[c] + 4, out);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(out[i] == cases[c][6 + i], "case %d word %d: %08x != %08x", c, i, out[i],
                          cases[c][6 + i]);
    }
}
END_TEST

typedef struct draws {
    double u[40];
    int next;
} draws;

static double next_draw(void *ctx)
{
    draws *d = ctx;
    ck_assert_int_lt(d->next, 40);
    return d->u[d->next++];
}

START_TEST(rrc_equals_get_params_with_same_draws)
{
    FILE *f = fixture_text("rrc_cases.txt");
    int W, H, i, j, h, w, n = 0, fallbacks = 0;
    double sc[2], ra[2];
    while (fscanf(f, "%d %d %lf %lf %lf %lf %d %d %d %d", &W, &H, &sc[0], &sc[1], &ra[0], &ra[1], &i,
                  &j, &h, &w) == 10) {
        draws d = {.next = 0};
        for (int k = 0; k < 40; k++)
            ck_assert_int_eq(fscanf(f, "%lf", &d.u[k]), 1);
        img_view v;
        int used = img_rrc_box(W, H, sc, ra, next_draw, &d, &v);
        ck_assert_int_eq(used, d.next);
        fallbacks += used == 20;
        ck_assert_msg(v.y0 == i && v.x0 == j && v.h == h && v.w == w,
                      "case %d (%dx%d): got (%d,%d,%d,%d), torchvision (%d,%d,%d,%d)", n, W, H, v.y0,
                      v.x0, v.h, v.w, i, j, h, w);
        n++;
    }
    fclose(f);
    ck_assert_int_eq(n, 300);
    ck_assert_int_gt(fallbacks, 20); /* the fallback branch was exercised */
}
END_TEST

START_TEST(rrc_statistics_match_torchvision)
{
    FILE *f = fixture_text("rrc_stats.txt");
    int W, H, n;
    double ref[6];
    int cases = 0;
    img_view_params p;
    img_view_params_default(&p);
    p.policy = IMG_VIEW_RRC;
    p.seed = 99;
    while (fscanf(f, "%d %d %d %lf %lf %lf %lf %lf %lf", &W, &H, &n, &ref[0], &ref[1], &ref[2], &ref[3],
                  &ref[4], &ref[5]) == 9) {
        double s[3] = {0}, s2[3] = {0};
        int N = 20000, flips = 0;
        for (int k = 0; k < N; k++) {
            img_view v;
            ck_assert_int_eq(img_view_draw(&p, W, H, (uint64_t)k, 0, &v, NULL), KDC_OK);
            ck_assert(v.y0 >= 0 && v.x0 >= 0 && v.y0 + v.h <= H && v.x0 + v.w <= W && v.h > 0 && v.w > 0);
            double x[3] = {(double)v.h * v.w / ((double)H * W), log((double)v.w / v.h),
                           (v.x0 + v.w / 2.0) / W};
            for (int q = 0; q < 3; q++) {
                s[q] += x[q];
                s2[q] += x[q] * x[q];
            }
            flips += v.flip;
        }
        for (int q = 0; q < 3; q++) {
            double mean = s[q] / N, sd = sqrt(s2[q] / N - mean * mean);
            double tol = 5 * sqrt(ref[2 * q + 1] * ref[2 * q + 1] / n + sd * sd / N);
            printf("rrc %dx%d stat %d: ours %.5f (sd %.4f), torchvision %.5f (sd %.4f)\n", W, H, q, mean, sd,
                   ref[2 * q], ref[2 * q + 1]);
            ck_assert_msg(fabs(mean - ref[2 * q]) < tol, "stat %d: %g vs %g (tol %g)", q, mean, ref[2 * q], tol);
            ck_assert_msg(fabs(sd - ref[2 * q + 1]) < 0.05 * ref[2 * q + 1] + 1e-3, "stat %d sd", q);
        }
        double fr = (double)flips / N;
        ck_assert_msg(fabs(fr - 0.5) < 0.02, "flip fraction %g", fr);
        cases++;
    }
    fclose(f);
    ck_assert_int_eq(cases, 2);
}
END_TEST

/* Renders view lines of views.txt with our code and compares boxes and pixels. */
START_TEST(views_match_torchvision_pixels)
{
    FILE *f = fixture_text("views.txt");
    char pol[16], name[256];
    int idx, vi, y0, x0, h, w, flip, n = 0;
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    img_view_scratch sc = {0};
    uint8_t *out = malloc(224 * 224 * 3);
    while (fscanf(f, "%15s %255s %d %d %d %d %d %d %d", pol, name, &idx, &vi, &y0, &x0, &h, &w, &flip) == 9) {
        img_view_params p;
        img_view_params_default(&p);
        p.seed = 1234;
        if (strcmp(pol, "rrc") == 0) {
            p.policy = IMG_VIEW_RRC;
        } else {
            p.policy = IMG_VIEW_PAD_CROP;
            p.image_size = 32;
            p.pad = 4;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/images/photos/%s.jpg", kdc_test_fixture_root(), name);
        ck_assert_msg(img_decoder_load_file(d, path, &err) == KDC_OK, "%s", err.msg);
        const uint8_t *rgb;
        int W, H;
        ck_assert_int_eq(img_decoder_decode(d, 8, &rgb, &W, &H, &err), KDC_OK);
        img_view v;
        ck_assert_int_eq(img_view_draw(&p, W, H, (uint64_t)idx, (uint32_t)vi, &v, &err), KDC_OK);
        ck_assert_msg(v.y0 == y0 && v.x0 == x0 && v.h == h && v.w == w && v.flip == flip,
                      "%s %s view %d: box (%d,%d,%d,%d,%d), Python Philox (%d,%d,%d,%d,%d)", pol, name, vi,
                      v.y0, v.x0, v.h, v.w, v.flip, y0, x0, h, w, flip);
        ck_assert_msg(img_view_render(&p, rgb, W, H, (size_t)W * 3, &v, out, &sc, &err) == KDC_OK, "%s",
                      err.msg);
        char ref[4096];
        snprintf(ref, sizeof ref, "%s/images/view_%s_%s_%d.u8", kdc_test_fixture_root(),
                 strcmp(pol, "rrc") == 0 ? "rrc" : "pad", name, vi);
        FILE *rf = fopen(ref, "rb");
        ck_assert_msg(rf != NULL, "missing %s", ref);
        size_t npx = (size_t)p.image_size * p.image_size * 3;
        uint8_t *tv = malloc(npx);
        ck_assert(fread(tv, 1, npx, rf) == npx);
        fclose(rf);
        int maxd = 0;
        long sum = 0;
        for (size_t k = 0; k < npx; k++) {
            int dd = abs((int)out[k] - (int)tv[k]);
            sum += dd;
            maxd = dd > maxd ? dd : maxd;
        }
        if (vi == 0)
            printf("%s %-20s view %d box (%d,%d,%d,%d) flip %d vs torchvision: max |diff| %d, mean %.4f\n",
                   pol, name, vi, v.y0, v.x0, v.h, v.w, v.flip, maxd, (double)sum / npx);
        ck_assert_msg(maxd <= 1 && (double)sum / npx < 0.01, "%s %s view %d: max diff %d", pol, name, vi, maxd);
        free(tv);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 30);
    free(out);
    img_view_scratch_free(&sc);
    img_decoder_free(d);
}
END_TEST

/* Views of images [first, first + count) in reverse order, into out. */
typedef struct draw_job {
    const img_view_params *p;
    int first, count;
    img_view *out;
} draw_job;

static void *draw_some(void *arg)
{
    draw_job *j = arg;
    for (int k = j->count - 1; k >= 0; k--) {
        int i = j->first + k;
        for (int v = 0; v < 4; v++)
            img_view_draw(j->p, 300 + i % 700, 200 + (i * 7) % 500, (uint64_t)i, (uint32_t)v, &j->out[4 * i + v],
                          NULL);
    }
    return NULL;
}

START_TEST(views_reproducible_across_runs_and_threads)
{
    enum { N = 4000 };
    img_view_params p;
    img_view_params_default(&p);
    p.policy = IMG_VIEW_RRC;
    p.seed = 42;
    img_view *a = calloc(4 * N, sizeof *a), *b = calloc(4 * N, sizeof *b), *c = calloc(4 * N, sizeof *c);
    draw_job one = {&p, 0, N, a};
    draw_some(&one);
    draw_some(&(draw_job){&p, 0, N, b});
    pthread_t t[4];
    draw_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k] = (draw_job){&p, k * N / 4, N / 4, c};
        pthread_create(&t[k], NULL, draw_some, &jobs[k]);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(t[k], NULL);
    ck_assert(memcmp(a, b, 4 * N * sizeof *a) == 0);
    ck_assert(memcmp(a, c, 4 * N * sizeof *a) == 0);
    /* Different seeds / views give different boxes. */
    int same_view = 0;
    for (int i = 0; i < N; i++)
        same_view += memcmp(&a[4 * i], &a[4 * i + 1], sizeof *a) == 0;
    ck_assert_int_lt(same_view, N / 100);
    p.seed = 43;
    img_view other;
    img_view_draw(&p, 300, 200, 0, 0, &other, NULL);
    ck_assert(memcmp(&other, &a[0], sizeof other) != 0 || a[1].h != other.h);
    /* pad-crop: offsets cover -P..P, flips about half. */
    p.policy = IMG_VIEW_PAD_CROP;
    p.image_size = 32;
    p.pad = 4;
    int seen[9] = {0}, flips = 0;
    for (int i = 0; i < N; i++) {
        img_view v;
        ck_assert_int_eq(img_view_draw(&p, 32, 32, (uint64_t)i, 0, &v, NULL), KDC_OK);
        ck_assert(v.y0 >= -4 && v.y0 <= 4 && v.x0 >= -4 && v.x0 <= 4 && v.h == 32 && v.w == 32);
        seen[v.x0 + 4]++;
        flips += v.flip;
    }
    for (int k = 0; k < 9; k++)
        ck_assert_int_gt(seen[k], N / 9 / 2);
    ck_assert(fabs((double)flips / N - 0.5) < 0.03);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(replay_is_bit_identical_and_checked)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/images/photos/dune_640x480_422.jpg", kdc_test_fixture_root());
    img_decoder *d;
    kdc_error err = {0};
    ck_assert_int_eq(img_decoder_create(&d, &err), KDC_OK);
    ck_assert_int_eq(img_decoder_load_file(d, path, &err), KDC_OK);
    const uint8_t *rgb;
    int W, H;
    ck_assert_int_eq(img_decoder_decode(d, 8, &rgb, &W, &H, &err), KDC_OK);
    img_view_scratch s1 = {0}, s2 = {0};
    uint8_t *o1 = malloc(224 * 224 * 3), *o2 = malloc(224 * 224 * 3);
    for (int pol = IMG_VIEW_CENTER; pol <= IMG_VIEW_PAD_CROP; pol++) {
        img_view_params p;
        img_view_params_default(&p);
        p.policy = (img_view_policy)pol;
        p.seed = 5;
        for (uint32_t v = 0; v < 8; v++) {
            img_view view, stored;
            ck_assert_int_eq(img_view_draw(&p, W, H, 17, v, &view, &err), KDC_OK);
            ck_assert_int_eq(img_view_render(&p, rgb, W, H, (size_t)W * 3, &view, o1, &s1, &err), KDC_OK);
            /* What a cache stores: the five integers. */
            int32_t box[5] = {view.y0, view.x0, view.h, view.w, view.flip};
            stored = (img_view){box[0], box[1], box[2], box[3], (uint8_t)box[4]};
            memset(o2, 0xAB, 224 * 224 * 3);
            ck_assert_int_eq(img_view_render(&p, rgb, W, H, (size_t)W * 3, &stored, o2, &s2, &err), KDC_OK);
            ck_assert_msg(memcmp(o1, o2, 224 * 224 * 3) == 0, "%s view %u replay differs",
                          img_view_policy_name(p.policy), v);
        }
        /* A box that does not belong to the policy is refused, not rendered. */
        img_view bad = {-1, 0, 100, 100, 0};
        if (pol == IMG_VIEW_PAD_CROP)
            bad = (img_view){-5, 0, 224, 224, 0};
        ck_assert_int_ne(img_view_render(&p, rgb, W, H, (size_t)W * 3, &bad, o2, &s2, &err), KDC_OK);
        ck_assert_int_ne(img_view_check(&p, W, H, &(img_view){0, 0, 1, 1, 2}, &err), KDC_OK);
    }
    free(o1);
    free(o2);
    img_view_scratch_free(&s1);
    img_view_scratch_free(&s2);
    img_decoder_free(d);
}
END_TEST

START_TEST(params_are_checked)
{
    img_view_params p;
    img_view_params_default(&p);
    kdc_error err = {0};
    ck_assert_int_eq(img_view_params_check(&p, &err), KDC_OK);
    p.resize_size = 100;
    ck_assert_int_eq(img_view_params_check(&p, &err), KDC_EINVAL);
    img_view_params_default(&p);
    p.policy = IMG_VIEW_RRC;
    p.scale[0] = 0.9;
    p.scale[1] = 0.1;
    ck_assert_int_eq(img_view_params_check(&p, &err), KDC_EINVAL);
    img_view_policy pol;
    ck_assert_int_eq(img_view_policy_parse("pad-crop", &pol, &err), KDC_OK);
    ck_assert_int_eq(pol, IMG_VIEW_PAD_CROP);
    ck_assert_int_eq(img_view_policy_parse("random", &pol, &err), KDC_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("views");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, philox_known_answers);
    tcase_add_test(tc, rrc_equals_get_params_with_same_draws);
    tcase_add_test(tc, rrc_statistics_match_torchvision);
    tcase_add_test(tc, views_match_torchvision_pixels);
    tcase_add_test(tc, views_reproducible_across_runs_and_threads);
    tcase_add_test(tc, replay_is_bit_identical_and_checked);
    tcase_add_test(tc, params_are_checked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
