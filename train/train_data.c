/* train_data.c - epoch plans, cache rows and decoded pixels in step. */
#include "train/train_data.h"

#include <stdlib.h>
#include <string.h>

#include "common/base/half.h"
#include "train/batch_dump.h"
#include "common/image/loader.h"
#include "common/base/rng.h"
#include "formats/cache_match.h"
#include "formats/cache_stream.h"

/* Batches per loader plan. The loader decodes ahead within a plan; a plan
 * boundary costs nothing because the next plan starts while the last batch of
 * the current one is being trained on. 4 keeps the loader's prefetch ring full. */
#define SEGMENT_BATCHES 4

/* Key tag for the online shuffle, so its Philox stream never coincides with
 * the views' (seed, image, view) streams. */
#define ONLINE_SHUFFLE_TAG 0x5348554646ull /* "SHUFF" */

typedef struct segment {
    int nbatches;
    int count[SEGMENT_BATCHES];
    int lo[SEGMENT_BATCHES];           /* this rank's first sample of each global batch */
    cache_batch rows[SEGMENT_BATCHES]; /* cache mode */
    img_request *reqs;                 /* SEGMENT_BATCHES * B */
    size_t nreqs;
} segment;

struct kd_data {
    kd_data_config cfg;
    img_dataset *ds;
    cache_stream *stream;
    const cache_header *h;
    const cache_image_table *table;
    int64_t *ds_of_row; /* cache row -> dataset index (rows may be shuffled) */
    img_view_params view;
    img_norm norm;
    int num_classes;
    img_loader *loader;

    segment seg[2];
    int cur;      /* segment being consumed */
    int cur_batch; /* next batch within it */
    int epoch_done;

    /* online plan */
    int64_t *perm;
    int64_t next_pos;
    int64_t epoch;
    int64_t left_out; /* ranks > 1: a last batch too small to split */
    int rank, ranks;

    /* output */
    float *pixels;
    int32_t *label;
    int64_t *image;
    uint16_t *topk_value;
    img_skip_log skipped, cache_skipped;
    int S;
    const char *dump_dir; /* KDC_DUMP_BATCHES (batch_dump.h) */
    int64_t batches_served; /* this epoch */
};

const img_dataset *kd_data_dataset(const kd_data *d)
{
    return d->ds;
}
const cache_header *kd_data_cache_header(const kd_data *d)
{
    return d->h;
}
int kd_data_num_classes(const kd_data *d)
{
    return d->num_classes;
}
const img_view_params *kd_data_view_params(const kd_data *d)
{
    return &d->view;
}
const img_norm *kd_data_norm(const kd_data *d)
{
    return &d->norm;
}
const img_skip_log *kd_data_epoch_skipped(const kd_data *d)
{
    return &d->skipped;
}
const img_skip_log *kd_data_cache_skipped(const kd_data *d)
{
    return &d->cache_skipped;
}
int64_t kd_data_epoch_left_out(const kd_data *d)
{
    return d->left_out;
}

int64_t kd_data_epoch_samples(const kd_data *d)
{
    return d->stream ? cache_stream_epoch_samples(d->stream) : (int64_t)d->ds->count;
}

int64_t kd_data_epoch_batches(const kd_data *d)
{
    int64_t n = kd_data_epoch_samples(d), B = d->cfg.batch_size;
    return (n + B - 1) / B;
}

void kd_data_close(kd_data *d)
{
    if (!d)
        return;
    img_loader_destroy(d->loader);
    cache_stream_close(d->stream);
    for (int s = 0; s < 2; s++) {
        for (int b = 0; b < SEGMENT_BATCHES; b++)
            cache_batch_free(&d->seg[s].rows[b]);
        free(d->seg[s].reqs);
    }
    free(d->perm);
    free(d->ds_of_row);
    free(d->pixels);
    free(d->label);
    free(d->image);
    free(d->topk_value);
    img_dataset_free(d->ds);
    free(d);
}

kdc_status kd_data_open(const kd_data_config *cfg, kd_data **out, kdc_error *err)
{
    *out = NULL;
    kdc_status st;
    if (cfg->batch_size < 1)
        return kdc_fail(err, KDC_EINVAL, "batch size %d < 1", cfg->batch_size);
    kd_data *d = calloc(1, sizeof *d);
    if (!d)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    d->cfg = *cfg;
    d->dump_dir = kd_batch_dump_dir();
    size_t B = (size_t)cfg->batch_size;
    d->ranks = cfg->ranks > 0 ? cfg->ranks : 1;
    d->rank = cfg->rank;
    if (d->rank < 0 || d->rank >= d->ranks || cfg->batch_size % d->ranks) {
        kdc_fail(err, KDC_EINVAL, "rank %d of %d, batch %d", d->rank, d->ranks, cfg->batch_size);
        free(d);
        return KDC_EINVAL;
    }
    if ((st = img_dataset_open_folder(&d->ds, cfg->data, err)))
        goto fail;
    if (d->ds->count == 0) {
        st = kdc_fail(err, KDC_EINVAL, "%s: no JPEG images", cfg->data);
        goto fail;
    }
    if (cfg->cache) {
        cache_stream_options so = {.batch_size = cfg->batch_size,
                                   .buffer_chunks = 0,
                                   .shuffle = cfg->shuffle,
                                   .all_views = 0,
                                   .seed = cfg->seed};
        if ((st = cache_stream_open(cfg->cache, &so, &d->stream, err)))
            goto fail;
        d->h = cache_stream_header(d->stream);
        d->table = cache_stream_images(d->stream);
        if (!(d->ds_of_row = malloc(d->ds->count * sizeof *d->ds_of_row))) {
            st = kdc_fail(err, KDC_ENOMEM, "out of memory");
            goto fail;
        }
        if ((st = cache_match_dataset(d->ds, d->table, cfg->cache, d->ds_of_row, err)))
            goto fail;
        if ((st = cache_match_view_params(d->h, &d->view, &d->norm, err)))
            goto fail;
        for (int64_t r = 0; r < d->table->count; r++)
            if (d->table->skipped[r])
                img_skip_log_add(&d->cache_skipped, d->table->path[r]);
        if (d->h->num_classes > 1000000) {
            st = kdc_fail(err, KDC_EUNSUPPORTED, "%s: %lld classes", cfg->cache,
                          (long long)d->h->num_classes);
            goto fail;
        }
        d->num_classes = (int)d->h->num_classes;
        for (int s = 0; s < 2; s++)
            for (int b = 0; b < SEGMENT_BATCHES; b++)
                if ((st = cache_batch_alloc(&d->seg[s].rows[b], d->h, cfg->batch_size, err)))
                    goto fail;
        if (d->h->logit_storage == CACHE_LOGITS_TOPK &&
            !(d->topk_value = malloc(B * (size_t)d->h->topk * sizeof *d->topk_value))) {
            st = kdc_fail(err, KDC_ENOMEM, "out of memory");
            goto fail;
        }
    } else {
        d->view = cfg->view;
        d->norm = cfg->norm;
        if ((st = img_view_params_check(&d->view, err)) || (st = img_norm_check(&d->norm, err)))
            goto fail;
        if (d->ds->num_classes < 1) {
            st = kdc_fail(err, KDC_EINVAL, "%s: no classes", cfg->data);
            goto fail;
        }
        d->num_classes = d->ds->num_classes;
        if (!(d->perm = malloc(d->ds->count * sizeof *d->perm))) {
            st = kdc_fail(err, KDC_ENOMEM, "out of memory");
            goto fail;
        }
    }
    d->S = d->view.image_size;
    size_t per = (size_t)3 * (size_t)d->S * (size_t)d->S;
    for (int s = 0; s < 2; s++)
        if (!(d->seg[s].reqs = calloc(SEGMENT_BATCHES * B, sizeof *d->seg[s].reqs))) {
            st = kdc_fail(err, KDC_ENOMEM, "out of memory");
            goto fail;
        }
    d->pixels = malloc(B * per * sizeof *d->pixels);
    d->label = malloc(B * sizeof *d->label);
    d->image = malloc(B * sizeof *d->image);
    if (!d->pixels || !d->label || !d->image) {
        st = kdc_fail(err, KDC_ENOMEM, "out of memory for a batch of %zu images", B);
        goto fail;
    }
    img_loader_config lc;
    img_loader_config_default(&lc);
    lc.threads = cfg->threads < 1 ? 1 : cfg->threads;
    lc.batch_size = cfg->batch_size / d->ranks; /* this rank's slice of each batch */
    lc.prefetch = SEGMENT_BATCHES;
    lc.view = d->view;
    lc.norm = d->norm;
    if ((st = img_loader_create(&d->loader, d->ds, &lc, err)))
        goto fail;
    d->epoch_done = 1;
    *out = d;
    return KDC_OK;
fail:
    kd_data_close(d);
    return st;
}

/* This rank's contiguous slice [lo, hi) of a global batch of n samples: the
 * B/R-th slices of a full batch, an even split of a short one. */
static void slice_of(const kd_data *d, int n, int *lo, int *hi)
{
    *lo = (int)((int64_t)d->rank * n / d->ranks);
    *hi = (int)((int64_t)(d->rank + 1) * n / d->ranks);
}

/* Fills segment s with up to SEGMENT_BATCHES batches of requests from the
 * epoch's source and starts the loader on them. */
static kdc_status fill_segment(kd_data *d, int s, kdc_error *err)
{
    segment *g = &d->seg[s];
    size_t B = (size_t)d->cfg.batch_size;
    kdc_status st;
    g->nbatches = 0;
    g->nreqs = 0;
    for (int b = 0; b < SEGMENT_BATCHES; b++) {
        int n = 0, lo = 0, hi = 0; /* the global batch and this rank's slice */
        if (d->stream) {
            cache_batch *rb = &g->rows[b];
            if ((st = cache_stream_next(d->stream, rb, err)))
                return st;
            n = rb->count;
            slice_of(d, n, &lo, &hi);
            for (int i = lo; i < hi; i++)
                if ((st = cache_match_view(&d->view, d->table, rb->image[i], rb->view[i],
                                           rb->box + 4 * i, rb->flip[i], d->cfg.cache, err)))
                    return st;
            for (int i = lo; i < hi; i++) {
                img_request *q = &g->reqs[g->nreqs + (size_t)(i - lo)];
                q->index = d->ds_of_row[rb->image[i]]; /* rb->image: cache rows */
                q->view_index = (uint32_t)rb->view[i];
                q->has_view = 1;
                q->view.y0 = rb->box[4 * i];
                q->view.x0 = rb->box[4 * i + 1];
                q->view.h = rb->box[4 * i + 2];
                q->view.w = rb->box[4 * i + 3];
                q->view.flip = rb->flip[i];
            }
        } else {
            int64_t left = (int64_t)d->ds->count - d->next_pos;
            n = left < (int64_t)B ? (int)left : (int)B;
            slice_of(d, n, &lo, &hi);
            for (int i = lo; i < hi; i++) {
                img_request *q = &g->reqs[g->nreqs + (size_t)(i - lo)];
                memset(q, 0, sizeof *q);
                q->index = d->perm[d->next_pos + i];
                q->view_index = (uint32_t)d->epoch;
                q->has_view = 0;
            }
            d->next_pos += n;
        }
        if (n == 0)
            break;
        if (d->ranks > 1 && n < 2 * d->ranks) {
            d->left_out += n; /* some rank would train on fewer than 2 images */
            break;
        }
        g->count[b] = hi - lo;
        g->lo[b] = lo;
        g->nreqs += (size_t)(hi - lo);
        g->nbatches++;
        if ((size_t)n < B)
            break; /* only the epoch's last batch is short */
    }
    if (g->nreqs == 0)
        return KDC_OK;
    return img_loader_start(d->loader, g->reqs, g->nreqs, err);
}

kdc_status kd_data_start_epoch(kd_data *d, int64_t epoch, kdc_error *err)
{
    kdc_status st;
    d->epoch = epoch;
    d->batches_served = 0;
    d->left_out = 0;
    img_skip_log_clear(&d->skipped);
    if (d->stream) {
        if ((st = cache_stream_start_epoch(d->stream, epoch, err)))
            return st;
    } else {
        size_t n = d->ds->count;
        for (size_t i = 0; i < n; i++)
            d->perm[i] = (int64_t)i;
        if (d->cfg.shuffle) {
            /* Fisher-Yates from Philox(seed ^ tag, epoch). */
            kdc_philox_stream r;
            kdc_philox_init(&r, d->cfg.seed ^ (ONLINE_SHUFFLE_TAG << 24), (uint64_t)epoch, 0);
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t)(kdc_philox_uniform(&r) * (double)(i + 1));
                if (j > i)
                    j = i;
                int64_t t = d->perm[i];
                d->perm[i] = d->perm[j];
                d->perm[j] = t;
            }
        }
        d->next_pos = 0;
    }
    d->cur = 0;
    d->cur_batch = 0;
    d->epoch_done = 0;
    if ((st = fill_segment(d, 0, err)))
        return st;
    if (d->seg[0].nbatches == 0)
        d->epoch_done = 1;
    return KDC_OK;
}

kdc_status kd_data_next(kd_data *d, kd_batch *out, kdc_error *err)
{
    return kd_data_next_into(d, out, d->pixels, err);
}

kdc_status kd_data_next_into(kd_data *d, kd_batch *out, float *pixels, kdc_error *err)
{
    memset(out, 0, sizeof *out);
    if (d->epoch_done)
        return KDC_OK;
    kdc_status st;
    segment *g = &d->seg[d->cur];
    int bi = d->cur_batch;
    img_batch *ib = NULL;
    if ((st = img_loader_next(d->loader, &ib, err)))
        return st;
    if (!ib || ib->count != g->count[bi]) {
        if (ib)
            img_loader_release(d->loader, ib);
        return kdc_fail(err, KDC_EINVAL, "loader returned an unexpected batch");
    }
    size_t per = (size_t)3 * (size_t)d->S * (size_t)d->S;
    int n = 0;
    for (int i = 0; i < ib->count; i++) {
        const img_sample *s = &ib->samples[i];
        if (d->stream) {
            /* The file must be the one the teacher saw (cache_match.h): its
             * bytes first, so a changed file is named as changed even when it
             * no longer decodes. Samples arrive in request order: sample i is
             * row rb->image[i]. */
            int64_t row = g->rows[bi].image[g->lo[bi] + i];
            int read = s->status == KDC_OK || s->status == KDC_EIMAGE;
            int ok = s->status == KDC_OK;
            if (read && (st = cache_match_file(d->table, row, d->ds->root, s->file_size,
                                               s->crc32, ok ? s->width : d->table->width[row],
                                               ok ? s->height : d->table->height[row],
                                               d->cfg.cache, err))) {
                img_loader_release(d->loader, ib);
                return st;
            }
            if (!ok) {
                st = kdc_fail(err, s->status == KDC_EIMAGE ? KDC_EMISMATCH : s->status,
                              "%s (the cache %s has outputs for it)", s->msg, d->cfg.cache);
                img_loader_release(d->loader, ib);
                return st;
            }
        } else if (s->status != KDC_OK) {
            img_skip_log_add(&d->skipped, s->msg);
            continue; /* online: drop the unreadable image */
        }
        memcpy(pixels + (size_t)n * per, img_batch_sample_pixels(ib, i), per * sizeof(float));
        d->label[n] = s->label;
        d->image[n] = s->index;
        n++;
    }
    img_loader_release(d->loader, ib);

    out->count = n;
    out->pixels = pixels;
    out->label = d->label;
    out->image = d->image;
    if (d->stream) {
        /* this rank's rows of the global batch (all of it with one rank) */
        const cache_batch *rb = &g->rows[bi];
        size_t lo = (size_t)g->lo[bi], K = (size_t)d->h->topk;
        out->logits = rb->logits ? rb->logits + lo * (size_t)d->h->num_classes : NULL;
        out->features = d->h->feature_dim > 0 ? rb->features + lo * (size_t)d->h->feature_dim
                                              : NULL;
        if (rb->topk_index) {
            size_t nk = (size_t)n * K;
            kdc_f32_to_f16_array(rb->topk_value + lo * K, d->topk_value, nk); /* exact: f16 */
            out->topk_index = rb->topk_index + lo * K;
            out->topk_value = d->topk_value;
        }
        if (d->dump_dir && d->batches_served == 0)
            kd_batch_dump(d->dump_dir, d->epoch, n, rb->image + lo, rb->view + lo, d->label, pixels,
                          per);
    }
    d->batches_served++;

    /* Last batch of this plan: queue the next plan now, so decoding overlaps the
     * step on this batch. The other segment's rows are free: its batches were all
     * consumed before this segment started. */
    d->cur_batch++;
    if (d->cur_batch == g->nbatches) {
        int other = 1 - d->cur;
        if ((st = fill_segment(d, other, err)))
            return st;
        if (d->seg[other].nbatches == 0)
            d->epoch_done = 1;
        d->cur = other;
        d->cur_batch = 0;
    }
    return KDC_OK;
}
