/* cuda_alloc.cu - the CUDA backend's caching device allocator.
 *
 * cudaMalloc / cudaFree are slow and cudaFree synchronises the whole device,
 * so blocks the backend frees are kept in a size-sorted cache and handed out
 * again (the PyTorch caching-allocator idea, without block splitting). This is
 * not a general allocator: it is single-stream (see cuda_internal.h) and
 * guarded by a mutex only so that two threads never corrupt its maps.
 * Device memory only; no managed memory. */
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "common/cuda/cuda_internal.h"

/* Sizes are rounded so that slightly different requests share blocks:
 * 512 B granularity below 1 MiB, 2 MiB above (cudaMalloc itself hands out
 * 2 MiB pages for large blocks, so the rounding costs no device memory). */
static const size_t kSmallRound = 512;
static const size_t kLargeThreshold = (size_t)1 << 20;
static const size_t kLargeRound = (size_t)2 << 20;
/* A cached block serves a request only when it wastes at most this much
 * (or at most the request itself): a 1 GiB block must not serve a 1 KiB ask. */
static const size_t kMaxWaste = (size_t)4 << 20;

struct kdc_cuda_allocator {
    std::mutex mu;
    std::multimap<size_t, void *> cached;        /* size -> free block */
    std::unordered_map<void *, size_t> in_use;   /* block -> size */
    kdc_cuda_mem_stats stats;
};

static size_t round_size(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    size_t g = bytes < kLargeThreshold ? kSmallRound : kLargeRound;
    if (bytes > SIZE_MAX - g)
        return 0;
    return (bytes + g - 1) / g * g;
}

kdc_status kdc_cuda_allocator_create(kdc_cuda_allocator **out, kdc_error *err)
{
    *out = new (std::nothrow) kdc_cuda_allocator();
    if (!*out)
        return kdc_fail(err, KDC_ENOMEM, "cuda allocator: out of host memory");
    (*out)->stats = kdc_cuda_mem_stats{};
    return KDC_OK;
}

/* cudaFree of every cached block; caller holds the mutex. */
static void release_cached_locked(kdc_cuda_allocator *a)
{
    for (auto &kv : a->cached)
        (void)cudaFree(kv.second);
    a->cached.clear();
    a->stats.bytes_cached = 0;
}

kdc_status kdc_cuda_allocator_alloc(kdc_cuda_allocator *a, size_t bytes, void **out,
                                    kdc_error *err)
{
    *out = NULL;
    size_t size = round_size(bytes);
    if (size == 0)
        return kdc_fail(err, KDC_ENOMEM, "cuda alloc: %zu bytes overflows", bytes);
    std::lock_guard<std::mutex> lock(a->mu);
    try {
        auto it = a->cached.lower_bound(size);
        if (it != a->cached.end() && (it->first - size <= kMaxWaste || it->first <= 2 * size)) {
            void *p = it->second;
            size_t got = it->first;
            a->cached.erase(it);
            a->in_use.emplace(p, got);
            a->stats.bytes_cached -= got;
            a->stats.bytes_in_use += got;
            a->stats.cache_hits++;
            *out = p;
            return KDC_OK;
        }
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, size);
        if (e == cudaErrorMemoryAllocation && !a->cached.empty()) {
            /* Out of memory with blocks parked in the cache: give them back
             * (after the device is idle, since ops may still use them) and
             * try once more. */
            (void)cudaGetLastError();
            (void)cudaDeviceSynchronize();
            release_cached_locked(a);
            e = cudaMalloc(&p, size);
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return kdc_fail(err, e == cudaErrorMemoryAllocation ? KDC_ENOMEM : KDC_EDEVICE,
                            "cuda: cudaMalloc(%zu bytes) failed: %s (in use %zu, cached %zu)",
                            size, cudaGetErrorString(e), a->stats.bytes_in_use,
                            a->stats.bytes_cached);
        }
        a->stats.device_mallocs++;
        try {
            a->in_use.emplace(p, size);
        } catch (const std::bad_alloc &) {
            (void)cudaFree(p);
            throw;
        }
        a->stats.bytes_in_use += size;
        *out = p;
        return KDC_OK;
    } catch (const std::bad_alloc &) {
        return kdc_fail(err, KDC_ENOMEM, "cuda allocator: out of host memory");
    }
}

void kdc_cuda_allocator_free(kdc_cuda_allocator *a, void *ptr)
{
    if (!ptr)
        return;
    std::lock_guard<std::mutex> lock(a->mu);
    auto it = a->in_use.find(ptr);
    if (it == a->in_use.end()) {
        /* Not ours (or freed twice): counted, never passed to cudaFree. */
        a->stats.bad_frees++;
        return;
    }
    size_t size = it->second;
    a->in_use.erase(it);
    a->stats.bytes_in_use -= size;
    try {
        a->cached.emplace(size, ptr);
        a->stats.bytes_cached += size;
    } catch (const std::bad_alloc &) {
        (void)cudaFree(ptr); /* cannot cache it: give it back instead */
    }
}

void kdc_cuda_allocator_release_cached(kdc_cuda_allocator *a)
{
    std::lock_guard<std::mutex> lock(a->mu);
    release_cached_locked(a);
}

void kdc_cuda_allocator_stats(const kdc_cuda_allocator *a, kdc_cuda_mem_stats *out)
{
    std::lock_guard<std::mutex> lock(const_cast<kdc_cuda_allocator *>(a)->mu);
    *out = a->stats;
}

void kdc_cuda_allocator_destroy(kdc_cuda_allocator *a)
{
    if (!a)
        return;
    {
        std::lock_guard<std::mutex> lock(a->mu);
        release_cached_locked(a);
        for (auto &kv : a->in_use)
            (void)cudaFree(kv.first);
        a->in_use.clear();
    }
    delete a;
}
