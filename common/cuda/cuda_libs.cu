/* cuda_libs.cu - the cuDNN / cuBLAS shim of cuda_libs.h: the list of every
 * function the code calls, one trampoline per function, the loader and the
 * report.
 *
 * Why trampolines and not -lcudnn -lcublas: linked libraries must be present
 * for a binary to start at all, and on the GPU machines we are lent cuDNN and
 * cuBLAS live in Python wheels whose folders the loader does not search. With
 * the shim every binary starts anywhere; --device cuda then loads the
 * libraries from wherever they are (cuda_libs.h lists the search order).
 *
 * How it works: for each name of the lists below this file defines the
 * symbol `name` itself, as a 1-instruction trampoline `jmp *kdc_p_name`, and
 * the pointer kdc_p_name, which starts at a stub that returns the library's
 * "not initialised" status and is overwritten with dlsym's answer by
 * kdc_cuda_libs_load. Callers see the headers' declarations and call the
 * functions by their names as before. The trampolines are hidden symbols, so
 * they never interpose on the dlopen'ed libraries' own.
 *
 * To call a new cuDNN or cuBLAS function: add one line F(name) to
 * KDC_CUDNN_FUNCS or KDC_CUBLAS_FUNCS. Use the name the header really
 * declares: cublas_v2.h maps e.g. cublasSgemv to cublasSgemv_v2, and the
 * linker error names the real symbol. A name that C++ overloads (cublas_api.h
 * adds inline overloads for a few *Ex functions) goes in as FO(name, return
 * type). A function called but not listed is an undefined reference at link
 * time, which scripts/gpu/check_cuda_shim.sh reports when libkdcuda.a is
 * built; a listed name missing from the library found at run time makes
 * kdc_cuda_libs_load fail with that name. cuBLASLt functions (cublasLt*) can
 * go in the cuBLAS list: dlsym on libcublas also searches libcublasLt. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cuda/cuda_libs.h"

#define KDC_STR_(x) #x
#define KDC_STR(x) KDC_STR_(x)

/* ---- the lists ---- */

#define KDC_CUDNN_FUNCS(F, FO)                                                                     \
    F(cudnnGetVersion)                                                                             \
    F(cudnnGetCudartVersion)                                                                       \
    F(cudnnGetErrorString)                                                                         \
    F(cudnnCreate)                                                                                 \
    F(cudnnDestroy)                                                                                \
    F(cudnnSetStream)                                                                              \
    F(cudnnCreateTensorDescriptor)                                                                 \
    F(cudnnDestroyTensorDescriptor)                                                                \
    F(cudnnSetTensor4dDescriptor)                                                                  \
    F(cudnnAddTensor)                                                                              \
    F(cudnnCreateFilterDescriptor)                                                                 \
    F(cudnnDestroyFilterDescriptor)                                                                \
    F(cudnnSetFilter4dDescriptor)                                                                  \
    F(cudnnCreateConvolutionDescriptor)                                                            \
    F(cudnnDestroyConvolutionDescriptor)                                                           \
    F(cudnnSetConvolution2dDescriptor)                                                             \
    F(cudnnSetConvolutionGroupCount)                                                               \
    F(cudnnSetConvolutionMathType)                                                                 \
    F(cudnnGetConvolution2dForwardOutputDim)                                                       \
    F(cudnnGetConvolutionForwardAlgorithm_v7)                                                      \
    F(cudnnGetConvolutionForwardWorkspaceSize)                                                     \
    F(cudnnConvolutionForward)                                                                     \
    F(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                                 \
    F(cudnnGetConvolutionBackwardDataWorkspaceSize)                                                \
    F(cudnnConvolutionBackwardData)                                                                \
    F(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                               \
    F(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                              \
    F(cudnnConvolutionBackwardFilter)                                                              \
    F(cudnnConvolutionBackwardBias)                                                                \
    F(cudnnBatchNormalizationForwardTraining)                                                      \
    F(cudnnBatchNormalizationForwardInference)                                                     \
    F(cudnnBatchNormalizationBackward)                                                             \
    F(cudnnCreatePoolingDescriptor)                                                                \
    F(cudnnDestroyPoolingDescriptor)                                                               \
    F(cudnnSetPooling2dDescriptor)                                                                 \
    F(cudnnGetPooling2dForwardOutputDim)                                                           \
    F(cudnnPoolingForward)                                                                         \
    F(cudnnPoolingBackward)                                                                        \
    F(cudnnCreateActivationDescriptor)                                                             \
    F(cudnnDestroyActivationDescriptor)                                                            \
    F(cudnnSetActivationDescriptor)                                                                \
    F(cudnnActivationForward)                                                                      \
    F(cudnnActivationBackward)

#define KDC_CUBLAS_FUNCS(F, FO)                                                                    \
    F(cublasGetProperty)                                                                           \
    F(cublasGetStatusString)                                                                       \
    F(cublasCreate_v2)                                                                             \
    F(cublasDestroy_v2)                                                                            \
    F(cublasSetStream_v2)                                                                          \
    F(cublasSgemv_v2)                                                                              \
    F(cublasSger_v2)                                                                               \
    F(cublasSaxpy_v2_64)                                                                           \
    FO(cublasGemmEx, cublasStatus_t)

/* ---- stubs: what a call before kdc_cuda_libs_load succeeded returns ---- */

template <typename R> struct kdc_unloaded;
template <> struct kdc_unloaded<cudnnStatus_t> {
    static cudnnStatus_t value()
    {
        return CUDNN_STATUS_NOT_INITIALIZED;
    }
};
template <> struct kdc_unloaded<cublasStatus_t> {
    static cublasStatus_t value()
    {
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
};
template <> struct kdc_unloaded<const char *> {
    static const char *value()
    {
        return "cuDNN/cuBLAS not loaded (kdc_cuda_libs_load)";
    }
};
template <> struct kdc_unloaded<size_t> {
    static size_t value()
    {
        return 0;
    }
};

template <typename F> struct kdc_stub;
template <typename R, typename... A> struct kdc_stub<R (*)(A...)> {
    static R call(A...)
    {
        return kdc_unloaded<R>::value();
    }
};

/* ---- pointers and trampolines ---- */

#if !defined(__x86_64__)
#error "cuda_libs.cu: the cuDNN/cuBLAS trampolines are written for x86-64 only"
#endif

#define KDC_TRAMPOLINE(name)                                                                       \
    asm(".pushsection .text\n"                                                                     \
        ".globl " #name "\n"                                                                       \
        ".hidden " #name "\n"                                                                      \
        ".type " #name ", @function\n"                                                             \
        ".p2align 4\n" #name ":\n"                                                                 \
        "\tjmp *kdc_p_" #name "(%rip)\n"                                                           \
        ".size " #name ", .-" #name "\n"                                                           \
        ".popsection\n");

/* The exact type of the header's declaration: a stub of the same signature,
 * and a compile error if the name is not declared (a typo in the list). */
#define KDC_PTR(name)                                                                              \
    extern "C" {                                                                                   \
    __attribute__((visibility("hidden"))) decltype(&::name) kdc_p_##name =                         \
        &kdc_stub<decltype(&::name)>::call;                                                        \
    }                                                                                              \
    KDC_TRAMPOLINE(name)
/* Overloaded in C++: only the return type matters to the stub. */
#define KDC_PTR_O(name, ret)                                                                       \
    extern "C" {                                                                                   \
    __attribute__((visibility("hidden")))                                                          \
    ret (*kdc_p_##name)(void) = &kdc_stub<ret (*)(void)>::call;                                    \
    }                                                                                              \
    KDC_TRAMPOLINE(name)

KDC_CUDNN_FUNCS(KDC_PTR, KDC_PTR_O)
KDC_CUBLAS_FUNCS(KDC_PTR, KDC_PTR_O)

typedef struct {
    const char *name;
    void *slot; /* the address of kdc_p_name */
} kdc_sym;

#define KDC_SYM(name) {#name, (void *)&kdc_p_##name},
#define KDC_SYM_O(name, ret) KDC_SYM(name)
static const kdc_sym cudnn_syms[] = {KDC_CUDNN_FUNCS(KDC_SYM, KDC_SYM_O)};
static const kdc_sym cublas_syms[] = {KDC_CUBLAS_FUNCS(KDC_SYM, KDC_SYM_O)};

/* ---- the loader ---- */

#define KDC_LIB_PATH_MAX 4096

typedef struct {
    const char *what;   /* "cuDNN" */
    const char *soname; /* "libcudnn.so.9" */
    const char *env;    /* the override's variable */
    void *handle;
    char path[KDC_LIB_PATH_MAX]; /* as the loader resolved it */
    char from[64];               /* which search step found it */
    char tried[2048];            /* what failed, for the error line */
} kdc_lib;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static kdc_error g_err;
static kdc_lib g_cublas = {
    "cuBLAS", "libcublas.so." KDC_STR(CUBLAS_VER_MAJOR), "KDC_CUBLAS_DIR", NULL, {0}, {0}, {0}};
static kdc_lib g_cudnn = {
    "cuDNN", "libcudnn.so." KDC_STR(CUDNN_MAJOR), "KDC_CUDNN_DIR", NULL, {0}, {0}, {0}};
static char g_cublaslt[KDC_LIB_PATH_MAX];

static void note(kdc_lib *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(kdc_lib *l, const char *fmt, ...)
{
    size_t n = strlen(l->tried);
    if (n + 3 >= sizeof l->tried)
        return;
    if (n)
        n += (size_t)snprintf(l->tried + n, sizeof l->tried - n, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->tried + n, sizeof l->tried - n, fmt, ap);
    va_end(ap);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void resolved_path(void *h, char *out, size_t n)
{
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
        snprintf(out, n, "%s", lm->l_name);
}

/* dlopen of DIR/soname, then DIR/lib/soname; 1 when loaded. */
static int try_dir(kdc_lib *l, const char *dir, const char *from)
{
    if (!dir || !*dir)
        return 0;
    static const char *subs[] = {"", "/lib"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char path[KDC_LIB_PATH_MAX];
        if (snprintf(path, sizeof path, "%s%s/%s", dir, subs[i], l->soname) >= (int)sizeof path)
            continue;
        if (!is_file(path))
            continue;
        if (l == &g_cublas) {
            /* Its libcublasLt first, from the same folder, so that the
             * DT_NEEDED entry of libcublas matches it by soname. */
            char lt[KDC_LIB_PATH_MAX];
            snprintf(lt, sizeof lt, "%s%s/libcublasLt.so.%d", dir, subs[i], CUBLAS_VER_MAJOR);
            if (is_file(lt)) {
                void *hl = dlopen(lt, RTLD_NOW | RTLD_LOCAL);
                if (!hl) {
                    const char *why = dlerror();
                    note(l, "%s: %s", lt, why ? why : "dlopen failed");
                    continue;
                }
                resolved_path(hl, g_cublaslt, sizeof g_cublaslt);
            }
        }
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            note(l, "%s: %s", path, why ? why : "dlopen failed");
            continue;
        }
        l->handle = h;
        snprintf(l->path, sizeof l->path, "%s", path);
        resolved_path(h, l->path, sizeof l->path);
        snprintf(l->from, sizeof l->from, "%s", from);
        return 1;
    }
    if (strcmp(dir, from))
        note(l, "not in %s (%s)", dir, from);
    else
        note(l, "not in %s", dir);
    return 0;
}

static int find_lib(kdc_lib *l)
{
    const char *over = getenv(l->env);
    if (over && *over && try_dir(l, over, l->env))
        return 1;
    const char *wheels = getenv("KDC_CUDA_WHEEL_DIRS");
    if (wheels && *wheels) {
        char buf[8192];
        snprintf(buf, sizeof buf, "%s", wheels);
        char *save = NULL;
        for (char *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save))
            if (try_dir(l, d, "KDC_CUDA_WHEEL_DIRS"))
                return 1;
    }
    if (try_dir(l, "/usr/local/cuda/lib64", "/usr/local/cuda/lib64"))
        return 1;
    void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        note(l, "loader's path: %s", why ? why : "not found");
        return 0;
    }
    l->handle = h;
    snprintf(l->path, sizeof l->path, "%s", l->soname);
    resolved_path(h, l->path, sizeof l->path);
    snprintf(l->from, sizeof l->from, "loader's path");
    if (l == &g_cublas) {
        void *hl = dlopen("libcublasLt.so." KDC_STR(CUBLAS_VER_MAJOR), RTLD_NOW | RTLD_NOLOAD);
        if (hl) {
            resolved_path(hl, g_cublaslt, sizeof g_cublaslt);
            dlclose(hl);
        }
    }
    return 1;
}

static int resolve(kdc_lib *l, const kdc_sym *syms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void *p = dlsym(l->handle, syms[i].name);
        if (!p) {
            kdc_fail(&g_err, KDC_EDEVICE, "%s (%s) has no function %s (this build's headers: %s)",
                     l->what, l->path, syms[i].name,
                     l == &g_cudnn ? "cuDNN " KDC_STR(CUDNN_MAJOR) "." KDC_STR(
                                         CUDNN_MINOR) "." KDC_STR(CUDNN_PATCHLEVEL)
                                   : "cuBLAS " KDC_STR(CUBLAS_VER_MAJOR) "." KDC_STR(
                                         CUBLAS_VER_MINOR) "." KDC_STR(CUBLAS_VER_PATCH));
            return 0;
        }
        memcpy(syms[i].slot, &p, sizeof p);
    }
    return 1;
}

static void load_once(void)
{
    g_err.code = KDC_EDEVICE;
    if (!find_lib(&g_cublas)) {
        kdc_fail(&g_err, KDC_EDEVICE,
                 "cannot load cuBLAS (%s): %s; set KDC_CUBLAS_DIR to its folder "
                 "(docs/GPU.md)",
                 g_cublas.soname, g_cublas.tried);
        return;
    }
    if (!find_lib(&g_cudnn)) {
        kdc_fail(&g_err, KDC_EDEVICE,
                 "cannot load cuDNN (%s): %s; set KDC_CUDNN_DIR to its folder (docs/GPU.md)",
                 g_cudnn.soname, g_cudnn.tried);
        return;
    }
    if (!resolve(&g_cublas, cublas_syms, sizeof cublas_syms / sizeof cublas_syms[0]) ||
        !resolve(&g_cudnn, cudnn_syms, sizeof cudnn_syms / sizeof cudnn_syms[0]))
        return;
    size_t v = cudnnGetVersion();
    if (v / 10000 != CUDNN_MAJOR) {
        kdc_fail(&g_err, KDC_EDEVICE, "cuDNN (%s) is version %zu, this build needs %d.x",
                 g_cudnn.path, v, CUDNN_MAJOR);
        return;
    }
    g_err.code = KDC_OK;
}

extern "C" kdc_status kdc_cuda_libs_load(kdc_error *err)
{
    pthread_once(&g_once, load_once);
    if (g_err.code == KDC_OK)
        return KDC_OK;
    return kdc_fail(err, g_err.code, "%s", g_err.msg);
}

/* ---- the report ---- */

typedef struct {
    char *buf;
    size_t size, len;
} kdc_out;

static void out(kdc_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(kdc_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = o->len < o->size ? o->buf + o->len : NULL;
    size_t room = o->len < o->size ? o->size - o->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void version_line(kdc_out *o, const char *key, int v)
{
    /* CUDA's encoding: 1000 * major + 10 * minor */
    out(o, "%s: %d.%d (%d)\n", key, v / 1000, (v % 1000) / 10, v);
}

static int list_cuda_objects(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const char *p = info->dlpi_name;
    if (!p || !*p)
        return 0;
    const char *base = strrchr(p, '/');
    base = base ? base + 1 : p;
    if (!strncmp(base, "libcuda.", 8) || !strncmp(base, "libcudnn", 8) ||
        !strncmp(base, "libcublas", 9) || !strncmp(base, "libnvrtc", 8) ||
        !strncmp(base, "libnvidia", 9) || !strncmp(base, "libnvJitLink", 12))
        out((kdc_out *)data, "loaded: %s\n", p);
    return 0;
}

extern "C" size_t kdc_cuda_libs_report(char *buf, size_t size)
{
    kdc_out o = {buf, size, 0};
    if (size)
        buf[0] = '\0';
    int rt = 0, drv = 0;
    if (cudaRuntimeGetVersion(&rt) == cudaSuccess)
        version_line(&o, "cuda-runtime", rt);
    out(&o, "cuda-runtime-built: %d.%d (cudart_static)\n", CUDART_VERSION / 1000,
        (CUDART_VERSION % 1000) / 10);
    cudaError_t e = cudaDriverGetVersion(&drv);
    if (e == cudaSuccess && drv > 0)
        version_line(&o, "cuda-driver", drv);
    else
        out(&o, "cuda-driver: none (%s)\n",
            e == cudaSuccess ? "no libcuda.so.1 found" : cudaGetErrorString(e));
    int count = 0;
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        out(&o, "gpus: 0 (%s)\n", cudaGetErrorString(e));
    } else {
        out(&o, "gpus: %d\n", count);
        for (int i = 0; i < count; i++) {
            cudaDeviceProp p;
            if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
                (void)cudaGetLastError();
                continue;
            }
            out(&o, "gpu%d: %s, compute %d.%d, %d SMs, %zu MiB\n", i, p.name, p.major, p.minor,
                p.multiProcessorCount, (size_t)(p.totalGlobalMem >> 20));
        }
    }
    kdc_error err;
    kdc_status st = kdc_cuda_libs_load(&err);
    if (g_cublas.handle) {
        int ma = 0, mi = 0, pa = 0;
        if (st == KDC_OK) {
            cublasGetProperty(MAJOR_VERSION, &ma);
            cublasGetProperty(MINOR_VERSION, &mi);
            cublasGetProperty(PATCH_LEVEL, &pa);
        }
        out(&o, "cublas: %d.%d.%d %s (found via %s; built with %d.%d.%d)\n", ma, mi, pa,
            g_cublas.path, g_cublas.from, CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR, CUBLAS_VER_PATCH);
        if (g_cublaslt[0])
            out(&o, "cublasLt: %s\n", g_cublaslt);
    } else {
        out(&o, "cublas: not loaded (%s)\n", g_cublas.tried);
    }
    if (g_cudnn.handle) {
        size_t v = st == KDC_OK ? cudnnGetVersion() : 0;
        size_t crt = st == KDC_OK ? cudnnGetCudartVersion() : 0;
        out(&o, "cudnn: %zu.%zu.%zu %s (found via %s; built with %d.%d.%d; its cudart %zu)\n",
            v / 10000, (v % 10000) / 100, v % 100, g_cudnn.path, g_cudnn.from, CUDNN_MAJOR,
            CUDNN_MINOR, CUDNN_PATCHLEVEL, crt);
    } else if (g_cublas.handle) {
        out(&o, "cudnn: not loaded (%s)\n", g_cudnn.tried);
    } else {
        out(&o, "cudnn: not tried (cuBLAS is missing)\n");
    }
    if (st != KDC_OK)
        out(&o, "libs-error: %s\n", err.msg);
    dl_iterate_phdr(list_cuda_objects, &o);
    return o.len;
}
