/* precompute_run.c - the decode -> forward -> write pipeline of kd-precompute
 * (see precompute_run.h), with the checks that make --resume safe. */
#include "precompute/precompute_run.h"

#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precompute/cache_setup.h"
#include "precompute/chunk_writer.h"
#include "precompute/device_forward.h"
#include "common/device/device.h"
#include "common/nn/backend.h"
#include "common/cuda/cuda_backend.h"
#include "common/image/dataset.h"
#include "common/base/fileutil.h"
#include "common/base/path_check.h"
#include "common/image/loader.h"
#include "common/base/threadpool.h"
#include "formats/cache_reader.h"
#include "formats/cache_writer.h"
#include "precompute/teacher.h"

/* Samples per loader plan. A plan is a run of whole chunks; between plans the
 * decode threads drain once, which costs about one batch of decoding per
 * SEGMENT_SAMPLES samples, while the plan array stays small (a few MB) even
 * for ImageNet x hundreds of views. */
#define SEGMENT_SAMPLES ((size_t)1 << 16)
/* Decoded batches kept ahead of the teacher, and chunk buffers ahead of the
 * writer: enough to absorb jitter, little memory. */
#define PREFETCH_BATCHES 4
#define CHUNK_BUFFERS 3

typedef enum { OUT_CREATE, OUT_RESUME, OUT_CHECK_COMPLETE } out_mode;

/* The batch running on the GPU: where its rows go when they come back. */
typedef struct device_batch {
    kd_chunk_buf *buf;
    int64_t row;   /* first (image, view) row in buf */
    int n;         /* rows */
    int completes; /* the chunk's last batch: buf goes to the writer after it */
} device_batch;

typedef struct run {
    const kd_precompute_options *o;
    const kd_precompute_hooks *hk;
    kd_precompute_stats *s;
    char partial[4096];
    img_dataset *ds;
    kdc_backend *be;
    kd_teacher teacher;
    int64_t *perm;   /* cache row -> dataset index (--order) */
    int64_t *row_of; /* dataset index -> cache row */
    cache_image_table table;
    cache_header h;
    cache_writer *w;
    kd_chunk_writer *cw;
    img_loader *loader;
    img_request *plan;
    size_t plan_cap;
    kd_device_forward *dev; /* the forward stage on a GPU; NULL on the CPU */
    device_batch in_flight;  /* valid while kd_device_forward_pending(dev) */
    int64_t last_reported; /* last image reported as skipped */
} run;

static void note(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const run *r, const char *fmt, ...)
{
    if (!r->hk || !r->hk->on_note)
        return;
    char buf[KDC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->hk->on_note(r->hk->ctx, buf);
}

/* ---- output files: what exists decides create / resume / nothing to do ---- */

static kdc_status check_outputs(run *r, out_mode *mode, kdc_error *err)
{
    const kd_precompute_options *o = r->o;
    kdc_status st = kdc_partial_name(o->out, r->partial, sizeof r->partial, err);
    if (st)
        return st;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->out);
    const char *d = dirname(dir);
    if (!kdc_is_dir(d))
        return kdc_fail(err, KDC_EIO, "--out %s: folder %s does not exist", o->out, d);
    if (kdc_is_dir(o->out))
        return kdc_fail(err, KDC_EINVAL, "--out %s is a folder, not a file name", o->out);
    /* A cache inside its ImageFolder would be listed with it (as an image if
     * named .jpg, or by the next tool that walks the tree) and break the
     * dataset match. Real paths: a relative --out or a linked folder counts. */
    if (o->data && kdc_is_dir(o->data) && kdc_path_is_inside(o->out, o->data) == 1)
        return kdc_fail(err, KDC_EINVAL,
                        "--out %s is inside --data %s: the cache would become part of the "
                        "dataset it describes; write it outside that folder",
                        o->out, o->data);
    int have_out = kdc_path_exists(o->out), have_partial = kdc_path_exists(r->partial);
    if (have_out && !o->resume)
        return kdc_fail(err, KDC_EINVAL,
                        "%s exists: remove it first (or add --resume to check it is complete)",
                        o->out);
    if (have_partial && !o->resume && !have_out)
        return kdc_fail(err, KDC_EINVAL,
                        "%s exists (an interrupted run): add --resume to complete it, or remove it",
                        r->partial);
    *mode = have_out ? OUT_CHECK_COMPLETE : have_partial ? OUT_RESUME : OUT_CREATE;
    /* Now, not after the checksum pass and the teacher load. */
    if (*mode != OUT_CHECK_COMPLETE && (st = kdc_check_dir_writable(d, err)))
        return kdc_error_prefix(err, "--out %s: ", o->out);
    return KDC_OK;
}

static kdc_status open_dataset(run *r, kdc_error *err)
{
    const kd_precompute_options *o = r->o;
    if (o->data) {
        if (!kdc_is_dir(o->data))
            return kdc_fail(err, KDC_EIO, "--data %s: no such folder", o->data);
        return img_dataset_open_folder(&r->ds, o->data, err);
    }
    if (!kdc_path_exists(o->list) || kdc_is_dir(o->list))
        return kdc_fail(err, KDC_EIO, "--list %s: no such file", o->list);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->list);
    return img_dataset_open_list(&r->ds, dirname(dir), o->list, err);
}

/* The header of an existing cache file compared with this run's. Returns
 * KDC_EIO when the file cannot be opened at all. */
static kdc_status compare_with_file(run *r, const char *path, kdc_error *err)
{
    cache_reader *rd;
    kdc_status st = cache_reader_open(path, CACHE_OPEN_ALLOW_INCOMPLETE | CACHE_OPEN_NO_CHUNK_CACHE,
                                      &rd, err);
    if (st)
        return KDC_EIO;
    const cache_header *fh = cache_reader_header(rd);
    const char *diff = cache_header_diff(fh, &r->h, 0), *flag = kd_precompute_run_diff(fh, &r->h);
    /* Another --order also changes the image table (dataset_fingerprint):
     * name the flag, not the dataset. */
    if (flag && (!diff || !strcmp(flag, "--order")))
        st = kdc_fail(err, KDC_EMISMATCH,
                      "cannot resume: %s was made with a different %s (%s); the teacher's "
                      "float32 results depend on it, so use the same value or remove the file",
                      path, flag, fh->created_by);
    else if (diff)
        st = kdc_fail(err, KDC_EMISMATCH,
                      "cannot resume: %s was made with a different %s (attribute %s); use the "
                      "same arguments, weights and dataset, or remove it",
                      path, kd_precompute_attr_meaning(diff), diff);
    cache_reader_close(rd);
    return st;
}

/* ---- the plan: whole chunks, each cut into batches from its first image ---- */

static kdc_status plan_push(run *r, size_t *n, img_request q, kdc_error *err)
{
    if (*n == r->plan_cap) {
        size_t cap = r->plan_cap ? 2 * r->plan_cap : 4096;
        img_request *p = realloc(r->plan, cap * sizeof *p);
        if (!p)
            return kdc_fail(err, KDC_ENOMEM, "plan: out of memory");
        r->plan = p;
        r->plan_cap = cap;
    }
    r->plan[(*n)++] = q;
    return KDC_OK;
}

/* Appends the views of chunks [*c, end) not yet done until the plan holds
 * SEGMENT_SAMPLES; each chunk is padded to whole batches with requests of
 * index -1 (which the loader fails at once and the forward never sees). */
static kdc_status plan_segment(run *r, int64_t *c, int64_t end, size_t *n, kdc_error *err)
{
    const int64_t ch = r->h.chunk_images, N = r->h.num_images;
    const uint32_t V = (uint32_t)r->h.views_per_image;
    const size_t B = (size_t)r->o->batch;
    kdc_status st;
    *n = 0;
    for (; *c < end && *n < SEGMENT_SAMPLES; (*c)++) {
        if (cache_writer_chunk_done(r->w, *c))
            continue;
        int64_t first = *c * ch, count = N - first < ch ? N - first : ch;
        for (int64_t i = first; i < first + count; i++)
            for (uint32_t v = 0; v < V; v++)
                /* The dataset index: the loader decodes that image and draws
                 * its views from (seed, image, view), whatever its row. */
                if ((st = plan_push(r, n, (img_request){.index = r->perm[i], .view_index = v},
                                    err)))
                    return st;
        while (*n % B)
            if ((st = plan_push(r, n, (img_request){.index = -1}, err)))
                return st;
    }
    return KDC_OK;
}

/* ---- forward stage ---- */

typedef struct fill_state {
    kd_chunk_buf *buf;
    int64_t rows; /* (image, view) rows of buf already filled */
    int64_t rows_total;
    int64_t images_done; /* this run, for progress */
} fill_state;

static kdc_status record_samples(run *r, fill_state *f, const img_batch *b, int n, kdc_error *err)
{
    const int64_t V = r->h.views_per_image;
    kd_chunk_buf *cb = f->buf;
    for (int j = 0; j < n; j++) {
        const img_sample *sm = &b->samples[j];
        int64_t row = f->rows + j, img = row / V, v = row % V;
        if (sm->index != r->perm[cb->first_image + img] || (int64_t)sm->view_index != v)
            return kdc_fail(err, KDC_EINVAL, "internal: sample %lld/%u arrived as row %lld",
                            (long long)sm->index, sm->view_index, (long long)row);
        const img_entry *e = &r->ds->items[sm->index];
        if (v == 0) {
            cb->skipped[img] = 0;
            cb->height[img] = sm->height;
            cb->width[img] = sm->width;
        }
        int32_t *box = cb->box + row * 4;
        box[0] = sm->view.y0;
        box[1] = sm->view.x0;
        box[2] = sm->view.h;
        box[3] = sm->view.w;
        cb->flip[row] = sm->view.flip;
        if (sm->status != KDC_OK) {
            if (r->o->strict)
                return kdc_fail(err, KDC_EIMAGE, "%s (--strict)", sm->msg);
            cb->skipped[img] = 1;
            if (r->last_reported != sm->index) {
                r->last_reported = sm->index;
                if (r->hk && r->hk->on_skip)
                    r->hk->on_skip(r->hk->ctx, e->path, sm->msg);
            }
        } else if (sm->file_size != e->size || sm->crc32 != e->crc32) {
            /* The cache would describe other bytes than its fingerprint says. */
            return kdc_fail(err, KDC_EMISMATCH,
                            "%s changed while kd-precompute ran (size or CRC-32 differs from "
                            "the checksum pass); rerun on a stable copy", e->path);
        }
    }
    return KDC_OK;
}

/* Rows [row, row + n) of buf against what the cache can keep
 * (kd_chunk_rows_finite): an image with a NaN, infinite or float16-overflowing
 * output is handled like an unreadable one, skipped and reported, or the end
 * of the run with --strict. */
static kdc_status check_finite(run *r, kd_chunk_buf *buf, kd_chunk_form form, int64_t row,
                               int64_t n, kdc_error *err)
{
    const int64_t V = r->h.views_per_image;
    int64_t bad;
    char why[256], msg[KDC_ERROR_MSG_MAX];
    while (n > 0 && !kd_chunk_rows_finite(buf, form, &r->h, row, n, &bad, why, sizeof why)) {
        int64_t img = bad / V, next = (img + 1) * V;
        if (!buf->skipped[img]) {
            const img_entry *e = &r->ds->items[r->perm[buf->first_image + img]];
            snprintf(msg, sizeof msg, "the teacher's output is not finite (view %lld: %s)",
                     (long long)(bad % V), why);
            if (r->o->strict)
                return kdc_fail(err, KDC_EINVAL, "%s: %s (--strict)", e->path, msg);
            buf->skipped[img] = 1;
            if (r->hk && r->hk->on_skip)
                r->hk->on_skip(r->hk->ctx, e->path, msg);
        }
        n -= next - row;
        row = next;
    }
    return KDC_OK;
}

/* Valid samples of b: padding requests (index -1) only ever end a batch. */
static int valid_samples(const img_batch *b)
{
    int n = 0;
    while (n < b->count && b->samples[n].index >= 0)
        n++;
    return n;
}

/* The chunk buffer that b's n rows go to: a fresh one when b starts a chunk. */
static kdc_status take_buffer(run *r, fill_state *f, const img_batch *b, int n, kdc_error *err)
{
    const int64_t V = r->h.views_per_image, ch = r->h.chunk_images, N = r->h.num_images;
    kdc_status st;
    if (!f->buf) {
        if ((st = kd_chunk_writer_acquire(r->cw, &f->buf, err)))
            return st;
        int64_t first_img = r->row_of[b->samples[0].index];
        f->buf->chunk = first_img / ch;
        f->buf->first_image = f->buf->chunk * ch;
        f->buf->count = N - f->buf->first_image < ch ? N - f->buf->first_image : ch;
        f->rows = 0;
        f->rows_total = f->buf->count * V;
    }
    if (f->rows + n > f->rows_total)
        return kdc_fail(err, KDC_EINVAL, "internal: batch crosses a chunk boundary");
    return KDC_OK;
}

/* A chunk whose every row is in buf: to the writer. */
static void chunk_filled(run *r, fill_state *f, kd_chunk_buf *buf)
{
    for (int64_t i = 0; i < buf->count; i++)
        r->s->images_skipped += buf->skipped[i];
    f->images_done += buf->count;
    kd_chunk_writer_submit(r->cw, buf);
}

static void report_progress(const run *r, const fill_state *f)
{
    if (r->hk && r->hk->progress)
        kdc_progress_update(r->hk->progress,
                            (uint64_t)(f->images_done +
                                       (f->buf ? f->rows / r->h.views_per_image : 0)));
}

/* The CPU teacher: float32 outputs into the chunk buffer, converted by the
 * cache writer. */
static kdc_status forward_batch(run *r, fill_state *f, img_batch *b, kdc_error *err)
{
    const size_t C = (size_t)r->h.num_classes, D = (size_t)r->h.feature_dim;
    const int S = r->o->image_size;
    kdc_status st;
    int n = valid_samples(b);
    if (n == 0)
        return KDC_OK;
    if ((st = take_buffer(r, f, b, n, err)))
        return st;
    double t0 = kdc_now_seconds();
    const float *logits, *feats;
    if ((st = kdc_model_infer(r->teacher.model, b->pixels.data, n, S, S, &logits, &feats, err)))
        return st;
    if ((st = r->be->copy_d2h(r->be, f->buf->logits + (size_t)f->rows * C, logits,
                              (size_t)n * C * sizeof(float), err)))
        return st;
    if (D && (st = r->be->copy_d2h(r->be, f->buf->features + (size_t)f->rows * D, feats,
                                   (size_t)n * D * sizeof(float), err)))
        return st;
    if ((st = record_samples(r, f, b, n, err)) ||
        (st = check_finite(r, f->buf, KD_CHUNK_F32, f->rows, n, err)))
        return st;
    r->s->forward_s += kdc_now_seconds() - t0;
    f->rows += n;
    if (f->rows == f->rows_total) {
        chunk_filled(r, f, f->buf);
        f->buf = NULL;
    }
    report_progress(r, f);
    return KDC_OK;
}

/* Brings the GPU's batch in flight home: its stored rows into its chunk
 * buffer, and the chunk to the writer when that batch was the chunk's last. */
static kdc_status finish_device_batch(run *r, fill_state *f, kdc_error *err)
{
    if (!r->dev || !kd_device_forward_pending(r->dev))
        return KDC_OK;
    device_batch *p = &r->in_flight;
    kdc_status st = kd_device_forward_download(r->dev, &p->buf->stored, p->row, err);
    if (st || (st = check_finite(r, p->buf, KD_CHUNK_STORED, p->row, p->n, err)))
        return st;
    if (p->completes)
        chunk_filled(r, f, p->buf);
    *p = (device_batch){0};
    report_progress(r, f);
    return KDC_OK;
}

/* The GPU teacher (device_forward.h): b's pixels go up through the pinned
 * double buffer while the previous batch still runs, then that batch comes
 * back in stored form and b's forward is enqueued. */
static kdc_status forward_batch_device(run *r, fill_state *f, img_batch *b, kdc_error *err)
{
    const int S = r->o->image_size;
    kdc_status st;
    int n = valid_samples(b);
    if (n == 0)
        return KDC_OK;
    if ((st = take_buffer(r, f, b, n, err)))
        return st;
    double t0 = kdc_now_seconds();
    if ((st = record_samples(r, f, b, n, err)))
        return st;
    float *px;
    if ((st = kd_device_forward_host_slot(r->dev, &px, err)))
        return st;
    memcpy(px, b->pixels.data, (size_t)n * 3 * (size_t)S * (size_t)S * sizeof(float));
    if ((st = kd_device_forward_submit(r->dev, n, err)) ||
        (st = finish_device_batch(r, f, err)) || (st = kd_device_forward_run(r->dev, err)))
        return st;
    r->in_flight = (device_batch){
        .buf = f->buf, .row = f->rows, .n = n, .completes = f->rows + n == f->rows_total};
    f->rows += n;
    if (f->rows == f->rows_total)
        f->buf = NULL; /* handed to the writer by finish_device_batch */
    r->s->forward_s += kdc_now_seconds() - t0;
    return KDC_OK;
}

static kdc_status run_pipeline(run *r, kdc_error *err)
{
    kdc_status st;
    int64_t first, end;
    cache_writer_chunk_range(r->w, &first, &end);
    int64_t remaining = 0;
    for (int64_t c = first; c < end; c++) {
        int64_t f0 = c * r->h.chunk_images, cnt = r->h.num_images - f0;
        if (cnt > r->h.chunk_images)
            cnt = r->h.chunk_images;
        r->s->range_images += cnt;
        if (cache_writer_chunk_done(r->w, c))
            r->s->done_before += cnt;
        else
            remaining += cnt;
    }
    if (r->hk && r->hk->progress) {
        r->hk->progress->total = (uint64_t)remaining;
        r->hk->progress->t_start = r->hk->progress->t_last_draw = kdc_now_seconds();
    }
    if ((st = kd_chunk_writer_start(r->w, CHUNK_BUFFERS,
                                    r->dev ? KD_CHUNK_STORED : KD_CHUNK_F32, &r->cw, err)))
        return st;
    fill_state f = {0};
    int64_t c = first;
    for (;;) {
        size_t n;
        if ((st = plan_segment(r, &c, end, &n, err)))
            break;
        if (n == 0)
            break;
        if ((st = img_loader_start(r->loader, r->plan, n, err)))
            break;
        double wait0 = img_loader_wait_seconds(r->loader);
        img_batch *b;
        while ((st = img_loader_next(r->loader, &b, err)) == KDC_OK && b) {
            st = r->dev ? forward_batch_device(r, &f, b, err) : forward_batch(r, &f, b, err);
            img_loader_release(r->loader, b);
            if (st)
                break;
        }
        r->s->decode_wait_s += img_loader_wait_seconds(r->loader) - wait0;
        if (st)
            break;
    }
    /* The GPU's last batch; also after a failure, so that a chunk it
     * completed is written (a resume keeps it), as on the CPU. */
    double t1 = kdc_now_seconds();
    kdc_error ferr;
    kdc_status fst = finish_device_batch(r, &f, st ? &ferr : err);
    if (st == KDC_OK)
        st = fst;
    r->s->forward_s += kdc_now_seconds() - t1;
    if (st == KDC_OK && f.buf)
        st = kdc_fail(err, KDC_EINVAL, "internal: chunk %lld left incomplete",
                      (long long)f.buf->chunk);
    r->s->images_run = f.images_done;
    /* Chunks already queued are written even after a failure: a resume keeps them. */
    double t0 = kdc_now_seconds();
    kdc_error werr;
    kdc_status wst = kd_chunk_writer_stop(r->cw, 0, &werr);
    r->s->finish_s = kdc_now_seconds() - t0;
    r->s->write_s = kd_chunk_writer_busy_seconds(r->cw);
    r->s->write_wait_s = kd_chunk_writer_wait_seconds(r->cw);
    if (st == KDC_OK && wst) {
        st = wst;
        if (err)
            *err = werr;
    }
    return st;
}

/* ---- setup and teardown ---- */

static void run_free(run *r)
{
    kd_chunk_writer_free(r->cw);
    if (r->w)
        cache_writer_abort(r->w); /* keeps PATH.partial for --resume */
    img_loader_destroy(r->loader);
    kd_device_forward_free(r->dev);
    kd_teacher_free(&r->teacher);
    kdc_backend_destroy(r->be);
    kd_precompute_image_table_free(&r->table);
    free(r->perm);
    free(r->row_of);
    img_dataset_free(r->ds);
    free(r->plan);
}

static kdc_status setup(run *r, out_mode *mode, kdc_error *err)
{
    const kd_precompute_options *o = r->o;
    kdc_status st;
    img_view_params vp;
    if ((st = check_outputs(r, mode, err)) || (st = kd_precompute_view_params(o, &vp, err)))
        return st;
    if ((st = open_dataset(r, err)))
        return st;
    if (r->ds->count == 0)
        return kdc_fail(err, KDC_EINVAL, "%s: no JPEG images found", o->data ? o->data : o->list);
    int threads = o->threads > 0 ? o->threads : kdc_cpu_count();
    r->s->compute_threads = threads;
    if ((st = kdc_backend_create(o->device, threads, &r->be, err)) ||
        (st = kdc_backend_set_precision(r->be, o->precision, err)))
        return st;
    /* The teacher before the checksums: bad weights fail in a second, not
     * after reading the whole dataset. */
    note(r, "loading %s from %s", o->teacher, o->weights);
    if ((st = kd_teacher_load(o->teacher, o->weights, r->be, &r->teacher, err)))
        return st;
    /* What the listing already tells: refused before the slow checksum pass. */
    const int C = r->teacher.num_classes;
    if (o->logits == KD_LOGITS_TOPK && o->topk > C)
        return kdc_fail(err, KDC_EINVAL, "--logits topk:%d: the teacher has only %d classes",
                        o->topk, C);
    for (size_t i = 0; i < r->ds->count; i++)
        if (r->ds->items[i].label >= C)
            return kdc_fail(err, KDC_EMISMATCH,
                            "%s has label %d but the teacher has %d classes (a dataset with more "
                            "classes than the teacher?)",
                            r->ds->items[i].path, r->ds->items[i].label, C);
    note(r, "checksumming %zu images (%d threads)", r->ds->count, threads);
    if ((st = img_dataset_checksum(r->ds, threads, err)))
        return st;
    r->perm = malloc(r->ds->count * sizeof *r->perm);
    r->row_of = malloc(r->ds->count * sizeof *r->row_of);
    if (!r->perm || !r->row_of)
        return kdc_fail(err, KDC_ENOMEM, "row order of %zu images: out of memory", r->ds->count);
    kd_precompute_row_order(o, r->ds->count, r->perm);
    for (size_t i = 0; i < r->ds->count; i++)
        r->row_of[r->perm[i]] = (int64_t)i;
    if ((st = kd_precompute_image_table(r->ds, r->perm, &r->table, err)) ||
        (st = kd_precompute_header(o, o->teacher, &r->teacher, &r->table, &r->h, err)))
        return st;
    r->s->num_images = r->h.num_images;
    r->s->views = o->views;

    if (*mode == OUT_CHECK_COMPLETE) {
        st = compare_with_file(r, o->out, err);
        if (st == KDC_EIO)
            return kdc_fail(err, KDC_EFORMAT, "%s exists but is not a readable cache; remove it",
                            o->out);
        return st;
    }
    if (*mode == OUT_RESUME) {
        st = compare_with_file(r, r->partial, err);
        if (st == KDC_EIO) {
            /* Killed before its layout was first flushed: it holds no finished
             * chunk, so starting over loses nothing. */
            note(r, "%s cannot be opened (killed while being created?): starting over",
                 r->partial);
            *mode = OUT_CREATE;
        } else if (st) {
            return st;
        }
    }
    if (*mode == OUT_RESUME) {
        if ((st = cache_writer_resume(o->out, &r->h, &r->table, NULL, &r->w, err)))
            return st;
    } else if ((st = cache_writer_create(o->out, &r->h, &r->table, NULL, &r->w, err))) {
        return st;
    }

    img_loader_config lc;
    img_loader_config_default(&lc);
    lc.threads = o->decode_threads > 0 ? o->decode_threads : threads;
    lc.batch_size = o->batch;
    lc.prefetch = PREFETCH_BATCHES;
    lc.view = vp;
    kd_precompute_norm(o, &lc.norm);
    r->s->decode_threads = lc.threads;
    if ((st = img_loader_create(&r->loader, r->ds, &lc, err)))
        return st;
    if (r->be->device.type != KDC_DEVICE_CPU) {
        note(r, "teacher on %s, %s arithmetic", r->be->name, kdc_precision_name(o->precision));
        if ((st = kd_device_forward_create(r->be, r->teacher.model, cache_writer_header(r->w),
                                           o->batch, o->image_size, &r->dev, err)))
            return st;
    }
    return KDC_OK;
}

kdc_status kd_precompute_run(const kd_precompute_options *o, const kd_precompute_hooks *hooks,
                             kd_precompute_stats *stats, kdc_error *err)
{
    run r = {.o = o, .hk = hooks, .s = stats, .last_reported = -1};
    memset(stats, 0, sizeof *stats);
    out_mode mode = OUT_CREATE;
    double t0 = kdc_now_seconds();
    kdc_status st = setup(&r, &mode, err);
    stats->setup_s = kdc_now_seconds() - t0;
    if (st == KDC_OK && mode == OUT_CHECK_COMPLETE) {
        stats->already_complete = 1;
        stats->range_images = stats->done_before = r.h.num_images;
    } else if (st == KDC_OK) {
        t0 = kdc_now_seconds();
        st = run_pipeline(&r, err);
        if (st == KDC_OK) {
            cache_writer *w = r.w;
            r.w = NULL;
            st = cache_writer_finish(w, err);
        }
        stats->run_s = kdc_now_seconds() - t0;
    }
    run_free(&r);
    return st;
}
