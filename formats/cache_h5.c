/* cache_h5.c - HDF5 helpers for the cache: attributes, filtered chunked
 * datasets, row I/O, error messages. */
#include "formats/cache_h5.h"
#include "formats/cache_rawcheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/lz4_filter.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
    /* No exit-time handlers: after a failure (a corrupt file whose ids could
     * not all be closed, a full disk) libhdf5's atexit teardown would flush or
     * free objects in a bad state and could crash a process that has already
     * reported its one-line error. Every file is closed explicitly. */
    H5dont_atexit();
    H5open();
    /* Library code does not print: HDF5's automatic stack dump goes off and
     * cache_h5_fail() folds the innermost message into our error line. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* H5Eset_auto2 is per thread in a thread-safe HDF5 (Debian's is): every
 * thread that calls HDF5 through us turns the printing off once. */
static __thread int thread_quiet;

static void quiet_this_thread(void)
{
    if (!thread_quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        thread_quiet = 1;
    }
}

kdc_status cache_h5_init(kdc_error *err)
{
    pthread_once(&init_once, do_init);
    quiet_this_thread();
    return cache_lz4_register(err);
}

/* What HDF5's error stack says about a failure, condensed: its innermost
 * message, whether a checksum or a filter failed, and the errno of a failed
 * system call with its file. */
typedef struct h5_cause {
    char innermost[256];
    char filename[512];
    int checksum, filter, sys_errno, writing;
} h5_cause;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_cause *c = data;
    const char *d = e->desc ? e->desc : "";
    if (n == 0)
        snprintf(c->innermost, sizeof c->innermost, "%s", d);
    if (strstr(d, "checksum") || strstr(d, "Fletcher32"))
        c->checksum = 1;
    if (strstr(d, "filter"))
        c->filter = 1;
    const char *en = strstr(d, "errno = ");
    if (en && !c->sys_errno) {
        c->sys_errno = atoi(en + 8);
        c->writing = strstr(d, "write") != NULL;
        const char *fn = strstr(d, "filename = '");
        if (fn) {
            fn += 12;
            size_t k = strcspn(fn, "'");
            if (k >= sizeof c->filename)
                k = sizeof c->filename - 1;
            memcpy(c->filename, fn, k);
            c->filename[k] = '\0';
        }
    }
    return 0;
}

/* A cause saved at the failing call (cache_h5_save_error), before clean-up
 * calls, which clear HDF5's stack, run. One per thread. */
static __thread h5_cause saved;
static __thread int saved_valid;

/* Walks and clears the default error stack (or takes the saved cause). */
static void h5_cause_get(h5_cause *c)
{
    if (saved_valid) {
        *c = saved;
        saved_valid = 0;
        H5Eclear2(H5E_DEFAULT);
        return;
    }
    memset(c, 0, sizeof *c);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, c);
    H5Eclear2(H5E_DEFAULT);
}

void cache_h5_save_error(void)
{
    saved_valid = 0;
    h5_cause_get(&saved);
    saved_valid = 1;
}

static const char *errno_words(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return "disk full";
    case EFBIG:
        return "file size limit reached";
    default:
        return strerror(e);
    }
}

/* Formats what failed: a system call wins ("disk full writing F (context)"),
 * else the context and HDF5's innermost message. */
static void cause_message(kdc_error *err, const h5_cause *c, const char *context)
{
    if (c->sys_errno) {
        snprintf(err->msg, sizeof err->msg, "%s %s %s (%s)", errno_words(c->sys_errno),
                 c->writing ? "writing" : "reading", c->filename[0] ? c->filename : "the file",
                 context);
    } else if (c->innermost[0]) {
        snprintf(err->msg, sizeof err->msg, "%s (hdf5: %s)", context, c->innermost);
    } else {
        snprintf(err->msg, sizeof err->msg, "%s", context);
    }
}

kdc_status cache_h5_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
{
    h5_cause c;
    h5_cause_get(&c);
    if (!err)
        return code;
    char context[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    err->code = c.sys_errno && code == KDC_EFORMAT ? KDC_EIO : code;
    cause_message(err, &c, context);
    return err->code;
}

hid_t cache_h5_fapl_for_writing(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return fapl;
    H5AC_cache_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (H5Pget_mdc_config(fapl, &cfg) >= 0) {
        /* Dirty metadata stays in memory until H5Fflush, which the writer calls
         * after every chunk: the file on disk is the last flushed state. */
        cfg.evictions_enabled = 0;
        cfg.incr_mode = H5C_incr__off;
        cfg.flash_incr_mode = H5C_flash_incr__off;
        cfg.decr_mode = H5C_decr__off;
        H5Pset_mdc_config(fapl, &cfg);
    }
    return fapl;
}

static hid_t f16_type = -1;

static void make_f16(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10); /* sign bit, exponent at 10 (5 bits), mantissa 10 bits */
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    f16_type = t;
}

hid_t cache_h5_f16(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_f16);
    return f16_type;
}

hid_t cache_h5_fixed_str(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n ? n : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

hid_t cache_h5_vlen_str(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int cache_h5_exists(hid_t file, const char *path)
{
    /* H5Lexists needs every intermediate link to exist: check each prefix. */
    char buf[256];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            htri_t e = H5Lexists(file, buf, H5P_DEFAULT);
            buf[i] = c;
            if (e <= 0)
                return 0;
        }
    }
    return 1;
}

/* ---- attributes ---- */

static kdc_status put_attr(hid_t file, const char *name, hid_t ftype, hid_t mtype, int n,
                           const void *val, kdc_error *err)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    if (H5Aexists(file, name) > 0)
        H5Adelete(file, name);
    hid_t a = H5Acreate2(file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, val);
    if (rc < 0)
        cache_h5_save_error();
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    if (rc < 0)
        return cache_h5_fail(err, KDC_EIO, "writing attribute %s", name);
    return KDC_OK;
}

static kdc_status put_i64(hid_t f, const char *name, int64_t v, kdc_error *err)
{
    return put_attr(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v, err);
}

/* v2: a fixed-length string of the string's bytes (width bytes when width
 * > 0, NUL-padded), never a variable-length one (docs/CACHE_FORMAT.md). */
static kdc_status put_str_w(hid_t f, const char *name, const char *s, size_t width,
                            kdc_error *err)
{
    char buf[CACHE_STR_MAX];
    size_t n = strnlen(s, CACHE_STR_MAX - 1);
    size_t w = width ? width : (n ? n : 1);
    memset(buf, 0, sizeof buf);
    memcpy(buf, s, n < w ? n : w);
    hid_t t = cache_h5_fixed_str(w);
    kdc_status st = put_attr(f, name, t, t, 0, buf, err);
    H5Tclose(t);
    return st;
}

static kdc_status put_str(hid_t f, const char *name, const char *s, kdc_error *err)
{
    return put_str_w(f, name, s, 0, err);
}

static kdc_status put_f64(hid_t f, const char *name, const double *v, int n, kdc_error *err)
{
    return put_attr(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, v, err);
}

/* Opens attribute name, checks its class and element count (0 = scalar or a
 * 1-element array). */
static hid_t open_attr(hid_t f, const char *name, H5T_class_t cls, int n, kdc_error *err)
{
    if (H5Aexists(f, name) <= 0) {
        kdc_fail(err, KDC_EFORMAT, "root attribute %s is missing", name);
        return -1;
    }
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) {
        cache_h5_fail(err, KDC_EFORMAT, "opening attribute %s", name);
        return -1;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(t);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Tclose(t);
    H5Sclose(sp);
    int want = n == 0 ? 1 : n;
    if (c != cls || np != want) {
        H5Aclose(a);
        kdc_fail(err, KDC_EFORMAT, "attribute %s has the wrong type or %lld elements (want %d)",
                 name, (long long)np, want);
        return -1;
    }
    return a;
}

static kdc_status get_num(hid_t f, const char *name, H5T_class_t cls, hid_t mtype, int n,
                          void *out, kdc_error *err)
{
    hid_t a = open_attr(f, name, cls, n, err);
    if (a < 0)
        return err ? err->code : KDC_EFORMAT;
    herr_t rc = H5Aread(a, mtype, out);
    H5Aclose(a);
    if (rc < 0)
        return cache_h5_fail(err, KDC_EFORMAT, "reading attribute %s", name);
    return KDC_OK;
}

static kdc_status get_i64(hid_t f, const char *name, int64_t *v, kdc_error *err)
{
    return get_num(f, name, H5T_INTEGER, H5T_NATIVE_INT64, 0, v, err);
}

static kdc_status get_f64(hid_t f, const char *name, double *v, int n, kdc_error *err)
{
    /* h5py writes a list of ints as an integer array: accept both. */
    if (H5Aexists(f, name) > 0) {
        hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = H5Aget_type(a);
        H5T_class_t c = H5Tget_class(t);
        H5Tclose(t);
        H5Aclose(a);
        if (c == H5T_INTEGER)
            return get_num(f, name, H5T_INTEGER, H5T_NATIVE_DOUBLE, n, v, err);
    }
    return get_num(f, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, n, v, err);
}

/* Reads a string attribute into out[CACHE_STR_MAX]: fixed length, or (v1
 * files only, allow_vlen) variable length. A v2 reader never asks libhdf5 to
 * read a variable-length string: those live in the global heap, whose reader
 * crashes on corrupt bytes. */
static kdc_status get_str(hid_t f, const char *name, char *out, int allow_vlen, kdc_error *err)
{
    hid_t a = open_attr(f, name, H5T_STRING, 0, err);
    if (a < 0)
        return err ? err->code : KDC_EFORMAT;
    hid_t ft = H5Aget_type(a);
    kdc_status st = KDC_OK;
    htri_t is_vlen = H5Tis_variable_str(ft);
    if (is_vlen < 0 || (is_vlen > 0 && !allow_vlen)) {
        st = kdc_fail(err, KDC_EFORMAT,
                      "attribute %s has a variable-length string type (not allowed in format "
                      "v2)",
                      name);
    } else if (is_vlen > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s) {
            st = cache_h5_fail(err, KDC_EFORMAT, "reading attribute %s", name);
        } else {
            if (strlen(s) >= CACHE_STR_MAX)
                st = kdc_fail(err, KDC_EFORMAT, "attribute %s longer than %d bytes", name,
                              CACHE_STR_MAX - 1);
            else
                strcpy(out, s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        if (n == 0 || n >= CACHE_STR_MAX) {
            st = kdc_fail(err, KDC_EFORMAT, "attribute %s: fixed string of %zu bytes", name, n);
        } else {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no cset into another */
            char buf[CACHE_STR_MAX];
            memset(buf, 0, sizeof buf);
            if (H5Aread(a, mt, buf) < 0)
                st = cache_h5_fail(err, KDC_EFORMAT, "reading attribute %s", name);
            else
                memcpy(out, buf, n + 1);
            out[n] = '\0';
            H5Tclose(mt);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return st;
}

kdc_status cache_h5_write_header(hid_t f, const cache_header *h, kdc_error *err)
{
    char storage[64];
    snprintf(storage, sizeof storage, "%s", cache_logit_storage_name(h->logit_storage));
    kdc_status st;
#define TRY(x)                                                                                \
    if ((st = (x)) != KDC_OK)                                                                 \
        return st;
    TRY(put_i64(f, "kdcache_version", h->version, err));
    TRY(put_str(f, "teacher_arch", h->teacher_arch, err));
    TRY(put_str(f, "teacher_weights_sha256", h->teacher_weights_sha256, err));
    TRY(put_i64(f, "num_images", h->num_images, err));
    TRY(put_i64(f, "views_per_image", h->views_per_image, err));
    TRY(put_i64(f, "num_classes", h->num_classes, err));
    TRY(put_i64(f, "feature_dim", h->feature_dim, err));
    TRY(put_str(f, "view_policy", h->view_policy, err));
    TRY(put_i64(f, "image_size", h->image_size, err));
    TRY(put_i64(f, "resize_size", h->resize_size, err));
    TRY(put_f64(f, "mean", h->mean, 3, err));
    TRY(put_f64(f, "std", h->std, 3, err));
    TRY(put_f64(f, "scale_range", h->scale_range, 2, err));
    TRY(put_f64(f, "ratio_range", h->ratio_range, 2, err));
    TRY(put_i64(f, "pad", h->pad, err));
    TRY(put_attr(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &h->seed, err));
    TRY(put_str(f, "logit_storage", storage, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK)
        TRY(put_i64(f, "topk", h->topk, err));
    TRY(put_str_w(f, "dataset_fingerprint", h->dataset_fingerprint, 64, err));
    TRY(put_str(f, "created_by", h->created_by, err));
    TRY(put_i64(f, "chunk_images", h->chunk_images, err));
    TRY(put_i64(f, "shard_index", h->shard_index, err));
    TRY(put_i64(f, "shard_count", h->shard_count, err));
    TRY(put_i64(f, "complete", h->complete, err));
    return KDC_OK;
}

kdc_status cache_h5_set_complete(hid_t file, int64_t complete, kdc_error *err)
{
    /* Overwrite in place: same type and size, so no object-header change. */
    hid_t a = H5Aopen(file, "complete", H5P_DEFAULT);
    if (a < 0)
        return cache_h5_fail(err, KDC_EIO, "opening attribute complete");
    herr_t rc = H5Awrite(a, H5T_NATIVE_INT64, &complete);
    H5Aclose(a);
    if (rc < 0)
        return cache_h5_fail(err, KDC_EIO, "writing attribute complete");
    return KDC_OK;
}

kdc_status cache_h5_set_fingerprint(hid_t file, const char *hex64, kdc_error *err)
{
    /* In place: the attribute was created 64 bytes wide. */
    hid_t a = H5Aopen(file, "dataset_fingerprint", H5P_DEFAULT);
    if (a < 0)
        return cache_h5_fail(err, KDC_EIO, "opening attribute dataset_fingerprint");
    char buf[64];
    memset(buf, 0, sizeof buf);
    memcpy(buf, hex64, strnlen(hex64, 64));
    hid_t t = cache_h5_fixed_str(64);
    herr_t rc = H5Awrite(a, t, buf);
    H5Tclose(t);
    H5Aclose(a);
    if (rc < 0)
        return cache_h5_fail(err, KDC_EIO, "writing attribute dataset_fingerprint");
    return KDC_OK;
}

kdc_status cache_h5_read_header(hid_t f, cache_header *h, kdc_error *err)
{
    memset(h, 0, sizeof *h);
    kdc_status st;
    char storage[CACHE_STR_MAX];
    /* The version first: a future file may have other attributes. */
    TRY(get_i64(f, "kdcache_version", &h->version, err));
    if (h->version != CACHE_VERSION && h->version != CACHE_VERSION_V1)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "kdcache_version %lld is not supported (this build reads versions %d "
                        "and %d)",
                        (long long)h->version, CACHE_VERSION_V1, CACHE_VERSION);
    int v1 = h->version == CACHE_VERSION_V1;
    TRY(get_str(f, "teacher_arch", h->teacher_arch, v1, err));
    TRY(get_str(f, "teacher_weights_sha256", h->teacher_weights_sha256, v1, err));
    TRY(get_i64(f, "num_images", &h->num_images, err));
    TRY(get_i64(f, "views_per_image", &h->views_per_image, err));
    TRY(get_i64(f, "num_classes", &h->num_classes, err));
    TRY(get_i64(f, "feature_dim", &h->feature_dim, err));
    TRY(get_str(f, "view_policy", h->view_policy, v1, err));
    TRY(get_i64(f, "image_size", &h->image_size, err));
    TRY(get_i64(f, "resize_size", &h->resize_size, err));
    TRY(get_f64(f, "mean", h->mean, 3, err));
    TRY(get_f64(f, "std", h->std, 3, err));
    TRY(get_f64(f, "scale_range", h->scale_range, 2, err));
    TRY(get_f64(f, "ratio_range", h->ratio_range, 2, err));
    TRY(get_i64(f, "pad", &h->pad, err));
    TRY(get_num(f, "seed", H5T_INTEGER, H5T_NATIVE_UINT64, 0, &h->seed, err));
    TRY(get_str(f, "logit_storage", storage, v1, err));
    int64_t k = 0;
    TRY(cache_parse_logit_storage(storage, &h->logit_storage, &k, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK)
        TRY(get_i64(f, "topk", &h->topk, err));
    TRY(get_str(f, "dataset_fingerprint", h->dataset_fingerprint, v1, err));
    TRY(get_str(f, "created_by", h->created_by, v1, err));
    TRY(get_i64(f, "chunk_images", &h->chunk_images, err));
    TRY(get_i64(f, "shard_index", &h->shard_index, err));
    TRY(get_i64(f, "shard_count", &h->shard_count, err));
    TRY(get_i64(f, "complete", &h->complete, err));
#undef TRY
    return cache_header_validate(h, err);
}

/* ---- datasets ---- */

hid_t cache_h5_fcpl(void)
{
    hid_t p = H5Pcreate(H5P_FILE_CREATE);
    if (p >= 0)
        H5Pset_obj_track_times(p, 0); /* the root group: no timestamps */
    return p;
}

kdc_status cache_h5_create_groups(hid_t file, const char *const *names, int n, kdc_error *err)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    kdc_status st = KDC_OK;
    for (int i = 0; i < n && st == KDC_OK; i++) {
        if (cache_h5_exists(file, names[i]))
            continue;
        hid_t g = H5Gcreate2(file, names[i], H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (g < 0)
            st = cache_h5_fail(err, KDC_EIO, "creating group %s", names[i]);
        else
            H5Gclose(g);
    }
    H5Pclose(gcpl);
    return st;
}

kdc_status cache_h5_create_chunked(hid_t file, const char *path, hid_t type, int rank,
                                   const hsize_t *dims, hsize_t chunk0, int one_view,
                                   unsigned lz4_block, kdc_error *err)
{
    hsize_t chunk[3];
    for (int i = 0; i < rank; i++)
        chunk[i] = dims[i];
    chunk[0] = chunk0;
    if (one_view && rank == 3)
        chunk[1] = 1; /* v2: one view of chunk0 images per HDF5 chunk */
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    unsigned cd[1] = {lz4_block};
    herr_t rc = 0;
    rc |= H5Pset_obj_track_times(dcpl, 0); /* deterministic bytes */
    rc |= H5Pset_chunk(dcpl, rank, chunk);
    rc |= H5Pset_shuffle(dcpl);
    /* Optional, as the PRIOR_ART notes: if LZ4 ever fails on a chunk HDF5
     * stores it unfiltered and records that in the chunk's filter mask. */
    rc |= H5Pset_filter(dcpl, CACHE_LZ4_FILTER_ID, H5Z_FLAG_OPTIONAL, 1, cd);
    rc |= H5Pset_fletcher32(dcpl);
    /* Chunks are allocated when written, so an unwritten chunk costs nothing
     * (a shard holds only its own range). */
    rc |= H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR);
    rc |= H5Pset_fill_time(dcpl, H5D_FILL_TIME_IFSET);
    hid_t d = rc < 0 ? -1 : H5Dcreate2(file, path, type, sp, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0)
        cache_h5_save_error();
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (d < 0)
        return cache_h5_fail(err, KDC_EIO, "creating dataset %s", path);
    H5Dclose(d);
    return KDC_OK;
}

/* The object at path (and every group on the way), raw, before libhdf5
 * decodes its header: a link gives the address without reading the header. */
static kdc_status raw_check_path(hid_t file, const char *path, kdc_error *err)
{
    char fname[4096], part[512];
    ssize_t fl = H5Fget_name(file, fname, sizeof fname);
    if (fl <= 0 || (size_t)fl >= sizeof fname)
        return KDC_OK; /* a file without a name (in memory): nothing to read raw */
    for (const char *slash = path; slash;) {
        slash = strchr(slash + 1, '/');
        size_t n = slash ? (size_t)(slash - path) : strlen(path);
        if (n >= sizeof part)
            return kdc_fail(err, KDC_EFORMAT, "dataset path %s too long", path);
        memcpy(part, path, n);
        part[n] = '\0';
        H5L_info_t li;
        if (H5Lexists(file, part, H5P_DEFAULT) <= 0)
            return kdc_fail(err, KDC_EFORMAT, "%s %s is missing", slash ? "group" : "dataset",
                            part);
        if (H5Lget_info(file, part, &li, H5P_DEFAULT) < 0 || li.type != H5L_TYPE_HARD)
            return cache_h5_fail(err, KDC_EFORMAT, "%s: not a plain link", part);
        if (cache_raw_check_object(fname, (uint64_t)li.u.address, err) != KDC_OK)
            return kdc_error_prefix(err, "%s: ", part);
    }
    return KDC_OK;
}

hid_t cache_h5_open_checked(hid_t file, const char *path, H5T_class_t cls, size_t type_size,
                            int rank, const hsize_t *dims, hid_t dapl, kdc_error *err)
{
    if (raw_check_path(file, path, err) != KDC_OK)
        return -1;
    hid_t d = H5Dopen2(file, path, dapl);
    if (d < 0) {
        cache_h5_fail(err, KDC_EFORMAT, "opening dataset %s", path);
        return -1;
    }
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    int is_vlen = H5Tis_variable_str(t) > 0 || H5Tdetect_class(t, H5T_VLEN) > 0;
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t got[H5S_MAX_RANK];
    int ok = c == cls && r == rank && r <= H5S_MAX_RANK && r >= 1;
    if (cls == H5T_STRING && type_size == 0) /* v1 paths: variable length */
        ok = ok && is_vlen;
    else if (cls == H5T_STRING) /* v2: fixed length, 1 .. type_size bytes */
        ok = ok && !is_vlen && sz >= 1 && sz <= type_size;
    else
        ok = ok && !is_vlen && sz == type_size;
    if (ok) {
        H5Sget_simple_extent_dims(sp, got, NULL);
        for (int i = 0; i < rank; i++)
            if (dims[i] && got[i] != dims[i]) {
                kdc_fail(err, KDC_EFORMAT, "dataset %s: dimension %d is %llu, expected %llu",
                         path, i, (unsigned long long)got[i], (unsigned long long)dims[i]);
                ok = -1;
                break;
            }
        /* A chunk wider than its fixed-size dataset is what libhdf5 refuses to
         * create, and reading one overflows its chunk buffers (tests/fuzz). */
        hid_t dcpl = ok == 1 ? H5Dget_create_plist(d) : -1;
        hsize_t cd[H5S_MAX_RANK];
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
            int cr = H5Pget_chunk(dcpl, H5S_MAX_RANK, cd);
            for (int i = 0; ok == 1 && i < r; i++)
                if (cr != r || cd[i] < 1 || cd[i] > (got[i] ? got[i] : 1)) {
                    kdc_fail(err, KDC_EFORMAT,
                             "dataset %s: chunk dimension %d does not fit the dataset: the "
                             "file is corrupt",
                             path, i);
                    ok = -1;
                }
        }
        if (dcpl >= 0)
            H5Pclose(dcpl);
    } else {
        kdc_fail(err, KDC_EFORMAT, "dataset %s has the wrong type or rank (%d, want %d)", path, r,
                 rank);
    }
    H5Tclose(t);
    H5Sclose(sp);
    if (ok != 1) {
        H5Dclose(d);
        return -1;
    }
    return d;
}

/* The HDF5 chunk along N that holds row `first` of dset, and its rows. */
static void chunk_of(hid_t dset, hsize_t first, hsize_t nrows, long long *chunk, long long *a,
                     long long *b)
{
    hsize_t ch = nrows;
    hid_t dcpl = H5Dget_create_plist(dset);
    hsize_t cd[H5S_MAX_RANK];
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
        H5Pget_chunk(dcpl, H5S_MAX_RANK, cd) >= 1 && cd[0] > 0)
        ch = cd[0];
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (ch == 0)
        ch = 1;
    *chunk = (long long)(first / ch);
    *a = (long long)(first / ch * ch);
    hsize_t end = (first / ch + 1) * ch;
    *b = (long long)(end < nrows ? end : nrows) - 1;
}

/* Raw checks of the chunk index entries that a read of rows [first, first +
 * count) will use, before libhdf5 trusts them: libhdf5 1.10.8 runs fletcher32
 * over `size - 4` bytes without checking size >= 4, and copies a chunk whose
 * filter mask says "unfiltered" without checking its size (both crash on
 * mutated files, tests/fuzz). Each allocated chunk must lie inside the file,
 * have the full pipeline applied (or all but the optional LZ4: then exactly
 * raw + 4 bytes), and a size the LZ4 format allows for its raw bytes. */
static kdc_status check_chunks(hid_t dset, hsize_t first, hsize_t count, hsize_t view0,
                               hsize_t nviews, kdc_error *err)
{
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0)
        return cache_h5_fail(err, KDC_EFORMAT, "reading a dataset's creation properties");
    int layout = H5Pget_layout(dcpl);
    hsize_t cd[H5S_MAX_RANK];
    int crank = layout == H5D_CHUNKED ? H5Pget_chunk(dcpl, H5S_MAX_RANK, cd) : 0;
    int nfilters = layout == H5D_CHUNKED ? H5Pget_nfilters(dcpl) : 0;
    H5Pclose(dcpl);
    if (layout != H5D_CHUNKED)
        return KDC_OK; /* contiguous and compact layouts are checked at open */
    char name[128] = "?";
    H5Iget_name(dset, name, sizeof name);
    hid_t fs = H5Dget_space(dset), t = H5Dget_type(dset);
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_dims(fs, dims, NULL);
    size_t esz = H5Tget_size(t);
    H5Sclose(fs);
    H5Tclose(t);
    hid_t file = H5Iget_file_id(dset);
    hsize_t fsize = 0;
    if (file >= 0) {
        H5Fget_filesize(file, &fsize);
        H5Fclose(file);
    }
    if (rank < 1 || crank != rank || nfilters != 3 || esz == 0)
        return kdc_fail(err, KDC_EFORMAT, "dataset %s: unexpected chunking or filters", name);
    uint64_t raw = esz;
    for (int i = 0; i < rank; i++) {
        if (cd[i] == 0)
            return kdc_fail(err, KDC_EFORMAT, "dataset %s: chunk dimension 0", name);
        raw *= cd[i];
    }
    if (raw > CACHE_MAX_CHUNK_BYTES)
        return kdc_fail(err, KDC_EFORMAT, "dataset %s: chunks of %llu bytes", name,
                        (unsigned long long)raw);
    hsize_t v_end = rank >= 2 ? (nviews ? view0 + nviews : dims[1]) : 1;
    hsize_t v_start = rank >= 2 && nviews ? view0 : 0;
    for (hsize_t r0 = first / cd[0] * cd[0]; r0 < first + count; r0 += cd[0])
        for (hsize_t v = rank >= 2 ? v_start / cd[1] * cd[1] : 0; v < v_end;
             v += rank >= 2 ? cd[1] : 1) {
            hsize_t off[H5S_MAX_RANK] = {0};
            off[0] = r0;
            if (rank >= 2)
                off[1] = v;
            unsigned mask = 0;
            haddr_t addr = HADDR_UNDEF;
            hsize_t size = 0;
            if (H5Dget_chunk_info_by_coord(dset, off, &mask, &addr, &size) < 0)
                return cache_h5_fail(err, KDC_EFORMAT,
                                     "%s: the chunk index is unreadable: the file is corrupt",
                                     name);
            if (addr == HADDR_UNDEF)
                continue; /* never written: HDF5 returns the fill value */
            int lz4_skipped = mask == 2u; /* pipeline shuffle(0), LZ4(1), fletcher32(2) */
            uint64_t lo = lz4_skipped ? raw + 4 : CACHE_LZ4_HEADER_SIZE + 4 + 4 + raw / 256;
            uint64_t hi = lz4_skipped ? raw + 4 : 2 * raw + 64;
            if ((mask != 0 && !lz4_skipped) || size < lo || size > hi || addr > fsize ||
                size > fsize - addr) {
                long long a = (long long)(r0 / cd[0] * cd[0]);
                long long b = (long long)(r0 + cd[0] < dims[0] ? r0 + cd[0] : dims[0]) - 1;
                return kdc_fail(err, KDC_EFORMAT,
                                "%s chunk %lld (images %lld-%lld): bad chunk index entry "
                                "(%llu bytes at %llu, filter mask %u): the file is corrupt",
                                name, (long long)(r0 / cd[0]), a, b, (unsigned long long)size,
                                (unsigned long long)addr, mask);
            }
        }
    return KDC_OK;
}

/* Rows [first, first + count) along N; with nviews > 0 only views
 * [view0, view0 + nviews) along dimension 1. */
static kdc_status rows_io(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, hsize_t view0,
                          hsize_t nviews, void *buf, int write, kdc_error *err)
{
    quiet_this_thread(); /* readers run on worker threads too (cache_stream) */
    hid_t fs = H5Dget_space(dset);
    int rank = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0};
    if (fs < 0 || rank < 1 || rank > H5S_MAX_RANK) {
        if (fs >= 0)
            H5Sclose(fs);
        return cache_h5_fail(err, write ? KDC_EIO : KDC_EFORMAT, "dataset with a bad dataspace");
    }
    H5Sget_simple_extent_dims(fs, dims, NULL);
    hsize_t nrows = dims[0];
    if (first + count > dims[0]) {
        H5Sclose(fs);
        return kdc_fail(err, KDC_EINVAL, "rows [%llu, %llu) outside %llu rows",
                        (unsigned long long)first, (unsigned long long)(first + count),
                        (unsigned long long)dims[0]);
    }
    if (!write) {
        H5Sclose(fs);
        kdc_status cst = check_chunks(dset, first, count, view0, nviews, err);
        if (cst != KDC_OK)
            return cst;
        fs = H5Dget_space(dset);
    }
    start[0] = first;
    dims[0] = count;
    if (nviews > 0 && rank >= 2) {
        start[1] = view0;
        dims[1] = nviews;
    }
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t ms = H5Screate_simple(rank, dims, NULL);
    if (rc >= 0)
        rc = write ? H5Dwrite(dset, mtype, ms, fs, H5P_DEFAULT, buf)
                   : H5Dread(dset, mtype, ms, fs, H5P_DEFAULT, buf);
    h5_cause c;
    if (rc < 0)
        h5_cause_get(&c); /* before the closes below clear the stack */
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc < 0) {
        char name[128] = "?";
        H5Iget_name(dset, name, sizeof name);
        H5Eclear2(H5E_DEFAULT);
        long long k, a, b;
        chunk_of(dset, first, nrows, &k, &a, &b);
        if (!err)
            return write ? KDC_EIO : KDC_EFORMAT;
        char context[256];
        snprintf(context, sizeof context, "%s %s chunk %lld (images %lld-%lld)",
                 write ? "writing" : "reading", name, k, a, b);
        if (!write && !c.sys_errno && c.checksum)
            return kdc_fail(err, KDC_EFORMAT,
                            "checksum mismatch in %s chunk %lld (images %lld-%lld): the file is "
                            "corrupt",
                            name, k, a, b);
        if (!write && !c.sys_errno && c.filter)
            return kdc_fail(err, KDC_EFORMAT,
                            "cannot decompress %s chunk %lld (images %lld-%lld): the file is "
                            "corrupt",
                            name, k, a, b);
        err->code = write || c.sys_errno ? KDC_EIO : KDC_EFORMAT;
        cause_message(err, &c, context);
        return err->code;
    }
    return KDC_OK;
}

kdc_status cache_h5_write_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               const void *buf, kdc_error *err)
{
    return rows_io(dset, mtype, first, count, 0, 0, (void *)buf, 1, err);
}

kdc_status cache_h5_read_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, void *buf,
                              kdc_error *err)
{
    return rows_io(dset, mtype, first, count, 0, 0, buf, 0, err);
}

/* ---- v2 image paths: fixed-length strings ---- */

/* Rows per read or write of /images/path: bounded memory whatever the width. */
#define PATH_BLOCK_BYTES ((size_t)16 << 20)

kdc_status cache_h5_write_paths(hid_t file, char *const *paths, int64_t n, hsize_t chunk_rows,
                                unsigned lz4_block, kdc_error *err)
{
    size_t width = 1;
    for (int64_t i = 0; i < n; i++) {
        size_t l = strlen(paths[i]);
        if (l > width)
            width = l;
    }
    if (width > CACHE_MAX_PATH)
        return kdc_fail(err, KDC_EINVAL, "an image path is longer than %d bytes", CACHE_MAX_PATH);
    hsize_t N = (hsize_t)n;
    hid_t t = cache_h5_fixed_str(width);
    kdc_status st = cache_h5_create_chunked(file, CACHE_DS_PATH, t, 1, &N, chunk_rows, 0,
                                            lz4_block, err);
    size_t block = PATH_BLOCK_BYTES / width;
    char *buf = st == KDC_OK ? malloc(block * width) : NULL;
    if (st == KDC_OK && !buf)
        st = kdc_fail(err, KDC_ENOMEM, "path buffer");
    hid_t d = st == KDC_OK ? H5Dopen2(file, CACHE_DS_PATH, H5P_DEFAULT) : -1;
    if (st == KDC_OK && d < 0)
        st = cache_h5_fail(err, KDC_EIO, "opening %s", CACHE_DS_PATH);
    for (int64_t f = 0; st == KDC_OK && f < n; f += (int64_t)block) {
        int64_t m = n - f < (int64_t)block ? n - f : (int64_t)block;
        memset(buf, 0, (size_t)m * width);
        for (int64_t i = 0; i < m; i++)
            memcpy(buf + (size_t)i * width, paths[f + i], strlen(paths[f + i]));
        st = cache_h5_write_rows(d, t, (hsize_t)f, (hsize_t)m, buf, err);
    }
    if (d >= 0)
        H5Dclose(d);
    free(buf);
    H5Tclose(t);
    return st;
}

kdc_status cache_h5_read_paths(hid_t file, int64_t n, char **out, kdc_error *err)
{
    hsize_t N = (hsize_t)n;
    hid_t d = cache_h5_open_checked(file, CACHE_DS_PATH, H5T_STRING, CACHE_MAX_PATH, 1, &N,
                                    H5P_DEFAULT, err);
    if (d < 0)
        return err ? err->code : KDC_EFORMAT;
    hid_t ft = H5Dget_type(d);
    size_t width = H5Tget_size(ft);
    H5Tclose(ft);
    /* The chunking of the v2 table: at most 65536 rows per HDF5 chunk, so that
     * one chunk decompresses to at most 256 MiB. */
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t cd[1] = {0};
    int chunk_ok = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
                   H5Pget_chunk(dcpl, 1, cd) == 1 && cd[0] >= 1 &&
                   cd[0] <= CACHE_TABLE_CHUNK_IMAGES;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (!chunk_ok) {
        H5Dclose(d);
        return kdc_fail(err, KDC_EFORMAT, "dataset %s is not chunked by at most %d rows",
                        CACHE_DS_PATH, CACHE_TABLE_CHUNK_IMAGES);
    }
    hid_t t = cache_h5_fixed_str(width);
    size_t block = PATH_BLOCK_BYTES / width;
    char *buf = malloc(block * width + 1);
    kdc_status st = buf ? KDC_OK : kdc_fail(err, KDC_ENOMEM, "path buffer");
    for (int64_t f = 0; st == KDC_OK && f < n; f += (int64_t)block) {
        int64_t m = n - f < (int64_t)block ? n - f : (int64_t)block;
        st = cache_h5_read_rows(d, t, (hsize_t)f, (hsize_t)m, buf, err);
        for (int64_t i = 0; st == KDC_OK && i < m; i++) {
            const char *row = buf + (size_t)i * width;
            size_t l = strnlen(row, width);
            /* NUL padding only: a NUL followed by other bytes is not a path */
            for (size_t j = l; j < width && st == KDC_OK; j++)
                if (row[j])
                    st = kdc_fail(err, KDC_EFORMAT, "image %lld: path has a NUL byte inside",
                                  (long long)(f + i));
            if (st == KDC_OK && !(out[f + i] = strndup(row, l)))
                st = kdc_fail(err, KDC_ENOMEM, "paths");
            if (st == KDC_OK && (st = cache_check_path(out[f + i], err)) != KDC_OK)
                kdc_error_prefix(err, "image %lld: ", (long long)(f + i));
        }
    }
    free(buf);
    H5Tclose(t);
    H5Dclose(d);
    return st;
}

kdc_status cache_h5_read_views(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               hsize_t view0, hsize_t nviews, void *buf, kdc_error *err)
{
    hid_t fs = H5Dget_space(dset);
    int rank = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    hsize_t dims[H5S_MAX_RANK];
    if (rank < 2 || rank > 3 || H5Sget_simple_extent_dims(fs, dims, NULL) < 0 ||
        view0 + nviews > dims[1]) {
        if (fs >= 0)
            H5Sclose(fs);
        return cache_h5_fail(err, KDC_EFORMAT, "dataset with a bad dataspace");
    }
    H5Sclose(fs);
    if (view0 == 0 && nviews == dims[1])
        return cache_h5_read_rows(dset, mtype, first, count, buf, err);
    return rows_io(dset, mtype, first, count, view0, nviews, buf, 0, err);
}
