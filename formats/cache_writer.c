/* cache_writer.c - crash-safe, resumable writer of the HDF5 teacher cache. */
#include "formats/cache_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/cache_h5.h"
#include "common/base/fileutil.h"
#include "common/base/half.h"

enum { DS_SIZE, DS_CRC32, DS_HEIGHT, DS_WIDTH, DS_SKIPPED, DS_BOX, DS_FLIP, DS_LOGITS,
       DS_TOPK_INDEX, DS_TOPK_VALUE, DS_FEATURES, DS_DONE, DS_COUNT };

struct cache_writer {
    char *path, *partial;
    cache_header h;
    hid_t file;
    hid_t ds[DS_COUNT];
    int64_t nchunks, range_first, range_end;
    uint8_t *done;
    /* Own copy of the image table: paths and labels from creation; size and
     * crc32 as written with each chunk (the fingerprint is computed from it
     * when the file is finished). */
    cache_image_table t;
    cache_chunk chunk;  /* staging for conversion and append */
    int64_t next_image; /* append: the next expected image, -1 before the first */
    int64_t fill;       /* append: rows of the current chunk already staged */
};

const cache_header *cache_writer_header(const cache_writer *w)
{
    return &w->h;
}

int64_t cache_writer_num_chunks(const cache_writer *w)
{
    return w->nchunks;
}

void cache_writer_chunk_range(const cache_writer *w, int64_t *first, int64_t *end)
{
    *first = w->range_first;
    *end = w->range_end;
}

int cache_writer_chunk_done(const cache_writer *w, int64_t chunk)
{
    return chunk >= 0 && chunk < w->nchunks && w->done[chunk];
}

void cache_writer_chunk_images(const cache_writer *w, int64_t chunk, int64_t *first,
                               int64_t *count)
{
    *first = chunk * w->h.chunk_images;
    int64_t left = w->h.num_images - *first;
    *count = left < w->h.chunk_images ? left : w->h.chunk_images;
}

/* ---- top-k ---- */

/* a ranks before b: larger value first, NaN largest, ties to lower index. */
static int ranks_before(float va, size_t ia, float vb, size_t ib)
{
    int na = isnan(va), nb = isnan(vb);
    if (na || nb)
        return na && nb ? ia < ib : na;
    if (va != vb)
        return va > vb;
    return ia < ib;
}

void cache_topk_rows(const float *logits, size_t rows, size_t C, size_t K, void *index,
                     size_t index_size, uint16_t *value_f16)
{
    /* Insertion into a sorted list of K: O(C) per row when K << C, which is
     * the case this storage mode exists for. Scratch on the stack in blocks. */
    enum { KMAX_STACK = 1024 };
    size_t idx_buf[KMAX_STACK];
    size_t *idx = K <= KMAX_STACK ? idx_buf : malloc(K * sizeof *idx);
    if (!idx) { /* cannot happen for validated headers (K <= 16 M); stay safe */
        memset(index, 0, rows * K * index_size);
        memset(value_f16, 0, rows * K * 2);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *x = logits + r * C;
        size_t n = 0;
        for (size_t c = 0; c < C; c++) {
            if (n == K && !ranks_before(x[c], c, x[idx[K - 1]], idx[K - 1]))
                continue;
            size_t pos = n < K ? n++ : K - 1;
            while (pos > 0 && ranks_before(x[c], c, x[idx[pos - 1]], idx[pos - 1])) {
                idx[pos] = idx[pos - 1];
                pos--;
            }
            idx[pos] = c;
        }
        for (size_t k = 0; k < K; k++) {
            if (index_size == 2)
                ((uint16_t *)index)[r * K + k] = (uint16_t)idx[k];
            else
                ((int32_t *)index)[r * K + k] = (int32_t)idx[k];
            value_f16[r * K + k] = kdc_f32_to_f16(x[idx[k]]);
        }
    }
    if (idx != idx_buf)
        free(idx);
}

/* Converts in->rows [src, src+n) into the staging chunk at row dst. */
static void stage_rows(cache_writer *w, const cache_chunk_input *in, int64_t src, int64_t dst,
                       int64_t n)
{
    const cache_header *h = &w->h;
    size_t V = (size_t)h->views_per_image, C = (size_t)h->num_classes;
    size_t D = (size_t)h->feature_dim, K = (size_t)h->topk;
    cache_chunk *c = &w->chunk;
    c->files_known = 1;
    for (int64_t i = 0; i < n; i++) {
        size_t s = (size_t)(src + i), d = (size_t)(dst + i);
        int64_t img = in->first_image + (int64_t)s;
        c->size[d] = in->size ? in->size[s] : w->t.size[img];
        c->crc32[d] = in->crc32 ? in->crc32[s] : w->t.crc32[img];
        int skip = in->skipped && in->skipped[s];
        c->skipped[d] = (uint8_t)(skip ? 1 : 0);
        c->height[d] = skip ? 0 : in->height[s];
        c->width[d] = skip ? 0 : in->width[s];
        if (skip) {
            /* Skipped images are zeros everywhere, whatever the caller passed. */
            memset(c->box + d * V * 4, 0, V * 4 * sizeof(int32_t));
            memset(c->flip + d * V, 0, V);
            if (h->logit_storage == CACHE_LOGITS_TOPK) {
                memset((char *)c->topk_index + d * V * K * cache_topk_index_size(h), 0,
                       V * K * cache_topk_index_size(h));
                memset(c->topk_value + d * V * K, 0, V * K * 2);
            } else {
                size_t es = h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2;
                memset((char *)c->logits + d * V * C * es, 0, V * C * es);
            }
            if (D)
                memset(c->features + d * V * D, 0, V * D * 2);
            continue;
        }
        memcpy(c->box + d * V * 4, in->box + s * V * 4, V * 4 * sizeof(int32_t));
        memcpy(c->flip + d * V, in->flip + s * V, V);
        const float *lg = in->logits + s * V * C;
        switch (h->logit_storage) {
        case CACHE_LOGITS_F32:
            memcpy((float *)c->logits + d * V * C, lg, V * C * sizeof(float));
            break;
        case CACHE_LOGITS_F16:
            kdc_f32_to_f16_array(lg, (uint16_t *)c->logits + d * V * C, V * C);
            break;
        case CACHE_LOGITS_TOPK: {
            size_t is = cache_topk_index_size(h);
            cache_topk_rows(lg, V, C, K, (char *)c->topk_index + d * V * K * is, is,
                            c->topk_value + d * V * K);
            break;
        }
        }
        if (D)
            kdc_f32_to_f16_array(in->features + s * V * D, c->features + d * V * D, V * D);
    }
}

/* ---- file creation ---- */

static void close_all(cache_writer *w)
{
    for (int i = 0; i < DS_COUNT; i++)
        if (w->ds[i] >= 0) {
            H5Dclose(w->ds[i]);
            w->ds[i] = -1;
        }
    if (w->file >= 0) {
        H5Fclose(w->file);
        w->file = -1;
    }
}

static void writer_free(cache_writer *w)
{
    if (!w)
        return;
    close_all(w);
    cache_chunk_free(&w->chunk);
    cache_image_table_free(&w->t);
    free(w->done);
    free(w->path);
    free(w->partial);
    free(w);
}

/* Fills in what the writer owns in the header and checks the table. */
static kdc_status normalise(const cache_header *in, const cache_image_table *t, cache_header *h,
                            kdc_error *err)
{
    *h = *in;
    h->version = CACHE_VERSION;
    h->complete = 0;
    h->dataset_fingerprint[0] = '\0'; /* v2: written with complete = 1 */
    if (h->shard_count == 0)
        h->shard_count = 1;
    if (h->logit_storage != CACHE_LOGITS_TOPK)
        h->topk = 0;
    if (!t || t->count != h->num_images)
        return kdc_fail(err, KDC_EINVAL, "image table has %lld entries, num_images is %lld",
                        t ? (long long)t->count : -1LL, (long long)h->num_images);
    if (h->chunk_images == 0 && h->num_images > 0 && h->views_per_image > 0)
        h->chunk_images = cache_default_chunk_images(h);
    for (int64_t i = 0; i < t->count; i++) {
        kdc_status st = cache_check_path(t->path[i] ? t->path[i] : "", err);
        if (st != KDC_OK)
            return kdc_error_prefix(err, "image %lld: ", (long long)i);
        if (t->label[i] < -1 || (int64_t)t->label[i] >= h->num_classes)
            return kdc_fail(err, KDC_EINVAL, "image %lld: label %d outside [-1, %lld)",
                            (long long)i, t->label[i], (long long)h->num_classes);
    }
    return cache_header_validate(h, err);
}

/* The writer's own copy of paths and labels (and of size/crc32 as given at
 * creation: chunks without their own values use them). */
static kdc_status copy_table(cache_writer *w, const cache_image_table *src, kdc_error *err)
{
    kdc_status st = cache_image_table_alloc(&w->t, src->count, err);
    if (st != KDC_OK)
        return st;
    size_t n = (size_t)src->count;
    memcpy(w->t.label, src->label, n * sizeof *src->label);
    memcpy(w->t.size, src->size, n * sizeof *src->size);
    memcpy(w->t.crc32, src->crc32, n * sizeof *src->crc32);
    for (size_t i = 0; i < n; i++)
        if (!(w->t.path[i] = strdup(src->path[i])))
            return kdc_fail(err, KDC_ENOMEM, "image paths");
    return KDC_OK;
}

static kdc_status alloc_writer(const char *path, const cache_header *h,
                               const cache_image_table *images, cache_writer **out,
                               kdc_error *err)
{
    cache_writer *w = calloc(1, sizeof *w);
    if (!w)
        return kdc_fail(err, KDC_ENOMEM, "writer");
    w->file = -1;
    for (int i = 0; i < DS_COUNT; i++)
        w->ds[i] = -1;
    w->h = *h;
    w->path = strdup(path);
    w->partial = malloc(strlen(path) + 9);
    w->nchunks = cache_num_chunks(h);
    w->done = calloc((size_t)w->nchunks, 1);
    w->next_image = -1;
    if (!w->path || !w->partial || !w->done) {
        writer_free(w);
        return kdc_fail(err, KDC_ENOMEM, "writer");
    }
    sprintf(w->partial, "%s.partial", path);
    cache_shard_chunks(h, h->shard_index, h->shard_count, &w->range_first, &w->range_end);
    kdc_status st = cache_chunk_alloc(&w->chunk, h, err);
    if (st == KDC_OK)
        st = copy_table(w, images, err);
    if (st != KDC_OK) {
        writer_free(w);
        return st;
    }
    *out = w;
    return KDC_OK;
}

static const char *ds_path(int i)
{
    static const char *p[DS_COUNT] = {CACHE_DS_SIZE, CACHE_DS_CRC32, CACHE_DS_HEIGHT, CACHE_DS_WIDTH, CACHE_DS_SKIPPED,
                                      CACHE_DS_BOX, CACHE_DS_FLIP, CACHE_DS_LOGITS,
                                      CACHE_DS_TOPK_INDEX, CACHE_DS_TOPK_VALUE,
                                      CACHE_DS_FEATURES, CACHE_DS_DONE};
    return p[i];
}

static int ds_present(const cache_header *h, int i)
{
    if (i == DS_LOGITS)
        return h->logit_storage != CACHE_LOGITS_TOPK;
    if (i == DS_TOPK_INDEX || i == DS_TOPK_VALUE)
        return h->logit_storage == CACHE_LOGITS_TOPK;
    if (i == DS_FEATURES)
        return h->feature_dim > 0;
    return 1;
}

static kdc_status open_datasets(cache_writer *w, kdc_error *err)
{
    /* No chunk cache: the writer writes whole chunks once, so they go
     * straight through the filters to the file. */
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 0, 0, 1.0);
    for (int i = 0; i < DS_COUNT; i++) {
        if (!ds_present(&w->h, i))
            continue;
        w->ds[i] = H5Dopen2(w->file, ds_path(i), dapl);
        if (w->ds[i] < 0) {
            H5Pclose(dapl);
            return cache_h5_fail(err, KDC_EFORMAT, "opening %s", ds_path(i));
        }
    }
    H5Pclose(dapl);
    return KDC_OK;
}

static kdc_status create_layout(cache_writer *w, const cache_image_table *t, unsigned lz4_block,
                                kdc_error *err)
{
    const cache_header *h = &w->h;
    hid_t f = w->file;
    hsize_t N = (hsize_t)h->num_images, V = (hsize_t)h->views_per_image;
    hsize_t C = (hsize_t)h->num_classes, D = (hsize_t)h->feature_dim, K = (hsize_t)h->topk;
    hsize_t ch = (hsize_t)h->chunk_images;
    hsize_t tch = N < CACHE_TABLE_CHUNK_IMAGES ? N : CACHE_TABLE_CHUNK_IMAGES;
    kdc_status st;
#define TRY(x)                                                                                \
    if ((st = (x)) != KDC_OK)                                                                 \
        return st;
    TRY(cache_h5_write_header(f, h, err));
    const char *groups[] = {"/images", "/views", "/progress", "/topk"};
    TRY(cache_h5_create_groups(f, groups, h->logit_storage == CACHE_LOGITS_TOPK ? 4 : 3, err));

    /* The image table known up front: paths (fixed-length strings as wide as
     * the longest) and labels. */
    TRY(cache_h5_write_paths(f, t->path, h->num_images, tch, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_LABEL, H5T_STD_I32LE, 1, &N, tch, 0, lz4_block,
                                err));
    {
        hid_t d = H5Dopen2(f, CACHE_DS_LABEL, H5P_DEFAULT);
        st = cache_h5_write_rows(d, H5T_NATIVE_INT32, 0, N, t->label, err);
        H5Dclose(d);
        if (st != KDC_OK)
            return st;
    }

    /* Per-chunk datasets: chunked exactly like /progress/done counts, so each
     * HDF5 chunk is written once (never rewritten: see docs on crash safety).
     * The per-view outputs hold one view per HDF5 chunk. */
    hsize_t dv[3] = {N, V, 4};
    TRY(cache_h5_create_chunked(f, CACHE_DS_SIZE, H5T_STD_U64LE, 1, &N, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_CRC32, H5T_STD_U32LE, 1, &N, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_HEIGHT, H5T_STD_I32LE, 1, &N, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_WIDTH, H5T_STD_I32LE, 1, &N, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_SKIPPED, H5T_STD_U8LE, 1, &N, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_BOX, H5T_STD_I32LE, 3, dv, ch, 0, lz4_block, err));
    TRY(cache_h5_create_chunked(f, CACHE_DS_FLIP, H5T_STD_U8LE, 2, dv, ch, 0, lz4_block, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        dv[2] = K;
        hid_t it = cache_topk_index_size(h) == 2 ? H5T_STD_U16LE : H5T_STD_I32LE;
        TRY(cache_h5_create_chunked(f, CACHE_DS_TOPK_INDEX, it, 3, dv, ch, 1, lz4_block, err));
        TRY(cache_h5_create_chunked(f, CACHE_DS_TOPK_VALUE, cache_h5_f16(), 3, dv, ch, 1,
                                    lz4_block, err));
    } else {
        dv[2] = C;
        hid_t lt = h->logit_storage == CACHE_LOGITS_F32 ? H5T_IEEE_F32LE : cache_h5_f16();
        TRY(cache_h5_create_chunked(f, CACHE_DS_LOGITS, lt, 3, dv, ch, 1, lz4_block, err));
    }
    if (D) {
        dv[2] = D;
        TRY(cache_h5_create_chunked(f, CACHE_DS_FEATURES, cache_h5_f16(), 3, dv, ch, 1,
                                    lz4_block, err));
    }
    /* /progress/done: contiguous and allocated now, so marking a chunk is an
     * in-place one-byte write that never moves metadata. */
    {
        hsize_t nc = (hsize_t)w->nchunks;
        hid_t sp = H5Screate_simple(1, &nc, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        H5Pset_obj_track_times(dcpl, 0);
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
        uint8_t zero = 0;
        H5Pset_fill_value(dcpl, H5T_NATIVE_UINT8, &zero);
        hid_t d = H5Dcreate2(f, CACHE_DS_DONE, H5T_STD_U8LE, sp, lcpl, dcpl, H5P_DEFAULT);
        if (d >= 0)
            H5Dclose(d);
        H5Pclose(dcpl);
        H5Pclose(lcpl);
        H5Sclose(sp);
        if (d < 0)
            return cache_h5_fail(err, KDC_EIO, "creating %s", CACHE_DS_DONE);
    }
#undef TRY
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        return cache_h5_fail(err, KDC_EIO, "flushing %s", w->partial);
    return KDC_OK;
}

kdc_status cache_writer_create(const char *path, const cache_header *hin,
                               const cache_image_table *images, const cache_writer_options *opt,
                               cache_writer **out, kdc_error *err)
{
    *out = NULL;
    kdc_status st = cache_h5_init(err);
    if (st != KDC_OK)
        return st;
    cache_header h;
    if ((st = normalise(hin, images, &h, err)) != KDC_OK)
        return kdc_error_prefix(err, "%s: ", path);
    cache_writer *w;
    if ((st = alloc_writer(path, &h, images, &w, err)) != KDC_OK)
        return st;
    /* libhdf5's error stack does not say why a create failed: the system does */
    if ((st = kdc_create_empty(w->partial, err)) != KDC_OK) {
        writer_free(w);
        return st;
    }
    hid_t fapl = cache_h5_fapl_for_writing(), fcpl = cache_h5_fcpl();
    w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, fcpl, fapl);
    if (w->file < 0)
        cache_h5_save_error();
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (w->file < 0) {
        st = cache_h5_fail(err, KDC_EIO, "cannot create %s", w->partial);
        remove(w->partial);
        writer_free(w);
        return st;
    }
    st = create_layout(w, images, opt ? opt->lz4_block : 0, err);
    if (st == KDC_OK)
        st = open_datasets(w, err);
    if (st != KDC_OK) {
        kdc_error_prefix(err, "%s: ", w->partial);
        writer_free(w);
        return st;
    }
    *out = w;
    return KDC_OK;
}

/* Resume: the partial file's paths and labels against this run's. */
static kdc_status same_table(cache_writer *w, const cache_image_table *t, kdc_error *err)
{
    hsize_t N = (hsize_t)w->h.num_images;
    kdc_status st = KDC_OK;
    char **paths = calloc((size_t)N, sizeof *paths);
    int32_t *lab = malloc((size_t)N * sizeof *lab);
    hid_t d = -1;
    if (!paths || !lab)
        st = kdc_fail(err, KDC_ENOMEM, "image table");
    if (st == KDC_OK)
        st = cache_h5_read_paths(w->file, w->h.num_images, paths, err);
    for (hsize_t i = 0; st == KDC_OK && i < N; i++)
        if (strcmp(paths[i], t->path[i]))
            st = kdc_fail(err, KDC_EMISMATCH,
                          "the image table (dataset_fingerprint) differs: image %llu is '%s' in "
                          "the partial file, '%s' in this run",
                          (unsigned long long)i, paths[i], t->path[i]);
    if (st == KDC_OK) {
        d = cache_h5_open_checked(w->file, CACHE_DS_LABEL, H5T_INTEGER, 4, 1, &N, H5P_DEFAULT,
                                  err);
        if (d < 0)
            st = err ? err->code : KDC_EFORMAT;
    }
    if (st == KDC_OK && (st = cache_h5_read_rows(d, H5T_NATIVE_INT32, 0, N, lab, err)) == KDC_OK &&
        memcmp(lab, t->label, (size_t)N * sizeof *lab))
        st = kdc_fail(err, KDC_EMISMATCH, "dataset /images/label differs from this run's");
    if (d >= 0)
        H5Dclose(d);
    if (paths)
        for (hsize_t i = 0; i < N; i++)
            free(paths[i]);
    free(paths);
    free(lab);
    return st;
}

/* Resume: size/crc32 of the chunks already written, for the fingerprint. A
 * caller that knows them (non-zero in its table) must agree with the file. */
static kdc_status load_done_files(cache_writer *w, const cache_image_table *t, kdc_error *err)
{
    for (int64_t c = 0; c < w->nchunks; c++) {
        if (!w->done[c])
            continue;
        int64_t f, n;
        cache_writer_chunk_images(w, c, &f, &n);
        kdc_status st = cache_h5_read_rows(w->ds[DS_SIZE], H5T_NATIVE_UINT64, (hsize_t)f,
                                           (hsize_t)n, w->t.size + f, err);
        if (st == KDC_OK)
            st = cache_h5_read_rows(w->ds[DS_CRC32], H5T_NATIVE_UINT32, (hsize_t)f, (hsize_t)n,
                                    w->t.crc32 + f, err);
        if (st != KDC_OK)
            return st;
        for (int64_t i = f; i < f + n; i++)
            if ((t->size[i] || t->crc32[i]) &&
                (t->size[i] != w->t.size[i] || t->crc32[i] != w->t.crc32[i]))
                return kdc_fail(err, KDC_EMISMATCH,
                                "the image table (dataset_fingerprint) differs: %s has another "
                                "size or CRC-32 than when chunk %lld was written",
                                t->path[i], (long long)c);
    }
    return KDC_OK;
}

kdc_status cache_writer_resume(const char *path, const cache_header *hin,
                               const cache_image_table *images, const cache_writer_options *opt,
                               cache_writer **out, kdc_error *err)
{
    (void)opt; /* the pipeline is fixed in the file at creation */
    *out = NULL;
    kdc_status st = cache_h5_init(err);
    if (st != KDC_OK)
        return st;
    cache_header h, fh;
    if ((st = normalise(hin, images, &h, err)) != KDC_OK)
        return kdc_error_prefix(err, "%s: ", path);
    cache_writer *w;
    if ((st = alloc_writer(path, &h, images, &w, err)) != KDC_OK)
        return st;
    hid_t fapl = cache_h5_fapl_for_writing();
    w->file = H5Fopen(w->partial, H5F_ACC_RDWR, fapl);
    if (w->file < 0)
        cache_h5_save_error();
    H5Pclose(fapl);
    if (w->file < 0) {
        st = cache_h5_fail(err, KDC_EIO,
                           "cannot resume: %s is missing or unreadable (remove it to start over)",
                           w->partial);
        writer_free(w);
        return st;
    }
    st = cache_h5_read_header(w->file, &fh, err);
    if (st == KDC_OK && fh.version != CACHE_VERSION)
        st = kdc_fail(err, KDC_EMISMATCH,
                      "the partial file is format v%lld; this writer resumes only v%d files "
                      "(remove it to start over)",
                      (long long)fh.version, CACHE_VERSION);
    const char *diff = st == KDC_OK ? cache_header_diff(&fh, &h, 0) : NULL;
    if (st == KDC_OK && diff)
        st = kdc_fail(err, KDC_EMISMATCH,
                      "attribute %s of the partial file differs from this run's settings", diff);
    if (st == KDC_OK && h.chunk_images != fh.chunk_images)
        st = kdc_fail(err, KDC_EMISMATCH, "attribute chunk_images differs");
    /* The fingerprint is not written yet: compare the table itself. */
    if (st == KDC_OK)
        st = same_table(w, images, err);
    if (st == KDC_OK)
        st = open_datasets(w, err);
    if (st == KDC_OK)
        st = cache_h5_read_rows(w->ds[DS_DONE], H5T_NATIVE_UINT8, 0, (hsize_t)w->nchunks,
                                w->done, err);
    if (st != KDC_OK) {
        kdc_error_prefix(err, "cannot resume %s: ", w->partial);
        writer_free(w);
        return st;
    }
    for (int64_t c = 0; c < w->nchunks; c++)
        w->done[c] = w->done[c] ? 1 : 0;
    if ((st = load_done_files(w, images, err)) != KDC_OK) {
        kdc_error_prefix(err, "cannot resume %s: ", w->partial);
        writer_free(w);
        return st;
    }
    *out = w;
    return KDC_OK;
}

/* ---- chunk writing ---- */

kdc_status cache_writer_write_stored(cache_writer *w, int64_t chunk, const cache_chunk *c,
                                     kdc_error *err)
{
    if (chunk < w->range_first || chunk >= w->range_end)
        return kdc_fail(err, KDC_EINVAL, "chunk %lld outside this file's range [%lld, %lld)",
                        (long long)chunk, (long long)w->range_first, (long long)w->range_end);
    int64_t first, count;
    cache_writer_chunk_images(w, chunk, &first, &count);
    if (c->first_image != first || c->count != count)
        return kdc_fail(err, KDC_EINVAL,
                        "chunk %lld holds images [%lld, +%lld), got [%lld, +%lld)",
                        (long long)chunk, (long long)first, (long long)count,
                        (long long)c->first_image, (long long)c->count);
    const cache_header *h = &w->h;
    hsize_t f0 = (hsize_t)first, n = (hsize_t)count;
    hid_t f16 = cache_h5_f16(); /* same type in memory: the half bits move unconverted */
    kdc_status st;
#define TRY(x)                                                                                \
    if ((st = (x)) != KDC_OK)                                                                 \
        return kdc_error_prefix(err, "%s: chunk %lld: ", w->partial, (long long)chunk);
    /* A chunk without its own file sizes and CRCs takes the creation table's. */
    const uint64_t *sz = c->files_known ? c->size : w->t.size + first;
    const uint32_t *crc = c->files_known ? c->crc32 : w->t.crc32 + first;
    TRY(cache_h5_write_rows(w->ds[DS_SIZE], H5T_NATIVE_UINT64, f0, n, sz, err));
    TRY(cache_h5_write_rows(w->ds[DS_CRC32], H5T_NATIVE_UINT32, f0, n, crc, err));
    TRY(cache_h5_write_rows(w->ds[DS_HEIGHT], H5T_NATIVE_INT32, f0, n, c->height, err));
    TRY(cache_h5_write_rows(w->ds[DS_WIDTH], H5T_NATIVE_INT32, f0, n, c->width, err));
    TRY(cache_h5_write_rows(w->ds[DS_SKIPPED], H5T_NATIVE_UINT8, f0, n, c->skipped, err));
    TRY(cache_h5_write_rows(w->ds[DS_BOX], H5T_NATIVE_INT32, f0, n, c->box, err));
    TRY(cache_h5_write_rows(w->ds[DS_FLIP], H5T_NATIVE_UINT8, f0, n, c->flip, err));
    if (h->logit_storage == CACHE_LOGITS_TOPK) {
        hid_t it = cache_topk_index_size(h) == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_INT32;
        TRY(cache_h5_write_rows(w->ds[DS_TOPK_INDEX], it, f0, n, c->topk_index, err));
        TRY(cache_h5_write_rows(w->ds[DS_TOPK_VALUE], f16, f0, n, c->topk_value, err));
    } else {
        hid_t lt = h->logit_storage == CACHE_LOGITS_F32 ? H5T_NATIVE_FLOAT : f16;
        TRY(cache_h5_write_rows(w->ds[DS_LOGITS], lt, f0, n, c->logits, err));
    }
    if (h->feature_dim)
        TRY(cache_h5_write_rows(w->ds[DS_FEATURES], f16, f0, n, c->features, err));
    /* Data first, then the mark: a kill between the two flushes only costs
     * redoing this chunk. */
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        return cache_h5_fail(err, KDC_EIO, "%s: flushing chunk %lld", w->partial,
                             (long long)chunk);
    uint8_t one = 1;
    TRY(cache_h5_write_rows(w->ds[DS_DONE], H5T_NATIVE_UINT8, (hsize_t)chunk, 1, &one, err));
#undef TRY
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        return cache_h5_fail(err, KDC_EIO, "%s: flushing chunk %lld", w->partial,
                             (long long)chunk);
    w->done[chunk] = 1;
    if (c->files_known) {
        memmove(w->t.size + first, c->size, (size_t)count * sizeof *c->size);
        memmove(w->t.crc32 + first, c->crc32, (size_t)count * sizeof *c->crc32);
    }
    return KDC_OK;
}

static kdc_status check_input(const cache_writer *w, const cache_chunk_input *in,
                              kdc_error *err)
{
    if (!in->height || !in->width || !in->box || !in->flip || !in->logits ||
        (w->h.feature_dim && !in->features))
        return kdc_fail(err, KDC_EINVAL, "chunk input: a required array is NULL");
    if (in->count < 0 || in->first_image < 0 || in->first_image + in->count > w->h.num_images)
        return kdc_fail(err, KDC_EINVAL, "rows [%lld, +%lld) outside [0, %lld)",
                        (long long)in->first_image, (long long)in->count,
                        (long long)w->h.num_images);
    return KDC_OK;
}

kdc_status cache_writer_write_chunk(cache_writer *w, int64_t chunk, const cache_chunk_input *in,
                                    kdc_error *err)
{
    kdc_status st = check_input(w, in, err);
    if (st != KDC_OK)
        return st;
    if (chunk < 0 || chunk >= w->nchunks)
        return kdc_fail(err, KDC_EINVAL, "chunk %lld outside [0, %lld)", (long long)chunk,
                        (long long)w->nchunks);
    cache_writer_chunk_images(w, chunk, &w->chunk.first_image, &w->chunk.count);
    if (in->first_image != w->chunk.first_image || in->count != w->chunk.count)
        return kdc_fail(err, KDC_EINVAL, "chunk %lld holds images [%lld, +%lld), got [%lld, +%lld)",
                        (long long)chunk, (long long)w->chunk.first_image,
                        (long long)w->chunk.count, (long long)in->first_image,
                        (long long)in->count);
    stage_rows(w, in, 0, 0, in->count);
    return cache_writer_write_stored(w, chunk, &w->chunk, err);
}

kdc_status cache_writer_append(cache_writer *w, const cache_chunk_input *rows, kdc_error *err)
{
    kdc_status st = check_input(w, rows, err);
    if (st != KDC_OK)
        return st;
    if (w->next_image < 0) {
        if (rows->first_image % w->h.chunk_images)
            return kdc_fail(err, KDC_EINVAL,
                            "append must start at a chunk boundary (image %lld, chunks of %lld)",
                            (long long)rows->first_image, (long long)w->h.chunk_images);
        w->next_image = rows->first_image;
        w->fill = 0;
    }
    if (rows->first_image != w->next_image)
        return kdc_fail(err, KDC_EINVAL, "append: got image %lld, expected %lld",
                        (long long)rows->first_image, (long long)w->next_image);
    int64_t done_rows = 0;
    while (done_rows < rows->count) {
        int64_t chunk = w->next_image / w->h.chunk_images;
        if (w->fill == 0) {
            if (w->done[chunk])
                return kdc_fail(err, KDC_EINVAL, "append: chunk %lld is already written",
                                (long long)chunk);
            cache_writer_chunk_images(w, chunk, &w->chunk.first_image, &w->chunk.count);
        }
        int64_t take = w->chunk.count - w->fill;
        if (take > rows->count - done_rows)
            take = rows->count - done_rows;
        stage_rows(w, rows, done_rows, w->fill, take);
        w->fill += take;
        done_rows += take;
        w->next_image += take;
        if (w->fill == w->chunk.count) {
            w->fill = 0;
            if ((st = cache_writer_write_stored(w, chunk, &w->chunk, err)) != KDC_OK)
                return st;
        }
    }
    return KDC_OK;
}

kdc_status cache_writer_finish(cache_writer *w, kdc_error *err)
{
    kdc_status st = KDC_OK;
    for (int64_t c = w->range_first; c < w->range_end && st == KDC_OK; c++)
        if (!w->done[c])
            st = kdc_fail(err, KDC_EINVAL, "%s: chunk %lld of [%lld, %lld) is not written",
                          w->partial, (long long)c, (long long)w->range_first,
                          (long long)w->range_end);
    /* v2: the fingerprint is finished with the last chunk (a shard has none:
     * it does not know the other shards' files) and written with complete. */
    if (st == KDC_OK && w->h.shard_count == 1) {
        cache_fingerprint(&w->t, w->h.dataset_fingerprint);
        if ((st = cache_h5_set_fingerprint(w->file, w->h.dataset_fingerprint, err)) != KDC_OK)
            kdc_error_prefix(err, "%s: ", w->partial);
    }
    if (st == KDC_OK && (st = cache_h5_set_complete(w->file, 1, err)) != KDC_OK)
        kdc_error_prefix(err, "%s: ", w->partial);
    if (st == KDC_OK && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        st = cache_h5_fail(err, KDC_EIO, "flushing %s", w->partial);
    for (int i = 0; i < DS_COUNT; i++)
        if (w->ds[i] >= 0) {
            H5Dclose(w->ds[i]);
            w->ds[i] = -1;
        }
    if (w->file >= 0 && H5Fclose(w->file) < 0 && st == KDC_OK)
        st = cache_h5_fail(err, KDC_EIO, "closing %s", w->partial);
    w->file = -1;
    if (st == KDC_OK && rename(w->partial, w->path) != 0)
        st = kdc_fail(err, KDC_EIO, "renaming %s to %s failed", w->partial, w->path);
    writer_free(w);
    return st;
}

void cache_writer_abort(cache_writer *w)
{
    writer_free(w);
}
