/* dnnl_load.c - dlopen of oneDNN after setting OMP_WAIT_POLICY (see dnnl_load.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/dnnl_load.h"

kdc_dnnl_api_t kdc_dnnl_api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static kdc_error load_err;

static void load(void)
{
    /* Before libgomp's constructor runs (it runs inside the dlopen below). */
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    const char *lib = getenv("KDC_DNNL_LIB");
    if (!lib || !*lib)
        lib = "libdnnl.so.2";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        kdc_fail(&load_err, KDC_EUNSUPPORTED,
                 "cannot load oneDNN (%s): %s; install libdnnl2 or set KDC_CONV=ref", lib,
                 why ? why : "unknown reason");
        return;
    }
    kdc_dnnl_api_t api;
    void *p;
#define KDC_DNNL_RESOLVE(f)                                                                   \
    if (!(p = dlsym(h, #f))) {                                                                \
        kdc_fail(&load_err, KDC_EUNSUPPORTED, "oneDNN (%s) has no symbol %s", lib, #f);       \
        return;                                                                               \
    }                                                                                         \
    memcpy(&api.f, &p, sizeof p);
    KDC_DNNL_FUNCS(KDC_DNNL_RESOLVE)
#undef KDC_DNNL_RESOLVE
    kdc_dnnl_api = api;
    load_err.code = KDC_OK;
}

kdc_status kdc_dnnl_load(kdc_error *err)
{
    pthread_once(&once, load);
    if (load_err.code == KDC_OK)
        return KDC_OK;
    return kdc_fail(err, load_err.code, "%s", load_err.msg);
}
