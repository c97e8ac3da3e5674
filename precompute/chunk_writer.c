/* chunk_writer.c - the writer thread and its ring of chunk buffers. */
#include "precompute/chunk_writer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/half.h"
#include "common/base/progress.h"

/* BUF_DROPPED: handed out but abandoned; the thread frees it in ring order. */
enum buf_state { BUF_FREE, BUF_FILLING, BUF_QUEUED, BUF_DROPPED };

struct kd_chunk_writer {
    cache_writer *w;
    kd_chunk_form form;
    kd_chunk_buf *bufs;
    enum buf_state *state;
    int nbufs;
    int head, tail; /* next to write / next to hand out (ring order) */
    pthread_t tid;
    int started, stopping, discard, failed;
    kdc_error err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double busy_s, wait_s;
    int64_t images_written;
};

static void free_bufs(kd_chunk_writer *cw)
{
    for (int i = 0; cw->bufs && i < cw->nbufs; i++) {
        kd_chunk_buf *b = &cw->bufs[i];
        if (cw->form == KD_CHUNK_STORED) {
            cache_chunk_free(&b->stored);
            continue;
        }
        free(b->height);
        free(b->width);
        free(b->skipped);
        free(b->box);
        free(b->flip);
        free(b->logits);
        free(b->features);
    }
    free(cw->bufs);
    free(cw->state);
}

/* cache_writer_write_chunk's rule for skipped images, applied to a chunk in
 * stored form: whatever the teacher computed for an unreadable image (its
 * placeholder pixels), the file holds zeros for it. */
static void zero_skipped(const cache_header *h, cache_chunk *c)
{
    size_t V = (size_t)h->views_per_image, C = (size_t)h->num_classes;
    size_t D = (size_t)h->feature_dim, K = (size_t)h->topk;
    for (int64_t i = 0; i < c->count; i++) {
        if (!c->skipped[i])
            continue;
        size_t d = (size_t)i;
        c->height[d] = c->width[d] = 0;
        memset(c->box + d * V * 4, 0, V * 4 * sizeof(int32_t));
        memset(c->flip + d * V, 0, V);
        if (h->logit_storage == CACHE_LOGITS_TOPK) {
            size_t is = cache_topk_index_size(h);
            memset((char *)c->topk_index + d * V * K * is, 0, V * K * is);
            memset(c->topk_value + d * V * K, 0, V * K * 2);
        } else {
            size_t es = h->logit_storage == CACHE_LOGITS_F32 ? 4 : 2;
            memset((char *)c->logits + d * V * C * es, 0, V * C * es);
        }
        if (D)
            memset(c->features + d * V * D, 0, V * D * 2);
    }
}

static int f16_bits_finite(uint16_t v)
{
    return (v & 0x7c00u) != 0x7c00u;
}

/* A float32 value the file can keep (to_f16: it is stored as float16). Under
 * round-to-nearest-even, |v| < 65520 (the midpoint between float16's largest
 * value, 65504, and 65536) rounds to a finite half, anything larger to
 * infinity: kdc_f32_to_f16's rule, without converting every value. */
static int f32_storable(float v, int to_f16)
{
    return isfinite(v) && (!to_f16 || fabsf(v) < 65520.0f);
}

static int bad_f32(const float *x, size_t n, int to_f16, const char *what, char *why,
                   size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (!f32_storable(x[i], to_f16)) {
            snprintf(why, len, "%s %zu is %g%s", what, i, (double)x[i],
                     isfinite(x[i]) ? ", beyond float16's range" : "");
            return 1;
        }
    return 0;
}

static int bad_f16(const uint16_t *x, size_t n, const char *what, char *why, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (!f16_bits_finite(x[i])) {
            snprintf(why, len, "%s %zu is %g", what, i, (double)kdc_f16_to_f32(x[i]));
            return 1;
        }
    return 0;
}

int kd_chunk_rows_finite(const kd_chunk_buf *b, kd_chunk_form form, const cache_header *h,
                         int64_t row, int64_t n, int64_t *bad_row, char *why, size_t why_len)
{
    const size_t C = (size_t)h->num_classes, D = (size_t)h->feature_dim, K = (size_t)h->topk;
    const int f16_logits = h->logit_storage != CACHE_LOGITS_F32;
    for (int64_t r = row; r < row + n; r++) {
        size_t i = (size_t)r;
        int bad;
        if (form == KD_CHUNK_F32) {
            bad = bad_f32(b->logits + i * C, C, f16_logits, "logit", why, why_len) ||
                  (D && bad_f32(b->features + i * D, D, 1, "feature", why, why_len));
        } else {
            const cache_chunk *c = &b->stored;
            if (h->logit_storage == CACHE_LOGITS_F32)
                bad = bad_f32((const float *)c->logits + i * C, C, 0, "logit", why, why_len);
            else if (h->logit_storage == CACHE_LOGITS_F16)
                bad = bad_f16((const uint16_t *)c->logits + i * C, C, "logit", why, why_len);
            else
                bad = bad_f16(c->topk_value + i * K, K, "top-k value", why, why_len);
            bad = bad || (D && bad_f16(c->features + i * D, D, "feature", why, why_len));
        }
        if (bad) {
            *bad_row = r;
            return 0;
        }
    }
    return 1;
}

static kdc_status write_buf(kd_chunk_writer *cw, kd_chunk_buf *b, kdc_error *err)
{
    if (cw->form == KD_CHUNK_STORED) {
        b->stored.first_image = b->first_image;
        b->stored.count = b->count;
        zero_skipped(cache_writer_header(cw->w), &b->stored);
        return cache_writer_write_stored(cw->w, b->chunk, &b->stored, err);
    }
    cache_chunk_input in = {
        .first_image = b->first_image, .count = b->count, .height = b->height,
        .width = b->width, .skipped = b->skipped, .box = b->box, .flip = b->flip,
        .logits = b->logits, .features = b->features,
    };
    return cache_writer_write_chunk(cw->w, b->chunk, &in, err);
}

static void *writer_main(void *arg)
{
    kd_chunk_writer *cw = arg;
    pthread_mutex_lock(&cw->mu);
    for (;;) {
        while (cw->state[cw->head] < BUF_QUEUED && !cw->stopping)
            pthread_cond_wait(&cw->cv, &cw->mu);
        if (cw->state[cw->head] < BUF_QUEUED)
            break; /* stopping with nothing queued */
        kd_chunk_buf *b = &cw->bufs[cw->head];
        int skip = cw->failed || cw->discard || cw->state[cw->head] == BUF_DROPPED;
        pthread_mutex_unlock(&cw->mu);

        kdc_status st = KDC_OK;
        kdc_error e;
        double t0 = kdc_now_seconds();
        if (!skip)
            st = write_buf(cw, b, &e);
        double dt = kdc_now_seconds() - t0;

        pthread_mutex_lock(&cw->mu);
        cw->busy_s += dt;
        if (st && !cw->failed) {
            cw->failed = 1;
            cw->err = e;
        }
        if (!skip && !st)
            cw->images_written += b->count;
        cw->state[cw->head] = BUF_FREE;
        cw->head = (cw->head + 1) % cw->nbufs;
        pthread_cond_broadcast(&cw->cv);
    }
    pthread_mutex_unlock(&cw->mu);
    return NULL;
}

/* A float32-form buffer of n images. */
static int alloc_f32(kd_chunk_buf *b, size_t n, size_t V, size_t D, size_t nl, size_t nf)
{
    b->height = calloc(n, sizeof *b->height);
    b->width = calloc(n, sizeof *b->width);
    b->skipped = calloc(n, 1);
    b->box = calloc(n * V * 4, sizeof *b->box);
    b->flip = calloc(n * V, 1);
    b->logits = malloc(nl);
    b->features = D ? malloc(nf) : NULL;
    return b->height && b->width && b->skipped && b->box && b->flip && b->logits &&
           (!D || b->features);
}

/* A stored-form buffer: the cache's own chunk layout. */
static int alloc_stored(kd_chunk_buf *b, const cache_header *h)
{
    if (cache_chunk_alloc(&b->stored, h, NULL) != KDC_OK)
        return 0;
    b->height = b->stored.height;
    b->width = b->stored.width;
    b->skipped = b->stored.skipped;
    b->box = b->stored.box;
    b->flip = b->stored.flip;
    return 1;
}

kdc_status kd_chunk_writer_start(cache_writer *w, int nbufs, kd_chunk_form form,
                                 kd_chunk_writer **out, kdc_error *err)
{
    *out = NULL;
    const cache_header *h = cache_writer_header(w);
    size_t n = (size_t)h->chunk_images, V = (size_t)h->views_per_image;
    size_t C = (size_t)h->num_classes, D = (size_t)h->feature_dim;
    size_t nl, nf;
    if (nbufs < 2 || !kdc_size_mul(n * V, C, &nl) || !kdc_size_mul(n * V, D, &nf) ||
        !kdc_size_mul(nl, sizeof(float), &nl) || !kdc_size_mul(nf, sizeof(float), &nf))
        return kdc_fail(err, KDC_ENOMEM, "chunk buffers: %d buffers of %zu images too large",
                        nbufs, n);
    kd_chunk_writer *cw = calloc(1, sizeof *cw);
    if (!cw)
        return kdc_fail(err, KDC_ENOMEM, "chunk writer: out of memory");
    cw->w = w;
    cw->form = form;
    cw->nbufs = nbufs;
    cw->bufs = calloc((size_t)nbufs, sizeof *cw->bufs);
    cw->state = calloc((size_t)nbufs, sizeof *cw->state);
    int ok = cw->bufs && cw->state;
    for (int i = 0; ok && i < nbufs; i++)
        ok = form == KD_CHUNK_STORED ? alloc_stored(&cw->bufs[i], h)
                                     : alloc_f32(&cw->bufs[i], n, V, D, nl, nf);
    if (!ok) {
        free_bufs(cw);
        free(cw);
        return kdc_fail(err, KDC_ENOMEM, "chunk buffers: out of memory (%d x %zu images)", nbufs,
                        n);
    }
    pthread_mutex_init(&cw->mu, NULL);
    pthread_cond_init(&cw->cv, NULL);
    if (pthread_create(&cw->tid, NULL, writer_main, cw) != 0) {
        kd_chunk_writer_free(cw);
        return kdc_fail(err, KDC_ENOMEM, "cannot start the writer thread");
    }
    cw->started = 1;
    *out = cw;
    return KDC_OK;
}

kdc_status kd_chunk_writer_acquire(kd_chunk_writer *cw, kd_chunk_buf **buf, kdc_error *err)
{
    *buf = NULL;
    pthread_mutex_lock(&cw->mu);
    double t0 = kdc_now_seconds();
    while (cw->state[cw->tail] != BUF_FREE && !cw->failed)
        pthread_cond_wait(&cw->cv, &cw->mu);
    cw->wait_s += kdc_now_seconds() - t0;
    kdc_status st = KDC_OK;
    if (cw->failed) {
        if (err)
            *err = cw->err;
        st = cw->err.code ? cw->err.code : KDC_EIO;
    } else {
        cw->state[cw->tail] = BUF_FILLING;
        *buf = &cw->bufs[cw->tail];
        cw->tail = (cw->tail + 1) % cw->nbufs;
    }
    pthread_mutex_unlock(&cw->mu);
    return st;
}

void kd_chunk_writer_submit(kd_chunk_writer *cw, kd_chunk_buf *buf)
{
    pthread_mutex_lock(&cw->mu);
    cw->state[buf - cw->bufs] = BUF_QUEUED;
    pthread_cond_broadcast(&cw->cv);
    pthread_mutex_unlock(&cw->mu);
}

kdc_status kd_chunk_writer_stop(kd_chunk_writer *cw, int discard, kdc_error *err)
{
    if (!cw->started)
        return KDC_OK;
    pthread_mutex_lock(&cw->mu);
    cw->stopping = 1;
    cw->discard = discard;
    /* A buffer handed out but never submitted would block the ring: the
     * thread passes over it without writing. */
    for (int i = 0; i < cw->nbufs; i++)
        if (cw->state[i] == BUF_FILLING)
            cw->state[i] = BUF_DROPPED;
    pthread_cond_broadcast(&cw->cv);
    pthread_mutex_unlock(&cw->mu);
    pthread_join(cw->tid, NULL);
    cw->started = 0;
    if (cw->failed) {
        if (err)
            *err = cw->err;
        return cw->err.code ? cw->err.code : KDC_EIO;
    }
    return KDC_OK;
}

double kd_chunk_writer_busy_seconds(const kd_chunk_writer *cw)
{
    return cw->busy_s;
}

double kd_chunk_writer_wait_seconds(const kd_chunk_writer *cw)
{
    return cw->wait_s;
}

int64_t kd_chunk_writer_images_written(const kd_chunk_writer *cw)
{
    return cw->images_written;
}

void kd_chunk_writer_free(kd_chunk_writer *cw)
{
    if (!cw)
        return;
    if (cw->started)
        kd_chunk_writer_stop(cw, 1, NULL);
    pthread_mutex_destroy(&cw->mu);
    pthread_cond_destroy(&cw->cv);
    free_bufs(cw);
    free(cw);
}
