/* cuda_topk.cu - row-wise top-k selection with float16 values (cuda_topk.h),
 * the GPU twin of cache_topk_rows in formats/cache_writer.c.
 *
 * One block per row, K rounds of a block-wide arg-max. The order "a ranks
 * before b" (larger value, NaN largest, ties to the lower index) is total, so
 * round k only has to find the best element that ranks after round k-1's
 * pick: no marks, no sort, O(K * C / threads) per row, exact for any ties.
 * Rows up to 10240 classes are staged in shared memory (40 KiB); longer rows
 * are read from global memory (L1/L2) each round. K is small in practice
 * (the point of top-k storage), so the rounds are cheap. */
#include <cuda_fp16.h>

#include "common/cuda/cuda_internal.h"

extern "C" {
#include "common/cuda/cuda_topk.h"
}

static const unsigned kNone = 0xffffffffu; /* "no candidate" index */
/* Rows staged in dynamic shared memory: 40 KiB, leaving the kernel's static
 * shared arrays room under the default 48 KiB per block (no opt-in needed). */
static const size_t kSharedFloats = 40 * 1024 / 4;

/* a ranks before b: cache_writer.c's ranks_before. */
__device__ static bool ranks_before(float va, unsigned ia, float vb, unsigned ib)
{
    bool na = isnan(va), nb = isnan(vb);
    if (na || nb)
        return na && nb ? ia < ib : na;
    if (va != vb)
        return va > vb;
    return ia < ib;
}

/* a is a candidate that beats b (kNone: no candidate) */
__device__ static bool beats(float va, unsigned ia, float vb, unsigned ib)
{
    if (ia == kNone)
        return false;
    return ib == kNone || ranks_before(va, ia, vb, ib);
}

/* half.c's kdc_f32_to_f16: round-to-nearest-even, NaN as sign | 0x7e00. */
__device__ static uint16_t to_f16_bits(float v)
{
    if (isnan(v))
        return (uint16_t)(((__float_as_uint(v) >> 16) & 0x8000u) | 0x7e00u);
    return __half_as_ushort(__float2half_rn(v));
}

template <typename IndexT>
__global__ void topk_kernel(const float *x, size_t rows, unsigned C, size_t K, int staged,
                            IndexT *index, uint16_t *value)
{
    extern __shared__ float row_sh[];
    __shared__ float warp_v[32];
    __shared__ unsigned warp_i[32];
    __shared__ float sel_v;
    __shared__ unsigned sel_i;
    size_t r = blockIdx.x;
    if (r >= rows)
        return;
    const float *xr = x + r * (size_t)C;
    if (staged) {
        for (unsigned c = threadIdx.x; c < C; c += blockDim.x)
            row_sh[c] = xr[c];
        __syncthreads();
    }
    const float *src = staged ? row_sh : xr;
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float pv = 0;
    unsigned pi = kNone; /* the previous round's pick */
    for (size_t k = 0; k < K; k++) {
        float bv = 0;
        unsigned bi = kNone;
        for (unsigned c = threadIdx.x; c < C; c += blockDim.x) {
            float v = src[c];
            if (pi != kNone && !ranks_before(pv, pi, v, c))
                continue; /* already taken */
            if (beats(v, c, bv, bi)) {
                bv = v;
                bi = c;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_down_sync(0xffffffffu, bv, o);
            unsigned oi = __shfl_down_sync(0xffffffffu, bi, o);
            if (beats(ov, oi, bv, bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            warp_v[warp] = bv;
            warp_i[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (unsigned w = 1; w < nw; w++)
                if (beats(warp_v[w], warp_i[w], bv, bi)) {
                    bv = warp_v[w];
                    bi = warp_i[w];
                }
            /* K <= C and the order is total: a candidate always exists */
            sel_v = bv;
            sel_i = bi;
            index[r * K + k] = (IndexT)bi;
            value[r * K + k] = to_f16_bits(bv);
        }
        __syncthreads();
        pv = sel_v;
        pi = sel_i;
    }
}

kdc_status kdc_cuda_topk_rows(kdc_backend *be, const float *logits, size_t rows, size_t C, size_t K,
                              void *index, size_t index_size, uint16_t *value_f16, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    if (!logits || !index || !value_f16)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: NULL logits, index or value buffer");
    if (index_size != 2 && index_size != 4)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: index size %zu (expected 2 or 4)",
                        index_size);
    if (C == 0 || C > 0x7fffffffu)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: %zu classes outside [1, 2^31)", C);
    if (index_size == 2 && C > 65536)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: %zu classes do not fit uint16 indices", C);
    if (K == 0 || K > C)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: K=%zu must be in [1, C=%zu]", K, C);
    if (rows > 0x7fffffffu)
        return kdc_fail(err, KDC_EINVAL, "top-k rows: %zu rows too many for one grid", rows);
    if (rows == 0)
        return KDC_OK;
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    /* about four elements per thread per round, one to eight warps */
    size_t t = (C / 4 + 31) / 32 * 32;
    unsigned threads = (unsigned)(t < 32 ? 32 : t > 256 ? 256 : t);
    int staged = C <= kSharedFloats;
    size_t shmem = staged ? C * sizeof(float) : 0;
    if (index_size == 2)
        topk_kernel<uint16_t><<<(unsigned)rows, threads, shmem, im->stream>>>(
            logits, rows, (unsigned)C, K, staged, (uint16_t *)index, value_f16);
    else
        topk_kernel<int32_t><<<(unsigned)rows, threads, shmem, im->stream>>>(
            logits, rows, (unsigned)C, K, staged, (int32_t *)index, value_f16);
    KDC_CUDA_CHECK_LAUNCH(err, "topk_rows");
    return KDC_OK;
}
