/* step_stats_cuda.cu - the kernels of step_stats_cuda.h: per-row rank of the
 * label (one block per row, a block sum of "ranks above" flags), then one
 * thread that adds the row losses and counts top-1 / top-5 in row order. */
#include "common/cuda/cuda_internal.h"

extern "C" {
#include "train/step_stats_cuda.h"
}

static const int kThreads = 256;

/* rank[b] = classes ranked above label b (kd_count_correct's rule), or
 * INT32_MAX for an out-of-range label. */
__global__ void label_rank_kernel(const float *z, const int32_t *labels, size_t B, size_t C,
                                  int32_t *rank)
{
    __shared__ int sh[32];
    size_t b = blockIdx.x;
    if (b >= B)
        return;
    int32_t y = labels[b];
    bool valid = y >= 0 && (size_t)y < C;
    const float *zr = z + b * C;
    int above = 0;
    if (valid) {
        float zy = zr[y];
        for (size_t c = threadIdx.x; c < C; c += blockDim.x)
            if (zr[c] > zy || (zr[c] == zy && c < (size_t)y))
                above++;
    }
    for (int o = 16; o > 0; o >>= 1)
        above += __shfl_xor_sync(0xffffffffu, above, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0)
        sh[warp] = above;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long s = 0;
        for (int i = 0; i < nw; i++)
            s += sh[i];
        rank[b] = valid ? (int32_t)(s > 0x7ffffffeLL ? 0x7ffffffeLL : s) : 0x7fffffff;
    }
}

__global__ void step_finish_kernel(const int32_t *rank, size_t B, const double *row_ce,
                                   const double *row_kd, const double *proj_loss,
                                   kd_cuda_step_stats *out)
{
    if (blockIdx.x != 0 || threadIdx.x != 0)
        return;
    kd_cuda_step_stats s = {0, 0, 0, 0, 0};
    for (size_t b = 0; b < B; b++) {
        if (row_ce)
            s.ce_sum += row_ce[b];
        if (row_kd)
            s.kd_sum += row_kd[b];
        s.top1 += rank[b] < 1;
        s.top5 += rank[b] < 5;
    }
    if (proj_loss)
        s.proj = *proj_loss;
    *out = s;
}

kdc_status kd_cuda_step_stats_compute(kdc_backend *be, const float *logits, const int32_t *labels,
                                      size_t B, size_t C, const double *row_ce,
                                      const double *row_kd, const double *proj_loss,
                                      int32_t *rank, kd_cuda_step_stats *out, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    if (B == 0 || C == 0 || B > 0x7fffffffu)
        return kdc_fail(err, KDC_EINVAL, "step statistics: batch %zu x %zu classes", B, C);
    if (!logits || !labels || !rank || !out)
        return kdc_fail(err, KDC_EINVAL, "step statistics: NULL argument");
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    label_rank_kernel<<<(unsigned)B, kThreads, 0, im->stream>>>(logits, labels, B, C, rank);
    KDC_CUDA_CHECK_LAUNCH(err, "label_rank");
    step_finish_kernel<<<1, 32, 0, im->stream>>>(rank, B, row_ce, row_kd, proj_loss, out);
    KDC_CUDA_CHECK_LAUNCH(err, "step_finish");
    return KDC_OK;
}
