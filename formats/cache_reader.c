/* cache_reader.c - validated random access to a teacher cache (v2 and v1). */
#include "formats/cache_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/cache_h5.h"
#include "formats/cache_rawcheck.h"
#include "common/base/half.h"

/* Chunk cache for random access: room for a few chunks of each dataset, so
 * that reading the images of one chunk in turn decompresses it once. */
#define RANDOM_ACCESS_CACHED_CHUNKS 4
#define RANDOM_ACCESS_CACHE_MAX ((size_t)64 << 20)

enum { DS_PATH, DS_LABEL, DS_SIZE, DS_CRC32, DS_HEIGHT, DS_WIDTH, DS_SKIPPED, DS_BOX,
       DS_FLIP, DS_LOGITS, DS_TOPK_INDEX, DS_TOPK_VALUE, DS_FEATURES, DS_DONE, DS_COUNT };

struct cache_reader {
    char *path;
    hid_t file;
    hid_t ds[DS_COUNT];
    cache_header h;
    cache_image_table images;
    int64_t nchunks;
    uint8_t *done;
    cache_chunk one; /* scratch for cache_reader_read_image */
};

/* ---- batches ---- */

kdc_status cache_batch_alloc(cache_batch *b, const cache_header *h, int capacity,
                             kdc_error *err)
{
    memset(b, 0, sizeof *b);
    size_t n = capacity > 0 ? (size_t)capacity : 1;
    b->capacity = capacity;
    b->num_classes = h->num_classes;
    b->feature_dim = h->feature_dim;
    b->topk = h->logit_storage == CACHE_LOGITS_TOPK ? h->topk : 0;
    size_t nc, nk, nd;
    if (!kdc_size_mul(n, (size_t)h->num_classes, &nc) ||
        !kdc_size_mul(n, (size_t)b->topk, &nk) || !kdc_size_mul(n, (size_t)h->feature_dim, &nd))
        return kdc_fail(err, KDC_ENOMEM, "batch of %d samples overflows", capacity);
    b->image = calloc(n, sizeof *b->image);
    b->view = calloc(n, sizeof *b->view);
    b->label = calloc(n, sizeof *b->label);
    b->box = calloc(n * 4, sizeof *b->box);
    b->flip = calloc(n, 1);
    int ok = b->image && b->view && b->label && b->box && b->flip;
    if (b->topk) {
        b->topk_index = calloc(nk, sizeof *b->topk_index);
        b->topk_value = calloc(nk, sizeof *b->topk_value);
        ok = ok && b->topk_index && b->topk_value;
    } else {
        b->logits = calloc(nc, sizeof *b->logits);
        ok = ok && b->logits;
    }
    if (nd) {
        b->features = calloc(nd, sizeof *b->features);
        ok = ok && b->features;
    }
    if (!ok) {
        cache_batch_free(b);
        return kdc_fail(err, KDC_ENOMEM, "batch of %d samples", capacity);
    }
    return KDC_OK;
}

void cache_batch_free(cache_batch *b)
{
    free(b->image);
    free(b->view);
    free(b->label);
    free(b->box);
    free(b->flip);
    free(b->logits);
    free(b->topk_index);
    free(b->topk_value);
    free(b->features);
    memset(b, 0, sizeof *b);
}

void cache_batch_copy_row(cache_batch *dst, int d, const cache_batch *src, int s)
{
    size_t C = (size_t)src->num_classes, K = (size_t)src->topk, D = (size_t)src->feature_dim;
    dst->image[d] = src->image[s];
    dst->view[d] = src->view[s];
    dst->label[d] = src->label[s];
    memcpy(dst->box + 4 * (size_t)d, src->box + 4 * (size_t)s, 4 * sizeof *dst->box);
    dst->flip[d] = src->flip[s];
    if (K) {
        memcpy(dst->topk_index + K * d, src->topk_index + K * s, K * sizeof(int32_t));
        memcpy(dst->topk_value + K * d, src->topk_value + K * s, K * sizeof(float));
    } else {
        memcpy(dst->logits + C * d, src->logits + C * s, C * sizeof(float));
    }
    if (D)
        memcpy(dst->features + D * d, src->features + D * s, D * sizeof(float));
}

void cache_chunk_to_batch(const cache_header *h, const cache_chunk *c, const int32_t *labels,
                          cache_batch *b)
{
    /* A chunk of one view (cache_reader_read_view) has one row per image. */
    size_t V = c->view >= 0 ? 1 : (size_t)h->views_per_image, C = (size_t)h->num_classes;
    size_t K = (size_t)h->topk, D = (size_t)h->feature_dim;
    size_t rows = (size_t)c->count * V;
    for (size_t i = 0; i < (size_t)c->count; i++)
        for (size_t v = 0; v < V; v++) {
            size_t r = i * V + v;
            b->image[r] = c->first_image + (int64_t)i;
            b->view[r] = (int32_t)(c->view >= 0 ? c->view : (int64_t)v);
            b->label[r] = labels[c->first_image + (int64_t)i];
        }
    memcpy(b->box, c->box, rows * 4 * sizeof(int32_t));
    memcpy(b->flip, c->flip, rows);
    switch (h->logit_storage) {
    case CACHE_LOGITS_F32:
        memcpy(b->logits, c->logits, rows * C * sizeof(float));
        break;
    case CACHE_LOGITS_F16:
        kdc_f16_to_f32_array(c->logits, b->logits, rows * C);
        break;
    case CACHE_LOGITS_TOPK:
        if (cache_topk_index_size(h) == 2)
            for (size_t j = 0; j < rows * K; j++)
                b->topk_index[j] = ((const uint16_t *)c->topk_index)[j];
        else
            memcpy(b->topk_index, c->topk_index, rows * K * sizeof(int32_t));
        kdc_f16_to_f32_array(c->topk_value, b->topk_value, rows * K);
        break;
    }
    if (D)
        kdc_f16_to_f32_array(c->features, b->features, rows * D);
    b->count = (int)rows;
}

/* ---- opening ---- */

const cache_header *cache_reader_header(const cache_reader *r)
{
    return &r->h;
}

const cache_image_table *cache_reader_images(const cache_reader *r)
{
    return &r->images;
}

const char *cache_reader_path(const cache_reader *r)
{
    return r->path;
}

int64_t cache_reader_num_chunks(const cache_reader *r)
{
    return r->nchunks;
}

int cache_reader_chunk_done(const cache_reader *r, int64_t chunk)
{
    return chunk >= 0 && chunk < r->nchunks && r->done[chunk];
}

void cache_reader_chunk_images(const cache_reader *r, int64_t chunk, int64_t *first,
                               int64_t *count)
{
    *first = chunk * r->h.chunk_images;
    int64_t left = r->h.num_images - *first;
    *count = left < r->h.chunk_images ? left : r->h.chunk_images;
}

void cache_reader_close(cache_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < DS_COUNT; i++)
        if (r->ds[i] >= 0)
            H5Dclose(r->ds[i]);
    if (r->file >= 0)
        H5Fclose(r->file);
    cache_image_table_free(&r->images);
    cache_chunk_free(&r->one);
    free(r->done);
    free(r->path);
    free(r);
}

/* Checks that a per-chunk dataset is chunked with chunk_images rows (the
 * format's promise that one HDF5 chunk holds whole images of one chunk), and
 * in v2 (one_view) one view per HDF5 chunk of the per-view outputs. */
static kdc_status check_chunking(hid_t d, const char *name, int64_t chunk_images, int one_view,
                                 kdc_error *err)
{
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t cd[H5S_MAX_RANK];
    int r = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED
                ? H5Pget_chunk(dcpl, H5S_MAX_RANK, cd)
                : -1;
    int ok = r >= 1 && cd[0] == (hsize_t)chunk_images && (!one_view || (r == 3 && cd[1] == 1));
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (!ok)
        return kdc_fail(err, KDC_EFORMAT, "dataset %s is not chunked by %lld images%s", name,
                        (long long)chunk_images, one_view ? " and one view" : "");
    return KDC_OK;
}

static kdc_status open_datasets(cache_reader *r, unsigned flags, kdc_error *err)
{
    const cache_header *h = &r->h;
    hsize_t N = (hsize_t)h->num_images, V = (hsize_t)h->views_per_image;
    hsize_t C = (hsize_t)h->num_classes, K = (hsize_t)h->topk, D = (hsize_t)h->feature_dim;
    hsize_t NC = (hsize_t)r->nchunks;
    size_t lsz = h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2;
    int v1 = h->version == CACHE_VERSION_V1;
    struct {
        const char *p;
        H5T_class_t cls;
        size_t sz;
        int rank;
        hsize_t d[3];
        int present, per_chunk;
    } spec[DS_COUNT] = {
        /* v1: variable-length paths (size 0); v2: fixed, at most 4096 bytes */
        [DS_PATH] = {CACHE_DS_PATH, H5T_STRING, v1 ? 0 : CACHE_MAX_PATH, 1, {N}, 1, 0},
        [DS_LABEL] = {CACHE_DS_LABEL, H5T_INTEGER, 4, 1, {N}, 1, 0},
        [DS_SIZE] = {CACHE_DS_SIZE, H5T_INTEGER, 8, 1, {N}, 1, !v1},
        [DS_CRC32] = {CACHE_DS_CRC32, H5T_INTEGER, 4, 1, {N}, 1, !v1},
        [DS_HEIGHT] = {CACHE_DS_HEIGHT, H5T_INTEGER, 4, 1, {N}, 1, 1},
        [DS_WIDTH] = {CACHE_DS_WIDTH, H5T_INTEGER, 4, 1, {N}, 1, 1},
        [DS_SKIPPED] = {CACHE_DS_SKIPPED, H5T_INTEGER, 1, 1, {N}, 1, 1},
        [DS_BOX] = {CACHE_DS_BOX, H5T_INTEGER, 4, 3, {N, V, 4}, 1, 1},
        [DS_FLIP] = {CACHE_DS_FLIP, H5T_INTEGER, 1, 2, {N, V}, 1, 1},
        [DS_LOGITS] = {CACHE_DS_LOGITS, H5T_FLOAT, lsz, 3, {N, V, C},
                       h->logit_storage != CACHE_LOGITS_TOPK, 1},
        [DS_TOPK_INDEX] = {CACHE_DS_TOPK_INDEX, H5T_INTEGER, cache_topk_index_size(h), 3,
                           {N, V, K}, h->logit_storage == CACHE_LOGITS_TOPK, 1},
        [DS_TOPK_VALUE] = {CACHE_DS_TOPK_VALUE, H5T_FLOAT, 2, 3, {N, V, K},
                           h->logit_storage == CACHE_LOGITS_TOPK, 1},
        [DS_FEATURES] = {CACHE_DS_FEATURES, H5T_FLOAT, 2, 3, {N, V, D}, D > 0, 1},
        [DS_DONE] = {CACHE_DS_DONE, H5T_INTEGER, 1, 1, {NC}, 1, 0},
    };
    /* Chunk cache sized from the validated header (a chunk of the largest
     * dataset is at most CACHE_MAX_CHUNK_BYTES). */
    size_t chunk_bytes = cache_bytes_per_image(h) * (size_t)h->chunk_images;
    size_t cache = (flags & CACHE_OPEN_NO_CHUNK_CACHE) ? 0 : RANDOM_ACCESS_CACHED_CHUNKS * chunk_bytes;
    if (cache > RANDOM_ACCESS_CACHE_MAX)
        cache = RANDOM_ACCESS_CACHE_MAX;
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 521, cache, 0.75);
    kdc_status st = KDC_OK;
    for (int i = 0; i < DS_COUNT && st == KDC_OK; i++) {
        if (!spec[i].present) {
            if (cache_h5_exists(r->file, spec[i].p))
                st = kdc_fail(err, KDC_EFORMAT, "dataset %s present but logit_storage is %s",
                              spec[i].p, cache_logit_storage_name(h->logit_storage));
            continue;
        }
        r->ds[i] = cache_h5_open_checked(r->file, spec[i].p, spec[i].cls, spec[i].sz,
                                         spec[i].rank, spec[i].d, dapl, err);
        if (r->ds[i] < 0)
            st = err ? err->code : KDC_EFORMAT;
        else if (spec[i].per_chunk)
            st = check_chunking(r->ds[i], spec[i].p, h->chunk_images,
                                !v1 && i >= DS_LOGITS && i <= DS_FEATURES, err);
    }
    H5Pclose(dapl);
    return st;
}

/* v1: variable-length strings, read through libhdf5's global heap (which a
 * corrupt v1 file can crash: docs/FUZZ.md). */
static kdc_status read_paths_v1(cache_reader *r, kdc_error *err)
{
    hid_t t = cache_h5_vlen_str();
    size_t n = (size_t)r->h.num_images;
    char **tmp = calloc(n, sizeof *tmp);
    if (!tmp) {
        H5Tclose(t);
        return kdc_fail(err, KDC_ENOMEM, "paths of %zu images", n);
    }
    kdc_status st = KDC_OK;
    if (H5Dread(r->ds[DS_PATH], t, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
        st = cache_h5_fail(err, KDC_EFORMAT, "reading %s", CACHE_DS_PATH);
    for (size_t i = 0; i < n && st == KDC_OK; i++) {
        if (!tmp[i]) {
            st = kdc_fail(err, KDC_EFORMAT, "image %zu has no path", i);
            break;
        }
        if ((st = cache_check_path(tmp[i], err)) != KDC_OK) {
            kdc_error_prefix(err, "image %zu: ", i);
            break;
        }
        r->images.path[i] = strdup(tmp[i]);
        if (!r->images.path[i])
            st = kdc_fail(err, KDC_ENOMEM, "paths");
    }
    hid_t sp = H5Dget_space(r->ds[DS_PATH]);
    H5Dvlen_reclaim(t, sp, H5P_DEFAULT, tmp);
    H5Sclose(sp);
    H5Tclose(t);
    free(tmp);
    return st;
}

static kdc_status load_tables(cache_reader *r, kdc_error *err)
{
    const cache_header *h = &r->h;
    hsize_t N = (hsize_t)h->num_images;
    kdc_status st;
    if ((st = cache_image_table_alloc(&r->images, h->num_images, err)) != KDC_OK)
        return st;
    r->done = calloc((size_t)r->nchunks, 1);
    if (!r->done)
        return kdc_fail(err, KDC_ENOMEM, "progress marks");
#define TRY(x)                                                                                \
    if ((st = (x)) != KDC_OK)                                                                 \
        return st;
    int v1 = h->version == CACHE_VERSION_V1;
    st = v1 ? read_paths_v1(r, err) : cache_h5_read_paths(r->file, h->num_images, r->images.path, err);
    if (st != KDC_OK)
        return st;
    TRY(cache_h5_read_rows(r->ds[DS_LABEL], H5T_NATIVE_INT32, 0, N, r->images.label, err));
    if (v1) {
        TRY(cache_h5_read_rows(r->ds[DS_SIZE], H5T_NATIVE_UINT64, 0, N, r->images.size, err));
        TRY(cache_h5_read_rows(r->ds[DS_CRC32], H5T_NATIVE_UINT32, 0, N, r->images.crc32, err));
    }
    TRY(cache_h5_read_rows(r->ds[DS_DONE], H5T_NATIVE_UINT8, 0, (hsize_t)r->nchunks, r->done,
                           err));
    /* height/width/skipped (and in v2 size/crc32) exist only for written chunks. */
    for (int64_t c = 0; c < r->nchunks; c++) {
        if (!r->done[c])
            continue;
        int64_t f, n;
        cache_reader_chunk_images(r, c, &f, &n);
        TRY(cache_h5_read_rows(r->ds[DS_HEIGHT], H5T_NATIVE_INT32, (hsize_t)f, (hsize_t)n,
                               r->images.height + f, err));
        TRY(cache_h5_read_rows(r->ds[DS_WIDTH], H5T_NATIVE_INT32, (hsize_t)f, (hsize_t)n,
                               r->images.width + f, err));
        TRY(cache_h5_read_rows(r->ds[DS_SKIPPED], H5T_NATIVE_UINT8, (hsize_t)f, (hsize_t)n,
                               r->images.skipped + f, err));
        if (!v1) {
            TRY(cache_h5_read_rows(r->ds[DS_SIZE], H5T_NATIVE_UINT64, (hsize_t)f, (hsize_t)n,
                                   r->images.size + f, err));
            TRY(cache_h5_read_rows(r->ds[DS_CRC32], H5T_NATIVE_UINT32, (hsize_t)f, (hsize_t)n,
                                   r->images.crc32 + f, err));
        }
    }
#undef TRY
    for (int64_t i = 0; i < h->num_images; i++) {
        if (r->images.label[i] < -1 || r->images.label[i] >= h->num_classes)
            return kdc_fail(err, KDC_EFORMAT, "image %lld: label %d outside [-1, %lld)",
                            (long long)i, r->images.label[i], (long long)h->num_classes);
        if (r->images.height[i] < 0 || r->images.width[i] < 0 || r->images.skipped[i] > 1)
            return kdc_fail(err, KDC_EFORMAT, "image %lld: negative size or bad skipped flag",
                            (long long)i);
    }
    /* v2 writes the fingerprint with complete = 1 (never in a shard); v1 at
     * creation. Where there is none, there is nothing to compare. */
    if (!v1 && (!h->complete || h->shard_count != 1))
        return KDC_OK;
    char fp[65];
    cache_fingerprint(&r->images, fp);
    if (strcmp(fp, h->dataset_fingerprint))
        return kdc_fail(err, KDC_EFORMAT,
                        "dataset_fingerprint does not match the image table (file %.16s..., "
                        "table %.16s...)",
                        h->dataset_fingerprint, fp);
    return KDC_OK;
}

kdc_status cache_reader_open(const char *path, unsigned flags, cache_reader **out,
                             kdc_error *err)
{
    *out = NULL;
    kdc_status st = cache_h5_init(err);
    if (st != KDC_OK)
        return st;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return kdc_fail(err, KDC_EIO, "%s: cannot open (no such file)", path);
    /* Before libhdf5 decodes anything: the root attributes' raw structure,
     * and no variable-length attribute in a v2 file (global heap). */
    int vlen_attrs;
    int64_t raw_version;
    if ((st = cache_raw_check_root(path, &vlen_attrs, &raw_version, err)) != KDC_OK)
        return kdc_error_prefix(err, "%s: ", path);
    if (raw_version == CACHE_VERSION && vlen_attrs > 0)
        return kdc_fail(err, KDC_EFORMAT,
                        "%s: a root attribute has a variable-length type (not allowed in format "
                        "v2)",
                        path);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return kdc_fail(err, KDC_EFORMAT, "%s: not an HDF5 file (or truncated)", path);
    }
    cache_reader *r = calloc(1, sizeof *r);
    if (!r)
        return kdc_fail(err, KDC_ENOMEM, "reader");
    r->file = -1;
    for (int i = 0; i < DS_COUNT; i++)
        r->ds[i] = -1;
    r->path = strdup(path);
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0)
        cache_h5_save_error();
    if (!r->path)
        st = kdc_fail(err, KDC_ENOMEM, "reader");
    else if (r->file < 0)
        st = cache_h5_fail(err, KDC_EFORMAT, "cannot open as HDF5 (truncated or corrupt?)");
    if (st == KDC_OK)
        st = cache_h5_read_header(r->file, &r->h, err);
    if (st == KDC_OK) {
        r->nchunks = cache_num_chunks(&r->h);
        /* Every image costs at least its 16-byte path reference in the file:
         * a header claiming more images than that is refused before the
         * tables are allocated. */
        if ((uint64_t)r->h.num_images > (uint64_t)sb.st_size / 16)
            st = kdc_fail(err, KDC_EFORMAT, "num_images %lld is impossible in a %lld-byte file",
                          (long long)r->h.num_images, (long long)sb.st_size);
    }
    if (st == KDC_OK && !(flags & CACHE_OPEN_ALLOW_INCOMPLETE)) {
        if (r->h.shard_count != 1)
            st = kdc_fail(err, KDC_EUNSUPPORTED,
                          "is shard %lld of %lld: join the shards with kd-cache merge",
                          (long long)r->h.shard_index, (long long)r->h.shard_count);
        else if (!r->h.complete)
            st = kdc_fail(err, KDC_EFORMAT, "is incomplete (complete = 0): resume the writer");
    }
    if (st == KDC_OK)
        st = open_datasets(r, flags, err);
    if (st == KDC_OK)
        st = load_tables(r, err);
    if (st == KDC_OK && r->h.complete) {
        int64_t a, b;
        cache_shard_chunks(&r->h, r->h.shard_index, r->h.shard_count, &a, &b);
        for (int64_t c = a; c < b && st == KDC_OK; c++)
            if (!r->done[c])
                st = kdc_fail(err, KDC_EFORMAT, "marked complete but chunk %lld is not done",
                              (long long)c);
    }
    if (st == KDC_OK)
        st = cache_chunk_alloc(&r->one, &r->h, err);
    if (st != KDC_OK) {
        kdc_error_prefix(err, "%s: ", path);
        cache_reader_close(r);
        return st;
    }
    *out = r;
    return KDC_OK;
}

/* ---- reading ---- */

/* Reads images [first, first + count) into c: all views (view < 0) or one.
 * The per-view datasets are read with a hyperslab over that view alone: in
 * v2 that is exactly the HDF5 chunks of the view; in v1 HDF5 decompresses the
 * whole chunk and copies out the view. */
static kdc_status read_rows(cache_reader *r, int64_t first, int64_t count, int64_t view,
                            cache_chunk *c, kdc_error *err)
{
    const cache_header *h = &r->h;
    hsize_t f0 = (hsize_t)first, n = (hsize_t)count;
    hid_t f16 = cache_h5_f16();
    kdc_status st;
    c->first_image = first;
    c->count = count;
    c->view = view;
    c->files_known = 1;
    memcpy(c->size, r->images.size + first, (size_t)count * sizeof *c->size);
    memcpy(c->crc32, r->images.crc32 + first, (size_t)count * sizeof *c->crc32);
    hsize_t v0 = view < 0 ? 0 : (hsize_t)view;
    hsize_t nv = view < 0 ? (hsize_t)h->views_per_image : 1;
#define TRY(x)                                                                                \
    if ((st = (x)) != KDC_OK)                                                                 \
        return st;
    TRY(cache_h5_read_rows(r->ds[DS_HEIGHT], H5T_NATIVE_INT32, f0, n, c->height, err));
    TRY(cache_h5_read_rows(r->ds[DS_WIDTH], H5T_NATIVE_INT32, f0, n, c->width, err));
    TRY(cache_h5_read_rows(r->ds[DS_SKIPPED], H5T_NATIVE_UINT8, f0, n, c->skipped, err));
    TRY(cache_h5_read_views(r->ds[DS_BOX], H5T_NATIVE_INT32, f0, n, v0, nv, c->box, err));
    TRY(cache_h5_read_views(r->ds[DS_FLIP], H5T_NATIVE_UINT8, f0, n, v0, nv, c->flip, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        hid_t it = cache_topk_index_size(h) == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_INT32;
        TRY(cache_h5_read_views(r->ds[DS_TOPK_INDEX], it, f0, n, v0, nv, c->topk_index, err));
        TRY(cache_h5_read_views(r->ds[DS_TOPK_VALUE], f16, f0, n, v0, nv, c->topk_value, err));
    } else {
        hid_t lt = h->logit_storage == CACHE_LOGITS_F32 ? H5T_NATIVE_FLOAT : f16;
        TRY(cache_h5_read_views(r->ds[DS_LOGITS], lt, f0, n, v0, nv, c->logits, err));
    }
    if (h->feature_dim)
        TRY(cache_h5_read_views(r->ds[DS_FEATURES], f16, f0, n, v0, nv, c->features, err));
#undef TRY
    /* Contents the trainer indexes with: checked here, once per chunk. */
    size_t V = (size_t)nv, K = (size_t)h->topk;
    for (size_t i = 0; i < (size_t)count; i++) {
        if (c->skipped[i] > 1)
            return kdc_fail(err, KDC_EFORMAT, "image %lld: skipped flag %d",
                            (long long)(first + (int64_t)i), c->skipped[i]);
        if (c->skipped[i])
            continue;
        for (size_t v = 0; v < V; v++) {
            size_t row = i * V + v;
            if (c->flip[row] > 1 || c->box[4 * row + 2] < 1 || c->box[4 * row + 3] < 1)
                return kdc_fail(err, KDC_EFORMAT, "image %lld view %zu: bad box or flip",
                                (long long)(first + (int64_t)i), (size_t)v0 + v);
        }
    }
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        size_t m = (size_t)count * V * K;
        for (size_t j = 0; j < m; j++) {
            int64_t idx = cache_topk_index_size(h) == 2
                              ? ((const uint16_t *)c->topk_index)[j]
                              : ((const int32_t *)c->topk_index)[j];
            if (idx < 0 || idx >= h->num_classes)
                return kdc_fail(err, KDC_EFORMAT, "top-k index %lld outside [0, %lld)",
                                (long long)idx, (long long)h->num_classes);
        }
    }
    return KDC_OK;
}

kdc_status cache_reader_read_chunk(cache_reader *r, int64_t chunk, cache_chunk *c,
                                   kdc_error *err)
{
    if (chunk < 0 || chunk >= r->nchunks)
        return kdc_fail(err, KDC_EINVAL, "%s: chunk %lld outside [0, %lld)", r->path,
                        (long long)chunk, (long long)r->nchunks);
    if (!r->done[chunk])
        return kdc_fail(err, KDC_EFORMAT, "%s: chunk %lld was never written", r->path,
                        (long long)chunk);
    if (c->capacity < r->h.chunk_images)
        return kdc_fail(err, KDC_EINVAL, "chunk buffer too small");
    int64_t f, n;
    cache_reader_chunk_images(r, chunk, &f, &n);
    kdc_status st = read_rows(r, f, n, -1, c, err);
    if (st != KDC_OK)
        return kdc_error_prefix(err, "%s: ", r->path);
    return KDC_OK;
}

kdc_status cache_reader_read_view(cache_reader *r, int64_t chunk, int64_t view, cache_chunk *c,
                                  kdc_error *err)
{
    if (chunk < 0 || chunk >= r->nchunks)
        return kdc_fail(err, KDC_EINVAL, "%s: chunk %lld outside [0, %lld)", r->path,
                        (long long)chunk, (long long)r->nchunks);
    if (view < 0 || view >= r->h.views_per_image)
        return kdc_fail(err, KDC_EINVAL, "%s: view %lld outside [0, %lld)", r->path,
                        (long long)view, (long long)r->h.views_per_image);
    if (!r->done[chunk])
        return kdc_fail(err, KDC_EFORMAT, "%s: chunk %lld was never written", r->path,
                        (long long)chunk);
    if (c->capacity < r->h.chunk_images)
        return kdc_fail(err, KDC_EINVAL, "chunk buffer too small");
    int64_t f, n;
    cache_reader_chunk_images(r, chunk, &f, &n);
    kdc_status st = read_rows(r, f, n, view, c, err);
    if (st != KDC_OK)
        return kdc_error_prefix(err, "%s: view %lld: ", r->path, (long long)view);
    return KDC_OK;
}

kdc_status cache_reader_read_image(cache_reader *r, int64_t image, cache_batch *b,
                                   kdc_error *err)
{
    if (image < 0 || image >= r->h.num_images)
        return kdc_fail(err, KDC_EINVAL, "image %lld outside [0, %lld)", (long long)image,
                        (long long)r->h.num_images);
    if (b->capacity < r->h.views_per_image)
        return kdc_fail(err, KDC_EINVAL, "batch capacity %d < %lld views", b->capacity,
                        (long long)r->h.views_per_image);
    if (!r->done[image / r->h.chunk_images])
        return kdc_fail(err, KDC_EFORMAT, "%s: image %lld is in a chunk never written", r->path,
                        (long long)image);
    kdc_status st = read_rows(r, image, 1, -1, &r->one, err);
    if (st != KDC_OK)
        return kdc_error_prefix(err, "%s: image %lld: ", r->path, (long long)image);
    cache_chunk_to_batch(&r->h, &r->one, r->images.label, b);
    return KDC_OK;
}

void cache_reader_storage(const cache_reader *r, uint64_t *stored, uint64_t *raw)
{
    *stored = *raw = 0;
    for (int i = DS_HEIGHT; i < DS_DONE; i++) {
        if (r->ds[i] < 0)
            continue;
        *stored += H5Dget_storage_size(r->ds[i]);
        hid_t t = H5Dget_type(r->ds[i]), sp = H5Dget_space(r->ds[i]);
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        /* Only written chunks count as raw bytes, so partial files compare. */
        int64_t done = 0;
        for (int64_t c = 0; c < r->nchunks; c++) {
            int64_t f, n;
            cache_reader_chunk_images(r, c, &f, &n);
            if (r->done[c])
                done += n;
        }
        *raw += (uint64_t)np / (uint64_t)r->h.num_images * (uint64_t)done * H5Tget_size(t);
        H5Tclose(t);
        H5Sclose(sp);
    }
}
