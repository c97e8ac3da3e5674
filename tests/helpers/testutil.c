/* testutil.c - fixture loading and comparison helpers for the Check suites. */
#include "tests/helpers/testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return (v && *v) ? v : dflt;
}

const char *kdc_test_fixture_root(void)
{
    return env_or("KDC_FIXTURES", "build/fixtures");
}

const char *kdc_test_repo_root(void)
{
    return env_or("KDC_ROOT", ".");
}

const char *kdc_test_bin_dir(void)
{
    return env_or("KDC_BIN", "build/bin");
}

static void *load_raw(const char *suite, const char *name, const char *ext, size_t elem,
                      size_t n_expect, size_t *n_out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s.%s", kdc_test_fixture_root(), suite, name, ext);
    FILE *f = fopen(path, "rb");
    if (!f)
        ck_abort_msg("fixture %s missing (make fixtures; needs Debian's python3-torch)", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (sz < 0 || (size_t)sz % elem)
        ck_abort_msg("fixture %s: size %ld not a multiple of %zu", path, sz, elem);
    size_t n = (size_t)sz / elem;
    if (n_expect && n != n_expect)
        ck_abort_msg("fixture %s: %zu elements, expected %zu", path, n, n_expect);
    void *p = malloc(sz ? (size_t)sz : 1);
    ck_assert_ptr_nonnull(p);
    if (sz && fread(p, 1, (size_t)sz, f) != (size_t)sz)
        ck_abort_msg("fixture %s: short read", path);
    fclose(f);
    if (n_out)
        *n_out = n;
    return p;
}

float *kdc_test_load_f32(const char *suite, const char *name, size_t n_expect, size_t *n_out)
{
    return load_raw(suite, name, "f32", 4, n_expect, n_out);
}

double *kdc_test_load_f64(const char *suite, const char *name, size_t n_expect, size_t *n_out)
{
    return load_raw(suite, name, "f64", 8, n_expect, n_out);
}

int64_t *kdc_test_load_i64(const char *suite, const char *name, size_t n_expect, size_t *n_out)
{
    return load_raw(suite, name, "i64", 8, n_expect, n_out);
}

int kdc_test_fixture_exists(const char *suite, const char *name)
{
    static const char *exts[] = {"f32", "f64", "i64"};
    char path[4096];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s/%s.%s", kdc_test_fixture_root(), suite, name,
                 exts[i]);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return 1;
        }
    }
    return 0;
}

double kdc_test_rel_err_f32(const float *got, const float *ref, size_t n)
{
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= maxdiff)) /* also catches NaN */
            maxdiff = isnan(d) ? INFINITY : d;
        if (fabs((double)ref[i]) > maxref)
            maxref = fabs((double)ref[i]);
    }
    return maxdiff / (maxref > 1e-30 ? maxref : 1e-30);
}

double kdc_test_rel_err_f64(const float *got, const double *ref, size_t n)
{
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= maxdiff))
            maxdiff = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > maxref)
            maxref = fabs(ref[i]);
    }
    return maxdiff / (maxref > 1e-30 ? maxref : 1e-30);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kdc_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = lo + (float)u * (hi - lo);
    }
}

int kdc_test_system(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1)
        return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

char *kdc_test_tmpdir(const char *tag)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/kdc-%s-XXXXXX", env_or("TMPDIR", "/tmp"), tag);
    char *p = mkdtemp(path);
    ck_assert_ptr_nonnull(p);
    return strdup(p);
}

void kdc_test_mpi_ranks_env(void)
{
    const char *old = getenv("ASAN_OPTIONS");
    char v[1024];
    snprintf(v, sizeof v, "%s%sdetect_leaks=0", old ? old : "", old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", v, 1);
}

void kdc_test_to_blocked(const float *x, int n, int c, int hw, int blk, float *out)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < hw; p++)
                out[(((size_t)i * (c / blk) + ch / blk) * hw + p) * blk + ch % blk] =
                    x[((size_t)i * c + ch) * hw + p];
}

void kdc_test_from_blocked(const float *x, int n, int c, int hw, int blk, float *out)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < hw; p++)
                out[((size_t)i * c + ch) * hw + p] =
                    x[(((size_t)i * (c / blk) + ch / blk) * hw + p) * blk + ch % blk];
}
