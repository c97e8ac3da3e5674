/* threadpool.c - persistent pthread workers sleeping on a condition variable.
 *
 * A loop is published as a "generation": workers wake on the generation change,
 * take chunks with an atomic counter (dynamic, so a worker that lost its core to
 * another process does not hold the loop up), and the last one to finish
 * signals the caller, who also takes chunks. */
#include "common/base/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct kdc_pool {
    int threads;
    pthread_t *workers;
    int n_workers;

    pthread_mutex_t submit; /* one loop at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    unsigned long generation;
    int stop;

    /* the current loop */
    kdc_pool_fn fn;
    void *ctx;
    size_t n, chunk;
    atomic_size_t next;
    int busy; /* workers still inside the current generation, under lock */
};

int kdc_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void run_chunks(kdc_pool *p)
{
    for (;;) {
        size_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n)
            break;
        size_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e);
    }
}

static void *worker_main(void *arg)
{
    kdc_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_chunks(p);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

kdc_status kdc_pool_create(int threads, kdc_pool **out, kdc_error *err)
{
    *out = NULL;
    if (threads <= 0)
        threads = kdc_cpu_count();
    if (threads > 1024)
        return kdc_fail(err, KDC_EINVAL, "thread pool: %d threads is more than 1024", threads);
    kdc_pool *p = calloc(1, sizeof *p);
    if (!p)
        return kdc_fail(err, KDC_ENOMEM, "thread pool: out of memory");
    p->threads = threads;
    pthread_mutex_init(&p->submit, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            kdc_pool_destroy(p);
            return kdc_fail(err, KDC_ENOMEM, "thread pool: out of memory");
        }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
                kdc_pool_destroy(p);
                return kdc_fail(err, KDC_ENOMEM, "thread pool: cannot start thread %d of %d",
                                i + 1, threads - 1);
            }
            p->n_workers++;
        }
    }
    *out = p;
    return KDC_OK;
}

void kdc_pool_destroy(kdc_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->submit);
    free(p);
}

int kdc_pool_threads(const kdc_pool *p)
{
    return p ? p->threads : 1;
}

void kdc_pool_parallel_for(kdc_pool *p, size_t n, size_t grain, kdc_pool_fn fn, void *ctx)
{
    if (n == 0)
        return;
    if (grain == 0)
        grain = 1;
    if (!p || p->n_workers == 0 || n < 2 * grain) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->submit);
    /* About 4 chunks per thread: enough to rebalance, few enough to keep
     * contiguous ranges (cache locality) and little atomic traffic. */
    size_t chunk = (n + (size_t)p->threads * 4 - 1) / ((size_t)p->threads * 4);
    if (chunk < grain)
        chunk = grain;
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->busy = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    run_chunks(p);

    pthread_mutex_lock(&p->lock);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->submit);
}
