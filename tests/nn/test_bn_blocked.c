/* test_bn_blocked.c - batch norm in the blocked layout (batchnorm_blocked.h)
 * against the NCHW batch norm, bit for bit.
 *
 * The blocked kernels promise the same floats as the NCHW ones (the NCHW
 * code is checked against PyTorch in test_layers), so every output here is
 * compared with memcmp, not a tolerance: y, the saved and running statistics
 * (from equal starting values), eval's y, dx / dgamma / dbeta and both
 * streams of the dual backward, with gamma / beta / dx / statistic outputs
 * NULL where the NCHW functions allow it. The shapes cover whole and partial
 * groups of sum_f's 4 and sum_g_gx's 2 accumulators (hw = 7, 5, 3, 1, 64),
 * one and several blocks, and blocks split over a pool of 2 threads. The two
 * layouts' output buffers start with different garbage, so an output the
 * blocked code never writes fails too. Also: a block that does not divide c
 * is refused, and so is any block in the synchronised-statistics phases. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/threadpool.h"
#include "common/nn/batchnorm.h"
#include "tests/helpers/testutil.h"

#define EPS 1e-5f
#define MOM 0.1f

typedef struct shape {
    int n, c, hw;
} shape;

static const shape SHAPES[] = {{3, 32, 7}, {2, 16, 1}, {4, 48, 64}, {1, 16, 5}, {2, 32, 3}};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
static const int BLKS[] = {8, 16};

static kdc_pool *pool;

static void setup(void)
{
    kdc_error err;
    ck_assert_msg(kdc_pool_create(2, &pool, &err) == KDC_OK, "%s", err.msg);
}

static void teardown(void)
{
    kdc_pool_destroy(pool);
    pool = NULL;
}

/* n floats of garbage: NaNs of a pattern per layout (0x7fc0a5a5 vs 0x7fc05a5a) */
static float *garbage(size_t n, uint32_t pattern)
{
    float *p = malloc(n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        memcpy(&p[i], &pattern, sizeof pattern);
    return p;
}
#define G_NCHW 0x7fc0a5a5u
#define G_BLK 0x7fc05a5au

/* Inputs of one case: x with channel means and scales apart (so that a
 * channel mix-up shows), two dy streams, gamma / beta, running statistics. */
typedef struct inputs {
    shape s;
    int blk, spiky; /* spiky: spike(), else spread() */
    size_t total;
    float *x, *xb;     /* NCHW, blocked */
    float *dy2, *dyb2; /* 2 streams each */
    float *gamma, *beta, *rm, *rv;
} inputs;

/* Scales values by 2^-20 .. 2^20: sums of floats this far apart round in
 * double, so a blocked sum in another order than the NCHW one shows. */
static void spread(float *v, size_t n, uint64_t seed)
{
    float *e = malloc(n * sizeof *e);
    kdc_test_fill_uniform(e, n, seed, -20.0f, 21.0f);
    for (size_t i = 0; i < n; i++)
        v[i] = ldexpf(v[i], (int)floorf(e[i]));
    free(e);
}

/* Puts +2^40 and -2^40 at two places of every (n, channel) plane of v (for
 * hw = 1 in planes n = 0 and 1 when n > 2). The channel sums cancel them, but the small
 * values added to a double accumulator holding 2^40 lose their low bits, so
 * the float statistics depend on which accumulator and which order each
 * value went through: any deviation from the NCHW order shows. */
static void spike(float *v, shape s, uint64_t seed)
{
    const float h = 0x1p40f;
    for (int n = 0; n < s.n; n++)
        for (int c = 0; c < s.c; c++) {
            float *p = v + ((size_t)n * s.c + c) * s.hw;
            uint64_t r =
                seed * 0x9e3779b97f4a7c15ull + (uint64_t)(n * s.c + c) * 0xbf58476d1ce4e5b9ull;
            r ^= r >> 31;
            if (s.hw == 1) {
                if (n < 2 && s.n > 2) /* not the whole channel */
                    p[0] = n ? -h : h;
                continue;
            }
            int a = (int)(r % (uint64_t)s.hw),
                b = (a + 1 + (int)((r >> 20) % (uint64_t)(s.hw - 1))) % s.hw;
            p[a] = h, p[b] = -h;
        }
}

static void make_inputs(inputs *in, shape s, int blk, int spiky, uint64_t seed)
{
    in->s = s;
    in->blk = blk;
    in->spiky = spiky;
    in->total = (size_t)s.n * s.c * s.hw;
    size_t t = in->total;
    in->x = malloc(t * 4), in->xb = malloc(t * 4);
    in->dy2 = malloc(2 * t * 4), in->dyb2 = malloc(2 * t * 4);
    in->gamma = malloc((size_t)s.c * 4), in->beta = malloc((size_t)s.c * 4);
    in->rm = malloc((size_t)s.c * 4), in->rv = malloc((size_t)s.c * 4);
    kdc_test_fill_uniform(in->x, t, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < t; i++) {
        int ch = (int)(i / (size_t)s.hw % (size_t)s.c);
        in->x[i] = in->x[i] * (0.5f + 0.1f * (float)(ch % 7)) + 0.3f * (float)(ch % 5) - 0.6f;
    }
    kdc_test_fill_uniform(in->dy2, 2 * t, seed + 1, -1.0f, 1.0f);
    if (in->spiky) {
        spike(in->x, s, seed + 6);
        for (int k = 0; k < 2; k++)
            spike(in->dy2 + k * t, s, seed + 7 + k);
    } else {
        spread(in->x, t, seed + 6);
        spread(in->dy2, 2 * t, seed + 7);
    }
    kdc_test_fill_uniform(in->gamma, (size_t)s.c, seed + 2, 0.5f, 1.5f);
    kdc_test_fill_uniform(in->beta, (size_t)s.c, seed + 3, -0.5f, 0.5f);
    kdc_test_fill_uniform(in->rm, (size_t)s.c, seed + 4, -0.2f, 0.2f);
    kdc_test_fill_uniform(in->rv, (size_t)s.c, seed + 5, 0.8f, 1.2f);
    kdc_test_to_blocked(in->x, s.n, s.c, s.hw, blk, in->xb);
    for (int k = 0; k < 2; k++)
        kdc_test_to_blocked(in->dy2 + k * t, s.n, s.c, s.hw, blk, in->dyb2 + k * t);
}

static void free_inputs(inputs *in)
{
    free(in->x), free(in->xb), free(in->dy2), free(in->dyb2);
    free(in->gamma), free(in->beta), free(in->rm), free(in->rv);
}

static kdc_bn_desc desc(const inputs *in, int blk)
{
    kdc_bn_desc d = {
        .n = in->s.n, .c = in->s.c, .hw = in->s.hw, .eps = EPS, .momentum = MOM, .blk = blk};
    return d;
}

/* ck_assert on memcmp, naming the case and the first differing float */
static void assert_same(const char *what, const inputs *in, const float *nchw, const float *blk,
                        size_t n)
{
    if (memcmp(nchw, blk, n * sizeof *nchw) == 0)
        return;
    size_t i = 0;
    while (i < n && memcmp(&nchw[i], &blk[i], sizeof *nchw) == 0)
        i++;
    ck_abort_msg("%s (n=%d c=%d hw=%d blk=%d%s): float %zu of %zu differs: NCHW %.9g blocked "
                 "%.9g",
                 what, in->s.n, in->s.c, in->s.hw, in->blk, in->spiky ? " spiky" : "", i, n,
                 (double)nchw[i], (double)blk[i]);
}

/* blocked tensor(s) back to NCHW, in a new buffer */
static float *unblock(const inputs *in, const float *b, int streams)
{
    float *out = malloc((size_t)streams * in->total * 4);
    for (int k = 0; k < streams; k++)
        kdc_test_from_blocked(b + k * in->total, in->s.n, in->s.c, in->s.hw, in->blk,
                              out + k * in->total);
    return out;
}

/* An output that is not the input and not all zero (guards a vacuous match) */
static void assert_live(const char *what, const float *v, const float *not_this, size_t n)
{
    int nonzero = 0, differs = not_this == NULL;
    for (size_t i = 0; i < n; i++) {
        nonzero |= v[i] != 0.0f;
        if (not_this)
            differs |= v[i] != not_this[i];
    }
    ck_assert_msg(nonzero && differs, "%s: all zero or equal to the input", what);
}

/* Train forward in both layouts with the given optional arguments; returns
 * the NCHW save_mean / save_invstd (malloc'd) for the backward cases. */
static void check_train(const inputs *in, int affine, int running, int save, float **mean_out,
                        float **invstd_out)
{
    const size_t t = in->total, c = (size_t)in->s.c;
    kdc_bn_desc d0 = desc(in, 0), d1 = desc(in, in->blk);
    float *y0 = garbage(t, G_NCHW), *yb = garbage(t, G_BLK);
    float *m0 = garbage(c, G_NCHW), *m1 = garbage(c, G_BLK);
    float *s0 = garbage(c, G_NCHW), *s1 = garbage(c, G_BLK);
    float *rm0 = malloc(c * 4), *rm1 = malloc(c * 4), *rv0 = malloc(c * 4), *rv1 = malloc(c * 4);
    memcpy(rm0, in->rm, c * 4), memcpy(rm1, in->rm, c * 4);
    memcpy(rv0, in->rv, c * 4), memcpy(rv1, in->rv, c * 4);
    const float *g = affine ? in->gamma : NULL, *b = affine ? in->beta : NULL;
    kdc_error err;
    ck_assert_int_eq(kdc_batchnorm_forward_train(&d0, in->x, g, b, running ? rm0 : NULL,
                                                 running ? rv0 : NULL, save ? m0 : NULL,
                                                 save ? s0 : NULL, y0, pool, &err),
                     KDC_OK);
    ck_assert_msg(kdc_batchnorm_forward_train(&d1, in->xb, g, b, running ? rm1 : NULL,
                                              running ? rv1 : NULL, save ? m1 : NULL,
                                              save ? s1 : NULL, yb, pool, &err) == KDC_OK,
                  "%s", err.msg);
    float *y1 = unblock(in, yb, 1);
    assert_same("train y", in, y0, y1, t);
    assert_live("train y", y0, in->x, t);
    if (running) {
        assert_same("running_mean", in, rm0, rm1, c);
        assert_same("running_var", in, rv0, rv1, c);
        assert_live("running_mean", rm0, in->rm, c);
    }
    if (save) {
        assert_same("save_mean", in, m0, m1, c);
        assert_same("save_invstd", in, s0, s1, c);
        assert_live("save_invstd", s0, NULL, c);
    }
    if (mean_out && save) {
        *mean_out = m0, *invstd_out = s0;
        m0 = s0 = NULL;
    }
    free(y0), free(yb), free(y1), free(m0), free(m1), free(s0), free(s1);
    free(rm0), free(rm1), free(rv0), free(rv1);
}

START_TEST(test_train)
{
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int b = 0; b < 4; b++) {
            inputs in;
            make_inputs(&in, SHAPES[k], BLKS[b % 2], b / 2, 10 + k);
            check_train(&in, 1, 1, 1, NULL, NULL);
            check_train(&in, 0, 1, 1, NULL, NULL); /* no affine transform */
            check_train(&in, 1, 0, 0, NULL, NULL); /* no statistics kept */
            free_inputs(&in);
        }
}
END_TEST

static void check_eval(const inputs *in, int affine, kdc_pool *p)
{
    const size_t t = in->total;
    kdc_bn_desc d0 = desc(in, 0), d1 = desc(in, in->blk);
    float *y0 = garbage(t, G_NCHW), *yb = garbage(t, G_BLK);
    const float *g = affine ? in->gamma : NULL, *b = affine ? in->beta : NULL;
    kdc_error err;
    ck_assert_int_eq(kdc_batchnorm_forward_eval(&d0, in->x, g, b, in->rm, in->rv, y0, p, &err),
                     KDC_OK);
    ck_assert_msg(kdc_batchnorm_forward_eval(&d1, in->xb, g, b, in->rm, in->rv, yb, p, &err) ==
                      KDC_OK,
                  "%s", err.msg);
    float *y1 = unblock(in, yb, 1);
    assert_same("eval y", in, y0, y1, t);
    assert_live("eval y", y0, in->x, t);
    free(y0), free(yb), free(y1);
}

START_TEST(test_eval)
{
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int b = 0; b < 4; b++) {
            inputs in;
            make_inputs(&in, SHAPES[k], BLKS[b % 2], b / 2, 20 + k);
            check_eval(&in, 1, pool);
            check_eval(&in, 0, pool);
            check_eval(&in, 1, NULL); /* serial */
            free_inputs(&in);
        }
}
END_TEST

/* Backward of one or two streams in both layouts, the outputs given by
 * `want_dx` / `want_params` (stream 1's parameter gradients: `want_params1`). */
static void check_backward(const inputs *in, const float *mean, const float *invstd, int streams,
                           int affine, int want_dx, int want_params, int want_params1)
{
    const size_t t = in->total, c = (size_t)in->s.c, st = (size_t)streams * t;
    kdc_bn_desc d0 = desc(in, 0), d1 = desc(in, in->blk);
    float *dx0 = garbage(st, G_NCHW), *dxb = garbage(st, G_BLK);
    float *pg0[2], *pb0[2], *pg1[2], *pb1[2];
    for (int k = 0; k < 2; k++) {
        pg0[k] = garbage(c, G_NCHW), pb0[k] = garbage(c, G_NCHW);
        pg1[k] = garbage(c, G_BLK), pb1[k] = garbage(c, G_BLK);
    }
    const float *g = affine ? in->gamma : NULL;
    float *dx0p = want_dx ? dx0 : NULL, *dxbp = want_dx ? dxb : NULL;
    int wp[2] = {want_params, want_params1};
    kdc_error err;
    kdc_status r0, r1;
    if (streams == 1) {
        r0 = kdc_batchnorm_backward(&d0, in->x, in->dy2, g, mean, invstd, dx0p,
                                    wp[0] ? pg0[0] : NULL, wp[0] ? pb0[0] : NULL, pool, &err);
        r1 = kdc_batchnorm_backward(&d1, in->xb, in->dyb2, g, mean, invstd, dxbp,
                                    wp[0] ? pg1[0] : NULL, wp[0] ? pb1[0] : NULL, pool, &err);
    } else {
        r0 = kdc_batchnorm_backward_dual(&d0, in->x, in->dy2, g, mean, invstd, dx0p,
                                         wp[0] ? pg0[0] : NULL, wp[0] ? pb0[0] : NULL,
                                         wp[1] ? pg0[1] : NULL, wp[1] ? pb0[1] : NULL, pool, &err);
        r1 = kdc_batchnorm_backward_dual(&d1, in->xb, in->dyb2, g, mean, invstd, dxbp,
                                         wp[0] ? pg1[0] : NULL, wp[0] ? pb1[0] : NULL,
                                         wp[1] ? pg1[1] : NULL, wp[1] ? pb1[1] : NULL, pool, &err);
    }
    ck_assert_int_eq(r0, KDC_OK);
    ck_assert_msg(r1 == KDC_OK, "%s", err.msg);
    if (want_dx) {
        float *dx1 = unblock(in, dxb, streams);
        assert_same(streams == 1 ? "dx" : "dual dx (both streams)", in, dx0, dx1, st);
        if ((size_t)in->s.n * in->s.hw > 2) /* with 2 values y is +-1 whatever x: dx = 0 */
            assert_live("dx", dx0, in->dy2, st);
        free(dx1);
    }
    for (int k = 0; k < streams; k++)
        if (wp[k]) {
            assert_same(k ? "dgamma stream 1" : "dgamma", in, pg0[k], pg1[k], c);
            assert_same(k ? "dbeta stream 1" : "dbeta", in, pb0[k], pb1[k], c);
            assert_live("dgamma", pg0[k], NULL, c);
            assert_live("dbeta", pb0[k], NULL, c);
        }
    free(dx0), free(dxb);
    for (int k = 0; k < 2; k++)
        free(pg0[k]), free(pb0[k]), free(pg1[k]), free(pb1[k]);
}

START_TEST(test_backward)
{
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int b = 0; b < 4; b++) {
            inputs in;
            float *mean, *invstd;
            make_inputs(&in, SHAPES[k], BLKS[b % 2], b / 2, 30 + k);
            check_train(&in, 1, 1, 1, &mean, &invstd);
            check_backward(&in, mean, invstd, 1, 1, 1, 1, 0);
            check_backward(&in, mean, invstd, 1, 0, 1, 1, 0); /* no gamma */
            check_backward(&in, mean, invstd, 1, 1, 0, 1, 0); /* no dx */
            check_backward(&in, mean, invstd, 1, 1, 1, 0, 0); /* dx only */
            free(mean), free(invstd);
            free_inputs(&in);
        }
}
END_TEST

START_TEST(test_backward_dual)
{
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int b = 0; b < 4; b++) {
            inputs in;
            float *mean, *invstd;
            make_inputs(&in, SHAPES[k], BLKS[b % 2], b / 2, 40 + k);
            check_train(&in, 1, 1, 1, &mean, &invstd);
            check_backward(&in, mean, invstd, 2, 1, 1, 1, 1);
            check_backward(&in, mean, invstd, 2, 0, 1, 1, 1); /* no gamma */
            check_backward(&in, mean, invstd, 2, 1, 0, 1, 1); /* no dx */
            check_backward(&in, mean, invstd, 2, 1, 1, 1, 0); /* stream 1: dx only */
            check_backward(&in, mean, invstd, 2, 1, 1, 0, 1); /* stream 0: dx only */
            free(mean), free(invstd);
            free_inputs(&in);
        }
}
END_TEST

/* The dual's stream 1 is the single backward of stream 1, in the blocked
 * layout too (the offsets of the second stream). */
START_TEST(test_dual_stream1_is_single)
{
    inputs in;
    float *mean, *invstd;
    make_inputs(&in, SHAPES[0], 16, 0, 50);
    check_train(&in, 1, 1, 1, &mean, &invstd);
    kdc_bn_desc d = desc(&in, 16);
    size_t t = in.total, c = (size_t)in.s.c;
    float *dx2 = garbage(2 * t, G_BLK), *dx = garbage(t, G_NCHW);
    float *g2[2] = {garbage(c, G_BLK), garbage(c, G_BLK)},
          *b2[2] = {garbage(c, G_BLK), garbage(c, G_BLK)};
    float *g1 = garbage(c, G_NCHW), *b1 = garbage(c, G_NCHW);
    kdc_error err;
    ck_assert_int_eq(kdc_batchnorm_backward_dual(&d, in.xb, in.dyb2, in.gamma, mean, invstd, dx2,
                                                 g2[0], b2[0], g2[1], b2[1], pool, &err),
                     KDC_OK);
    ck_assert_int_eq(kdc_batchnorm_backward(&d, in.xb, in.dyb2 + t, in.gamma, mean, invstd, dx, g1,
                                            b1, pool, &err),
                     KDC_OK);
    assert_same("dual stream 1 dx", &in, dx, dx2 + t, t);
    assert_same("dual stream 1 dgamma", &in, g1, g2[1], c);
    assert_same("dual stream 1 dbeta", &in, b1, b2[1], c);
    ck_assert_msg(memcmp(dx2, dx2 + t, t * 4) != 0, "the two streams' dx are equal");
    free(dx2), free(dx), free(g2[0]), free(g2[1]), free(b2[0]), free(b2[1]), free(g1), free(b1);
    free(mean), free(invstd);
    free_inputs(&in);
}
END_TEST

START_TEST(test_refused)
{
    float x[2 * 24] = {0}, y[2 * 24], m[24], s[24], v[24] = {0};
    double sums[2 * 24];
    kdc_error err;
    /* 24 channels: 8 divides, 16 does not */
    kdc_bn_desc d = {.n = 2, .c = 24, .hw = 1, .eps = EPS, .momentum = MOM, .blk = 16};
    ck_assert_int_eq(
        kdc_batchnorm_forward_train(&d, x, NULL, NULL, NULL, NULL, m, s, y, pool, &err),
        KDC_EINVAL);
    ck_assert_int_eq(kdc_batchnorm_forward_eval(&d, x, NULL, NULL, m, v, y, pool, &err),
                     KDC_EINVAL);
    ck_assert_int_eq(kdc_batchnorm_backward(&d, x, x, NULL, m, v, y, NULL, NULL, pool, &err),
                     KDC_EINVAL);
    ck_assert_int_eq(
        kdc_batchnorm_backward_dual(&d, x, x, NULL, m, v, y, NULL, NULL, NULL, NULL, pool, &err),
        KDC_EINVAL);
    d.blk = 4; /* not a block size */
    d.c = 8;
    ck_assert_int_eq(
        kdc_batchnorm_forward_train(&d, x, NULL, NULL, NULL, NULL, m, s, y, pool, &err),
        KDC_EINVAL);
    d.c = 24;
    d.blk = 8;
    ck_assert_int_eq(
        kdc_batchnorm_forward_train(&d, x, NULL, NULL, NULL, NULL, m, s, y, pool, &err), KDC_OK);
    /* eval without running statistics is refused in both layouts */
    ck_assert_int_eq(kdc_batchnorm_forward_eval(&d, x, NULL, NULL, NULL, NULL, y, pool, &err),
                     KDC_EINVAL);
    /* the synchronised phases take NCHW only */
    ck_assert_int_eq(kdc_batchnorm_stats(&d, x, sums, pool, &err), KDC_EUNSUPPORTED);
    ck_assert_int_eq(
        kdc_batchnorm_apply(&d, x, NULL, NULL, sums, 2.0, NULL, NULL, m, s, y, pool, &err),
        KDC_EUNSUPPORTED);
    ck_assert_int_eq(kdc_batchnorm_backward_sums(&d, x, x, m, s, sums, NULL, NULL, pool, &err),
                     KDC_EUNSUPPORTED);
    ck_assert_int_eq(kdc_batchnorm_backward_apply(&d, x, x, NULL, m, s, sums, 2.0, y, pool, &err),
                     KDC_EUNSUPPORTED);
    d.blk = 0;
    ck_assert_int_eq(kdc_batchnorm_stats(&d, x, sums, pool, &err), KDC_OK);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bn_blocked");
    TCase *tc = tcase_create("blocked batch norm equals NCHW");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_train);
    tcase_add_test(tc, test_eval);
    tcase_add_test(tc, test_backward);
    tcase_add_test(tc, test_backward_dual);
    tcase_add_test(tc, test_dual_stream1_is_single);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
