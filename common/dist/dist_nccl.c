/* dist_nccl.c - libnccl through dlopen; the unique id through dist.h. */
#include "common/dist/dist_nccl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* nccl.h's types and constants (stable across NCCL 2.x) */
typedef struct {
    char internal[128]; /* NCCL_UNIQUE_ID_BYTES */
} nccl_unique_id;
typedef void *nccl_comm;
typedef int nccl_result; /* ncclSuccess = 0 */
enum { NCCL_FLOAT32 = 7, NCCL_SUM = 0, NCCL_AVG = 4 };

typedef struct nccl_api {
    nccl_result (*get_version)(int *);
    nccl_result (*get_unique_id)(nccl_unique_id *);
    nccl_result (*comm_init_rank)(nccl_comm *, int, nccl_unique_id, int);
    nccl_result (*comm_destroy)(nccl_comm);
    nccl_result (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm, void *);
    const char *(*get_error_string)(nccl_result);
} nccl_api;

struct kdc_nccl {
    nccl_comm comm;
    int rank, size;
};

static nccl_api g_api;
static int g_loaded; /* 1 loaded, -1 failed */
static char g_why[512];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void *open_lib(void)
{
    char path[1024];
    const char *env = getenv("KDC_NCCL_LIB");
    if (env && *env) {
        void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            snprintf(g_why, sizeof g_why, "KDC_NCCL_LIB=%s: %s", env, dlerror());
        return h;
    }
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h)
        return h;
    snprintf(g_why, sizeof g_why, "libnccl.so.2: %s", dlerror());
    const char *home = getenv("CUDA_HOME");
    const char *dirs[] = {home, "/usr/local/cuda"};
    const char *subs[] = {"lib64", "lib", "targets/x86_64-linux/lib"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        for (size_t j = 0; dirs[i] && j < sizeof subs / sizeof *subs; j++) {
            snprintf(path, sizeof path, "%s/%s/libnccl.so.2", dirs[i], subs[j]);
            if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
                return h;
        }
    return NULL;
}

static void load_once(void)
{
    void *h = open_lib();
    if (!h) {
        g_loaded = -1;
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {{(void **)&g_api.get_version, "ncclGetVersion"},
                {(void **)&g_api.get_unique_id, "ncclGetUniqueId"},
                {(void **)&g_api.comm_init_rank, "ncclCommInitRank"},
                {(void **)&g_api.comm_destroy, "ncclCommDestroy"},
                {(void **)&g_api.all_reduce, "ncclAllReduce"},
                {(void **)&g_api.get_error_string, "ncclGetErrorString"}};
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            snprintf(g_why, sizeof g_why, "libnccl has no %s", syms[i].name);
            g_loaded = -1;
            return; /* the handle stays open: harmless, and loading is tried once */
        }
    g_loaded = 1;
}

int kdc_nccl_available(int *version, char *why, size_t why_len)
{
    pthread_once(&g_once, load_once);
    if (g_loaded != 1) {
        if (why && why_len)
            snprintf(why, why_len, "%s", g_why);
        return 0;
    }
    int v = 0;
    if (version && g_api.get_version(&v) == 0)
        *version = v;
    return 1;
}

static kdc_status nccl_fail(nccl_result r, const char *what, kdc_error *err)
{
    return kdc_fail(err, KDC_EDEVICE, "NCCL %s: %s (%d)", what, g_api.get_error_string(r), (int)r);
}

kdc_status kdc_nccl_init(kdc_dist *d, kdc_nccl **out, kdc_error *err)
{
    *out = NULL;
    char why[512];
    kdc_status st = kdc_nccl_available(NULL, why, sizeof why)
                        ? KDC_OK
                        : kdc_fail(err, KDC_EUNSUPPORTED, "NCCL is not available: %s", why);
    /* every rank learns whether one of them cannot load NCCL before any joins */
    if ((st = kdc_dist_agree(d, st, "loading NCCL", err)))
        return st;
    nccl_unique_id id;
    memset(&id, 0, sizeof id);
    nccl_result r = 0;
    if (kdc_dist_rank(d) == 0 && (r = g_api.get_unique_id(&id)))
        st = nccl_fail(r, "ncclGetUniqueId", err);
    if ((st = kdc_dist_agree(d, st, "making the NCCL id", err)) ||
        (st = kdc_dist_bcast(d, &id, sizeof id, 0, err)))
        return st;
    kdc_nccl *c = calloc(1, sizeof *c);
    if (!c)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    c->rank = kdc_dist_rank(d);
    c->size = kdc_dist_size(d);
    if ((r = g_api.comm_init_rank(&c->comm, c->size, id, c->rank))) {
        free(c);
        return nccl_fail(r, "ncclCommInitRank", err);
    }
    *out = c;
    return KDC_OK;
}

void kdc_nccl_free(kdc_nccl *c)
{
    if (!c)
        return;
    g_api.comm_destroy(c->comm);
    free(c);
}

int kdc_nccl_size(const kdc_nccl *c)
{
    return c ? c->size : 1;
}

static kdc_status all_reduce(kdc_nccl *c, float *dev, size_t n, int op, void *stream,
                             kdc_error *err)
{
    if (n == 0)
        return KDC_OK;
    nccl_result r = g_api.all_reduce(dev, dev, n, NCCL_FLOAT32, op, c->comm, stream);
    return r ? nccl_fail(r, "ncclAllReduce", err) : KDC_OK;
}

kdc_status kdc_nccl_sum_f32(kdc_nccl *c, float *dev, size_t n, void *stream, kdc_error *err)
{
    return all_reduce(c, dev, n, NCCL_SUM, stream, err);
}

kdc_status kdc_nccl_mean_f32(kdc_nccl *c, float *dev, size_t n, void *stream, kdc_error *err)
{
    return all_reduce(c, dev, n, NCCL_AVG, stream, err);
}
