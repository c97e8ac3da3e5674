/* threadpool.h - a fixed set of persistent worker threads for data-parallel loops.
 *
 * kdc_pool_parallel_for splits [0, n) into chunks, runs them on the workers and
 * on the calling thread, and returns when all are done. Idle workers sleep on a
 * condition variable (no spinning), so they leave the cores to OpenBLAS's own
 * threads while a GEMM runs: the CPU layers call GEMMs from the caller thread
 * (OpenBLAS threads inside) and run im2col, elementwise and reduction loops here,
 * never both at once.
 *
 * Not a task scheduler: one parallel_for at a time per pool (concurrent callers
 * are serialised) and fn must not call parallel_for on the same pool. */
#ifndef KDC_THREADPOOL_H
#define KDC_THREADPOOL_H

#include <stddef.h>

#include "common/base/error.h"

typedef struct kdc_pool kdc_pool;

/* fn processes items [begin, end); called concurrently on disjoint ranges. */
typedef void (*kdc_pool_fn)(void *ctx, size_t begin, size_t end);

/* threads = total threads working on a loop, the caller included (so threads - 1
 * workers are started); threads <= 0 means the number of online cores. */
kdc_status kdc_pool_create(int threads, kdc_pool **out, kdc_error *err);
void kdc_pool_destroy(kdc_pool *pool);
int kdc_pool_threads(const kdc_pool *pool);

/* Runs fn over [0, n) and blocks until done. pool may be NULL (runs inline).
 * grain is the smallest useful chunk (0 = let the pool choose); loops with fewer
 * than 2 * grain items run inline on the caller. */
void kdc_pool_parallel_for(kdc_pool *pool, size_t n, size_t grain, kdc_pool_fn fn, void *ctx);

/* The number of online cores (at least 1). */
int kdc_cpu_count(void);

#endif
