/* losses_cuda.cu - the loss kernels of losses_cuda.h, twins of
 * train/ce_loss.c, train/kd_loss.c (full and top-k KD) and train/proj_loss.c.
 *
 * CE and KD: one block per row; the row max and the log-sum-exp are block
 * reductions in double, as the CPU forwards (the loss is a small difference
 * of O(log C) terms); softmax subtracts the row max. The projector loss:
 * per-feature batch statistics (one thread per feature, two passes in
 * double, as the CPU), a fixed-grid reduction of S, and the batch-norm
 * backward. Every index is checked against its bound, so compute-sanitizer
 * sees no out-of-bounds access for any shape. */
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cuda/cuda_internal.h"

extern "C" {
#include "common/base/half.h"
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
        if (pt != 0) /* 0 log 0 = 0; a NaN teacher propagates, as on the CPU */
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
                      size_t C, float weight, kd_grad_mode mode, float *dlogits, double *row_loss,
                      kdc_error *err)
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
                      size_t C, float temperature, float weight, kd_grad_mode mode, float *dstudent,
                      double *row_loss, kdc_error *err)
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
    kd_kernel<<<(unsigned)B, kThreads, 0, im->stream>>>(student, teacher, B, C, temperature, weight,
                                                        mode == KD_GRAD_ADD, dstudent, row_loss);
    KDC_CUDA_CHECK_LAUNCH(err, "kd");
    return KDC_OK;
}

/* ---- top-k KD ---------------------------------------------------------------------- */

__device__ static double h2d(uint16_t h)
{
    return (double)__half2float(__ushort_as_half(h));
}

/* Student part over all C classes first (set or add), then, after a barrier
 * that makes those writes visible to the block, the renormalised teacher is
 * subtracted on its K classes. atomicAdd keeps a malformed row with a
 * duplicate index race-free (each duplicate subtracts its q, as the CPU);
 * with distinct indices each address gets one atomic, so the result is
 * deterministic. */
__global__ void kd_topk_kernel(const float *zs, const uint16_t *tv, const int32_t *ti, size_t B,
                               size_t C, size_t K, float temperature, float weight, int add,
                               float *ds, double *row_loss)
{
    __shared__ double sh[32];
    size_t b = blockIdx.x;
    if (b >= B)
        return;
    const float *sr = zs + b * C;
    const uint16_t *v = tv + b * K;
    const int32_t *idx = ti + b * K;
    double inv_t = 1.0 / (double)temperature;
    double ms, lse_s;
    row_lse(sr, C, inv_t, sh, &ms, &lse_s);
    double mt = -INFINITY;
    for (size_t k = threadIdx.x; k < K; k += blockDim.x)
        mt = fmax(mt, h2d(v[k]) * inv_t);
    mt = block_max(mt, sh);
    double st = 0;
    for (size_t k = threadIdx.x; k < K; k += blockDim.x)
        st += exp(h2d(v[k]) * inv_t - mt);
    st = block_sum(st, sh);
    double lse_q = mt + log(st);
    double T = temperature, scale = (double)weight / (double)B;
    float *g = ds ? ds + b * C : NULL;
    if (g)
        for (size_t c = threadIdx.x; c < C; c += blockDim.x) {
            float p = (float)(scale * T * exp((double)sr[c] * inv_t - lse_s));
            g[c] = add ? g[c] + p : p;
        }
    __syncthreads();
    double kl = 0;
    int bad = 0;
    for (size_t k = threadIdx.x; k < K; k += blockDim.x) {
        int32_t i = idx[k];
        double log_q = h2d(v[k]) * inv_t - lse_q, q = exp(log_q);
        if (i < 0 || (size_t)i >= C) {
            bad = 1;
            continue;
        }
        if (q != 0) /* 0 log 0 = 0; NaN propagates, as on the CPU */
            kl += q * (log_q - ((double)sr[i] * inv_t - lse_s));
        if (g)
            atomicAdd(&g[i], (float)(-scale * T * q));
    }
    kl = block_sum(kl, sh);
    bad = (int)block_sum((double)bad, sh);
    if (row_loss && threadIdx.x == 0)
        row_loss[b] = bad ? (double)NAN : scale * T * T * kl;
}

kdc_status kd_cuda_check_topk(const uint16_t *topk_value, const int32_t *topk_index, size_t B,
                              size_t C, size_t K, kdc_error *err)
{
    if (!topk_value || !topk_index)
        return kdc_fail(err, KDC_EINVAL, "top-k KD: NULL values or indices");
    if (K == 0 || K > C)
        return kdc_fail(err, KDC_EINVAL, "top-k KD: K=%zu must be in [1, C=%zu]", K, C);
    for (size_t b = 0; b < B; b++) {
        int any = 0;
        for (size_t k = 0; k < K; k++) {
            int32_t i = topk_index[b * K + k];
            if (i < 0 || (size_t)i >= C)
                return kdc_fail(err, KDC_EINVAL,
                                "top-k KD: class index %d (sample %zu, rank %zu) is outside "
                                "[0, %zu)",
                                (int)i, b, k, C);
            /* NaN is not above -inf, as in the CPU check */
            if (kdc_f16_to_f32(topk_value[b * K + k]) > -INFINITY)
                any = 1;
        }
        if (!any)
            return kdc_fail(err, KDC_EINVAL, "top-k KD: sample %zu has no teacher logit above -inf",
                            b);
    }
    return KDC_OK;
}

kdc_status kd_cuda_kd_topk(kdc_backend *be, const float *student, const uint16_t *topk_value,
                           const int32_t *topk_index, size_t B, size_t C, size_t K,
                           float temperature, float weight, kd_grad_mode mode, float *dstudent,
                           double *row_loss, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = check_shape("top-k KD", B, C, err);
    if (st)
        return st;
    if (!student || !topk_value || !topk_index)
        return kdc_fail(err, KDC_EINVAL, "top-k KD: NULL student logits, values or indices");
    if (K == 0 || K > C)
        return kdc_fail(err, KDC_EINVAL, "top-k KD: K=%zu must be in [1, C=%zu]", K, C);
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return kdc_fail(err, KDC_EINVAL, "top-k KD: temperature %g must be positive",
                        (double)temperature);
    if ((st = kdc_cuda_bind(im, err)))
        return st;
    kd_topk_kernel<<<(unsigned)B, kThreads, 0, im->stream>>>(
        student, topk_value, topk_index, B, C, K, temperature, weight, mode == KD_GRAD_ADD,
        dstudent, row_loss);
    KDC_CUDA_CHECK_LAUNCH(err, "kd_topk");
    return KDC_OK;
}

/* ---- projector loss ------------------------------------------------------------------ */

/* |d|^alpha and sign(d)|d|^(alpha-1), exactly as proj_loss.c (same special cases). */
__device__ static double abs_pow(double d, double alpha)
{
    double a = fabs(d);
    if (alpha == 4.0) {
        double a2 = a * a;
        return a2 * a2;
    }
    if (alpha == 2.0)
        return a * a;
    if (alpha == 1.0)
        return a;
    return pow(a, alpha);
}

__device__ static double signed_pow_m1(double d, double alpha)
{
    if (alpha == 4.0)
        return d * d * d;
    if (alpha == 2.0)
        return d;
    if (d == 0.0)
        return 0.0;
    return copysign(alpha == 1.0 ? 1.0 : pow(fabs(d), alpha - 1.0), d);
}

/* One thread per column of f (j < D) or t (D <= j < 2D): batch mean, then
 * 1/sqrt(biased var + eps), two passes in double (the CPU's order). Threads
 * of a warp read consecutive columns of a row: coalesced. */
__global__ void proj_stats_kernel(const float *f, const float *t, size_t B, size_t D, double *stats)
{
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= 2 * D)
        return;
    const float *x = j < D ? f : t;
    size_t col = j < D ? j : j - D;
    double m = 0;
    for (size_t b = 0; b < B; b++)
        m += x[b * D + col];
    m /= (double)B;
    double v = 0;
    for (size_t b = 0; b < B; b++) {
        double c = x[b * D + col] - m;
        v += c * c;
    }
    double *out = stats + (j < D ? 0 : 2 * D);
    out[col] = m;
    out[D + col] = 1.0 / sqrt(v / (double)B + (double)KD_PROJ_BN_EPS);
}

/* d = BN(f) - BN(t) (kept in float, as the CPU), and per-block partial sums
 * of |d|^alpha over a grid-stride loop. */
__global__ void proj_diff_kernel(const float *f, const float *t, size_t n, size_t D,
                                 const double *stats, double alpha, float *d, double *partial)
{
    __shared__ double sh[32];
    const double *fm = stats, *fr = stats + D, *tm = stats + 2 * D, *tr = stats + 3 * D;
    double s = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        size_t j = i % D;
        /* no fused multiply-add (the _rn intrinsics are never contracted): as
         * the CPU, identical f and t give d = 0 exactly, hence S = 0 */
        double v = __dsub_rn(__dmul_rn(f[i] - fm[j], fr[j]), __dmul_rn(t[i] - tm[j], tr[j]));
        d[i] = (float)v;
        s += abs_pow(v, alpha);
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* One block: S = sum of the partials (fixed order), loss = w log S, NaN where
 * the CPU refuses (S = 0 or NaN). S goes to partial[nparts]. */
__global__ void proj_finish_kernel(double *partial, int nparts, float weight, double *loss)
{
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x)
        s += partial[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        partial[nparts] = s;
        if (loss)
            *loss = s > 0 ? (double)weight * log(s) : (double)NAN;
    }
}

/* One thread per feature j: g = w alpha sign(d)|d|^(alpha-1) / S, the sums of
 * g and g * xhat over the batch, then the batch-statistics BN backward
 * df = rstd (g - mean g - xhat mean(g xhat)). S = 0 or NaN gives NaN. */
__global__ void proj_backward_kernel(const float *f, const float *d, size_t B, size_t D,
                                     const double *stats, const double *S, double alpha,
                                     float weight, int add, float *df)
{
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D)
        return;
    const double fm = stats[j], fr = stats[D + j];
    const double coef = (double)weight * alpha / *S;
    double sg = 0, sgx = 0;
    for (size_t b = 0; b < B; b++) {
        double g = coef * signed_pow_m1(d[b * D + j], alpha);
        double xhat = (f[b * D + j] - fm) * fr;
        sg += g;
        sgx += g * xhat;
    }
    const double invB = 1.0 / (double)B;
    for (size_t b = 0; b < B; b++) {
        double g = coef * signed_pow_m1(d[b * D + j], alpha);
        double xhat = (f[b * D + j] - fm) * fr;
        float v = (float)(fr * (g - sg * invB - xhat * sgx * invB));
        df[b * D + j] = add ? df[b * D + j] + v : v;
    }
}

void kd_cuda_proj_ws_free(kd_cuda_proj_ws *ws)
{
    if (!ws)
        return;
    if (ws->be) {
        if (ws->d)
            ws->be->free(ws->be, ws->d);
        if (ws->stats)
            ws->be->free(ws->be, ws->stats);
        if (ws->partial)
            ws->be->free(ws->be, ws->partial);
    }
    memset(ws, 0, sizeof *ws);
}

kdc_status kd_cuda_proj_ws_init(kd_cuda_proj_ws *ws, kdc_backend *be, size_t max_B, size_t D,
                                kdc_error *err)
{
    if (!ws)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL workspace");
    memset(ws, 0, sizeof *ws);
    if (!kdc_cuda_impl_of(be, err))
        return KDC_EDEVICE;
    if (max_B < 2 || D == 0)
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: batch %zu x dim %zu (batch statistics need B >= 2)", max_B,
                        D);
    size_t n_bd, n_st;
    if (!kdc_size_mul(max_B, D, &n_bd) || !kdc_size_mul(n_bd, sizeof(float), &n_bd) ||
        !kdc_size_mul(D, 4 * sizeof(double), &n_st))
        return kdc_fail(err, KDC_ENOMEM, "projector loss: %zu x %zu overflows", max_B, D);
    ws->be = be;
    void *p = NULL;
    kdc_status st = be->alloc(be, n_bd, &p, err);
    ws->d = (float *)p;
    if (st == KDC_OK && (st = be->alloc(be, n_st, &p, err)) == KDC_OK)
        ws->stats = (double *)p;
    if (st == KDC_OK &&
        (st = be->alloc(be, (KD_CUDA_PROJ_BLOCKS + 1) * sizeof(double), &p, err)) == KDC_OK)
        ws->partial = (double *)p;
    if (st != KDC_OK) {
        kd_cuda_proj_ws_free(ws);
        return st;
    }
    ws->max_B = max_B;
    ws->D = D;
    return KDC_OK;
}

static unsigned blocks_for(size_t n)
{
    return (unsigned)((n + kThreads - 1) / kThreads);
}

kdc_status kd_cuda_proj_forward(kd_cuda_proj_ws *ws, const float *f, const float *t, size_t B,
                                double alpha, float weight, double *loss, kdc_error *err)
{
    if (!ws || !f || !t)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL argument");
    if (!ws->d)
        return kdc_fail(err, KDC_EINVAL, "projector loss: workspace not initialised");
    ws->B = 0; /* no backward until this forward is enqueued */
    if (B < 2 || B > ws->max_B)
        return kdc_fail(err, KDC_EINVAL,
                        "projector loss: batch %zu outside [2, %zu] (batch statistics need "
                        "two samples; the workspace was made for %zu)",
                        B, ws->max_B, ws->max_B);
    if (!(alpha >= 1.0) || !isfinite(alpha))
        return kdc_fail(err, KDC_EINVAL, "projector loss: alpha %g must be finite and >= 1", alpha);
    kdc_cuda_impl *im = kdc_cuda_impl_of(ws->be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    const size_t D = ws->D, n = B * D; /* <= max_B * D, checked at init */
    proj_stats_kernel<<<blocks_for(2 * D), kThreads, 0, im->stream>>>(f, t, B, D, ws->stats);
    KDC_CUDA_CHECK_LAUNCH(err, "proj_stats");
    proj_diff_kernel<<<KD_CUDA_PROJ_BLOCKS, kThreads, 0, im->stream>>>(f, t, n, D, ws->stats, alpha,
                                                                       ws->d, ws->partial);
    KDC_CUDA_CHECK_LAUNCH(err, "proj_diff");
    proj_finish_kernel<<<1, kThreads, 0, im->stream>>>(ws->partial, KD_CUDA_PROJ_BLOCKS, weight,
                                                       loss);
    KDC_CUDA_CHECK_LAUNCH(err, "proj_finish");
    ws->B = B;
    ws->alpha = alpha;
    return KDC_OK;
}

kdc_status kd_cuda_proj_backward(kd_cuda_proj_ws *ws, const float *f, float weight,
                                 kd_grad_mode mode, float *df, kdc_error *err)
{
    if (!ws || !f || !df)
        return kdc_fail(err, KDC_EINVAL, "projector loss: NULL argument");
    if (ws->B == 0)
        return kdc_fail(err, KDC_EINVAL, "projector loss: backward without a successful forward");
    kdc_cuda_impl *im = kdc_cuda_impl_of(ws->be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_status st = kdc_cuda_bind(im, err);
    if (st)
        return st;
    proj_backward_kernel<<<blocks_for(ws->D), kThreads, 0, im->stream>>>(
        f, ws->d, ws->B, ws->D, ws->stats, ws->partial + KD_CUDA_PROJ_BLOCKS, ws->alpha, weight,
        mode == KD_GRAD_ADD, df);
    KDC_CUDA_CHECK_LAUNCH(err, "proj_backward");
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
