/* test_cuda_libs.c - the run-time loading of cuDNN and cuBLAS
 * (common/cuda/cuda_libs.h), on a machine without a GPU.
 *
 * Loading happens once per process, so every case relies on Check's fork
 * mode (one process per test; the suite refuses to run under CK_FORK=no).
 * The cases need the real libraries only as files to point at: they are
 * taken from /usr/local/cuda/lib64 (where this build's CUDA toolkit put
 * them) and linked into temporary folders laid out like a user's override
 * or like PyTorch's wheels. Without them there, or in a build without CUDA,
 * the cases that need them say so and check what they can.
 *
 * What is checked:
 *   - before loading, every function is the stub (the library's "not
 *     initialised" status, version 0), so a call before the load is an error
 *     line, not a jump to NULL;
 *   - the search order: KDC_CUDNN_DIR / KDC_CUBLAS_DIR before
 *     KDC_CUDA_WHEEL_DIRS before /usr/local/cuda/lib64; DIR/lib/NAME (a wheel's
 *     package folder); a file that is not a library is skipped;
 *   - a library that lacks one of the listed functions fails the load with
 *     that function's name, and the failure is kept (not retried);
 *   - after loading, calls go to the real library with their arguments:
 *     cudnnGetConvolution2dForwardOutputDim (9 arguments, some on the stack)
 *     gives the closed-form output size, the versions match the headers'
 *     major versions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cuda/cuda_libs.h"
#include "tests/helpers/testutil.h"

#ifdef KDC_HAVE_CUDA
#include <cublas_v2.h>
#include <cudnn.h>

#define CUDA_LIB "/usr/local/cuda/lib64"

static int have_libs(void)
{
    return access(CUDA_LIB "/libcudnn.so.9", R_OK) == 0 &&
           access(CUDA_LIB "/libcublas.so.13", R_OK) == 0 &&
           access(CUDA_LIB "/libcublasLt.so.13", R_OK) == 0;
}

static void clear_env(void)
{
    unsetenv("KDC_CUDNN_DIR");
    unsetenv("KDC_CUBLAS_DIR");
    unsetenv("KDC_CUDA_WHEEL_DIRS");
}

static char *report(void)
{
    size_t n = kdc_cuda_libs_report(NULL, 0);
    char *buf = malloc(n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(kdc_cuda_libs_report(buf, n + 1), n);
    ck_assert_uint_eq(strlen(buf), n);
    return buf;
}

/* The report's line that starts with key (malloc'd, without the newline). */
static char *line(const char *rep, const char *key)
{
    size_t k = strlen(key);
    for (const char *p = rep; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len >= k && !strncmp(p, key, k)) {
            char *s = strndup(p, len);
            ck_assert_ptr_nonnull(s);
            return s;
        }
        p = e ? e + 1 : NULL;
    }
    ck_abort_msg("report has no line '%s':\n%s", key, rep);
    return NULL;
}

static void mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(buf, 0755);
            *s = '/';
        }
    mkdir(buf, 0755);
}

/* DIR/NAME -> TARGET */
static void link_lib(const char *dir, const char *name, const char *target)
{
    mkdirs(dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_msg(symlink(target, p) == 0, "symlink %s", p);
}

/* Calls through the trampolines with many arguments: the output size of a
 * 5x3 convolution, stride (2, 1), padding (2, 1), on 2x3x32x30. */
static void check_calls(void)
{
    cudnnTensorDescriptor_t x;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t c;
    ck_assert_int_eq(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(
        cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 3, 32, 30),
        CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnCreateFilterDescriptor(&w), CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 8, 3, 5, 3),
                     CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnCreateConvolutionDescriptor(&c), CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnSetConvolution2dDescriptor(c, 2, 1, 2, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT),
                     CUDNN_STATUS_SUCCESS);
    int n = 0, ch = 0, h = 0, wd = 0;
    ck_assert_int_eq(cudnnGetConvolution2dForwardOutputDim(c, x, w, &n, &ch, &h, &wd),
                     CUDNN_STATUS_SUCCESS);
    /* floor((32 + 2*2 - 5) / 2) + 1 = 16, floor((30 + 2*1 - 3) / 1) + 1 = 30 */
    ck_assert(n == 2 && ch == 8 && h == 16 && wd == 30);
    ck_assert_int_eq(cudnnDestroyConvolutionDescriptor(c), CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnDestroyFilterDescriptor(w), CUDNN_STATUS_SUCCESS);
    ck_assert_int_eq(cudnnDestroyTensorDescriptor(x), CUDNN_STATUS_SUCCESS);
    ck_assert_str_eq(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
    ck_assert_uint_eq(cudnnGetVersion() / 10000, CUDNN_MAJOR);
    int major = -1;
    ck_assert_int_eq(cublasGetProperty(MAJOR_VERSION, &major), CUBLAS_STATUS_SUCCESS);
    ck_assert_int_eq(major, CUBLAS_VER_MAJOR);
}

START_TEST(test_stubs_before_load)
{
    cudnnTensorDescriptor_t x = NULL;
    ck_assert_uint_eq(cudnnGetVersion(), 0);
    ck_assert_int_eq(cudnnCreateTensorDescriptor(&x), CUDNN_STATUS_NOT_INITIALIZED);
    ck_assert_ptr_null(x);
    cublasHandle_t h = NULL;
    ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_NOT_INITIALIZED);
    ck_assert_ptr_nonnull(strstr(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "not loaded"));
    ck_assert_ptr_nonnull(strstr(cublasGetStatusString(CUBLAS_STATUS_SUCCESS), "not loaded"));
    ck_assert_int_eq(cublasGemmEx(NULL, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, NULL, NULL, CUDA_R_32F,
                                  1, NULL, CUDA_R_32F, 1, NULL, NULL, CUDA_R_32F, 1,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_NOT_INITIALIZED);
}
END_TEST

START_TEST(test_default_search)
{
    clear_env();
    if (!have_libs()) {
        printf("test_cuda_libs: no cuDNN/cuBLAS in " CUDA_LIB "; default search not checked\n");
        return;
    }
    kdc_error err = {0};
    ck_assert_msg(kdc_cuda_libs_load(&err) == KDC_OK, "%s", err.msg);
    char *rep = report();
    char *l = line(rep, "cudnn: ");
    ck_assert_msg(strstr(l, "(found via " CUDA_LIB ";") != NULL, "%s", l);
    free(l);
    l = line(rep, "cublas: ");
    ck_assert_msg(strstr(l, CUDA_LIB "/libcublas.so.13 (found via " CUDA_LIB ";") != NULL, "%s", l);
    free(l);
    l = line(rep, "cublasLt: ");
    ck_assert_str_eq(l, "cublasLt: " CUDA_LIB "/libcublasLt.so.13");
    free(l);
    /* no GPU here: the report still says so in its own lines */
    l = line(rep, "gpus: ");
    free(l);
    free(rep);
    check_calls();
}
END_TEST

START_TEST(test_wheel_layout_and_override)
{
    clear_env();
    if (!have_libs()) {
        printf("test_cuda_libs: no cuDNN/cuBLAS in " CUDA_LIB "; wheel layout not checked\n");
        return;
    }
    char *tmp = kdc_test_tmpdir("cuda-libs");
    char cu13[4096], cudnn[4096], over[4096], wheels[12288];
    /* site-packages/nvidia/cu13/lib (cuBLAS) and nvidia/cudnn/lib (cuDNN) */
    snprintf(cu13, sizeof cu13, "%s/nvidia/cu13/lib", tmp);
    snprintf(cudnn, sizeof cudnn, "%s/nvidia/cudnn/lib", tmp);
    snprintf(over, sizeof over, "%s/override", tmp);
    link_lib(cu13, "libcublas.so.13", CUDA_LIB "/libcublas.so.13");
    link_lib(cu13, "libcublasLt.so.13", CUDA_LIB "/libcublasLt.so.13");
    link_lib(cudnn, "libcudnn.so.9", CUDA_LIB "/libcudnn.so.9");
    link_lib(over, "libcudnn.so.9", CUDA_LIB "/libcudnn.so.9");
    /* package folders (DIR/lib/NAME), a missing folder first */
    snprintf(wheels, sizeof wheels, "%s/missing:%s/nvidia/cudnn:%s/nvidia/cu13", tmp, tmp, tmp);
    setenv("KDC_CUDA_WHEEL_DIRS", wheels, 1);
    setenv("KDC_CUDNN_DIR", over, 1); /* the user's override wins over the wheels */
    kdc_error err = {0};
    ck_assert_msg(kdc_cuda_libs_load(&err) == KDC_OK, "%s", err.msg);
    char *rep = report(), want[16384];
    char *l = line(rep, "cublas: ");
    snprintf(want, sizeof want, "%s/libcublas.so.13 (found via KDC_CUDA_WHEEL_DIRS;", cu13);
    ck_assert_msg(strstr(l, want) != NULL, "%s lacks %s", l, want);
    free(l);
    l = line(rep, "cublasLt: ");
    snprintf(want, sizeof want, "cublasLt: %s/libcublasLt.so.13", cu13);
    ck_assert_str_eq(l, want);
    free(l);
    l = line(rep, "cudnn: ");
    snprintf(want, sizeof want, "%s/libcudnn.so.9 (found via KDC_CUDNN_DIR;", over);
    ck_assert_msg(strstr(l, want) != NULL, "%s lacks %s", l, want);
    free(l);
    free(rep);
    check_calls();
    kdc_test_system("rm -rf %s", tmp);
    free(tmp);
}
END_TEST

/* An override folder whose file is not a library is passed over. */
START_TEST(test_not_a_library)
{
    clear_env();
    char *tmp = kdc_test_tmpdir("cuda-libs");
    char path[4096];
    snprintf(path, sizeof path, "%s/libcudnn.so.9", tmp);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    setenv("KDC_CUDNN_DIR", tmp, 1);
    kdc_error err = {0};
    kdc_status st = kdc_cuda_libs_load(&err);
    char *rep = report();
    if (have_libs()) {
        ck_assert_msg(st == KDC_OK, "%s", err.msg);
        char *l = line(rep, "cudnn: ");
        ck_assert_msg(strstr(l, tmp) == NULL && strstr(l, "KDC_CUDNN_DIR") == NULL, "%s", l);
        free(l);
    } else {
        /* nowhere else either: the error names the bad file */
        ck_assert_int_eq(st, KDC_EDEVICE);
        ck_assert_msg(strstr(err.msg, path) != NULL, "%s", err.msg);
    }
    free(rep);
    kdc_test_system("rm -rf %s", tmp);
    free(tmp);
}
END_TEST

/* A library that loads but lacks a listed function: the load fails naming
 * it, every later call returns the same failure, and nothing is half-set. */
START_TEST(test_missing_function)
{
    clear_env();
    if (!have_libs()) {
        printf("test_cuda_libs: no cuBLAS in " CUDA_LIB "; missing function not checked\n");
        return;
    }
    char *tmp = kdc_test_tmpdir("cuda-libs");
    /* libcublas under cuDNN's name: a real library with no cudnn* function */
    link_lib(tmp, "libcudnn.so.9", CUDA_LIB "/libcublas.so.13");
    setenv("KDC_CUDNN_DIR", tmp, 1);
    kdc_error err = {0}, err2 = {0};
    ck_assert_int_eq(kdc_cuda_libs_load(&err), KDC_EDEVICE);
    ck_assert_msg(strstr(err.msg, "cuDNN") && strstr(err.msg, "has no function cudnnGetVersion"),
                  "%s", err.msg);
    unsetenv("KDC_CUDNN_DIR"); /* not retried, even where it would now succeed */
    ck_assert_int_eq(kdc_cuda_libs_load(&err2), KDC_EDEVICE);
    ck_assert_str_eq(err.msg, err2.msg);
    char *rep = report();
    char *l = line(rep, "libs-error: ");
    ck_assert_msg(strstr(l, "cudnnGetVersion") != NULL, "%s", l);
    free(l);
    free(rep);
    ck_assert_uint_eq(cudnnGetVersion(), 0); /* still the stub */
    kdc_test_system("rm -rf %s", tmp);
    free(tmp);
}
END_TEST

#else /* builds without CUDA: the stub of cuda_libs.h */

START_TEST(test_no_cuda)
{
    kdc_error err = {0};
    ck_assert_int_eq(kdc_cuda_libs_load(&err), KDC_EDEVICE);
    ck_assert_ptr_nonnull(strstr(err.msg, "no CUDA backend"));
    char buf[256];
    size_t n = kdc_cuda_libs_report(buf, sizeof buf);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_ptr_nonnull(strstr(buf, "cuda-runtime: none"));
}
END_TEST

#endif

int main(void)
{
    Suite *s = suite_create("cuda_libs");
    TCase *tc = tcase_create("load");
    tcase_set_timeout(tc, 60);
#ifdef KDC_HAVE_CUDA
    tcase_add_test(tc, test_stubs_before_load);
    tcase_add_test(tc, test_default_search);
    tcase_add_test(tc, test_wheel_layout_and_override);
    tcase_add_test(tc, test_not_a_library);
    tcase_add_test(tc, test_missing_function);
#else
    tcase_add_test(tc, test_no_cuda);
#endif
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    if (srunner_fork_status(sr) == CK_NOFORK) {
        fprintf(stderr, "test_cuda_libs: needs Check's fork mode (each case loads the "
                        "libraries once per process); unset CK_FORK\n");
        srunner_free(sr);
        return 1;
    }
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
