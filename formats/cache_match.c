/* cache_match.c - one check of a cache against its dataset (cache_match.h). */
#include "formats/cache_match.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/threadpool.h"
#include "common/image/jpeg_decode.h"

/* A dataset image by path, for the sorted index that matches cache rows. */
typedef struct path_index {
    const char *path;
    int64_t index;
} path_index;

static int by_path(const void *a, const void *b)
{
    return strcmp(((const path_index *)a)->path, ((const path_index *)b)->path);
}

/* Row r against dataset image i: label and size. */
static kdc_status check_row(const img_dataset *ds, const cache_image_table *t, int64_t r, size_t i,
                            const char *cache_path, kdc_error *err)
{
    const img_entry *e = &ds->items[i];
    if (e->label != t->label[r])
        return kdc_fail(err, KDC_EMISMATCH,
                        "%s does not match %s: '%s' has label %d in the cache, %d on disk",
                        cache_path, ds->root, e->path, (int)t->label[r], (int)e->label);
    if (e->size != t->size[r])
        return kdc_fail(err, KDC_EMISMATCH,
                        "%s does not match %s: '%s' has %llu bytes, the cache expects %llu",
                        cache_path, ds->root, e->path, (unsigned long long)e->size,
                        (unsigned long long)t->size[r]);
    return KDC_OK;
}

kdc_status cache_match_dataset(const img_dataset *ds, const cache_image_table *t,
                               const char *cache_path, int64_t *ds_of_row, kdc_error *err)
{
    const size_t n = ds->count;
    kdc_status st = KDC_OK;
    /* Fast path: rows in dataset order (--order dataset, older caches). */
    if ((int64_t)n == t->count) {
        size_t same = 0;
        while (same < n && t->path[same] && !strcmp(t->path[same], ds->items[same].path))
            same++;
        if (same == n) {
            for (size_t i = 0; i < n; i++) {
                if ((st = check_row(ds, t, (int64_t)i, i, cache_path, err)))
                    return st;
                if (ds_of_row)
                    ds_of_row[i] = (int64_t)i;
            }
            return KDC_OK;
        }
    }
    path_index *sorted = malloc((n ? n : 1) * sizeof *sorted);
    unsigned char *used = calloc(n ? n : 1, 1);
    if (!sorted || !used) {
        free(sorted);
        free(used);
        return kdc_fail(err, KDC_ENOMEM, "matching %lld cache rows to %s: out of memory",
                        (long long)t->count, ds->root);
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = (path_index){ds->items[i].path, (int64_t)i};
    qsort(sorted, n, sizeof *sorted, by_path);
    /* A list file could name an image twice: then "the same image set" is
     * ambiguous, so refuse it. */
    for (size_t k = 1; k < n && !st; k++)
        if (!strcmp(sorted[k].path, sorted[k - 1].path))
            st = kdc_fail(err, KDC_EMISMATCH, "%s lists '%s' twice", ds->root, sorted[k].path);
    for (int64_t r = 0; r < t->count && !st; r++) {
        const char *p = t->path[r] ? t->path[r] : "";
        path_index key = {p, -1};
        const path_index *hit = n ? bsearch(&key, sorted, n, sizeof *sorted, by_path) : NULL;
        int64_t i = hit ? hit->index : -1;
        if (i < 0)
            st = kdc_fail(err, KDC_EMISMATCH,
                          "%s does not match %s: '%s' (cache row %lld) is not in the dataset",
                          cache_path, ds->root, p, (long long)r);
        else if (used[i])
            st = kdc_fail(err, KDC_EMISMATCH,
                          "%s does not match %s: '%s' appears twice in the cache's image table",
                          cache_path, ds->root, p);
        else if (!(st = check_row(ds, t, r, (size_t)i, cache_path, err))) {
            used[i] = 1;
            if (ds_of_row)
                ds_of_row[r] = i;
        }
    }
    /* Every row found its image once: an unused image is one the cache lacks. */
    for (size_t i = 0; i < n && !st; i++)
        if (!used[i])
            st = kdc_fail(err, KDC_EMISMATCH,
                          "%s does not match %s: '%s' is in the dataset but not in the cache "
                          "(%zu images on disk, %lld in the cache)",
                          cache_path, ds->root, ds->items[i].path, n, (long long)t->count);
    free(sorted);
    free(used);
    return st;
}

kdc_status cache_match_view_params(const cache_header *h, img_view_params *p, img_norm *n,
                                   kdc_error *err)
{
    kdc_status st;
    img_view_params_default(p);
    if ((st = img_view_policy_parse(h->view_policy, &p->policy, err)))
        return kdc_error_prefix(err, "cache view_policy: ");
    p->image_size = (int)h->image_size;
    p->resize_size = (int)h->resize_size;
    memcpy(p->scale, h->scale_range, sizeof p->scale);
    memcpy(p->ratio, h->ratio_range, sizeof p->ratio);
    p->pad = (int)h->pad;
    p->seed = h->seed;
    for (int c = 0; c < 3; c++) {
        n->mean[c] = (float)h->mean[c];
        n->std[c] = (float)h->std[c];
    }
    if ((st = img_view_params_check(p, err)) || (st = img_norm_check(n, err)))
        return kdc_error_prefix(err, "cache view attributes: ");
    return KDC_OK;
}

kdc_status cache_match_view(const img_view_params *p, const cache_image_table *t, int64_t row,
                            int64_t view, const int32_t box[4], uint8_t flip,
                            const char *cache_path, kdc_error *err)
{
    if (t->skipped[row])
        return KDC_OK;
    img_view v = {.y0 = box[0], .x0 = box[1], .h = box[2], .w = box[3], .flip = flip};
    kdc_status st = img_view_check(p, t->width[row], t->height[row], &v, err);
    if (st)
        return kdc_error_prefix(err, "%s: '%s' view %lld: ", cache_path,
                                t->path[row] ? t->path[row] : "", (long long)view);
    return KDC_OK;
}

kdc_status cache_match_chunk_views(const cache_header *h, const cache_image_table *t,
                                   const cache_chunk *c, const char *cache_path, kdc_error *err)
{
    img_view_params p;
    img_norm n;
    kdc_status st = cache_match_view_params(h, &p, &n, err);
    const int64_t V = h->views_per_image;
    for (int64_t i = 0; i < c->count && !st; i++)
        for (int64_t v = 0; v < V && !st; v++)
            st = cache_match_view(&p, t, c->first_image + i, v, c->box + (i * V + v) * 4,
                                  c->flip[i * V + v], cache_path, err);
    return st;
}

kdc_status cache_match_file(const cache_image_table *t, int64_t row, const char *root,
                            uint64_t size, uint32_t crc32, int width, int height,
                            const char *cache_path, kdc_error *err)
{
    const char *p = t->path[row] ? t->path[row] : "";
    if (size != t->size[row])
        return kdc_fail(err, KDC_EMISMATCH,
                        "%s/%s: %llu bytes, but the cache %s was made from a file of %llu", root, p,
                        (unsigned long long)size, cache_path, (unsigned long long)t->size[row]);
    if (crc32 != t->crc32[row])
        return kdc_fail(err, KDC_EMISMATCH,
                        "%s/%s: contents differ from the file the cache %s was made from "
                        "(crc32 %08x, expected %08x)",
                        root, p, cache_path, (unsigned)crc32, (unsigned)t->crc32[row]);
    if (!t->skipped[row] && (width != t->width[row] || height != t->height[row]))
        return kdc_fail(err, KDC_EMISMATCH,
                        "%s/%s: decodes to %dx%d pixels, the cache %s says %dx%d", root, p, width,
                        height, cache_path, (int)t->width[row], (int)t->height[row]);
    return KDC_OK;
}

/* verify --data's read of every file: threads take images in dataset
 * (folder) order, which keeps directory lookups and disk reads local; cache
 * rows are shuffled, so row order would read the tree at random. The first
 * mismatch in dataset order is reported, whatever the thread timing. */
#define MATCH_MAX_THREADS 8

typedef struct match_job {
    const cache_image_table *t;
    const img_dataset *ds;
    const int64_t *row_of_ds;
    const char *cache_path;
    pthread_mutex_t mu;
    size_t next;      /* next dataset image to take */
    size_t first_bad; /* lowest failing dataset index; ds->count if none */
    kdc_status bad_st;
    kdc_error bad_err;
    int64_t checked;
} match_job;

static kdc_status match_one(match_job *j, img_decoder *dec, size_t i, kdc_error *err)
{
    const cache_image_table *t = j->t;
    const int64_t r = j->row_of_ds[i];
    char fp[8192];
    kdc_status st = img_dataset_full_path(j->ds, i, fp, sizeof fp, err);
    if (st)
        return st;
    /* Size and CRC-32 come with the read; a file that does not decode (any
     * more) is a mismatch unless the cache marks it skipped. */
    kdc_error derr = {0};
    kdc_status ds_st = img_decoder_load_file(dec, fp, &derr);
    if (ds_st == KDC_EIO || ds_st == KDC_ENOMEM) {
        *err = derr;
        return ds_st;
    }
    int w = ds_st ? t->width[r] : img_decoder_width(dec);
    int h = ds_st ? t->height[r] : img_decoder_height(dec);
    st = cache_match_file(t, r, j->ds->root, img_decoder_file_size(dec),
                          img_decoder_file_crc32(dec), w, h, j->cache_path, err);
    if (!st && ds_st && !t->skipped[r])
        st = kdc_fail(err, KDC_EMISMATCH, "%s (the cache %s has outputs for it)", derr.msg,
                      j->cache_path);
    return st;
}

static void *match_worker(void *arg)
{
    match_job *j = arg;
    img_decoder *dec = NULL;
    kdc_error e = {0};
    kdc_status st = img_decoder_create(&dec, &e);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        int done = i >= j->ds->count || i > j->first_bad;
        if (st && i < j->first_bad) { /* no decoder: this thread's first image fails */
            j->first_bad = i;
            j->bad_st = st;
            j->bad_err = e;
        }
        pthread_mutex_unlock(&j->mu);
        if (done || st)
            break;
        kdc_status mst = match_one(j, dec, i, &e);
        pthread_mutex_lock(&j->mu);
        j->checked++;
        if (mst && i < j->first_bad) {
            j->first_bad = i;
            j->bad_st = mst;
            j->bad_err = e;
        }
        pthread_mutex_unlock(&j->mu);
    }
    img_decoder_free(dec);
    return NULL;
}

kdc_status cache_match_data_dir(const cache_image_table *t, const char *data_dir,
                                const char *cache_path, int64_t *checked, kdc_error *err)
{
    *checked = 0;
    img_dataset *ds = NULL;
    size_t n = t->count ? (size_t)t->count : 1;
    int64_t *ds_of_row = malloc(n * sizeof *ds_of_row), *row_of_ds = malloc(n * sizeof *row_of_ds);
    kdc_status st;
    if (!ds_of_row || !row_of_ds) {
        free(ds_of_row);
        free(row_of_ds);
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    }
    if ((st = img_dataset_open_folder(&ds, data_dir, err)) ||
        (st = cache_match_dataset(ds, t, cache_path, ds_of_row, err)))
        goto out;
    /* A match is a bijection between rows and images. */
    for (int64_t r = 0; r < t->count; r++)
        row_of_ds[ds_of_row[r]] = r;
    match_job j = {
        .t = t, .ds = ds, .row_of_ds = row_of_ds, .cache_path = cache_path, .first_bad = ds->count};
    pthread_mutex_init(&j.mu, NULL);
    int threads = kdc_cpu_count();
    threads = threads < 1 ? 1 : threads > MATCH_MAX_THREADS ? MATCH_MAX_THREADS : threads;
    pthread_t tid[MATCH_MAX_THREADS];
    int started = 0;
    for (; started < threads - 1; started++)
        if (pthread_create(&tid[started], NULL, match_worker, &j) != 0)
            break;
    match_worker(&j);
    for (int k = 0; k < started; k++)
        pthread_join(tid[k], NULL);
    pthread_mutex_destroy(&j.mu);
    *checked = j.checked;
    if (j.first_bad < ds->count) {
        st = j.bad_st;
        if (err)
            *err = j.bad_err;
    }
out:
    img_dataset_free(ds);
    free(ds_of_row);
    free(row_of_ds);
    return st;
}
