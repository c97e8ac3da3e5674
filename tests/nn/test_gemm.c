/* test_gemm.c - kdc_sgemm against a double-precision loop, OpenBLAS kernel
 * selection, and the thread pool's loop coverage.
 *
 * GEMM: all four transpose combinations, odd sizes, padded leading dimensions,
 * alpha/beta, beta = 0 over a NaN-filled C. Kernel: on a CPU with AVX-512 the
 * loaded OpenBLAS must not run its "Prescott" fallback (the bug gemm.c exists
 * to fix); other CPUs print a skip note. */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/cpu_features.h"
#include "common/nn/gemm.h"
#include "common/base/threadpool.h"
#include "tests/helpers/testutil.h"

static void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, const float *c0, int ldc, double *out)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                     (tb ? b[j * ldb + p] : b[p * ldb + j]);
            out[i * n + j] = alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c0[i * ldc + j]);
        }
}

static void check_case(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad)
{
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
    size_t nc = (size_t)m * ldc;
    float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *c0 = malloc(nc * 4);
    double *ref = malloc((size_t)m * n * 8);
    float *got = malloc((size_t)m * n * 4);
    kdc_test_fill_uniform(a, na, 11 + (uint64_t)m, -1, 1);
    kdc_test_fill_uniform(b, nb, 22 + (uint64_t)n, -1, 1);
    kdc_test_fill_uniform(c0, nc, 33 + (uint64_t)k, -1, 1);
    if (beta == 0.0f) /* BLAS must not read C when beta == 0 */
        for (size_t i = 0; i < nc; i++)
            c0[i] = NAN;
    memcpy(c, c0, nc * 4);
    ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, ref);
    kdc_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (int i = 0; i < m; i++)
        memcpy(got + (size_t)i * n, c + (size_t)i * ldc, (size_t)n * 4);
    double r = kdc_test_rel_err_f64(got, ref, (size_t)m * n);
    /* float32 dot products of length k: error ~ sqrt(k) * 2^-24 relative */
    ck_assert_msg(r < 1e-5, "sgemm ta=%d tb=%d %dx%dx%d alpha=%g beta=%g pad=%d: rel err %.3g",
                  ta, tb, m, n, k, alpha, beta, pad, r);
    /* the padding columns of C are untouched */
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++)
            ck_assert(memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j], 4) == 0);
    free(a), free(b), free(c), free(c0), free(ref), free(got);
}

START_TEST(test_sgemm_all_transposes)
{
    kdc_error err;
    ck_assert_msg(kdc_gemm_init(&err) == KDC_OK, "%s", err.msg);
    static const int sizes[][3] = {{1, 1, 1}, {37, 53, 29}, {64, 1, 200}, {1, 70, 33},
                                   {129, 67, 257}, {3, 300, 7}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                const int *z = sizes[s];
                check_case(ta, tb, z[0], z[1], z[2], 1.0f, 0.0f, 0);
                check_case(ta, tb, z[0], z[1], z[2], -0.5f, 1.5f, 3);
            }
}
END_TEST

START_TEST(test_sgemm_threads)
{
    /* A size OpenBLAS splits over threads, with 1 and 2 threads. */
    kdc_gemm_set_threads(1);
    check_case(0, 1, 300, 260, 270, 1.0f, 0.0f, 0);
    kdc_gemm_set_threads(2);
    check_case(1, 0, 300, 260, 270, 0.75f, 1.0f, 1);
}
END_TEST

START_TEST(test_kernel_selection)
{
    kdc_error err;
    ck_assert_msg(kdc_gemm_init(&err) == KDC_OK, "%s", err.msg);
    const char *name = kdc_gemm_backend_name();
    ck_assert_msg(strncmp(name, "OpenBLAS ", 9) == 0, "backend name '%s'", name);
    kdc_cpu_features f = kdc_cpu_detect();
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (!f.avx512) {
        printf("test_kernel_selection: CPU without AVX-512, skipping the kernel check (%s)\n",
               name);
        return;
    }
    ck_assert_msg(strstr(name, "Prescott") == NULL,
                  "OpenBLAS runs the Prescott kernel on an AVX-512 CPU (%s)", name);
    if (!kdc_gemm_coretype_set()[0]) {
        /* we left OPENBLAS_CORETYPE alone: only because the user had set it */
        ck_assert_msg(user && *user, "OPENBLAS_CORETYPE neither set by us nor by the user");
    } else {
        ck_assert_str_eq(kdc_gemm_coretype_set(), "SkylakeX");
        ck_assert_str_eq(kdc_gemm_corename(), "SkylakeX");
    }
}
END_TEST

/* ---------------------------------------------------------- thread pool */

typedef struct cover_ctx {
    atomic_int *hits;
} cover_ctx;

static void cover_task(void *v, size_t b, size_t e)
{
    cover_ctx *c = v;
    for (size_t i = b; i < e; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

START_TEST(test_pool_covers_each_index_once)
{
    kdc_error err;
    kdc_pool *pool;
    ck_assert_int_eq(kdc_pool_create(3, &pool, &err), KDC_OK);
    ck_assert_int_eq(kdc_pool_threads(pool), 3);
    static const size_t ns[] = {0, 1, 2, 7, 100, 1000, 100003};
    for (int rep = 0; rep < 50; rep++)
        for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
            size_t n = ns[s];
            atomic_int *hits = calloc(n ? n : 1, sizeof *hits);
            cover_ctx c = {hits};
            kdc_pool_parallel_for(pool, n, rep % 3, cover_task, &c);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(atomic_load(&hits[i]) == 1, "n=%zu index %zu run %d times", n,
                              i, atomic_load(&hits[i]));
            free(hits);
        }
    kdc_pool_destroy(pool);
    /* NULL pool runs inline */
    atomic_int h[5] = {0};
    cover_ctx c = {h};
    kdc_pool_parallel_for(NULL, 5, 1, cover_task, &c);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(atomic_load(&h[i]), 1);
    ck_assert_int_eq(kdc_pool_create(100000, &pool, &err), KDC_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sgemm_all_transposes);
    tcase_add_test(tc, test_sgemm_threads);
    tcase_add_test(tc, test_kernel_selection);
    tcase_add_test(tc, test_pool_covers_each_index_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
