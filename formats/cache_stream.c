/* cache_stream.c - worker-thread chunk reader and windowed shuffle. */
#include "formats/cache_stream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BUFFER_CHUNKS 8

typedef struct item {
    uint32_t slot, row;
} item;

struct cache_stream {
    cache_reader *r;
    const cache_header *h;
    cache_stream_options opt;
    int64_t nchunks, window, nslots;
    int64_t epoch_samples;
    cache_batch *slots; /* nslots decoded chunks */
    cache_chunk stored; /* worker's stored-form scratch */
    int64_t *order;     /* chunk visiting order of the epoch */
    item *items;        /* the current window's shuffled samples */
    int64_t nitems, next_item, cur_window, nwindows;
    int64_t epoch;

    pthread_t thread;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t loaded, freed; /* sequence positions loaded by the worker / released */
    int stop;
    kdc_status wstatus;
    kdc_error werr;
};

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) from a 64-bit random word (Lemire's multiply-shift; the
 * bias is below 2^-32 for the n here). */
static uint64_t below(uint64_t x, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *g)
{
    g->s += 0x9e3779b97f4a7c15ull;
    return mix64(g->s);
}

static rng rng_for(uint64_t seed, int64_t epoch, int64_t stream)
{
    rng g = {mix64(seed ^ mix64((uint64_t)epoch * 0x100000001b3ull ^ mix64((uint64_t)stream)))};
    return g;
}

/* The view every image of `chunk` uses this epoch: (h(seed, chunk) + epoch)
 * mod V. One view per chunk (not per image) lets an epoch read one view's
 * HDF5 chunk of each dataset, 1/V of the teacher outputs (format v2 chunks
 * per view); V consecutive epochs still give every image each view once. */
static int view_of_chunk(const cache_stream *s, int64_t chunk)
{
    uint64_t V = (uint64_t)s->h->views_per_image;
    uint64_t h = mix64(s->opt.seed ^ mix64((uint64_t)chunk ^ 0x5649455750455243ull)); /* "VIEWPERC" */
    return (int)((h % V + (uint64_t)s->epoch % V) % V);
}

const cache_header *cache_stream_header(const cache_stream *s)
{
    return s->h;
}

const cache_image_table *cache_stream_images(const cache_stream *s)
{
    return cache_reader_images(s->r);
}

int64_t cache_stream_epoch_samples(const cache_stream *s)
{
    return s->epoch_samples;
}

static void *worker(void *arg)
{
    cache_stream *s = arg;
    for (int64_t k = 0; k < s->nchunks; k++) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && k >= s->freed + s->nslots)
            pthread_cond_wait(&s->cv, &s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        kdc_error e;
        kdc_error_clear(&e);
        /* One view: only that view's HDF5 chunk of each per-view dataset is
         * read (format v2), 1/V of the teacher outputs; the batch has one row
         * per image. All views: the whole chunk, V rows per image. */
        kdc_status st =
            s->opt.all_views
                ? cache_reader_read_chunk(s->r, s->order[k], &s->stored, &e)
                : cache_reader_read_view(s->r, s->order[k], view_of_chunk(s, s->order[k]),
                                         &s->stored, &e);
        if (st == KDC_OK)
            cache_chunk_to_batch(s->h, &s->stored, cache_reader_images(s->r)->label,
                                 &s->slots[k % s->nslots]);
        pthread_mutex_lock(&s->mu);
        if (st != KDC_OK) {
            s->wstatus = st;
            s->werr = e;
        } else {
            s->loaded = k + 1;
        }
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (st != KDC_OK)
            break;
    }
    return NULL;
}

static void stop_worker(cache_stream *s)
{
    if (!s->running)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->running = 0;
}

void cache_stream_close(cache_stream *s)
{
    if (!s)
        return;
    stop_worker(s);
    if (s->slots)
        for (int64_t i = 0; i < s->nslots; i++)
            cache_batch_free(&s->slots[i]);
    free(s->slots);
    cache_chunk_free(&s->stored);
    free(s->order);
    free(s->items);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    cache_reader_close(s->r);
    free(s);
}

kdc_status cache_stream_open(const char *path, const cache_stream_options *opt,
                             cache_stream **out, kdc_error *err)
{
    *out = NULL;
    if (opt->batch_size < 1)
        return kdc_fail(err, KDC_EINVAL, "stream: batch size %d < 1", opt->batch_size);
    cache_stream *s = calloc(1, sizeof *s);
    if (!s)
        return kdc_fail(err, KDC_ENOMEM, "stream");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->opt = *opt;
    if (s->opt.buffer_chunks <= 0)
        s->opt.buffer_chunks = DEFAULT_BUFFER_CHUNKS;
    kdc_status st = cache_reader_open(path, CACHE_OPEN_NO_CHUNK_CACHE, &s->r, err);
    if (st != KDC_OK) {
        free(s);
        return st;
    }
    s->h = cache_reader_header(s->r);
    s->nchunks = cache_reader_num_chunks(s->r);
    s->window = s->opt.buffer_chunks < s->nchunks ? s->opt.buffer_chunks : s->nchunks;
    s->nslots = 2 * s->window < s->nchunks ? 2 * s->window : s->nchunks;
    s->nwindows = (s->nchunks + s->window - 1) / s->window;
    int64_t V = s->h->views_per_image, rows = s->h->chunk_images * V;
    const cache_image_table *t = cache_reader_images(s->r);
    for (int64_t i = 0; i < t->count; i++)
        s->epoch_samples += t->skipped[i] ? 0 : (s->opt.all_views ? V : 1);
    s->slots = calloc((size_t)s->nslots, sizeof *s->slots);
    s->order = calloc((size_t)s->nchunks, sizeof *s->order);
    s->items = calloc((size_t)(s->window * rows), sizeof *s->items);
    if (!s->slots || !s->order || !s->items)
        st = kdc_fail(err, KDC_ENOMEM, "stream buffers");
    for (int64_t i = 0; i < s->nslots && st == KDC_OK; i++)
        st = cache_batch_alloc(&s->slots[i], s->h, (int)rows, err);
    if (st == KDC_OK)
        st = cache_chunk_alloc(&s->stored, s->h, err);
    if (st != KDC_OK) {
        cache_stream_close(s);
        return st;
    }
    s->epoch = -1;
    *out = s;
    return KDC_OK;
}

kdc_status cache_stream_start_epoch(cache_stream *s, int64_t epoch, kdc_error *err)
{
    stop_worker(s);
    s->epoch = epoch;
    for (int64_t i = 0; i < s->nchunks; i++)
        s->order[i] = i;
    if (s->opt.shuffle) {
        rng g = rng_for(s->opt.seed, epoch, -1);
        for (int64_t i = s->nchunks - 1; i > 0; i--) {
            int64_t j = (int64_t)below(rng_next(&g), (uint64_t)i + 1);
            int64_t tmp = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = tmp;
        }
    }
    s->loaded = s->freed = 0;
    s->stop = 0;
    s->wstatus = KDC_OK;
    s->cur_window = -1;
    s->nitems = s->next_item = 0;
    if (pthread_create(&s->thread, NULL, worker, s) != 0)
        return kdc_fail(err, KDC_EIO, "stream: cannot start the reader thread");
    s->running = 1;
    return KDC_OK;
}

/* Waits for window w's chunks and builds its shuffled sample list. */
static kdc_status enter_window(cache_stream *s, int64_t w, kdc_error *err)
{
    int64_t first = w * s->window, end = first + s->window;
    if (end > s->nchunks)
        end = s->nchunks;
    pthread_mutex_lock(&s->mu);
    s->freed = first; /* the previous window's slots are free */
    pthread_cond_broadcast(&s->cv);
    while (s->loaded < end && s->wstatus == KDC_OK)
        pthread_cond_wait(&s->cv, &s->mu);
    kdc_status st = s->wstatus;
    if (st != KDC_OK && err)
        *err = s->werr;
    pthread_mutex_unlock(&s->mu);
    if (st != KDC_OK)
        return st;
    const cache_image_table *t = cache_reader_images(s->r);
    /* rows per image in a slot: V (all views) or 1 (this epoch's view) */
    int64_t V = s->opt.all_views ? s->h->views_per_image : 1, n = 0;
    for (int64_t k = first; k < end; k++) {
        const cache_batch *b = &s->slots[k % s->nslots];
        uint32_t slot = (uint32_t)(k % s->nslots);
        for (int64_t i = 0; i < b->count / V; i++) {
            int64_t image = b->image[i * V];
            if (t->skipped[image])
                continue;
            for (int64_t v = 0; v < V; v++)
                s->items[n++] = (item){slot, (uint32_t)(i * V + v)};
        }
    }
    if (s->opt.shuffle) {
        rng g = rng_for(s->opt.seed, s->epoch, w);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)below(rng_next(&g), (uint64_t)i + 1);
            item tmp = s->items[i];
            s->items[i] = s->items[j];
            s->items[j] = tmp;
        }
    }
    s->nitems = n;
    s->next_item = 0;
    s->cur_window = w;
    return KDC_OK;
}

kdc_status cache_stream_next(cache_stream *s, cache_batch *b, kdc_error *err)
{
    b->count = 0;
    if (s->epoch < 0)
        return kdc_fail(err, KDC_EINVAL, "stream: cache_stream_start_epoch not called");
    if (b->capacity < s->opt.batch_size)
        return kdc_fail(err, KDC_EINVAL, "stream: batch capacity %d < batch size %d",
                        b->capacity, s->opt.batch_size);
    while (b->count < s->opt.batch_size) {
        if (s->next_item == s->nitems) {
            if (s->cur_window + 1 >= s->nwindows)
                break;
            kdc_status st = enter_window(s, s->cur_window + 1, err);
            if (st != KDC_OK) {
                b->count = 0;
                return st;
            }
            continue;
        }
        item it = s->items[s->next_item++];
        cache_batch_copy_row(b, b->count++, &s->slots[it.slot], (int)it.row);
    }
    return KDC_OK;
}
