/* test_bn_sync.c - batch norm in phases (batchnorm.h: stats, apply,
 * backward_sums, backward_apply), as --sync-bn runs it over ranks.
 *
 * A batch of 12 split into "ranks" of 5 and 7 images: each part's sums,
 * added as the all-reduce would, then each part normalised with them. The
 * parts together must equal, per value, the float64 batch norm of the whole
 * batch computed here from the formulas (Ioffe & Szegedy 2015, Alg. 1;
 * PyTorch's running-statistic update with the unbiased variance; the
 * backward's dx = gamma invstd (dy - mean dy - xhat mean(dy xhat))), within
 * float32 rounding; gamma/beta gradients are each part's own and add up to
 * the whole batch's. Also: a count below 2 is refused. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/threadpool.h"
#include "common/nn/batchnorm.h"
#include "tests/helpers/testutil.h"

#define NB 12
#define NA 5 /* part 0: images 0..4, part 1: 5..11 */
#define C 3
#define HW 10
#define EPS 1e-5f
#define MOM 0.1f

static size_t at(int n, int c, int i)
{
    return ((size_t)n * C + c) * HW + i;
}

START_TEST(test_parts_equal_whole_batch)
{
    size_t total = (size_t)NB * C * HW;
    float *x = malloc(total * 4), *dy = malloc(total * 4), *y = malloc(total * 4),
          *dx = malloc(total * 4);
    kdc_test_fill_uniform(x, total, 5, -2.0f, 3.0f);
    kdc_test_fill_uniform(dy, total, 6, -1.0f, 1.0f);
    for (size_t i = 0; i < total; i++)
        x[i] += 1.5f * (float)((i / HW) % C); /* channel means apart */
    float gamma[C] = {0.7f, 1.3f, -0.4f}, beta[C] = {0.1f, -0.2f, 0.3f};
    float rm[C] = {0.05f, -0.1f, 0.2f}, rv[C] = {0.9f, 1.1f, 1.4f};
    float rm2[C], rv2[C]; /* the parts update the same stats, as every rank does */
    kdc_pool *pool;
    kdc_error err;
    ck_assert_int_eq(kdc_pool_create(2, &pool, &err), KDC_OK);

    int first[2] = {0, NA}, count[2] = {NA, NB - NA};
    double sums[2 * C] = {0}, part[2 * C];
    for (int p = 0; p < 2; p++) {
        kdc_bn_desc d = {.n = count[p], .c = C, .hw = HW, .eps = EPS, .momentum = MOM};
        ck_assert_int_eq(kdc_batchnorm_stats(&d, x + at(first[p], 0, 0), part, pool, &err), KDC_OK);
        for (int k = 0; k < 2 * C; k++)
            sums[k] += part[k];
    }
    float mean[2][C], invstd[2][C];
    for (int p = 0; p < 2; p++) {
        kdc_bn_desc d = {.n = count[p], .c = C, .hw = HW, .eps = EPS, .momentum = MOM};
        memcpy(rm2, rm, sizeof rm);
        memcpy(rv2, rv, sizeof rv);
        ck_assert_int_eq(kdc_batchnorm_apply(&d, x + at(first[p], 0, 0), gamma, beta, sums,
                                             (double)NB * HW, rm2, rv2, mean[p], invstd[p],
                                             y + at(first[p], 0, 0), pool, &err),
                         KDC_OK);
    }
    double dsums[2 * C] = {0}, dg[C] = {0}, db[C] = {0};
    for (int p = 0; p < 2; p++) {
        kdc_bn_desc d = {.n = count[p], .c = C, .hw = HW, .eps = EPS, .momentum = MOM};
        float g[C], b[C];
        ck_assert_int_eq(kdc_batchnorm_backward_sums(&d, x + at(first[p], 0, 0),
                                                     dy + at(first[p], 0, 0), mean[p], invstd[p],
                                                     part, g, b, pool, &err),
                         KDC_OK);
        for (int k = 0; k < 2 * C; k++)
            dsums[k] += part[k];
        for (int c = 0; c < C; c++)
            dg[c] += g[c], db[c] += b[c];
    }
    for (int p = 0; p < 2; p++) {
        kdc_bn_desc d = {.n = count[p], .c = C, .hw = HW, .eps = EPS, .momentum = MOM};
        ck_assert_int_eq(kdc_batchnorm_backward_apply(&d, x + at(first[p], 0, 0),
                                                      dy + at(first[p], 0, 0), gamma, mean[p],
                                                      invstd[p], dsums, (double)NB * HW,
                                                      dx + at(first[p], 0, 0), pool, &err),
                         KDC_OK);
    }

    /* float64 batch norm of the whole batch */
    const double M = (double)NB * HW;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < HW; i++)
                s += x[at(n, c, i)];
        double mu = s / M;
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < HW; i++)
                ss += (x[at(n, c, i)] - mu) * (x[at(n, c, i)] - mu);
        double var = ss / M, is = 1.0 / sqrt(var + EPS);
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < HW; i++) {
                double xh = (x[at(n, c, i)] - mu) * is;
                double want = gamma[c] * xh + beta[c];
                ck_assert_msg(fabs(y[at(n, c, i)] - want) < 1e-5 * (1 + fabs(want)),
                              "y[%d,%d,%d] %g vs %g", n, c, i, y[at(n, c, i)], want);
                sdy += dy[at(n, c, i)];
                sdyx += dy[at(n, c, i)] * xh;
            }
        for (int p = 0; p < 2; p++) {
            ck_assert(fabs(mean[p][c] - mu) < 1e-6 * (1 + fabs(mu)));
            ck_assert(fabs(invstd[p][c] - is) < 1e-6 * is);
        }
        double want_rm = (1 - MOM) * rm[c] + MOM * mu;
        double want_rv = (1 - MOM) * rv[c] + MOM * var * M / (M - 1);
        ck_assert_msg(fabs(rm2[c] - want_rm) < 1e-6 && fabs(rv2[c] - want_rv) < 1e-6,
                      "running stats of channel %d: %g %g vs %g %g", c, rm2[c], rv2[c], want_rm,
                      want_rv);
        ck_assert_msg(fabs(dg[c] - sdyx) < 1e-4 && fabs(db[c] - sdy) < 1e-4,
                      "dgamma/dbeta of channel %d: %g %g vs %g %g", c, dg[c], db[c], sdyx, sdy);
        for (int n = 0; n < NB; n++)
            for (int i = 0; i < HW; i++) {
                double xh = (x[at(n, c, i)] - mu) * is;
                double want = gamma[c] * is * (dy[at(n, c, i)] - sdy / M - xh * sdyx / M);
                ck_assert_msg(fabs(dx[at(n, c, i)] - want) < 1e-5 * (1 + fabs(want)),
                              "dx[%d,%d,%d] %g vs %g", n, c, i, dx[at(n, c, i)], want);
            }
    }
    kdc_pool_destroy(pool);
    free(x);
    free(dy);
    free(y);
    free(dx);
}
END_TEST

START_TEST(test_count_below_two_refused)
{
    float x[C] = {1, 2, 3}, y[C], m[C], s[C];
    double sums[2 * C] = {1, 2, 3, 1, 4, 9};
    kdc_bn_desc d = {.n = 1, .c = C, .hw = 1, .eps = EPS, .momentum = MOM};
    kdc_error err;
    ck_assert_int_eq(
        kdc_batchnorm_apply(&d, x, NULL, NULL, sums, 1.0, NULL, NULL, m, s, y, NULL, &err),
        KDC_EINVAL);
    ck_assert_int_eq(
        kdc_batchnorm_apply(&d, x, NULL, NULL, sums, 2.0, NULL, NULL, m, s, y, NULL, &err), KDC_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bn_sync");
    TCase *tc = tcase_create("batch norm in phases");
    tcase_add_test(tc, test_parts_equal_whole_batch);
    tcase_add_test(tc, test_count_below_two_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
