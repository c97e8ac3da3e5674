/* gemm.c - OpenBLAS sgemm loaded with dlopen after choosing its kernel (see gemm.h). */
#include "common/nn/gemm.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/cpu_features.h"

/* CBLAS enum values (cblas.h); declared here so that no OpenBLAS header or
 * library is needed at build time. blasint is int in Debian's LP64 build. */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta,
                               float *c, int ldc);
typedef void (*set_threads_fn)(int);
typedef char *(*get_str_fn)(void);

static struct {
    pthread_once_t once;
    kdc_status status;
    char msg[KDC_ERROR_MSG_MAX];
    void *handle;
    cblas_sgemm_fn sgemm;
    set_threads_fn set_threads;
    get_str_fn get_corename, get_config;
    char coretype_set[32];
    char name[128];
} g = {.once = PTHREAD_ONCE_INIT};

static void gemm_load(void)
{
    /* Must happen before the library's constructor runs, i.e. before dlopen. */
    /* An OPENBLAS_CORETYPE set by the user (even empty) is theirs to keep.
     * KDC_OPENBLAS_CORETYPE=auto leaves the choice to OpenBLAS's own detection
     * (for benchmarks); any other value of it is used instead of ours. */
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *knob = getenv("KDC_OPENBLAS_CORETYPE");
    if (!user && !(knob && !strcmp(knob, "auto"))) {
        kdc_cpu_features f = kdc_cpu_detect();
        const char *ct = knob && *knob ? knob : kdc_cpu_openblas_coretype(&f);
        if (ct && setenv("OPENBLAS_CORETYPE", ct, 0) == 0)
            snprintf(g.coretype_set, sizeof g.coretype_set, "%s", ct);
    }
    /* OpenBLAS's idle threads spin (sched_yield) for 2^28 cycles (~0.1 s) after
     * each GEMM, fighting kdc_pool's workers in the im2col/elementwise loops that
     * follow. 2^4 cycles makes them sleep at once: 20-30% faster conv layers on
     * small maps (bench_layers --set r18train, docs/PERFORMANCE.md). */
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
    const char *names[3] = {getenv("KDC_OPENBLAS_LIB"), "libopenblas.so.0", "libopenblas.so"};
    const char *why = "";
    for (int i = 0; i < 3 && !g.handle; i++) {
        if (!names[i] || !*names[i])
            continue;
        g.handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!g.handle)
            why = dlerror();
    }
    if (!g.handle) {
        g.status = KDC_EUNSUPPORTED;
        snprintf(g.msg, sizeof g.msg,
                 "cannot load OpenBLAS (libopenblas.so.0): %s; install libopenblas0-pthread "
                 "(scripts/setup.sh) or set KDC_OPENBLAS_LIB",
                 why ? why : "not found");
        snprintf(g.name, sizeof g.name, "portable loop (OpenBLAS not loaded)");
        return;
    }
    /* dlsym returns void*; converting through memcpy avoids the object-to-
     * function pointer cast that -Wpedantic dislikes. */
    struct {
        const char *sym;
        void *dst;
        size_t size;
    } syms[] = {{"cblas_sgemm", &g.sgemm, sizeof g.sgemm},
                {"openblas_set_num_threads", &g.set_threads, sizeof g.set_threads},
                {"openblas_get_corename", &g.get_corename, sizeof g.get_corename},
                {"openblas_get_config", &g.get_config, sizeof g.get_config}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(g.handle, syms[i].sym);
        if (!p) {
            g.status = KDC_EUNSUPPORTED;
            snprintf(g.msg, sizeof g.msg, "OpenBLAS library lacks symbol %s", syms[i].sym);
            snprintf(g.name, sizeof g.name, "portable loop (OpenBLAS not loaded)");
            g.sgemm = NULL;
            return;
        }
        memcpy(syms[i].dst, &p, syms[i].size);
    }
    g.status = KDC_OK;
    snprintf(g.name, sizeof g.name, "OpenBLAS %s", g.get_corename());
}

kdc_status kdc_gemm_init(kdc_error *err)
{
    pthread_once(&g.once, gemm_load);
    if (g.status != KDC_OK)
        return kdc_fail(err, g.status, "%s", g.msg);
    return KDC_OK;
}

/* Reference triple loop, only used when OpenBLAS is missing: correct, slow. */
static void sgemm_portable(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)av * bv;
            }
            float *cp = &c[(size_t)i * ldc + j];
            *cp = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *cp));
        }
}

void kdc_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    pthread_once(&g.once, gemm_load);
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) { /* empty sum: C = beta * C (BLAS leaves this case to the caller) */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    if (!g.sgemm) {
        sgemm_portable(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    g.sgemm(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS,
            trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b, ldb, beta, c,
            ldc);
}

void kdc_gemm_set_threads(int threads)
{
    pthread_once(&g.once, gemm_load);
    if (threads > 0 && g.set_threads)
        g.set_threads(threads);
}

const char *kdc_gemm_backend_name(void)
{
    pthread_once(&g.once, gemm_load);
    return g.name;
}

const char *kdc_gemm_corename(void)
{
    pthread_once(&g.once, gemm_load);
    return g.get_corename ? g.get_corename() : "";
}

const char *kdc_gemm_config(void)
{
    pthread_once(&g.once, gemm_load);
    return g.get_config ? g.get_config() : "";
}

const char *kdc_gemm_coretype_set(void)
{
    pthread_once(&g.once, gemm_load);
    return g.coretype_set;
}
