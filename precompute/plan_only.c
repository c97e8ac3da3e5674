/* plan_only.c - kd-precompute --plan-only (plan_only.h): the dataset's views
 * drawn by the loader exactly as a teacher run draws them, written without
 * any teacher output. */
#include "precompute/plan_only.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/fileutil.h"
#include "common/base/progress.h"
#include "common/base/threadpool.h"
#include "common/image/dataset.h"
#include "common/image/loader.h"
#include "formats/cache_h5.h"
#include "formats/cache_writer.h"
#include "precompute/cache_setup.h"

typedef struct plan_rows {
    int32_t *height, *width, *box;
    uint8_t *skipped, *flip;
    uint64_t *size;
    uint32_t *crc32;
    img_request *reqs;
} plan_rows;

static void rows_free(plan_rows *p)
{
    free(p->height);
    free(p->width);
    free(p->box);
    free(p->skipped);
    free(p->flip);
    free(p->size);
    free(p->crc32);
    free(p->reqs);
}

static kdc_status open_dataset(const kd_precompute_options *o, img_dataset **ds, kdc_error *err)
{
    if (o->data) {
        if (!kdc_is_dir(o->data))
            return kdc_fail(err, KDC_EIO, "--data %s: no such folder", o->data);
        return img_dataset_open_folder(ds, o->data, err);
    }
    if (!kdc_path_exists(o->list) || kdc_is_dir(o->list))
        return kdc_fail(err, KDC_EIO, "--list %s: no such file", o->list);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->list);
    return img_dataset_open_list(ds, dirname(dir), o->list, err);
}

/* Views of chunk [first, first + n) by the loader, into p's rows. */
static kdc_status plan_chunk(const kd_precompute_options *o, const kd_precompute_hooks *hk,
                             img_loader *l, const img_dataset *ds, const int64_t *perm,
                             int64_t first, int64_t n, plan_rows *p, int64_t *skipped,
                             kdc_error *err)
{
    const int64_t V = o->views;
    size_t k = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t v = 0; v < V; v++)
            p->reqs[k++] = (img_request){.index = perm[first + i], .view_index = (uint32_t)v};
    kdc_status st = img_loader_start(l, p->reqs, k, err);
    if (st)
        return st;
    memset(p->skipped, 0, (size_t)n);
    size_t row = 0;
    img_batch *b;
    while ((st = img_loader_next(l, &b, err)) == KDC_OK && b) {
        for (int j = 0; j < b->count && st == KDC_OK; j++, row++) {
            const img_sample *s = &b->samples[j];
            int64_t img = (int64_t)(row / (size_t)V), v = (int64_t)(row % (size_t)V);
            const img_entry *e = &ds->items[perm[first + img]];
            int32_t *box = p->box + row * 4;
            if (s->status != KDC_OK) {
                if (o->strict) {
                    st = kdc_fail(err, KDC_EIMAGE, "%s (--strict)", s->msg);
                    break;
                }
                if (!p->skipped[img]) {
                    p->skipped[img] = 1;
                    (*skipped)++;
                    if (hk && hk->on_skip)
                        hk->on_skip(hk->ctx, e->path, s->msg);
                }
            } else if (s->file_size != e->size || s->crc32 != e->crc32) {
                st = kdc_fail(err, KDC_EMISMATCH,
                              "%s changed while kd-precompute ran (size or CRC-32 differs from "
                              "the checksum pass); rerun on a stable copy",
                              e->path);
                break;
            }
            if (v == 0) {
                p->height[img] = s->height;
                p->width[img] = s->width;
            }
            box[0] = s->view.y0;
            box[1] = s->view.x0;
            box[2] = s->view.h;
            box[3] = s->view.w;
            p->flip[row] = s->view.flip;
        }
        img_loader_release(l, b);
        if (st)
            return st;
    }
    if (st)
        return st;
    /* A skipped image's rows are zeros (docs/CACHE_FORMAT.md). */
    for (int64_t i = 0; i < n; i++) {
        const img_entry *e = &ds->items[perm[first + i]];
        p->size[i] = e->size;
        p->crc32[i] = e->crc32;
        if (p->skipped[i]) {
            p->height[i] = p->width[i] = 0;
            memset(p->box + i * V * 4, 0, (size_t)V * 4 * sizeof *p->box);
            memset(p->flip + i * V, 0, (size_t)V);
        }
    }
    return KDC_OK;
}

static kdc_status write_rows(hid_t file, int64_t first, int64_t n, const plan_rows *p,
                             kdc_error *err)
{
    const struct {
        const char *name;
        hid_t type;
        const void *buf;
    } ds[] = {
        {CACHE_DS_SIZE, H5T_NATIVE_UINT64, p->size},
        {CACHE_DS_CRC32, H5T_NATIVE_UINT32, p->crc32},
        {CACHE_DS_HEIGHT, H5T_NATIVE_INT32, p->height},
        {CACHE_DS_WIDTH, H5T_NATIVE_INT32, p->width},
        {CACHE_DS_SKIPPED, H5T_NATIVE_UINT8, p->skipped},
        {CACHE_DS_BOX, H5T_NATIVE_INT32, p->box},
        {CACHE_DS_FLIP, H5T_NATIVE_UINT8, p->flip},
    };
    kdc_status st = KDC_OK;
    for (size_t i = 0; i < sizeof ds / sizeof *ds && st == KDC_OK; i++) {
        hid_t d = H5Dopen2(file, ds[i].name, H5P_DEFAULT);
        if (d < 0)
            return cache_h5_fail(err, KDC_EIO, "opening %s", ds[i].name);
        st = cache_h5_write_rows(d, ds[i].type, (hsize_t)first, (hsize_t)n, ds[i].buf, err);
        H5Dclose(d);
    }
    return st;
}

static kdc_status plan(const kd_precompute_options *o, const kd_precompute_hooks *hk,
                       kd_precompute_stats *s, img_dataset *ds, const char *partial, kdc_error *err)
{
    kdc_status st;
    int threads = o->threads > 0 ? o->threads : kdc_cpu_count();
    if (hk && hk->on_note) {
        char msg[256];
        snprintf(msg, sizeof msg, "checksumming %zu images (%d threads)", ds->count, threads);
        hk->on_note(hk->ctx, msg);
    }
    if ((st = img_dataset_checksum(ds, threads, err)))
        return st;
    int64_t *perm = malloc(ds->count * sizeof *perm);
    if (!perm)
        return kdc_fail(err, KDC_ENOMEM, "row order of %zu images: out of memory", ds->count);
    kd_precompute_row_order(o, ds->count, perm);
    cache_image_table table = {0};
    cache_header h;
    /* No weights: the classes and features the external teacher will give. */
    kd_teacher ext = {.num_classes = o->num_classes, .feature_dim = o->feature_dim};
    kd_precompute_options oo = *o;
    oo.no_features = o->feature_dim == 0;
    cache_writer *w = NULL;
    img_loader *l = NULL;
    plan_rows p = {0};
    hid_t file = -1;
    if ((st = kd_precompute_image_table(ds, perm, &table, err)) ||
        (st = kd_precompute_header(&oo, KD_PLAN_TEACHER_ARCH, &ext, &table, &h, err)))
        goto done;
    if ((st = cache_writer_create(o->out, &h, &table, NULL, &w, err)))
        goto done;
    h = *cache_writer_header(w);
    cache_writer_abort(w); /* the layout is flushed; the views go in below */
    w = NULL;
    img_loader_config lc;
    img_loader_config_default(&lc);
    lc.threads = o->decode_threads > 0 ? o->decode_threads : threads;
    lc.batch_size = o->batch;
    lc.prefetch = 4;
    kd_precompute_norm(o, &lc.norm);
    if ((st = kd_precompute_view_params(o, &lc.view, err)) ||
        (st = img_loader_create(&l, ds, &lc, err)))
        goto done;
    size_t ch = (size_t)h.chunk_images, V = (size_t)h.views_per_image;
    p.height = calloc(ch, sizeof *p.height);
    p.width = calloc(ch, sizeof *p.width);
    p.skipped = calloc(ch, 1);
    p.size = calloc(ch, sizeof *p.size);
    p.crc32 = calloc(ch, sizeof *p.crc32);
    p.box = calloc(ch * V * 4, sizeof *p.box);
    p.flip = calloc(ch * V, 1);
    p.reqs = calloc(ch * V, sizeof *p.reqs);
    if (!p.height || !p.width || !p.skipped || !p.size || !p.crc32 || !p.box || !p.flip ||
        !p.reqs) {
        st = kdc_fail(err, KDC_ENOMEM, "plan buffers of %zu images: out of memory", ch);
        goto done;
    }
    hid_t fapl = cache_h5_fapl_for_writing();
    file = H5Fopen(partial, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (file < 0) {
        st = cache_h5_fail(err, KDC_EIO, "reopening %s", partial);
        goto done;
    }
    if (hk && hk->progress)
        hk->progress->total = (uint64_t)h.num_images;
    for (int64_t first = 0; first < h.num_images; first += (int64_t)ch) {
        int64_t n = h.num_images - first < (int64_t)ch ? h.num_images - first : (int64_t)ch;
        if ((st = plan_chunk(o, hk, l, ds, perm, first, n, &p, &s->images_skipped, err)) ||
            (st = write_rows(file, first, n, &p, err)))
            goto done;
        s->images_run += n;
        if (hk && hk->progress)
            kdc_progress_update(hk->progress, (uint64_t)(first + n));
    }
    if (H5Fclose(file) < 0) {
        file = -1;
        st = cache_h5_fail(err, KDC_EIO, "closing %s", partial);
        goto done;
    }
    file = -1;
    st = kdc_commit_file(partial, o->out, err);
done:
    if (file >= 0)
        H5Fclose(file);
    if (w)
        cache_writer_abort(w);
    img_loader_destroy(l);
    rows_free(&p);
    kd_precompute_image_table_free(&table);
    free(perm);
    return st;
}

kdc_status kd_precompute_plan(const kd_precompute_options *o, const kd_precompute_hooks *hooks,
                              kd_precompute_stats *stats, kdc_error *err)
{
    memset(stats, 0, sizeof *stats);
    char partial[4096];
    kdc_status st = kdc_partial_name(o->out, partial, sizeof partial, err);
    if (st)
        return st;
    if (kdc_path_exists(o->out))
        return kdc_fail(err, KDC_EINVAL, "%s exists: remove it first", o->out);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->out);
    if (!kdc_is_dir(dirname(dir)))
        return kdc_fail(err, KDC_EIO, "--out %s: its folder does not exist", o->out);
    img_dataset *ds = NULL;
    double t0 = kdc_now_seconds();
    if ((st = open_dataset(o, &ds, err)))
        return st;
    if (ds->count == 0)
        st = kdc_fail(err, KDC_EINVAL, "%s: no JPEG images found", o->data ? o->data : o->list);
    kd_precompute_options oc = *o;
    if (oc.num_classes == 0)
        oc.num_classes = ds->num_classes; /* ImageFolder: one class per folder */
    if (st == KDC_OK && oc.num_classes < 1)
        st = kdc_fail(err, KDC_EINVAL, "--plan-only: give --num-classes C (the teacher's classes)");
    for (size_t i = 0; i < ds->count && st == KDC_OK; i++)
        if (ds->items[i].label >= oc.num_classes)
            st = kdc_fail(err, KDC_EMISMATCH, "%s has label %d but --num-classes is %d",
                          ds->items[i].path, ds->items[i].label, oc.num_classes);
    if (st == KDC_OK) {
        stats->num_images = stats->range_images = (int64_t)ds->count;
        stats->views = o->views;
        st = plan(&oc, hooks, stats, ds, partial, err);
    }
    stats->run_s = kdc_now_seconds() - t0;
    img_dataset_free(ds);
    return st;
}
