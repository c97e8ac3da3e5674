/* loader.c - decoding threads, batch slots and the in-order hand-over. */
#include "common/image/loader.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/image/jpeg_decode.h"

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_HELD };

typedef struct slot {
    img_batch batch;
    enum slot_state state;
    int done; /* samples finished (ok or failed) */
} slot;

struct img_loader {
    const img_dataset *ds;
    img_loader_config cfg;
    pthread_t *tids;
    int nthreads;
    slot *slots;
    int nslots;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: a sample became claimable, or stop */
    pthread_cond_t done_cv; /* consumer: a batch completed */
    int stop;

    img_request *plan;
    size_t plan_cap, plan_n, nbatches;
    uint64_t generation;    /* bumps at each start, so stale work is dropped */
    size_t next_sample;     /* next sample to hand to a worker */
    size_t next_out;        /* next batch the consumer receives */
    size_t assigned_upto;   /* batches [0, assigned_upto) have (had) a slot */
    double wait_s;
    int max_run; /* samples one claim may take (bounded by RUN_BYTES) */
};

/* Rendered views a thread holds before normalising them: a run of V views
 * is cut from one decode when V * S * S * 3 fits. 32 MiB is 64 views at 224
 * px; at the largest S (4096) views are decoded one by one. */
#define RUN_BYTES ((size_t)32 << 20)

void img_loader_config_default(img_loader_config *c)
{
    memset(c, 0, sizeof *c);
    c->threads = 1;
    c->batch_size = 32;
    c->prefetch = 4;
    img_view_params_default(&c->view);
    img_norm_default(&c->norm);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t batch_count(const img_loader *l, size_t b)
{
    size_t B = (size_t)l->cfg.batch_size, first = b * B;
    return l->plan_n - first < B ? l->plan_n - first : B;
}

/* Gives batch b the slot b % nslots (which must be free). Under mu. */
static void assign_slot(img_loader *l, size_t b)
{
    slot *s = &l->slots[b % (size_t)l->nslots];
    s->state = SLOT_FILLING;
    s->done = 0;
    s->batch.seq = b;
    s->batch.count = (int)batch_count(l, b);
    s->batch.failed = 0;
    l->assigned_upto = b + 1;
}

static void sample_begin(img_sample *info, const img_request *req)
{
    memset(info, 0, offsetof(img_sample, msg));
    info->msg[0] = '\0';
    info->index = req->index;
    info->view_index = req->view_index;
    info->label = -1;
}

static kdc_status sample_fail(img_sample *info, kdc_status st, const kdc_error *e)
{
    info->status = st;
    snprintf(info->msg, sizeof info->msg, "%s", e->msg);
    return st;
}

kdc_status img_load_views(const img_dataset *ds, const img_view_params *vp,
                          const img_request *reqs, int n, img_decoder *dec,
                          img_view_scratch *scratch, uint8_t *const *rgb_out,
                          img_sample *const *info)
{
    kdc_error e = {0};
    char path[4096];
    kdc_status st = KDC_OK, first = KDC_OK;
    for (int j = 0; j < n; j++)
        sample_begin(info[j], &reqs[j]);
    const int64_t index = reqs[0].index;
    if (n < 1 || n > IMG_LOAD_MAX_VIEWS)
        st = kdc_fail(&e, KDC_EINVAL, "%d views of one image (1..%d)", n, IMG_LOAD_MAX_VIEWS);
    for (int j = 1; j < n && !st; j++)
        if (reqs[j].index != index)
            st = kdc_fail(&e, KDC_EINVAL, "internal: views of images %lld and %lld in one load",
                          (long long)index, (long long)reqs[j].index);
    if (!st && (index < 0 || (uint64_t)index >= ds->count))
        st = kdc_fail(&e, KDC_EINVAL, "image index %lld out of range (%zu images)",
                      (long long)index, ds->count);
    if (!st)
        st = img_dataset_full_path(ds, (size_t)index, path, sizeof path, &e);
    if (!st) {
        /* The one read of the file: its bytes give the size and CRC-32 that the
         * cache records and the pixels that are decoded. */
        st = img_decoder_load_file(dec, path, &e);
        for (int j = 0; j < n; j++) {
            info[j]->label = ds->items[index].label;
            info[j]->file_size = img_decoder_file_size(dec);
            info[j]->crc32 = img_decoder_file_crc32(dec);
        }
    }
    if (st) {
        for (int j = 0; j < n; j++)
            sample_fail(info[j], st, &e);
        return st;
    }
    const int W = img_decoder_width(dec), H = img_decoder_height(dec);
    int eighths[IMG_LOAD_MAX_VIEWS], need = 0; /* need: bit e set when a view decodes at e/8 */
    for (int j = 0; j < n; j++) {
        info[j]->width = W;
        info[j]->height = H;
        eighths[j] = 0;
        if (reqs[j].has_view)
            info[j]->view = reqs[j].view;
        else if ((st = img_view_draw(vp, W, H, (uint64_t)index, reqs[j].view_index,
                                     &info[j]->view, &e))) {
            sample_fail(info[j], st, &e);
            first = first ? first : st;
            continue;
        }
        eighths[j] = img_view_decode_eighths(vp, W, H, &info[j]->view);
        need |= 1 << eighths[j];
    }
    /* One decode per scale in use, largest first; each view is rendered from
     * the decode of its own scale, so the order does not change its bytes. */
    for (int sc = 8; sc >= 1; sc--) {
        if (!(need & (1 << sc)))
            continue;
        const uint8_t *rgb;
        int dw, dh;
        kdc_status dst = img_decoder_decode(dec, sc, &rgb, &dw, &dh, &e);
        for (int j = 0; j < n; j++) {
            if (eighths[j] != sc)
                continue;
            if ((st = dst) == KDC_OK &&
                (st = img_view_render_scaled(vp, rgb, dw, dh, (size_t)dw * 3, W, H,
                                             &info[j]->view, rgb_out[j], scratch, &e)))
                kdc_error_prefix(&e, "%s: ", path);
            if (st) {
                first = first ? first : st;
                sample_fail(info[j], st, &e);
                if (dst == KDC_OK)
                    kdc_error_clear(&e);
            }
        }
    }
    return first;
}

kdc_status img_load_view(const img_dataset *ds, const img_view_params *vp, const img_request *req,
                         img_decoder *dec, img_view_scratch *scratch, uint8_t *rgb_out,
                         img_sample *info)
{
    return img_load_views(ds, vp, req, 1, dec, scratch, &rgb_out, &info);
}

/* How many samples from k on a worker takes at once: the run of requests of
 * the same image, inside batches that already have a slot. Under mu. */
static int claim_run(const img_loader *l, size_t k)
{
    const size_t B = (size_t)l->cfg.batch_size;
    int m = 1;
    while (m < l->max_run && k + (size_t)m < l->plan_n &&
           (k + (size_t)m) / B < l->assigned_upto && l->plan[k + (size_t)m].index == l->plan[k].index)
        m++;
    return m;
}

static void *worker_main(void *arg)
{
    img_loader *l = arg;
    const int S = l->cfg.view.image_size;
    const size_t B = (size_t)l->cfg.batch_size, per = (size_t)S * (size_t)S * 3;
    img_decoder *dec = NULL;
    img_view_scratch scratch = {0};
    uint8_t *rgb = malloc(per * (size_t)l->max_run);
    uint8_t *rgb_of[IMG_LOAD_MAX_VIEWS];
    img_sample *info_of[IMG_LOAD_MAX_VIEWS];
    img_request req[IMG_LOAD_MAX_VIEWS];
    kdc_error e;
    int ok = rgb && img_decoder_create(&dec, &e) == KDC_OK;
    if (ok && l->cfg.max_pixels)
        img_decoder_set_max_pixels(dec, l->cfg.max_pixels);
    for (int j = 0; rgb && j < l->max_run; j++)
        rgb_of[j] = rgb + (size_t)j * per;

    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !(l->next_sample < l->plan_n &&
                             l->next_sample / (size_t)l->cfg.batch_size < l->assigned_upto))
            pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop)
            break;
        size_t k = l->next_sample;
        int m = claim_run(l, k);
        l->next_sample += (size_t)m;
        uint64_t gen = l->generation;
        memcpy(req, l->plan + k, (size_t)m * sizeof *req);
        pthread_mutex_unlock(&l->mu);

        /* The samples' places are owned by this thread until `done` counts them. */
        for (int j = 0; j < m; j++) {
            size_t b = (k + (size_t)j) / B;
            info_of[j] = &l->slots[b % (size_t)l->nslots].batch.samples[(k + (size_t)j) % B];
        }
        if (ok) {
            img_load_views(l->ds, &l->cfg.view, req, m, dec, &scratch, rgb_of, info_of);
        } else {
            for (int j = 0; j < m; j++) {
                memset(info_of[j], 0, sizeof *info_of[j]);
                info_of[j]->index = req[j].index;
                info_of[j]->status = KDC_ENOMEM;
                snprintf(info_of[j]->msg, sizeof info_of[j]->msg, "loader thread: out of memory");
            }
        }
        for (int j = 0; j < m; j++) {
            size_t b = (k + (size_t)j) / B;
            img_batch *bt = &l->slots[b % (size_t)l->nslots].batch;
            float *px = img_batch_sample_pixels(bt, (int)((k + (size_t)j) % B));
            if (info_of[j]->status == KDC_OK)
                img_normalize_chw(rgb_of[j], S, &l->cfg.norm, px);
            else
                memset(px, 0, per * sizeof(float));
        }

        pthread_mutex_lock(&l->mu);
        if (gen == l->generation)
            for (int j = 0; j < m; j++) {
                slot *s = &l->slots[((k + (size_t)j) / B) % (size_t)l->nslots];
                if (info_of[j]->status)
                    s->batch.failed++;
                s->done++;
            }
        /* Every sample, not only a batch's last: img_loader_start waits for
         * in-flight samples of an abandoned plan. */
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    img_decoder_free(dec);
    img_view_scratch_free(&scratch);
    free(rgb);
    return NULL;
}

kdc_status img_loader_create(img_loader **out, const img_dataset *ds, const img_loader_config *cfg,
                             kdc_error *err)
{
    *out = NULL;
    kdc_status st;
    if ((st = img_view_params_check(&cfg->view, err)) || (st = img_norm_check(&cfg->norm, err)))
        return st;
    if (cfg->threads < 1 || cfg->threads > IMG_LOADER_MAX_THREADS)
        return kdc_fail(err, KDC_EINVAL, "loader threads %d not in 1..%d", cfg->threads,
                        IMG_LOADER_MAX_THREADS);
    if (cfg->batch_size < 1 || cfg->prefetch < 2 || cfg->prefetch > 64)
        return kdc_fail(err, KDC_EINVAL, "loader batch %d (>= 1) / prefetch %d (2..64)",
                        cfg->batch_size, cfg->prefetch);
    img_loader *l = calloc(1, sizeof *l);
    if (!l)
        return kdc_fail(err, KDC_ENOMEM, "loader: out of memory");
    l->ds = ds;
    l->cfg = *cfg;
    size_t per = (size_t)cfg->view.image_size * (size_t)cfg->view.image_size * 3;
    l->max_run = RUN_BYTES / per < IMG_LOAD_MAX_VIEWS ? (int)(RUN_BYTES / per) : IMG_LOAD_MAX_VIEWS;
    if (l->max_run < 1)
        l->max_run = 1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);
    l->nslots = cfg->prefetch;
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->tids = calloc((size_t)cfg->threads, sizeof *l->tids);
    if (!l->slots || !l->tids) {
        img_loader_destroy(l);
        return kdc_fail(err, KDC_ENOMEM, "loader: out of memory");
    }
    for (int s = 0; s < l->nslots; s++)
        if ((st = img_batch_alloc(&l->slots[s].batch, cfg->batch_size, cfg->view.image_size, err))) {
            img_loader_destroy(l);
            return st;
        }
    for (int t = 0; t < cfg->threads; t++) {
        if (pthread_create(&l->tids[t], NULL, worker_main, l) != 0) {
            img_loader_destroy(l);
            return kdc_fail(err, KDC_ENOMEM, "loader: cannot start thread %d", t);
        }
        l->nthreads++;
    }
    *out = l;
    return KDC_OK;
}

kdc_status img_loader_start(img_loader *l, const img_request *reqs, size_t n, kdc_error *err)
{
    pthread_mutex_lock(&l->mu);
    /* Abandon the previous plan: wait until no worker is inside a sample of a slot
     * we are about to reuse (all claimed samples finished). */
    l->plan_n = l->next_sample; /* nothing more is claimable */
    for (;;) {
        int busy = 0;
        for (size_t b = l->next_out; b < l->assigned_upto; b++) {
            slot *s = &l->slots[b % (size_t)l->nslots];
            size_t first = b * (size_t)l->cfg.batch_size;
            size_t claimed = l->next_sample > first ? l->next_sample - first : 0;
            if (claimed > (size_t)s->batch.count)
                claimed = (size_t)s->batch.count;
            if (s->state == SLOT_FILLING && (size_t)s->done < claimed)
                busy = 1;
        }
        if (!busy)
            break;
        pthread_cond_wait(&l->done_cv, &l->mu);
    }
    if (n > l->plan_cap) {
        img_request *q = realloc(l->plan, n * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&l->mu);
            return kdc_fail(err, KDC_ENOMEM, "loader: out of memory for a plan of %zu samples", n);
        }
        l->plan = q;
        l->plan_cap = n;
    }
    if (n)
        memcpy(l->plan, reqs, n * sizeof *reqs);
    l->generation++;
    l->plan_n = n;
    l->nbatches = (n + (size_t)l->cfg.batch_size - 1) / (size_t)l->cfg.batch_size;
    l->next_sample = 0;
    l->next_out = 0;
    l->assigned_upto = 0;
    l->wait_s = 0;
    for (int s = 0; s < l->nslots; s++)
        l->slots[s].state = SLOT_FREE;
    for (size_t b = 0; b < l->nbatches && b < (size_t)l->nslots; b++)
        assign_slot(l, b);
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return KDC_OK;
}

kdc_status img_loader_next(img_loader *l, img_batch **out, kdc_error *err)
{
    (void)err;
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->next_out >= l->nbatches) {
        pthread_mutex_unlock(&l->mu);
        return KDC_OK;
    }
    size_t b = l->next_out;
    slot *s = &l->slots[b % (size_t)l->nslots];
    if (!(b < l->assigned_upto && s->state == SLOT_FILLING && s->batch.seq == b)) {
        pthread_mutex_unlock(&l->mu);
        return kdc_fail(err, KDC_EINVAL,
                        "loader: batch %zu has no free buffer; release earlier batches first", b);
    }
    if (s->done < s->batch.count) {
        double t0 = now_s();
        while (s->done < s->batch.count)
            pthread_cond_wait(&l->done_cv, &l->mu);
        l->wait_s += now_s() - t0;
    }
    s->state = SLOT_HELD;
    l->next_out++;
    *out = &s->batch;
    pthread_mutex_unlock(&l->mu);
    return KDC_OK;
}

void img_loader_release(img_loader *l, img_batch *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&l->mu);
    slot *s = &l->slots[b->seq % (size_t)l->nslots];
    if (&s->batch == b && s->state == SLOT_HELD) {
        s->state = SLOT_FREE;
        /* Batches get slots in order; any order of release works. */
        while (l->assigned_upto < l->nbatches &&
               l->slots[l->assigned_upto % (size_t)l->nslots].state == SLOT_FREE)
            assign_slot(l, l->assigned_upto);
        pthread_cond_broadcast(&l->work_cv);
    }
    pthread_mutex_unlock(&l->mu);
}

double img_loader_wait_seconds(const img_loader *l) { return l->wait_s; }

void img_loader_destroy(img_loader *l)
{
    if (!l)
        return;
    if (l->nthreads) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
        for (int t = 0; t < l->nthreads; t++)
            pthread_join(l->tids[t], NULL);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
    for (int s = 0; l->slots && s < l->nslots; s++)
        img_batch_free(&l->slots[s].batch);
    free(l->slots);
    free(l->tids);
    free(l->plan);
    free(l);
}
