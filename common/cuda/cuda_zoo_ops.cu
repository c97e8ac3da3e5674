/* cuda_zoo_ops.cu - the CUDA twins of the ops MobileNetV2, ShuffleNet V1/V2
 * and RegNetY add to the op table (backend.h): ReLU6, sigmoid, the
 * squeeze-excitation channel scale, channel copy (concatenation / split),
 * channel shuffle and windowed average pooling. All are own kernels (no new
 * cuDNN / cuBLAS entry points). Their specifications are the CPU functions in
 * common/nn/ (relu6_sigmoid.c, channel.c, avgpool.c); tests/gpu/test_gpu_ops.c
 * compares the two. Grid-stride loops over size_t counts, as cuda_kernels.cu;
 * the one reduction (ds of the channel scale) is a block per (n, c) plane and
 * sums in a different order from the CPU, so results agree to rounding. */
#include "common/cuda/cuda_internal.h"

static const int kThreads = 256;
static const size_t kMaxBlocks = 4 * 65535;

static unsigned grid_for(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    if (b > kMaxBlocks)
        b = kMaxBlocks;
    return (unsigned)(b ? b : 1);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

__global__ void relu6_fwd_kernel(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        y[i] = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    }
}

__global__ void relu6_bwd_kernel(size_t n, const float *y, const float *dy, float *dx)
{
    GRID_STRIDE(i, n)
    {
        float v = y[i];
        dx[i] = (v > 0.0f && v < 6.0f) ? dy[i] : 0.0f;
    }
}

__global__ void sigmoid_fwd_kernel(size_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

__global__ void sigmoid_bwd_kernel(size_t n, const float *y, const float *dy, float *dx)
{
    GRID_STRIDE(i, n)
    {
        float v = y[i];
        dx[i] = dy[i] * v * (1.0f - v);
    }
}

__global__ void scale_fwd_kernel(size_t n, size_t hw, const float *x, const float *s, float *y)
{
    GRID_STRIDE(i, n) y[i] = x[i] * s[i / hw];
}

/* One block per (image, channel) plane: ds = sum dy * x over the plane. */
__global__ void scale_ds_kernel(size_t hw, const float *x, const float *dy, float *ds)
{
    __shared__ float part[kThreads];
    size_t plane = blockIdx.x;
    const float *xp = x + plane * hw, *gp = dy + plane * hw;
    float acc = 0.0f;
    for (size_t i = threadIdx.x; i < hw; i += blockDim.x)
        acc += gp[i] * xp[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w)
            part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        ds[plane] = part[0];
}

/* y channels [y_off, y_off + c) of every image from x channels [x_off, ...). */
__global__ void copy_kernel(size_t total, size_t chunk, size_t x_img, size_t x_at, size_t y_img,
                            size_t y_at, const float *x, float *y)
{
    GRID_STRIDE(i, total)
    {
        size_t img = i / chunk, r = i % chunk;
        y[img * y_img + y_at + r] = x[img * x_img + x_at + r];
    }
}

__global__ void shuffle_kernel(size_t total, size_t c, size_t g, size_t hw, const float *x,
                               float *y)
{
    GRID_STRIDE(t, total)
    {
        size_t p = t % hw, oc = (t / hw) % c, img = t / (hw * c);
        size_t per = c / g, i = oc % g, j = oc / g;
        y[t] = x[(img * c + i * per + j) * hw + p];
    }
}

__global__ void avgpool_fwd_kernel(size_t total, kdc_pool2d_desc d, const float *x, float *y)
{
    float inv = 1.0f / (float)(d.k * d.k);
    GRID_STRIDE(t, total)
    {
        int ow = (int)(t % d.w_out), oh = (int)((t / d.w_out) % d.h_out);
        size_t plane = t / ((size_t)d.w_out * d.h_out);
        const float *xp = x + plane * (size_t)d.h_in * d.w_in;
        float s = 0.0f;
        for (int i = 0; i < d.k; i++) {
            int ih = oh * d.stride - d.pad + i;
            if (ih < 0 || ih >= d.h_in)
                continue;
            for (int j = 0; j < d.k; j++) {
                int iw = ow * d.stride - d.pad + j;
                if (iw >= 0 && iw < d.w_in)
                    s += xp[(size_t)ih * d.w_in + iw];
            }
        }
        y[t] = s * inv;
    }
}

/* Gather form (one thread per input element, no atomics): the windows that
 * hold (ih, iw) are oh in [ceil((ih + pad - k + 1) / stride), (ih + pad) / stride]. */
__global__ void avgpool_bwd_kernel(size_t total, kdc_pool2d_desc d, const float *dy, float *dx)
{
    float inv = 1.0f / (float)(d.k * d.k);
    GRID_STRIDE(t, total)
    {
        int iw = (int)(t % d.w_in), ih = (int)((t / d.w_in) % d.h_in);
        size_t plane = t / ((size_t)d.w_in * d.h_in);
        const float *gp = dy + plane * (size_t)d.h_out * d.w_out;
        int hp = ih + d.pad, wp = iw + d.pad;
        int oh0 = hp - d.k + 1 > 0 ? (hp - d.k + 1 + d.stride - 1) / d.stride : 0;
        int ow0 = wp - d.k + 1 > 0 ? (wp - d.k + 1 + d.stride - 1) / d.stride : 0;
        int oh1 = hp / d.stride, ow1 = wp / d.stride;
        if (oh1 > d.h_out - 1)
            oh1 = d.h_out - 1;
        if (ow1 > d.w_out - 1)
            ow1 = d.w_out - 1;
        float s = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++)
                s += gp[(size_t)oh * d.w_out + ow];
        dx[t] = s * inv;
    }
}

/* ------------------------------------------------------------------ */
/* the op table entries                                                 */

#define ZENTER(be, err)                                                                            \
    kdc_cuda_impl *im = (kdc_cuda_impl *)(be)->impl;                                               \
    do {                                                                                           \
        kdc_status kdc_b_ = kdc_cuda_bind(im, (err));                                              \
        if (kdc_b_ != KDC_OK)                                                                      \
            return kdc_b_;                                                                         \
    } while (0)

#define ELEMENTWISE(name, kernel, ...)                                                             \
    do {                                                                                           \
        if (n == 0)                                                                                \
            return KDC_OK;                                                                         \
        kernel<<<grid_for(n), kThreads, 0, im->stream>>>(n, __VA_ARGS__);                          \
        KDC_CUDA_CHECK_LAUNCH(err, name);                                                          \
        return KDC_OK;                                                                             \
    } while (0)

static kdc_status cu_relu6_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                   kdc_error *err)
{
    ZENTER(be, err);
    ELEMENTWISE("relu6 forward", relu6_fwd_kernel, x, y);
}

static kdc_status cu_relu6_backward(kdc_backend *be, size_t n, const float *y, const float *dy,
                                    float *dx, kdc_error *err)
{
    ZENTER(be, err);
    ELEMENTWISE("relu6 backward", relu6_bwd_kernel, y, dy, dx);
}

static kdc_status cu_sigmoid_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                     kdc_error *err)
{
    ZENTER(be, err);
    ELEMENTWISE("sigmoid forward", sigmoid_fwd_kernel, x, y);
}

static kdc_status cu_sigmoid_backward(kdc_backend *be, size_t n, const float *y, const float *dy,
                                      float *dx, kdc_error *err)
{
    ZENTER(be, err);
    ELEMENTWISE("sigmoid backward", sigmoid_bwd_kernel, y, dy, dx);
}

static kdc_status scale_check(int n, int c, int hw, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "channel scale: bad size %d x %d x %d", n, c, hw);
    return KDC_OK;
}

static kdc_status cu_channel_scale_forward(kdc_backend *be, int n_, int c, int hw, const float *x,
                                           const float *s, float *y, kdc_error *err)
{
    ZENTER(be, err);
    kdc_status st = scale_check(n_, c, hw, err);
    if (st != KDC_OK)
        return st;
    size_t n = (size_t)n_ * c * hw;
    ELEMENTWISE("channel scale forward", scale_fwd_kernel, (size_t)hw, x, s, y);
}

static kdc_status cu_channel_scale_backward(kdc_backend *be, int n_, int c, int hw, const float *x,
                                            const float *s, const float *dy, float *dx, float *ds,
                                            kdc_error *err)
{
    ZENTER(be, err);
    kdc_status st = scale_check(n_, c, hw, err);
    if (st != KDC_OK)
        return st;
    size_t planes = (size_t)n_ * c, n = planes * hw;
    if (ds) {
        if (planes > 0x7fffffff)
            return kdc_fail(err, KDC_EINVAL, "channel scale: %zu planes", planes);
        scale_ds_kernel<<<(unsigned)planes, kThreads, 0, im->stream>>>((size_t)hw, x, dy, ds);
        KDC_CUDA_CHECK_LAUNCH(err, "channel scale ds");
    }
    if (dx) /* dx = dy * s is the forward kernel applied to dy */
        ELEMENTWISE("channel scale dx", scale_fwd_kernel, (size_t)hw, dy, s, dx);
    return KDC_OK;
}

static kdc_status cu_channel_copy(kdc_backend *be, const kdc_chan_copy_desc *d, const float *x,
                                  float *y, kdc_error *err)
{
    ZENTER(be, err);
    kdc_status st = kdc_chan_copy_desc_check(d, err);
    if (st != KDC_OK)
        return st;
    size_t hw = (size_t)d->hw, chunk = (size_t)d->c * hw, n = (size_t)d->n * chunk;
    ELEMENTWISE("channel copy", copy_kernel, chunk, (size_t)d->x_c * hw, (size_t)d->x_off * hw,
                (size_t)d->y_c * hw, (size_t)d->y_off * hw, x, y);
}

static kdc_status cu_channel_shuffle(kdc_backend *be, int n_, int c, int groups, int hw,
                                     const float *x, float *y, kdc_error *err)
{
    ZENTER(be, err);
    if (n_ <= 0 || c <= 0 || hw <= 0 || groups <= 0 || c % groups)
        return kdc_fail(err, KDC_EINVAL, "channel shuffle: %d channels in %d groups", c, groups);
    size_t n = (size_t)n_ * c * hw;
    ELEMENTWISE("channel shuffle", shuffle_kernel, (size_t)c, (size_t)groups, (size_t)hw, x, y);
}

static kdc_status avg_check(const kdc_pool2d_desc *d, kdc_error *err)
{
    kdc_pool2d_desc chk = *d;
    kdc_status st = kdc_pool2d_desc_init(&chk, err);
    if (st != KDC_OK)
        return kdc_error_prefix(err, "avgpool: ");
    if (chk.h_out != d->h_out || chk.w_out != d->w_out)
        return kdc_fail(err, KDC_EINVAL, "avgpool: descriptor output %dx%d, expected %dx%d",
                        d->h_out, d->w_out, chk.h_out, chk.w_out);
    return KDC_OK;
}

static kdc_status cu_avgpool2d_forward(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                       float *y, kdc_error *err)
{
    ZENTER(be, err);
    kdc_status st = avg_check(d, err);
    if (st != KDC_OK)
        return st;
    size_t n = (size_t)d->n * d->c * d->h_out * d->w_out;
    ELEMENTWISE("avgpool forward", avgpool_fwd_kernel, *d, x, y);
}

static kdc_status cu_avgpool2d_backward(kdc_backend *be, const kdc_pool2d_desc *d, const float *dy,
                                        float *dx, kdc_error *err)
{
    ZENTER(be, err);
    kdc_status st = avg_check(d, err);
    if (st != KDC_OK)
        return st;
    size_t n = (size_t)d->n * d->c * d->h_in * d->w_in;
    ELEMENTWISE("avgpool backward", avgpool_bwd_kernel, *d, dy, dx);
}

void kdc_cuda_fill_zoo_ops(kdc_backend *be)
{
    be->relu6_forward = cu_relu6_forward;
    be->relu6_backward = cu_relu6_backward;
    be->sigmoid_forward = cu_sigmoid_forward;
    be->sigmoid_backward = cu_sigmoid_backward;
    be->channel_scale_forward = cu_channel_scale_forward;
    be->channel_scale_backward = cu_channel_scale_backward;
    be->channel_copy = cu_channel_copy;
    be->channel_shuffle = cu_channel_shuffle;
    be->avgpool2d_forward = cu_avgpool2d_forward;
    be->avgpool2d_backward = cu_avgpool2d_backward;
}
