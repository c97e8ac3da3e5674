/* test_pool_blocked.c - max pooling and global average pooling in the blocked
 * layout (nChw8c / nChw16c) against the NCHW functions, bit for bit.
 *
 * Every case runs the NCHW and the blocked function through the public
 * kdc_maxpool2d_* / kdc_avgpool_global_* entry points (a pool of 2 threads),
 * converts the blocked outputs back with the test helpers' own converter and
 * memcmps them: same maxima (signed zeros, NaN payloads), the same first
 * maximum on ties, the same order of additions where windows overlap. Inputs
 * are built to make those differences visible: values on a few levels (ties),
 * only -0 / +0 / -1 (signed-zero maxima, where the separable forward and a
 * window scan disagree), NaNs with distinct payloads and -inf. Output buffers
 * start as NaNs of different payloads in the two layouts, so an output either
 * side forgets to write fails the comparison. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/pool.h"
#include "tests/helpers/testutil.h"

#define SUITE "pool_blocked"

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

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A buffer of the NaN with payload tag: unwritten outputs stay that NaN. */
static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float *buf(size_t n, uint32_t tag)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    float v = bits_to_float(0x7fc00000u | tag);
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return p;
}

enum { FILL_UNIFORM, FILL_TIES, FILL_ZEROS, FILL_SPECIAL, FILL_COUNT };
static const char *fill_name[] = {"uniform", "ties", "signed zeros", "nan/-inf"};

static void fill(float *x, size_t n, int kind, uint64_t seed)
{
    kdc_test_fill_uniform(x, n, seed, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        float u = x[i];
        switch (kind) {
        case FILL_UNIFORM: x[i] = 2.0f * u - 1.0f; break;
        case FILL_TIES: /* four levels: most 3x3 windows hold a tied maximum */
            x[i] = (float)(int)(u * 4.0f) * 0.5f - 0.75f;
            break;
        case FILL_ZEROS: x[i] = u < 0.4f ? -0.0f : u < 0.8f ? 0.0f : -1.0f; break;
        default: /* NaNs of distinct payloads and signs, -inf, signed zeros, ties */
            if (u < 0.08f)
                x[i] =
                    bits_to_float((u < 0.04f ? 0xffc00000u : 0x7fc00000u) | (uint32_t)(i & 0xfff));
            else if (u < 0.45f)
                x[i] = -INFINITY;
            else if (u < 0.55f)
                x[i] = u < 0.5f ? -0.0f : 0.0f;
            else
                x[i] = (float)(int)(u * 8.0f) * 0.25f - 1.0f;
        }
    }
}

typedef struct pool_case {
    int n, c, h, w, k, stride, pad;
} pool_case;

static kdc_pool2d_desc make_desc(const pool_case *pc, int blk)
{
    kdc_error err;
    kdc_pool2d_desc d = {.n = pc->n,
                         .c = pc->c,
                         .h_in = pc->h,
                         .w_in = pc->w,
                         .k = pc->k,
                         .stride = pc->stride,
                         .pad = pc->pad,
                         .blk = blk};
    ck_assert_msg(kdc_pool2d_desc_init(&d, &err) == KDC_OK, "%s", err.msg);
    return d;
}

static void same(const char *what, const pool_case *pc, int blk, int kind, const float *nchw,
                 const float *blocked, size_t n)
{
    size_t i = 0;
    while (i < n && !memcmp(nchw + i, blocked + i, sizeof(float)))
        i++;
    ck_assert_msg(i == n,
                  "%s, n=%d c=%d %dx%d k%d s%d p%d blk %d, %s input: float %zu is %a (bits %08x) "
                  "in NCHW, %a (bits %08x) blocked",
                  what, pc->n, pc->c, pc->h, pc->w, pc->k, pc->stride, pc->pad, blk,
                  fill_name[kind], i, (double)nchw[i], (unsigned)float_bits(nchw[i]),
                  (double)blocked[i], (unsigned)float_bits(blocked[i]));
}

/* What the comparisons could miss: outputs that are all zero or equal to the
 * input's first floats, or a "blocked" tensor in NCHW order. */
static void not_trivial(const float *y, const float *x, size_t ny, const float *dx, size_t nx)
{
    size_t nonzero = 0, diff = 0;
    for (size_t i = 0; i < ny; i++)
        nonzero += y[i] != 0.0f, diff += memcmp(y + i, x + i, sizeof(float)) != 0;
    ck_assert_msg(nonzero > ny / 2 && diff > ny / 2, "forward output degenerate");
    nonzero = 0;
    for (size_t i = 0; i < nx; i++)
        nonzero += dx[i] != 0.0f;
    ck_assert_msg(nonzero > 0 && nonzero < nx, "dx has %zu of %zu floats nonzero", nonzero, nx);
}

static void run_max_case(const pool_case *pc, int blk, int kind, uint64_t seed)
{
    kdc_error err;
    kdc_pool2d_desc d0 = make_desc(pc, 0), db = make_desc(pc, blk);
    int hw_in = d0.h_in * d0.w_in, hw_out = d0.h_out * d0.w_out;
    size_t nx = (size_t)d0.n * d0.c * hw_in, ny = (size_t)d0.n * d0.c * hw_out;
    float *x = buf(nx, 1), *xb = buf(nx, 2), *dy2 = buf(2 * ny, 3), *dy2b = buf(2 * ny, 4);
    fill(x, nx, kind, seed);
    kdc_test_fill_uniform(dy2, 2 * ny, seed ^ 0x9e3779b97f4a7c15ull, -1.0f, 1.0f);
    kdc_test_to_blocked(x, d0.n, d0.c, hw_in, blk, xb);
    for (int s = 0; s < 2; s++)
        kdc_test_to_blocked(dy2 + s * ny, d0.n, d0.c, hw_out, blk, dy2b + s * ny);

    float *y = buf(ny, 5), *dx = buf(nx, 5), *dx2 = buf(2 * nx, 5);
    ck_assert_msg(kdc_maxpool2d_forward(&d0, x, y, pool, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_maxpool2d_backward(&d0, x, dy2, dx, pool, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_maxpool2d_backward_dual(&d0, x, dy2, dx2, pool, &err) == KDC_OK, "%s",
                  err.msg);

    float *yb = buf(ny, 6), *dxb = buf(nx, 6), *dx2b = buf(2 * nx, 6);
    ck_assert_msg(kdc_maxpool2d_forward(&db, xb, yb, pool, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_maxpool2d_backward(&db, xb, dy2b, dxb, pool, &err) == KDC_OK, "%s", err.msg);
    ck_assert_msg(kdc_maxpool2d_backward_dual(&db, xb, dy2b, dx2b, pool, &err) == KDC_OK, "%s",
                  err.msg);

    if (kind == FILL_UNIFORM && pc->k > 1)
        not_trivial(y, x, ny, dx, nx);
    if (kind == FILL_UNIFORM && hw_out > 1)
        ck_assert_msg(memcmp(yb, y, ny * sizeof(float)) != 0, "blocked y in NCHW order");
    float *back = buf(2 * nx, 7);
    kdc_test_from_blocked(yb, d0.n, d0.c, hw_out, blk, back);
    same("forward y", pc, blk, kind, y, back, ny);
    kdc_test_from_blocked(dxb, d0.n, d0.c, hw_in, blk, back);
    same("backward dx", pc, blk, kind, dx, back, nx);
    for (int s = 0; s < 2; s++)
        kdc_test_from_blocked(dx2b + s * nx, d0.n, d0.c, hw_in, blk, back + s * nx);
    same("dual backward dx2", pc, blk, kind, dx2, back, 2 * nx);
    /* the dual's stream 0 is the single backward */
    same("dual stream 0 vs backward", pc, blk, kind, dx, dx2, nx);
    free(x), free(xb), free(dy2), free(dy2b), free(y), free(dx), free(dx2);
    free(yb), free(dxb), free(dx2b), free(back);
}

static void run_max_cases(const pool_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++)
        for (int blk = 8; blk <= 16; blk += 8)
            for (int kind = 0; kind < FILL_COUNT; kind++)
                run_max_case(&cases[i], blk, kind, 1000 * i + 10 * (uint64_t)blk + (uint64_t)kind);
}

START_TEST(test_maxpool_blocked_layers)
{
    static const pool_case cases[] = {
        {2, 32, 16, 16, 3, 2, 1},                         /* resnet's stem pool */
        {3, 48, 7, 9, 3, 2, 1},                           /* the stem pool on an odd map */
        {1, 16, 8, 8, 2, 2, 0},   {2, 16, 7, 7, 2, 2, 0}, /* floor mode drops the last row and
                                                             column */
        {1, 32, 9, 11, 3, 1, 1}, /* overlapping windows: three additions per dx float */
        {3, 16, 5, 13, 3, 1, 0},  {1, 48, 15, 15, 3, 2, 1}, {2, 32, 11, 10, 5, 3, 2},
        {1, 16, 3, 5, 1, 1, 0},   {2, 16, 1, 1, 1, 1, 0}, /* one pixel: both layouts are the same
                                                             bytes */
    };
    run_max_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* Rows wider than the forward's column buffer (256 columns at blk 16, 512 at
 * blk 8) go through it in chunks, windows cut at chunk ends; rows wider than
 * KDC_POOL_ROW_MAX use the window scan in both layouts. */
START_TEST(test_maxpool_blocked_wide_rows)
{
    static const pool_case cases[] = {
        {1, 16, 3, 600, 3, 1, 1},
        {1, 16, 4, 515, 3, 2, 1},
        {1, 16, 2, 1030, 4, 3, 2},
        {1, 16, 3, 2100, 3, 2, 1},
    };
    run_max_cases(cases, sizeof cases / sizeof cases[0]);
}
END_TEST

/* The signed-zero input does tell the two forward methods apart: on the wide
 * case the column-first fold and the window scan disagree somewhere, so a
 * blocked forward that picked the other method than NCHW would fail above. */
START_TEST(test_maxpool_signed_zero_inputs_matter)
{
    kdc_error err;
    pool_case narrow = {1, 16, 3, 2048, 3, 2, 1}, wide = narrow;
    wide.w = 2050;
    kdc_pool2d_desc dn = make_desc(&narrow, 0), dw = make_desc(&wide, 0);
    size_t nxn = (size_t)16 * 3 * 2048, nxw = (size_t)16 * 3 * 2050;
    float *xw = buf(nxw, 1), *xn = buf(nxn, 1);
    fill(xw, nxw, FILL_ZEROS, 77);
    /* the same data for the first 2048 columns of each row */
    for (size_t r = 0; r < 16 * 3; r++)
        memcpy(xn + r * 2048, xw + r * 2050, 2048 * sizeof(float));
    size_t nyn = (size_t)16 * dn.h_out * dn.w_out, nyw = (size_t)16 * dw.h_out * dw.w_out;
    float *yn = buf(nyn, 2), *yw = buf(nyw, 3);
    ck_assert_int_eq(kdc_maxpool2d_forward(&dn, xn, yn, pool, &err), KDC_OK);
    ck_assert_int_eq(kdc_maxpool2d_forward(&dw, xw, yw, pool, &err), KDC_OK);
    size_t differ = 0;
    for (size_t r = 0; r < (size_t)16 * dn.h_out; r++)
        for (int j = 0; j < dn.w_out - 1; j++) /* the last window is cut differently */
            differ += memcmp(yn + r * dn.w_out + j, yw + r * dw.w_out + j, sizeof(float)) != 0;
    ck_assert_msg(differ > 0, "the two forward methods agree on every signed-zero window");
    free(xw), free(xn), free(yn), free(yw);
}
END_TEST

START_TEST(test_maxpool_blocked_bad_blk)
{
    kdc_error err;
    kdc_pool2d_desc d = {.n = 1, .c = 24, .h_in = 4, .w_in = 4, .k = 2, .stride = 2, .blk = 16};
    ck_assert_int_eq(kdc_pool2d_desc_init(&d, &err), KDC_EINVAL);
    d.blk = 4;
    ck_assert_int_eq(kdc_pool2d_desc_init(&d, &err), KDC_EINVAL);
    /* a desc initialised in NCHW, then given a block that does not divide c */
    d.blk = 0;
    ck_assert_int_eq(kdc_pool2d_desc_init(&d, &err), KDC_OK);
    d.blk = 16;
    float x[24 * 16], y[24 * 4], dy[2 * 24 * 4], dx[2 * 24 * 16];
    memset(x, 0, sizeof x), memset(dy, 0, sizeof dy);
    ck_assert_int_eq(kdc_maxpool2d_forward(&d, x, y, pool, &err), KDC_EINVAL);
    ck_assert_int_eq(kdc_maxpool2d_backward(&d, x, dy, dx, pool, &err), KDC_EINVAL);
    ck_assert_int_eq(kdc_maxpool2d_backward_dual(&d, x, dy, dx, pool, &err), KDC_EINVAL);
    ck_assert_int_eq(kdc_avgpool_global_forward_blk(1, 24, 16, 16, x, y, pool, &err), KDC_EINVAL);
    ck_assert_int_eq(kdc_avgpool_global_backward_blk(1, 24, 16, 16, dy, dx, pool, &err),
                     KDC_EINVAL);
    ck_assert_int_eq(kdc_avgpool_global_forward_blk(1, 24, 16, 0, x, y, pool, &err), KDC_EINVAL);
}
END_TEST

START_TEST(test_avgpool_global_blocked)
{
    kdc_error err;
    static const int cases[][3] = {{1, 16, 1},   {2, 32, 49},   {3, 48, 63},
                                   {2, 16, 256}, {1, 32, 3136}, {3, 16, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int blk = 8; blk <= 16; blk += 8) {
            int n = cases[i][0], c = cases[i][1], hw = cases[i][2];
            pool_case pc = {n, c, hw, 1, 0, 0, 0};
            size_t nx = (size_t)n * c * hw, ny = (size_t)n * c;
            float *x = buf(nx, 1), *xb = buf(nx, 2), *dy = buf(ny, 3);
            /* The sum is in double, exact for most float inputs; +-2^60 at the
             * start of a plane and its negation halfway make it depend on the
             * order: the values in between vanish into 2^60. */
            kdc_test_fill_uniform(x, nx, 500 + i, -1.0f, 1.0f);
            for (size_t e = 0; e < nx; e++)
                x[e] = ldexpf(x[e], (int)(e % 23) - 11);
            for (size_t p = 0; p < ny && hw > 2; p++) {
                x[p * hw] = p % 2 ? 0x1p60f : -0x1p60f;
                x[p * hw + hw / 2] = -x[p * hw];
            }
            kdc_test_fill_uniform(dy, ny, 600 + i, -3.0f, 3.0f);
            kdc_test_to_blocked(x, n, c, hw, blk, xb);
            float *y = buf(ny, 4), *dx = buf(nx, 4), *yb = buf(ny, 5), *dxb = buf(nx, 5);
            float *back = buf(nx, 6);
            ck_assert_int_eq(kdc_avgpool_global_forward(n, c, hw, x, y, pool, &err), KDC_OK);
            ck_assert_int_eq(kdc_avgpool_global_backward(n, c, hw, dy, dx, pool, &err), KDC_OK);
            ck_assert_msg(kdc_avgpool_global_forward_blk(n, c, hw, blk, xb, yb, pool, &err) ==
                              KDC_OK,
                          "%s", err.msg);
            ck_assert_msg(kdc_avgpool_global_backward_blk(n, c, hw, blk, dy, dxb, pool, &err) ==
                              KDC_OK,
                          "%s", err.msg);
            size_t nonzero = 0;
            for (size_t e = 0; e < ny; e++)
                nonzero += y[e] != 0.0f && (hw == 1 || y[e] != x[e]);
            ck_assert_uint_gt(nonzero, ny / 2);
            same("global avgpool y", &pc, blk, FILL_UNIFORM, y, yb, ny); /* y stays n x c */
            kdc_test_from_blocked(dxb, n, c, hw, blk, back);
            same("global avgpool dx", &pc, blk, FILL_UNIFORM, dx, back, nx);
            free(x), free(xb), free(dy), free(y), free(dx), free(yb), free(dxb), free(back);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create(SUITE);
    TCase *tc = tcase_create("blocked");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_maxpool_blocked_layers);
    tcase_add_test(tc, test_maxpool_blocked_wide_rows);
    tcase_add_test(tc, test_maxpool_signed_zero_inputs_matter);
    tcase_add_test(tc, test_maxpool_blocked_bad_blk);
    tcase_add_test(tc, test_avgpool_global_blocked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
