/* cache_h5.c - HDF5 helpers for the cache: attributes, filtered chunked
 * datasets, row I/O, error messages. */
#include "formats/cache_h5.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/lz4_filter.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
    H5open();
    /* Library code does not print: HDF5's automatic stack dump goes off and
     * cache_h5_fail() folds the innermost message into our error line. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

kdc_status cache_h5_init(kdc_error *err)
{
    pthread_once(&init_once, do_init);
    /* H5Eset_auto2 is per thread in a thread-safe HDF5: apply it here too. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cache_lz4_register(err);
}

typedef struct walk_ctx {
    char msg[256];
} walk_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    walk_ctx *w = data;
    if (n == 0 && e->desc)
        snprintf(w->msg, sizeof w->msg, "%s", e->desc);
    return 0;
}

kdc_status cache_h5_fail(kdc_error *err, kdc_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    walk_ctx w = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (w.msg[0]) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, " (hdf5: %s)", w.msg);
    }
    return code;
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

static kdc_status put_str(hid_t f, const char *name, const char *s, kdc_error *err)
{
    hid_t t = cache_h5_vlen_str();
    kdc_status st = put_attr(f, name, t, t, 0, &s, err);
    H5Tclose(t);
    return st;
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

/* Reads a string attribute, fixed or variable length, into out[CACHE_STR_MAX]. */
static kdc_status get_str(hid_t f, const char *name, char *out, kdc_error *err)
{
    hid_t a = open_attr(f, name, H5T_STRING, 0, err);
    if (a < 0)
        return err ? err->code : KDC_EFORMAT;
    hid_t ft = H5Aget_type(a);
    kdc_status st = KDC_OK;
    if (H5Tis_variable_str(ft) > 0) {
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
    TRY(put_str(f, "dataset_fingerprint", h->dataset_fingerprint, err));
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

kdc_status cache_h5_read_header(hid_t f, cache_header *h, kdc_error *err)
{
    memset(h, 0, sizeof *h);
    kdc_status st;
    char storage[CACHE_STR_MAX];
    /* The version first: a future file may have other attributes. */
    TRY(get_i64(f, "kdcache_version", &h->version, err));
    if (h->version != CACHE_VERSION)
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "kdcache_version %lld is not supported (this build reads version %d)",
                        (long long)h->version, CACHE_VERSION);
    TRY(get_str(f, "teacher_arch", h->teacher_arch, err));
    TRY(get_str(f, "teacher_weights_sha256", h->teacher_weights_sha256, err));
    TRY(get_i64(f, "num_images", &h->num_images, err));
    TRY(get_i64(f, "views_per_image", &h->views_per_image, err));
    TRY(get_i64(f, "num_classes", &h->num_classes, err));
    TRY(get_i64(f, "feature_dim", &h->feature_dim, err));
    TRY(get_str(f, "view_policy", h->view_policy, err));
    TRY(get_i64(f, "image_size", &h->image_size, err));
    TRY(get_i64(f, "resize_size", &h->resize_size, err));
    TRY(get_f64(f, "mean", h->mean, 3, err));
    TRY(get_f64(f, "std", h->std, 3, err));
    TRY(get_f64(f, "scale_range", h->scale_range, 2, err));
    TRY(get_f64(f, "ratio_range", h->ratio_range, 2, err));
    TRY(get_i64(f, "pad", &h->pad, err));
    TRY(get_num(f, "seed", H5T_INTEGER, H5T_NATIVE_UINT64, 0, &h->seed, err));
    TRY(get_str(f, "logit_storage", storage, err));
    int64_t k = 0;
    TRY(cache_parse_logit_storage(storage, &h->logit_storage, &k, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK)
        TRY(get_i64(f, "topk", &h->topk, err));
    TRY(get_str(f, "dataset_fingerprint", h->dataset_fingerprint, err));
    TRY(get_str(f, "created_by", h->created_by, err));
    TRY(get_i64(f, "chunk_images", &h->chunk_images, err));
    TRY(get_i64(f, "shard_index", &h->shard_index, err));
    TRY(get_i64(f, "shard_count", &h->shard_count, err));
    TRY(get_i64(f, "complete", &h->complete, err));
#undef TRY
    return cache_header_validate(h, err);
}

/* ---- datasets ---- */

kdc_status cache_h5_create_chunked(hid_t file, const char *path, hid_t type, int rank,
                                   const hsize_t *dims, hsize_t chunk0, unsigned lz4_block,
                                   kdc_error *err)
{
    hsize_t chunk[3];
    for (int i = 0; i < rank; i++)
        chunk[i] = dims[i];
    chunk[0] = chunk0;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    unsigned cd[1] = {lz4_block};
    herr_t rc = 0;
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
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (d < 0)
        return cache_h5_fail(err, KDC_EIO, "creating dataset %s", path);
    H5Dclose(d);
    return KDC_OK;
}

hid_t cache_h5_open_checked(hid_t file, const char *path, H5T_class_t cls, size_t type_size,
                            int rank, const hsize_t *dims, hid_t dapl, kdc_error *err)
{
    if (!cache_h5_exists(file, path)) {
        kdc_fail(err, KDC_EFORMAT, "dataset %s is missing", path);
        return -1;
    }
    hid_t d = H5Dopen2(file, path, dapl);
    if (d < 0) {
        cache_h5_fail(err, KDC_EFORMAT, "opening dataset %s", path);
        return -1;
    }
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    int is_vlen = H5Tis_variable_str(t) > 0;
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t got[H5S_MAX_RANK];
    int ok = c == cls && r == rank && r <= H5S_MAX_RANK;
    if (cls == H5T_STRING)
        ok = ok && is_vlen;
    else
        ok = ok && sz == type_size;
    if (ok) {
        H5Sget_simple_extent_dims(sp, got, NULL);
        for (int i = 0; i < rank; i++)
            if (dims[i] && got[i] != dims[i]) {
                kdc_fail(err, KDC_EFORMAT, "dataset %s: dimension %d is %llu, expected %llu",
                         path, i, (unsigned long long)got[i], (unsigned long long)dims[i]);
                ok = -1;
                break;
            }
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

static kdc_status rows_io(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, void *buf,
                          int write, kdc_error *err)
{
    hid_t fs = H5Dget_space(dset);
    int rank = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0};
    H5Sget_simple_extent_dims(fs, dims, NULL);
    if (first + count > dims[0]) {
        H5Sclose(fs);
        return kdc_fail(err, KDC_EINVAL, "rows [%llu, %llu) outside %llu rows",
                        (unsigned long long)first, (unsigned long long)(first + count),
                        (unsigned long long)dims[0]);
    }
    start[0] = first;
    dims[0] = count;
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t ms = H5Screate_simple(rank, dims, NULL);
    if (rc >= 0)
        rc = write ? H5Dwrite(dset, mtype, ms, fs, H5P_DEFAULT, buf)
                   : H5Dread(dset, mtype, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc < 0) {
        char name[128] = "?";
        H5Iget_name(dset, name, sizeof name);
        return cache_h5_fail(err, write ? KDC_EIO : KDC_EFORMAT, "%s %s rows [%llu, %llu)",
                             write ? "writing" : "reading", name, (unsigned long long)first,
                             (unsigned long long)(first + count));
    }
    return KDC_OK;
}

kdc_status cache_h5_write_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count,
                               const void *buf, kdc_error *err)
{
    return rows_io(dset, mtype, first, count, (void *)buf, 1, err);
}

kdc_status cache_h5_read_rows(hid_t dset, hid_t mtype, hsize_t first, hsize_t count, void *buf,
                              kdc_error *err)
{
    return rows_io(dset, mtype, first, count, buf, 0, err);
}
