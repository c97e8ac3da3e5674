/* losses_cuda.cu - fused CE and KD loss kernels (losses_cuda.h), twins of
 * train/ce_loss.c and train/kd_loss.c.
 *
 * One block per row; the row max and the log-sum-exp are block reductions in
 * double, as the CPU forwards (the loss is a small difference of O(log C)
 * terms); softmax subtracts the row max. Every index is checked against C
 * and B, so compute-sanitizer sees no out-of-bounds access for any shape. */
#include <math.h>
#include <stdlib.h>

#include "common/cuda_internal.h"

extern "C" {
#include "train/losses_cuda.h"
}

static const int kThreads = 256;

/* Block-wide max / sum; every thread gets the result. `sh` holds 32 doubles. */
__device__ static double block_max(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    double r = -INFINITY;
    for (int i = 0; i < nw; i++)
        r = fmax(r, sh[i]);
    return r;
}

__device__ static double block_sum(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    double r = 0;
    for (int i = 0; i < nw; i++)
        r += sh[i];
    return r;
}

/* max and log sum exp(z * inv_t - max) of one row, in double */
__device__ static void row_lse(const float *z, size_t C, double inv_t, double *sh, double *m_out,
                               double *lse_out)
{
    double m = -INFINITY;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x)
        m = fmax(m, (double)z[c] * inv_t);
    m = block_max(m, sh);
    double s = 0;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x)
        s += exp((double)z[c] * inv_t - m);
    s = block_sum(s, sh);
    *m_out = m;
    *lse_out = m + log(s);
}

__global__ void ce_kernel(const float *z, const int32_t *labels, size_t B, size_t C, float weight,
                          int add, float *dz, double *row_loss)
{
    __shared__ double sh[32];
    size_t b = blockIdx.x;
    if (b >= B)
        return;
    const float *zr = z + b * C;
    double m, lse;
    row_lse(zr, C, 1.0, sh, &m, &lse);
    int32_t y = labels[b];
    bool valid = y >= 0 && (size_t)y < C;
    double scale = (double)weight / (double)B;
    if (dz) {
        float *g = dz + b * C;
        for (size_t c = threadIdx.x; c < C; c += blockDim.x) {
            double p = exp((double)zr[c] - lse);
            float v = (float)(scale * (p - (valid && (size_t)y == c ? 1.0 : 0.0)));
            g[c] = add ? g[c] + v : v;
        }
    }
    if (row_loss && threadIdx.x == 0)
        row_loss[b] = valid ? scale * (lse - (double)zr[y]) : (double)NAN;
}

__global__ void kd_kernel(const float *zs, const float *zt, size_t B, size_t C, float temperature,
                          float weight, int add, float *ds, double *row_loss)
{
    __shared__ double sh[32];
    size_t b = blockIdx.x;
    if (b >= B)
        return;
    const float *sr = zs + b * C, *tr = zt + b * C;
    double inv_t = 1.0 / (double)temperature;
    double ms, lse_s, mt, lse_t;
    row_lse(sr, C, inv_t, sh, &ms, &lse_s);
    row_lse(tr, C, inv_t, sh, &mt, &lse_t);
    double T = temperature, scale = (double)weight / (double)B;
    double kl = 0;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x) {
        double log_pt = (double)tr[c] * inv_t - lse_t, log_ps = (double)sr[c] * inv_t - lse_s;
        double pt = exp(log_pt), ps = exp(log_ps);
        if (pt > 0)
            kl += pt * (log_pt - log_ps);
        if (ds) {
            float v = (float)(scale * T * (ps - pt));
            ds[b * C + c] = add ? ds[b * C + c] + v : v;
        }
    }
    kl = block_sum(kl, sh);
    if (row_loss && threadIdx.x == 0)
        row_loss[b] = scale * T * T * kl;
}

static kdc_status check_shape(const char *what, size_t B, size_t C, kdc_error *err)
{
    if (B == 0 || C == 0)
        return kdc_fail(err, KDC_EINVAL, "%s: empty batch %zu x %zu", what, B, C);
    if (B > 0x7fffffffu)
        return kdc_fail(err, KDC_EINVAL, "%s: batch %zu too large for one grid", what, B);
    return KDC_OK;
}

kdc_status kd_cuda_check_labels(const int32_t *labels, size_t B, size_t C, kdc_error *err)
{
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || (size_t)labels[b] >= C)
            return kdc_fail(err, KDC_EINVAL,
                            "cross-entropy: label %d of sample %zu is outside [0, %zu)",
                            (int)labels[b], b, C);
    return KDC_OK;
}

kdc_status kd_cuda_ce(kdc_backend *be, const float *logits, const int32_t *labels, size_t B,
                      size_t C, float weight, kd_grad_mode mode, float *dlogits,
                      double *row_loss, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = check_shape("cross-entropy", B, C, err);
    if (st)
        return st;
    if (!logits || !labels)
        return kdc_fail(err, KDC_EINVAL, "cross-entropy: NULL logits or labels");
    if ((st = kdc_cuda_bind(im, err)))
        return st;
    ce_kernel<<<(unsigned)B, kThreads, 0, im->stream>>>(logits, labels, B, C, weight,
                                                        mode == KD_GRAD_ADD, dlogits, row_loss);
    KDC_CUDA_CHECK_LAUNCH(err, "ce");
    return KDC_OK;
}

kdc_status kd_cuda_kd(kdc_backend *be, const float *student, const float *teacher, size_t B,
                      size_t C, float temperature, float weight, kd_grad_mode mode,
                      float *dstudent, double *row_loss, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = check_shape("kd", B, C, err);
    if (st)
        return st;
    if (!student || !teacher)
        return kdc_fail(err, KDC_EINVAL, "kd: NULL student or teacher logits");
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return kdc_fail(err, KDC_EINVAL, "kd: temperature %g must be positive",
                        (double)temperature);
    if ((st = kdc_cuda_bind(im, err)))
        return st;
    kd_kernel<<<(unsigned)B, kThreads, 0, im->stream>>>(student, teacher, B, C, temperature,
                                                        weight, mode == KD_GRAD_ADD, dstudent,
                                                        row_loss);
    KDC_CUDA_CHECK_LAUNCH(err, "kd");
    return KDC_OK;
}

kdc_status kd_cuda_sum_rows(kdc_backend *be, const double *row_loss, size_t B, double *loss,
                            kdc_error *err)
{
    *loss = 0;
    double *h = (double *)malloc(B * sizeof(double));
    if (!h)
        return kdc_fail(err, KDC_ENOMEM, "loss: out of host memory");
    kdc_status st = be->copy_d2h(be, h, row_loss, B * sizeof(double), err);
    if (st == KDC_OK)
        for (size_t b = 0; b < B; b++)
            *loss += h[b];
    free(h);
    return st;
}
