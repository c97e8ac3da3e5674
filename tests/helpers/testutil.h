/* testutil.h - shared helpers for the Check suites: loading the reference
 * fixtures that scripts/ref_*.py write with PyTorch, comparing arrays, making
 * deterministic random inputs.
 *
 * Fixture files are raw little-endian arrays, one per tensor:
 *   build/fixtures/<suite>/<name>.f32 | .f64 | .i64
 * written by scripts/ref/refutil.py. The loaders fail the current test (ck_abort)
 * when a file is missing or its size is not what the caller expects. */
#ifndef KDC_TESTUTIL_H
#define KDC_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Directory holding the fixtures (env KDC_FIXTURES, default build/fixtures). */
const char *kdc_test_fixture_root(void);
/* Repository root (env KDC_ROOT, default "."), for scripts/ and tests/data/. */
const char *kdc_test_repo_root(void);
/* Directory of the built tools (env KDC_BIN, default build/bin). */
const char *kdc_test_bin_dir(void);

/* Returns malloc'd data; n_expect == 0 accepts any size and stores it in *n_out. */
float *kdc_test_load_f32(const char *suite, const char *name, size_t n_expect, size_t *n_out);
double *kdc_test_load_f64(const char *suite, const char *name, size_t n_expect, size_t *n_out);
int64_t *kdc_test_load_i64(const char *suite, const char *name, size_t n_expect, size_t *n_out);
int kdc_test_fixture_exists(const char *suite, const char *name);

/* max_i |got_i - ref_i| / max(max_i |ref_i|, 1e-30): the error relative to the
 * tensor's scale. Elementwise relative error is meaningless near zeros. */
double kdc_test_rel_err_f32(const float *got, const float *ref, size_t n);
double kdc_test_rel_err_f64(const float *got, const double *ref, size_t n);

/* Fails the test with the tensor name and both errors when rel > tol. */
#define KDC_ASSERT_CLOSE_F32(name, got, ref, n, tol)                                          \
    do {                                                                                     \
        double kdc_r_ = kdc_test_rel_err_f32((got), (ref), (n));                             \
        ck_assert_msg(kdc_r_ <= (tol), "%s: relative error %.3g > %.3g", (name), kdc_r_,    \
                      (double)(tol));                                                        \
    } while (0)

/* splitmix64-based uniform floats in [lo, hi): reproducible test inputs. */
void kdc_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* NCHW (n x c x hw) <-> the blocked layout of block blk (common/nn/op_desc.h),
 * written independently of the library's code; c must be a multiple of blk. */
void kdc_test_to_blocked(const float *x, int n, int c, int hw, int blk, float *out);
void kdc_test_from_blocked(const float *x, int n, int c, int hw, int blk, float *out);

/* Runs a shell command, returns its exit status (-1 if it could not run). */
int kdc_test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mkdtemp under $TMPDIR; returns a malloc'd path. */
char *kdc_test_tmpdir(const char *tag);

/* For suites that start ranks under mpirun: the ranks of a sanitizer build run
 * without LeakSanitizer, because Open MPI 4.1 leaves allocations of its MCA
 * components (unloaded at MPI_Finalize, so unsuppressible by name) at exit.
 * The same trainer code runs leak-checked in the single-process suites. */
void kdc_test_mpi_ranks_env(void);

#endif
