/* backend_cuda.cu - the CUDA backend: the op table of backend.h on one GPU,
 * twin of backend_cpu.c.
 *
 * Convolution, batch norm, max pooling and ReLU are cuDNN 9's legacy API
 * (cudnnConvolutionForward, cudnnBatchNormalizationForwardTraining, ...):
 * cuDNN 9.19 still ships it, marked CUDNN_DEPRECATED, and the mark only
 * turns into a compiler warning when CUDNN_WARN_DEPRECATED is defined, which
 * we do not. Linear layers and the global average pool are cuBLAS GEMM/GEMV
 * (row-major through the transpose identity); the few ops without a library
 * primitive are own kernels (cuda_kernels.cu). Device memory comes from the
 * caching allocator (cuda_alloc.cu); everything runs on one stream per
 * backend. Pinned buffers and the uploader are in cuda_upload.cu.
 *
 * Semantics follow the CPU backend, with these known differences:
 *   - max-pool backward: cuDNN gives a tied window's gradient to one of the
 *     maxima by its own rule, the CPU to the first in scan order; identical
 *     whenever a window has a unique maximum (the GPU tests use such inputs);
 *   - sums run in a different order (and cuDNN may pick FFT / Winograd
 *     convolution algorithms), so results agree to the tolerances written in
 *     tests/gpu/test_gpu_ops.c, not bit for bit. */
#include <array>
#include <limits.h>
#include <map>
#include <new>
#include <stdio.h>
#include <string.h>

#include "common/cuda/cuda_internal.h"

#define KDC_TRY(call)                                                                        \
    do {                                                                                     \
        kdc_status kdc_t_ = (call);                                                          \
        if (kdc_t_ != KDC_OK)                                                                \
            return kdc_t_;                                                                   \
    } while (0)

/* cuDNN may ask for a large workspace for its fastest algorithms; above this
 * we take the next algorithm instead of starving the model of memory. */
static const size_t kWorkspaceMax = (size_t)1 << 30;

/* cuDNN tensor descriptors take int sizes; elementwise ops over longer
 * arrays are cut into pieces of this many elements. */
static const size_t kChunk = (size_t)1 << 28;

static const float kOne = 1.0f, kZero = 0.0f;

/* ------------------------------------------------------------------ */
/* helpers                                                             */

kdc_status kdc_cuda_bind(kdc_cuda_impl *im, kdc_error *err)
{
    int cur = -1;
    KDC_CUDA_TRY(err, cudaGetDevice(&cur));
    if (cur != im->device)
        KDC_CUDA_TRY(err, cudaSetDevice(im->device));
    return KDC_OK;
}

#define ENTER(be, err)                                                                       \
    kdc_cuda_impl *im = (kdc_cuda_impl *)(be)->impl;                                         \
    KDC_TRY(kdc_cuda_bind(im, (err)))

static kdc_status dev_alloc(kdc_cuda_impl *im, size_t bytes, void **out, kdc_error *err)
{
    return kdc_cuda_allocator_alloc(im->alloc, bytes, out, err);
}

static void dev_free(kdc_cuda_impl *im, void *p)
{
    kdc_cuda_allocator_free(im->alloc, p);
}

static kdc_status ensure_workspace(kdc_cuda_impl *im, size_t bytes, kdc_error *err)
{
    if (bytes <= im->workspace_bytes)
        return KDC_OK;
    dev_free(im, im->workspace); /* stream-ordered: earlier convs are done with it first */
    im->workspace = NULL;
    im->workspace_bytes = 0;
    KDC_TRY(dev_alloc(im, bytes, &im->workspace, err));
    im->workspace_bytes = bytes;
    return KDC_OK;
}

/* At least `len` ones at im->consts and `len` zeros at im->consts + consts_len. */
static kdc_status ensure_consts(kdc_cuda_impl *im, size_t len, kdc_error *err)
{
    if (len <= im->consts_len)
        return KDC_OK;
    size_t cap = im->consts_len ? im->consts_len : 1024;
    while (cap < len)
        cap *= 2;
    void *p = NULL;
    KDC_TRY(dev_alloc(im, 2 * cap * sizeof(float), &p, err));
    float *f = (float *)p;
    KDC_TRY(kdc_cuda_fill(im->stream, cap, 1.0f, f, err));
    KDC_TRY(kdc_cuda_fill(im->stream, cap, 0.0f, f + cap, err));
    dev_free(im, im->consts);
    im->consts = f;
    im->consts_len = cap;
    return KDC_OK;
}

static const float *ones(kdc_cuda_impl *im) { return im->consts; }
static const float *zeros(kdc_cuda_impl *im) { return im->consts + im->consts_len; }

static kdc_status set4d(cudnnTensorDescriptor_t t, cudnnDataType_t dt, int n, int c, int h, int w,
                        kdc_error *err)
{
    KDC_CUDNN_TRY(err, cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, dt, n, c, h, w));
    return KDC_OK;
}

/* A zeroed scratch array of c floats (dummy running stats, unwanted grads). */
static kdc_status scratch_zeroed(kdc_cuda_impl *im, size_t count, float **out, kdc_error *err)
{
    void *p = NULL;
    KDC_TRY(dev_alloc(im, count * sizeof(float), &p, err));
    cudaError_t e = cudaMemsetAsync(p, 0, count * sizeof(float), im->stream);
    if (e != cudaSuccess) {
        dev_free(im, p);
        return kdc_fail(err, KDC_EDEVICE, "cuda: cudaMemsetAsync failed: %s",
                        cudaGetErrorString(e));
    }
    *out = (float *)p;
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* memory                                                              */

static kdc_status cu_alloc(kdc_backend *be, size_t bytes, void **out, kdc_error *err)
{
    ENTER(be, err);
    return dev_alloc(im, bytes, out, err);
}

static void cu_free(kdc_backend *be, void *ptr)
{
    kdc_cuda_impl *im = (kdc_cuda_impl *)be->impl;
    dev_free(im, ptr);
}

static kdc_status cu_copy_h2d(kdc_backend *be, void *dst, const void *src, size_t bytes,
                              kdc_error *err)
{
    ENTER(be, err);
    if (bytes == 0)
        return KDC_OK;
    KDC_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, im->stream));
    /* From pageable memory the call returns once src has been staged; from
     * pinned memory the DMA may still read src, and callers may reuse src
     * when we return, so wait. Overlapped uploads use the uploader. */
    cudaPointerAttributes attr;
    KDC_CUDA_TRY(err, cudaPointerGetAttributes(&attr, src));
    if (attr.type == cudaMemoryTypeHost)
        KDC_CUDA_TRY(err, cudaStreamSynchronize(im->stream));
    return KDC_OK;
}

static kdc_status cu_copy_d2h(kdc_backend *be, void *dst, const void *src, size_t bytes,
                              kdc_error *err)
{
    ENTER(be, err);
    if (bytes == 0)
        return KDC_OK;
    KDC_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, im->stream));
    KDC_CUDA_TRY(err, cudaStreamSynchronize(im->stream));
    return KDC_OK;
}

static kdc_status cu_copy_d2d(kdc_backend *be, void *dst, const void *src, size_t bytes,
                              kdc_error *err)
{
    ENTER(be, err);
    if (bytes == 0 || dst == src)
        return KDC_OK;
    KDC_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream));
    return KDC_OK;
}

static kdc_status cu_fill_zero(kdc_backend *be, void *dst, size_t bytes, kdc_error *err)
{
    ENTER(be, err);
    if (bytes == 0)
        return KDC_OK;
    KDC_CUDA_TRY(err, cudaMemsetAsync(dst, 0, bytes, im->stream));
    return KDC_OK;
}

static kdc_status cu_synchronize(kdc_backend *be, kdc_error *err)
{
    ENTER(be, err);
    KDC_CUDA_TRY(err, cudaStreamSynchronize(im->stream));
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* convolution: one plan per shape, algorithms chosen once by cuDNN's  */
/* heuristics (ordered by expected speed) and cached                   */

struct ConvPlan {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
    cudnnFilterDescriptor_t w = nullptr;
    cudnnConvolutionDescriptor_t conv = nullptr;
    /* float16 twins for the fp16 forward, made on first use */
    cudnnTensorDescriptor_t x16 = nullptr, y16 = nullptr;
    cudnnFilterDescriptor_t w16 = nullptr;
    cudnnConvolutionDescriptor_t conv16 = nullptr;

    bool have_fwd[3] = {false, false, false}; /* by kdc_precision */
    cudnnConvolutionFwdAlgo_t fwd[3];
    cudnnMathType_t fwd_math[3];
    size_t fwd_ws[3] = {0, 0, 0};

    bool have_bwd = false;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnMathType_t bwd_data_math;
    size_t bwd_data_ws = 0;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t bwd_filter_math;
    size_t bwd_filter_ws = 0;
};

typedef std::array<int, 10> ConvKey;

struct kdc_cuda_conv_cache {
    std::map<ConvKey, ConvPlan *> plans;
};

static void plan_destroy(ConvPlan *p)
{
    if (!p)
        return;
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->bias) cudnnDestroyTensorDescriptor(p->bias);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    if (p->x16) cudnnDestroyTensorDescriptor(p->x16);
    if (p->y16) cudnnDestroyTensorDescriptor(p->y16);
    if (p->w16) cudnnDestroyFilterDescriptor(p->w16);
    if (p->conv16) cudnnDestroyConvolutionDescriptor(p->conv16);
    delete p;
}

static kdc_status make_descs(const kdc_conv2d_desc *d, cudnnDataType_t dt,
                             cudnnTensorDescriptor_t *x, cudnnTensorDescriptor_t *y,
                             cudnnFilterDescriptor_t *w, cudnnConvolutionDescriptor_t *conv,
                             kdc_error *err)
{
    KDC_CUDNN_TRY(err, cudnnCreateTensorDescriptor(x));
    KDC_CUDNN_TRY(err, cudnnCreateTensorDescriptor(y));
    KDC_CUDNN_TRY(err, cudnnCreateFilterDescriptor(w));
    KDC_CUDNN_TRY(err, cudnnCreateConvolutionDescriptor(conv));
    KDC_TRY(set4d(*x, dt, d->n, d->c_in, d->h_in, d->w_in, err));
    KDC_TRY(set4d(*y, dt, d->n, d->c_out, d->h_out, d->w_out, err));
    KDC_CUDNN_TRY(err, cudnnSetFilter4dDescriptor(*w, dt, CUDNN_TENSOR_NCHW, d->c_out,
                                                  d->c_in / d->groups, d->kh, d->kw));
    /* Accumulation is float32 for float and half data alike (for half this
     * is cuDNN's PSEUDO_HALF_CONFIG). */
    KDC_CUDNN_TRY(err, cudnnSetConvolution2dDescriptor(*conv, d->pad, d->pad, d->stride,
                                                       d->stride, 1, 1,
                                                       CUDNN_CROSS_CORRELATION,
                                                       CUDNN_DATA_FLOAT));
    KDC_CUDNN_TRY(err, cudnnSetConvolutionGroupCount(*conv, d->groups));
    /* cuDNN's own output size must be the one the descriptor promises. */
    int n, c, h, wd;
    KDC_CUDNN_TRY(err, cudnnGetConvolution2dForwardOutputDim(*conv, *x, *w, &n, &c, &h, &wd));
    if (n != d->n || c != d->c_out || h != d->h_out || wd != d->w_out)
        return kdc_fail(err, KDC_EMISMATCH,
                        "conv2d: cuDNN output %dx%dx%dx%d differs from descriptor %dx%dx%dx%d", n,
                        c, h, wd, d->n, d->c_out, d->h_out, d->w_out);
    return KDC_OK;
}

/* Validates d (sizes derived as kdc_conv2d_desc_init does) and returns the
 * cached plan for its shape, creating it on first use. */
static kdc_status get_plan(kdc_cuda_impl *im, const kdc_conv2d_desc *d, ConvPlan **out,
                           kdc_error *err)
{
    kdc_conv2d_desc chk = *d;
    KDC_TRY(kdc_conv2d_desc_init(&chk, err));
    if (chk.h_out != d->h_out || chk.w_out != d->w_out)
        return kdc_fail(err, KDC_EINVAL,
                        "conv2d: descriptor output %dx%d, expected %dx%d (call "
                        "kdc_conv2d_desc_init)",
                        d->h_out, d->w_out, chk.h_out, chk.w_out);
    ConvKey key = {d->n, d->c_in, d->h_in, d->w_in, d->c_out, d->kh, d->kw, d->stride, d->pad,
                   d->groups};
    auto it = im->convs->plans.find(key);
    if (it != im->convs->plans.end()) {
        *out = it->second;
        return KDC_OK;
    }
    ConvPlan *p = new (std::nothrow) ConvPlan();
    if (!p)
        return kdc_fail(err, KDC_ENOMEM, "conv2d: out of host memory");
    kdc_status st = make_descs(d, CUDNN_DATA_FLOAT, &p->x, &p->y, &p->w, &p->conv, err);
    if (st == KDC_OK) {
        cudnnStatus_t s = cudnnCreateTensorDescriptor(&p->bias);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                           d->c_out, 1, 1);
        if (s != CUDNN_STATUS_SUCCESS)
            st = kdc_fail(err, KDC_EDEVICE, "cudnn: bias descriptor: %s", cudnnGetErrorString(s));
    }
    if (st == KDC_OK) {
        try {
            im->convs->plans.emplace(key, p);
        } catch (const std::bad_alloc &) {
            st = kdc_fail(err, KDC_ENOMEM, "conv2d: out of host memory");
        }
    }
    if (st != KDC_OK) {
        plan_destroy(p);
        return st;
    }
    *out = p;
    return KDC_OK;
}

/* Index of the first (fastest by cuDNN's estimate) usable algorithm: it
 * must run, fit the workspace limit and, for strict fp32, use FMA math (on
 * sm_80+ CUDNN_DEFAULT_MATH would allow TF32). If no FMA algorithm exists the
 * fastest usable one is taken rather than failing. */
template <typename Perf> static int pick_algo(const Perf *perf, int count, bool strict_fp32)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < count; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kWorkspaceMax)
                continue;
            if (pass == 0 && strict_fp32 && perf[i].mathType != CUDNN_FMA_MATH)
                continue;
            return i;
        }
    return -1;
}

static kdc_status plan_forward(kdc_cuda_impl *im, ConvPlan *p, const kdc_conv2d_desc *d,
                               kdc_precision prec, kdc_error *err)
{
    if (p->have_fwd[prec])
        return KDC_OK;
    cudnnTensorDescriptor_t x = p->x, y = p->y;
    cudnnFilterDescriptor_t w = p->w;
    cudnnConvolutionDescriptor_t conv = p->conv;
    if (prec == KDC_PREC_FP16) {
        if (!p->conv16)
            KDC_TRY(make_descs(d, CUDNN_DATA_HALF, &p->x16, &p->y16, &p->w16, &p->conv16, err));
        x = p->x16, y = p->y16, w = p->w16, conv = p->conv16;
    }
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(
                           conv, prec == KDC_PREC_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    KDC_CUDNN_TRY(err, cudnnGetConvolutionForwardAlgorithm_v7(
                           im->cudnn, x, w, conv, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count,
                           perf));
    int i = pick_algo(perf, count, prec == KDC_PREC_FP32);
    if (i < 0)
        return kdc_fail(err, KDC_EDEVICE,
                        "conv2d forward %dx%dx%dx%d k%d s%d g%d: cuDNN offers no algorithm",
                        d->n, d->c_in, d->h_in, d->w_in, d->kh, d->stride, d->groups);
    p->fwd[prec] = perf[i].algo;
    p->fwd_math[prec] = perf[i].mathType;
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(conv, perf[i].mathType));
    KDC_CUDNN_TRY(err, cudnnGetConvolutionForwardWorkspaceSize(im->cudnn, x, w, conv, y,
                                                               perf[i].algo, &p->fwd_ws[prec]));
    p->have_fwd[prec] = true;
    return KDC_OK;
}

/* Backward always runs in strict float32 (training math). */
static kdc_status plan_backward(kdc_cuda_impl *im, ConvPlan *p, const kdc_conv2d_desc *d,
                                kdc_error *err)
{
    if (p->have_bwd)
        return KDC_OK;
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, CUDNN_FMA_MATH));
    cudnnConvolutionBwdDataAlgoPerf_t pd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    KDC_CUDNN_TRY(err, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                           im->cudnn, p->w, p->y, p->conv, p->x,
                           CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, pd));
    int i = pick_algo(pd, count, true);
    if (i < 0)
        return kdc_fail(err, KDC_EDEVICE, "conv2d backward-data %dx%dx%dx%d k%d s%d g%d: cuDNN "
                                          "offers no algorithm",
                        d->n, d->c_in, d->h_in, d->w_in, d->kh, d->stride, d->groups);
    p->bwd_data = pd[i].algo;
    p->bwd_data_math = pd[i].mathType;
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, pd[i].mathType));
    KDC_CUDNN_TRY(err, cudnnGetConvolutionBackwardDataWorkspaceSize(
                           im->cudnn, p->w, p->y, p->conv, p->x, pd[i].algo, &p->bwd_data_ws));

    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, CUDNN_FMA_MATH));
    cudnnConvolutionBwdFilterAlgoPerf_t pf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    count = 0;
    KDC_CUDNN_TRY(err, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                           im->cudnn, p->x, p->y, p->conv, p->w,
                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, pf));
    i = pick_algo(pf, count, true);
    if (i < 0)
        return kdc_fail(err, KDC_EDEVICE, "conv2d backward-filter %dx%dx%dx%d k%d s%d g%d: cuDNN "
                                          "offers no algorithm",
                        d->n, d->c_in, d->h_in, d->w_in, d->kh, d->stride, d->groups);
    p->bwd_filter = pf[i].algo;
    p->bwd_filter_math = pf[i].mathType;
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, pf[i].mathType));
    KDC_CUDNN_TRY(err, cudnnGetConvolutionBackwardFilterWorkspaceSize(
                           im->cudnn, p->x, p->y, p->conv, p->w, pf[i].algo,
                           &p->bwd_filter_ws));
    p->have_bwd = true;
    return KDC_OK;
}

static size_t conv_numel_x(const kdc_conv2d_desc *d)
{
    return (size_t)d->n * d->c_in * d->h_in * d->w_in;
}
static size_t conv_numel_y(const kdc_conv2d_desc *d)
{
    return (size_t)d->n * d->c_out * d->h_out * d->w_out;
}
static size_t conv_numel_w(const kdc_conv2d_desc *d)
{
    return (size_t)d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
}

/* fp16 forward: x and w rounded to float16, cuDNN in PSEUDO_HALF_CONFIG
 * (float accumulation), y widened back to float. The conversions cost three
 * extra elementwise passes per layer; weights are converted on every call
 * because the op table gives no way to know they did not change. */
static kdc_status conv_forward_fp16(kdc_cuda_impl *im, ConvPlan *p, const kdc_conv2d_desc *d,
                                    const float *x, const float *w, float *y, kdc_error *err)
{
    size_t nx = conv_numel_x(d), nw = conv_numel_w(d), ny = conv_numel_y(d);
    void *buf = NULL;
    KDC_TRY(dev_alloc(im, (nx + nw + ny + 8) * sizeof(uint16_t), &buf, err));
    uint16_t *x16 = (uint16_t *)buf;
    /* keep each part 16-byte aligned for cuDNN's vector loads */
    uint16_t *w16 = x16 + ((nx + 7) & ~(size_t)7);
    uint16_t *y16 = w16 + ((nw + 7) & ~(size_t)7);
    kdc_status st = kdc_cuda_f32_to_f16(im->stream, nx, x, x16, err);
    if (st == KDC_OK)
        st = kdc_cuda_f32_to_f16(im->stream, nw, w, w16, err);
    if (st == KDC_OK) {
        cudnnStatus_t s = cudnnSetConvolutionMathType(p->conv16, p->fwd_math[KDC_PREC_FP16]);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnConvolutionForward(im->cudnn, &kOne, p->x16, x16, p->w16, w16, p->conv16,
                                        p->fwd[KDC_PREC_FP16], im->workspace,
                                        p->fwd_ws[KDC_PREC_FP16], &kZero, p->y16, y16);
        if (s != CUDNN_STATUS_SUCCESS)
            st = kdc_fail(err, KDC_EDEVICE, "cudnn: cudnnConvolutionForward (fp16) failed: %s",
                          cudnnGetErrorString(s));
    }
    if (st == KDC_OK)
        st = kdc_cuda_f16_to_f32(im->stream, ny, y16, y, err);
    dev_free(im, buf);
    return st;
}

static kdc_status cu_conv2d_forward(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                    const float *w, const float *bias, float *y, kdc_error *err)
{
    ENTER(be, err);
    ConvPlan *p = NULL;
    KDC_TRY(get_plan(im, d, &p, err));
    kdc_precision prec = im->precision;
    KDC_TRY(plan_forward(im, p, d, prec, err));
    KDC_TRY(ensure_workspace(im, p->fwd_ws[prec], err));
    if (prec == KDC_PREC_FP16) {
        KDC_TRY(conv_forward_fp16(im, p, d, x, w, y, err));
    } else {
        KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, p->fwd_math[prec]));
        KDC_CUDNN_TRY(err, cudnnConvolutionForward(im->cudnn, &kOne, p->x, x, p->w, w, p->conv,
                                                   p->fwd[prec], im->workspace, p->fwd_ws[prec],
                                                   &kZero, p->y, y));
    }
    if (bias)
        KDC_CUDNN_TRY(err, cudnnAddTensor(im->cudnn, &kOne, p->bias, bias, &kOne, p->y, y));
    return KDC_OK;
}

static kdc_status cu_conv2d_backward(kdc_backend *be, const kdc_conv2d_desc *d, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *dbias, kdc_error *err)
{
    ENTER(be, err);
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    ConvPlan *p = NULL;
    KDC_TRY(get_plan(im, d, &p, err));
    KDC_TRY(plan_backward(im, p, d, err));
    size_t ws = p->bwd_filter_ws > p->bwd_data_ws ? p->bwd_filter_ws : p->bwd_data_ws;
    KDC_TRY(ensure_workspace(im, ws, err));
    if (dbias)
        KDC_CUDNN_TRY(err, cudnnConvolutionBackwardBias(im->cudnn, &kOne, p->y, dy, &kZero,
                                                        p->bias, dbias));
    KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, p->bwd_filter_math));
    KDC_CUDNN_TRY(err, cudnnConvolutionBackwardFilter(im->cudnn, &kOne, p->x, x, p->y, dy,
                                                      p->conv, p->bwd_filter, im->workspace,
                                                      p->bwd_filter_ws, &kZero, p->w, dw));
    if (dx) {
        KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, p->bwd_data_math));
        KDC_CUDNN_TRY(err, cudnnConvolutionBackwardData(im->cudnn, &kOne, p->w, w, p->y, dy,
                                                        p->conv, p->bwd_data, im->workspace,
                                                        p->bwd_data_ws, &kZero, p->x, dx));
    }
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* batch norm: cuDNN spatial mode over N x C x HW x 1                  */
/* cuDNN's running update is running = (1-f)*running + f*batch with the */
/* unbiased batch variance, i.e. PyTorch's momentum with f = momentum,  */
/* and its saved inverse variance is 1/sqrt(biased_var + eps).         */

static kdc_status bn_check(const kdc_bn_desc *d, int training, kdc_error *err)
{
    if (d->n <= 0 || d->c <= 0 || d->hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "batchnorm: bad shape %dx%dx%d", d->n, d->c, d->hw);
    if (!(d->eps > 0.0f))
        return kdc_fail(err, KDC_EINVAL, "batchnorm: eps %g must be positive", (double)d->eps);
    if (training && (size_t)d->n * d->hw < 2)
        return kdc_fail(err, KDC_EINVAL,
                        "batchnorm: training needs more than one value per channel (got %dx%d)",
                        d->n, d->hw);
    if (training && !(d->momentum >= 0.0f && d->momentum <= 1.0f))
        return kdc_fail(err, KDC_EINVAL, "batchnorm: momentum %g outside [0, 1]",
                        (double)d->momentum);
    return KDC_OK;
}

static kdc_status bn_descs(kdc_cuda_impl *im, const kdc_bn_desc *d, kdc_error *err)
{
    KDC_TRY(set4d(im->td_x, CUDNN_DATA_FLOAT, d->n, d->c, d->hw, 1, err));
    KDC_TRY(set4d(im->td_p, CUDNN_DATA_FLOAT, 1, d->c, 1, 1, err));
    return ensure_consts(im, (size_t)d->c, err);
}

static kdc_status cu_bn_forward_train(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                      const float *gamma, const float *beta, float *running_mean,
                                      float *running_var, float *save_mean, float *save_invstd,
                                      float *y, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(bn_check(d, 1, err));
    KDC_TRY(bn_descs(im, d, err));
    /* cuDNN wants every statistics pointer valid: stand-ins for the ones the
     * caller does not want, zeroed because cuDNN reads running stats. */
    float *tmp = NULL;
    if (!running_mean || !running_var || !save_mean || !save_invstd)
        KDC_TRY(scratch_zeroed(im, 4 * (size_t)d->c, &tmp, err));
    float *rm = running_mean ? running_mean : tmp;
    float *rv = running_var ? running_var : tmp + d->c;
    float *sm = save_mean ? save_mean : tmp + 2 * (size_t)d->c;
    float *si = save_invstd ? save_invstd : tmp + 3 * (size_t)d->c;
    cudnnStatus_t s = cudnnBatchNormalizationForwardTraining(
        im->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, im->td_x, x, im->td_x, y, im->td_p,
        gamma ? gamma : ones(im), beta ? beta : zeros(im), (double)d->momentum, rm, rv,
        (double)d->eps, sm, si);
    dev_free(im, tmp);
    if (s != CUDNN_STATUS_SUCCESS)
        return kdc_fail(err, KDC_EDEVICE, "cudnn: cudnnBatchNormalizationForwardTraining failed: %s",
                        cudnnGetErrorString(s));
    return KDC_OK;
}

static kdc_status cu_bn_forward_eval(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                     const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     float *y, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(bn_check(d, 0, err));
    if (!running_mean || !running_var)
        return kdc_fail(err, KDC_EINVAL, "batchnorm eval: running statistics are required");
    KDC_TRY(bn_descs(im, d, err));
    KDC_CUDNN_TRY(err, cudnnBatchNormalizationForwardInference(
                           im->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, im->td_x, x,
                           im->td_x, y, im->td_p, gamma ? gamma : ones(im),
                           beta ? beta : zeros(im), running_mean, running_var, (double)d->eps));
    return KDC_OK;
}

static kdc_status cu_bn_backward(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                 const float *dy, const float *gamma, const float *save_mean,
                                 const float *save_invstd, float *dx, float *dgamma, float *dbeta,
                                 kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(bn_check(d, 1, err));
    KDC_TRY(bn_descs(im, d, err));
    /* Stand-ins for the outputs the caller does not want (cuDNN writes all
     * three); written, never read, but zeroed so that no byte is undefined. */
    size_t numel = (size_t)d->n * d->c * d->hw;
    float *tmp = NULL;
    if (!dgamma || !dbeta || !dx)
        KDC_TRY(scratch_zeroed(im, 2 * (size_t)d->c + (dx ? 0 : numel), &tmp, err));
    /* With both saved statistics cuDNN uses them; with neither it
     * recomputes them from x. */
    const float *sm = save_mean && save_invstd ? save_mean : NULL;
    const float *si = save_mean && save_invstd ? save_invstd : NULL;
    cudnnStatus_t s = cudnnBatchNormalizationBackward(
        im->cudnn, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero, im->td_x, x, im->td_x,
        dy, im->td_x, dx ? dx : tmp + 2 * (size_t)d->c, im->td_p, gamma ? gamma : ones(im), dgamma ? dgamma : tmp,
        dbeta ? dbeta : tmp + d->c, (double)d->eps, sm, si);
    dev_free(im, tmp);
    if (s != CUDNN_STATUS_SUCCESS)
        return kdc_fail(err, KDC_EDEVICE, "cudnn: cudnnBatchNormalizationBackward failed: %s",
                        cudnnGetErrorString(s));
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* elementwise                                                          */

static kdc_status cu_relu_forward(kdc_backend *be, size_t n, const float *x, float *y,
                                  kdc_error *err)
{
    ENTER(be, err);
    for (size_t off = 0; off < n; off += kChunk) {
        int len = (int)(n - off < kChunk ? n - off : kChunk);
        KDC_TRY(set4d(im->td_x, CUDNN_DATA_FLOAT, 1, 1, 1, len, err));
        KDC_CUDNN_TRY(err, cudnnActivationForward(im->cudnn, im->relu, &kOne, im->td_x, x + off,
                                                  &kZero, im->td_x, y + off));
    }
    return KDC_OK;
}

static kdc_status cu_relu_backward(kdc_backend *be, size_t n, const float *y, const float *dy,
                                   float *dx, kdc_error *err)
{
    ENTER(be, err);
    /* y stands in for x: y > 0 exactly where x > 0, which is all ReLU's
     * derivative looks at. */
    for (size_t off = 0; off < n; off += kChunk) {
        int len = (int)(n - off < kChunk ? n - off : kChunk);
        KDC_TRY(set4d(im->td_x, CUDNN_DATA_FLOAT, 1, 1, 1, len, err));
        KDC_CUDNN_TRY(err, cudnnActivationBackward(im->cudnn, im->relu, &kOne, im->td_x, y + off,
                                                   im->td_x, dy + off, im->td_x, y + off, &kZero,
                                                   im->td_x, dx + off));
    }
    return KDC_OK;
}

static kdc_status cu_add(kdc_backend *be, size_t n, const float *a, const float *b, float *y,
                         kdc_error *err)
{
    ENTER(be, err);
    return kdc_cuda_add(im->stream, n, a, b, y, err);
}

static kdc_status cu_axpy(kdc_backend *be, size_t n, float alpha, const float *x, float *y,
                          kdc_error *err)
{
    ENTER(be, err);
    if (n == 0)
        return KDC_OK;
    KDC_CUBLAS_TRY(err, cublasSaxpy_v2_64(im->cublas, (int64_t)n, &alpha, x, 1, y, 1));
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* pooling                                                              */

static kdc_status pool_descs(kdc_cuda_impl *im, const kdc_pool2d_desc *d, kdc_error *err)
{
    kdc_pool2d_desc chk = *d;
    KDC_TRY(kdc_pool2d_desc_init(&chk, err));
    if (chk.h_out != d->h_out || chk.w_out != d->w_out)
        return kdc_fail(err, KDC_EINVAL, "maxpool: descriptor output %dx%d, expected %dx%d",
                        d->h_out, d->w_out, chk.h_out, chk.w_out);
    /* PROPAGATE_NAN as PyTorch's max pool; the deterministic mode so that
     * overlapping windows (3x3 stride 2) give reproducible gradients. */
    KDC_CUDNN_TRY(err, cudnnSetPooling2dDescriptor(im->pool, CUDNN_POOLING_MAX_DETERMINISTIC,
                                                   CUDNN_PROPAGATE_NAN, d->k, d->k, d->pad,
                                                   d->pad, d->stride, d->stride));
    KDC_TRY(set4d(im->td_x, CUDNN_DATA_FLOAT, d->n, d->c, d->h_in, d->w_in, err));
    KDC_TRY(set4d(im->td_y, CUDNN_DATA_FLOAT, d->n, d->c, d->h_out, d->w_out, err));
    int n, c, h, w;
    KDC_CUDNN_TRY(err, cudnnGetPooling2dForwardOutputDim(im->pool, im->td_x, &n, &c, &h, &w));
    if (h != d->h_out || w != d->w_out)
        return kdc_fail(err, KDC_EMISMATCH, "maxpool: cuDNN output %dx%d differs from %dx%d", h,
                        w, d->h_out, d->w_out);
    return KDC_OK;
}

static kdc_status cu_maxpool_forward(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                     float *y, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(pool_descs(im, d, err));
    KDC_CUDNN_TRY(err, cudnnPoolingForward(im->cudnn, im->pool, &kOne, im->td_x, x, &kZero,
                                           im->td_y, y));
    return KDC_OK;
}

static kdc_status cu_maxpool_backward(kdc_backend *be, const kdc_pool2d_desc *d, const float *x,
                                      const float *y, const float *dy, float *dx, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(pool_descs(im, d, err));
    KDC_CUDNN_TRY(err, cudnnPoolingBackward(im->cudnn, im->pool, &kOne, im->td_y, y, im->td_y,
                                            dy, im->td_x, x, &kZero, im->td_x, dx));
    return KDC_OK;
}

static kdc_status avg_check(int n, int c, int hw, kdc_error *err)
{
    if (n <= 0 || c <= 0 || hw <= 0)
        return kdc_fail(err, KDC_EINVAL, "avgpool: bad shape %dx%dx%d", n, c, hw);
    if ((size_t)n * c > INT_MAX)
        return kdc_fail(err, KDC_EINVAL, "avgpool: %d x %d rows exceed int range", n, c);
    return KDC_OK;
}

/* y[r] = (1/hw) sum_j x[r, j] over rows r = (n, c): a GEMV against ones. */
static kdc_status cu_avgpool_forward(kdc_backend *be, int n, int c, int hw, const float *x,
                                     float *y, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(avg_check(n, c, hw, err));
    KDC_TRY(ensure_consts(im, (size_t)hw, err));
    float scale = 1.0f / (float)hw;
    /* column-major view: x is hw x (n*c), y = x^T . ones * scale */
    KDC_CUBLAS_TRY(err, cublasSgemv(im->cublas, CUBLAS_OP_T, hw, n * c, &scale, x, hw, ones(im),
                                    1, &kZero, y, 1));
    return KDC_OK;
}

/* dx[r, j] = dy[r] / hw: cuDNN's broadcasting add with beta 0 (dx is not read). */
static kdc_status cu_avgpool_backward(kdc_backend *be, int n, int c, int hw, const float *dy,
                                      float *dx, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(avg_check(n, c, hw, err));
    float scale = 1.0f / (float)hw;
    KDC_TRY(set4d(im->td_y, CUDNN_DATA_FLOAT, n, c, 1, 1, err));
    KDC_TRY(set4d(im->td_x, CUDNN_DATA_FLOAT, n, c, 1, hw, err));
    KDC_CUDNN_TRY(err, cudnnAddTensor(im->cudnn, &scale, im->td_y, dy, &kZero, im->td_x, dx));
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* linear, row-major through cuBLAS's column-major view: a row-major    */
/* [r, c] matrix is a column-major c x r one, so                        */
/*   y^T (out x n) = w^T-view . x^T   -> gemm(T, N, out, n, in, w, x)  */
/*   dx^T (in x n) = w-view . dy^T    -> gemm(N, N, in, n, out, w, dy) */
/*   dw^T (in x out) = x^T . dy       -> gemm(N, T, in, out, n, x, dy) */
/*   db (out) = dy^T . ones(n)        -> gemv(N, out, n, dy, ones)     */

static kdc_status linear_check(int n, int in, int out, kdc_error *err)
{
    if (n <= 0 || in <= 0 || out <= 0)
        return kdc_fail(err, KDC_EINVAL, "linear: bad shape n=%d in=%d out=%d", n, in, out);
    return KDC_OK;
}

static kdc_status cu_linear_forward(kdc_backend *be, int n, int in, int out, const float *x,
                                    const float *w, const float *b, float *y, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(linear_check(n, in, out, err));
    cublasComputeType_t ct = im->precision == KDC_PREC_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                             : im->precision == KDC_PREC_FP16 ? CUBLAS_COMPUTE_32F_FAST_16F
                                                              : CUBLAS_COMPUTE_32F;
    KDC_CUBLAS_TRY(err, cublasGemmEx(im->cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &kOne, w,
                                     CUDA_R_32F, in, x, CUDA_R_32F, in, &kZero, y, CUDA_R_32F,
                                     out, ct, CUBLAS_GEMM_DEFAULT));
    if (b) {
        KDC_TRY(ensure_consts(im, (size_t)n, err));
        /* y^T += b . ones(n)^T */
        KDC_CUBLAS_TRY(err, cublasSger(im->cublas, out, n, &kOne, b, 1, ones(im), 1, y, out));
    }
    return KDC_OK;
}

static kdc_status cu_linear_backward(kdc_backend *be, int n, int in, int out, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(linear_check(n, in, out, err));
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "linear backward: dw is required");
    KDC_CUBLAS_TRY(err, cublasGemmEx(im->cublas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &kOne, x,
                                     CUDA_R_32F, in, dy, CUDA_R_32F, out, &kZero, dw, CUDA_R_32F,
                                     in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (dx)
        KDC_CUBLAS_TRY(err, cublasGemmEx(im->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &kOne,
                                         w, CUDA_R_32F, in, dy, CUDA_R_32F, out, &kZero, dx,
                                         CUDA_R_32F, in, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
    if (db) {
        KDC_TRY(ensure_consts(im, (size_t)n, err));
        KDC_CUBLAS_TRY(err, cublasSgemv(im->cublas, CUBLAS_OP_N, out, n, &kOne, dy, out,
                                        ones(im), 1, &kZero, db, 1));
    }
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* two gradient streams (DOT), backend.h: dy2 / dx2 hold stream 0 then  */
/* stream 1, together a batch of 2n                                     */

static kdc_status cu_conv2d_backward_dual(kdc_backend *be, const kdc_conv2d_desc *d,
                                          const float *x, const float *w, const float *dy2,
                                          float *dx2, float *dw0, float *dw1, kdc_error *err)
{
    ENTER(be, err);
    if (!dw0 || !dw1)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    if (d->n > INT_MAX / 2 || d->c_out > INT_MAX / 2)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: batch or channels too large");
    const size_t ny = conv_numel_y(d), nw = conv_numel_w(d);
    if (dx2) { /* one backward-data of the 2n batch against the same filters */
        kdc_conv2d_desc d2 = *d;
        d2.n *= 2;
        ConvPlan *p2 = NULL;
        KDC_TRY(get_plan(im, &d2, &p2, err));
        KDC_TRY(plan_backward(im, p2, &d2, err));
        KDC_TRY(ensure_workspace(im, p2->bwd_data_ws, err));
        KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p2->conv, p2->bwd_data_math));
        KDC_CUDNN_TRY(err, cudnnConvolutionBackwardData(im->cudnn, &kOne, p2->w, w, p2->y, dy2,
                                                        p2->conv, p2->bwd_data, im->workspace,
                                                        p2->bwd_data_ws, &kZero, p2->x, dx2));
    }
    if (d->groups != 1) {
        /* 2*c_out filters would widen every group; one backward-filter per stream */
        ConvPlan *p = NULL;
        KDC_TRY(get_plan(im, d, &p, err));
        KDC_TRY(plan_backward(im, p, d, err));
        KDC_TRY(ensure_workspace(im, p->bwd_filter_ws, err));
        KDC_CUDNN_TRY(err, cudnnSetConvolutionMathType(p->conv, p->bwd_filter_math));
        float *dws[2] = {dw0, dw1};
        for (int s = 0; s < 2; s++)
            KDC_CUDNN_TRY(err, cudnnConvolutionBackwardFilter(
                                   im->cudnn, &kOne, p->x, x, p->y, dy2 + (size_t)s * ny, p->conv,
                                   p->bwd_filter, im->workspace, p->bwd_filter_ws, &kZero, p->w,
                                   dws[s]));
        return KDC_OK;
    }
    /* groups 1: one backward-filter with twice the filters, the two gradients
     * side by side as 2*c_out channels of each image (n x 2c_out x h x w)
     * against the same x; its 2c_out x c_in x kh x kw result is dw0 then dw1 */
    kdc_conv2d_desc dc = *d;
    dc.c_out *= 2;
    ConvPlan *pc = NULL;
    KDC_TRY(get_plan(im, &dc, &pc, err));
    KDC_TRY(plan_backward(im, pc, &dc, err));
    KDC_TRY(ensure_workspace(im, pc->bwd_filter_ws, err));
    void *buf = NULL;
    KDC_TRY(dev_alloc(im, (2 * ny + 2 * nw) * sizeof(float), &buf, err));
    float *cat = (float *)buf, *dwcat = cat + 2 * ny;
    const size_t plane = ny / (size_t)d->n * sizeof(float); /* one image of one stream */
    kdc_status st = KDC_OK;
    for (int s = 0; s < 2 && st == KDC_OK; s++) {
        cudaError_t ce = cudaMemcpy2DAsync((char *)cat + (size_t)s * plane, 2 * plane,
                                           dy2 + (size_t)s * ny, plane, plane, (size_t)d->n,
                                           cudaMemcpyDeviceToDevice, im->stream);
        if (ce != cudaSuccess)
            st = kdc_fail(err, KDC_EDEVICE, "cuda: cudaMemcpy2DAsync failed: %s",
                          cudaGetErrorString(ce));
    }
    if (st == KDC_OK) {
        cudnnStatus_t cs = cudnnSetConvolutionMathType(pc->conv, pc->bwd_filter_math);
        if (cs == CUDNN_STATUS_SUCCESS)
            cs = cudnnConvolutionBackwardFilter(im->cudnn, &kOne, pc->x, x, pc->y, cat, pc->conv,
                                                pc->bwd_filter, im->workspace,
                                                pc->bwd_filter_ws, &kZero, pc->w, dwcat);
        if (cs != CUDNN_STATUS_SUCCESS)
            st = kdc_fail(err, KDC_EDEVICE, "cudnn: cudnnConvolutionBackwardFilter failed: %s",
                          cudnnGetErrorString(cs));
    }
    for (int s = 0; s < 2 && st == KDC_OK; s++) {
        cudaError_t ce = cudaMemcpyAsync(s ? dw1 : dw0, dwcat + (size_t)s * nw,
                                         nw * sizeof(float), cudaMemcpyDeviceToDevice,
                                         im->stream);
        if (ce != cudaSuccess)
            st = kdc_fail(err, KDC_EDEVICE, "cuda: cudaMemcpyAsync failed: %s",
                          cudaGetErrorString(ce));
    }
    dev_free(im, buf); /* stream-ordered allocator: reuse waits for the stream */
    return st;
}

/* cuDNN's BN backward reduces with its own statistics per call: one per stream. */
static kdc_status cu_bn_backward_dual(kdc_backend *be, const kdc_bn_desc *d, const float *x,
                                      const float *dy2, const float *gamma,
                                      const float *save_mean, const float *save_invstd,
                                      float *dx2, float *dgamma0, float *dbeta0, float *dgamma1,
                                      float *dbeta1, kdc_error *err)
{
    size_t numel = (size_t)d->n * d->c * d->hw;
    KDC_TRY(cu_bn_backward(be, d, x, dy2, gamma, save_mean, save_invstd, dx2, dgamma0, dbeta0,
                           err));
    return cu_bn_backward(be, d, x, dy2 + numel, gamma, save_mean, save_invstd,
                          dx2 ? dx2 + numel : NULL, dgamma1, dbeta1, err);
}

/* cuDNN's activation and pooling backward take the forward tensors at the
 * gradient's shape, so one call per stream with the same mask. */
static kdc_status cu_relu_backward_dual(kdc_backend *be, size_t n, const float *y,
                                        const float *dy2, float *dx2, kdc_error *err)
{
    KDC_TRY(cu_relu_backward(be, n, y, dy2, dx2, err));
    return cu_relu_backward(be, n, y, dy2 + n, dx2 + n, err);
}

static kdc_status cu_maxpool_backward_dual(kdc_backend *be, const kdc_pool2d_desc *d,
                                           const float *x, const float *y, const float *dy2,
                                           float *dx2, kdc_error *err)
{
    size_t planes = (size_t)d->n * d->c;
    size_t nin = planes * d->h_in * d->w_in, nout = planes * d->h_out * d->w_out;
    KDC_TRY(cu_maxpool_backward(be, d, x, y, dy2, dx2, err));
    return cu_maxpool_backward(be, d, x, y, dy2 + nout, dx2 + nin, err);
}

static kdc_status cu_linear_backward_dual(kdc_backend *be, int n, int in, int out,
                                          const float *x, const float *w, const float *dy2,
                                          float *dx2, float *dw0, float *db0, float *dw1,
                                          float *db1, kdc_error *err)
{
    ENTER(be, err);
    KDC_TRY(linear_check(n, in, out, err));
    if (n > INT_MAX / 2)
        return kdc_fail(err, KDC_EINVAL, "linear backward: batch too large");
    if (dx2) /* both streams as one batch of 2n rows */
        KDC_CUBLAS_TRY(err, cublasGemmEx(im->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, 2 * n, out,
                                         &kOne, w, CUDA_R_32F, in, dy2, CUDA_R_32F, out, &kZero,
                                         dx2, CUDA_R_32F, in, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
    const size_t ny = (size_t)n * out;
    KDC_TRY(cu_linear_backward(be, n, in, out, x, w, dy2, NULL, dw0, db0, err));
    return cu_linear_backward(be, n, in, out, x, w, dy2 + ny, NULL, dw1, db1, err);
}

/* ------------------------------------------------------------------ */
/* conversions                                                          */

static kdc_status cu_f32_to_f16(kdc_backend *be, size_t n, const float *x, uint16_t *y,
                                kdc_error *err)
{
    ENTER(be, err);
    return kdc_cuda_f32_to_f16(im->stream, n, x, y, err);
}

/* ------------------------------------------------------------------ */
/* lifetime                                                             */

static void cu_destroy(kdc_backend *be)
{
    if (!be)
        return;
    kdc_cuda_impl *im = (kdc_cuda_impl *)be->impl;
    if (im) {
        (void)cudaSetDevice(im->device);
        if (im->stream)
            (void)cudaStreamSynchronize(im->stream);
        if (im->convs) {
            for (auto &kv : im->convs->plans)
                plan_destroy(kv.second);
            delete im->convs;
        }
        if (im->td_x) cudnnDestroyTensorDescriptor(im->td_x);
        if (im->td_y) cudnnDestroyTensorDescriptor(im->td_y);
        if (im->td_p) cudnnDestroyTensorDescriptor(im->td_p);
        if (im->pool) cudnnDestroyPoolingDescriptor(im->pool);
        if (im->relu) cudnnDestroyActivationDescriptor(im->relu);
        if (im->cudnn) cudnnDestroy(im->cudnn);
        if (im->cublas) cublasDestroy(im->cublas);
        kdc_cuda_allocator_destroy(im->alloc); /* workspace and consts included */
        if (im->stream)
            (void)cudaStreamDestroy(im->stream);
        delete im;
    }
    delete be;
}

static kdc_status cu_init(kdc_cuda_impl *im, kdc_error *err)
{
    KDC_CUDA_TRY(err, cudaSetDevice(im->device));
    KDC_CUDA_TRY(err, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    KDC_TRY(kdc_cuda_allocator_create(&im->alloc, err));
    KDC_CUDNN_TRY(err, cudnnCreate(&im->cudnn));
    KDC_CUDNN_TRY(err, cudnnSetStream(im->cudnn, im->stream));
    KDC_CUBLAS_TRY(err, cublasCreate(&im->cublas));
    KDC_CUBLAS_TRY(err, cublasSetStream(im->cublas, im->stream));
    KDC_CUDNN_TRY(err, cudnnCreateTensorDescriptor(&im->td_x));
    KDC_CUDNN_TRY(err, cudnnCreateTensorDescriptor(&im->td_y));
    KDC_CUDNN_TRY(err, cudnnCreateTensorDescriptor(&im->td_p));
    KDC_CUDNN_TRY(err, cudnnCreatePoolingDescriptor(&im->pool));
    KDC_CUDNN_TRY(err, cudnnCreateActivationDescriptor(&im->relu));
    KDC_CUDNN_TRY(err, cudnnSetActivationDescriptor(im->relu, CUDNN_ACTIVATION_RELU,
                                                    CUDNN_PROPAGATE_NAN, 0.0));
    im->convs = new (std::nothrow) kdc_cuda_conv_cache();
    if (!im->convs)
        return kdc_fail(err, KDC_ENOMEM, "cuda backend: out of host memory");
    KDC_TRY(ensure_consts(im, 4096, err));
    KDC_CUDA_TRY(err, cudaStreamSynchronize(im->stream));
    return KDC_OK;
}

kdc_status kdc_backend_cuda_create(int index, kdc_backend **out, kdc_error *err)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kdc_fail(err, KDC_EDEVICE, "cuda:%d: no usable GPU: %s", index,
                        cudaGetErrorString(e));
    }
    if (index < 0 || index >= count)
        return kdc_fail(err, KDC_EDEVICE, "cuda:%d: no such GPU (this machine has %d)", index,
                        count);
    /* cuDNN and cuBLAS are dlopen'ed (cuda_libs.h), only now that a GPU is there. */
    if (kdc_cuda_libs_load(err) != KDC_OK)
        return kdc_error_prefix(err, "cuda:%d: ", index);
    kdc_backend *be = new (std::nothrow) kdc_backend();
    kdc_cuda_impl *im = new (std::nothrow) kdc_cuda_impl();
    if (!be || !im) {
        delete be;
        delete im;
        return kdc_fail(err, KDC_ENOMEM, "cuda backend: out of host memory");
    }
    memset(be, 0, sizeof *be);
    memset(im, 0, sizeof *im);
    im->device = index;
    im->precision = KDC_PREC_FP32;
    snprintf(im->name, sizeof im->name, "cuda:%d", index);
    be->name = im->name;
    be->device.type = KDC_DEVICE_CUDA;
    be->device.index = index;
    be->impl = im;
    be->destroy = cu_destroy;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->copy_h2d = cu_copy_h2d;
    be->copy_d2h = cu_copy_d2h;
    be->copy_d2d = cu_copy_d2d;
    be->fill_zero = cu_fill_zero;
    be->synchronize = cu_synchronize;
    be->conv2d_forward = cu_conv2d_forward;
    be->conv2d_backward = cu_conv2d_backward;
    be->batchnorm_forward_train = cu_bn_forward_train;
    be->batchnorm_forward_eval = cu_bn_forward_eval;
    be->batchnorm_backward = cu_bn_backward;
    be->relu_forward = cu_relu_forward;
    be->relu_backward = cu_relu_backward;
    be->add = cu_add;
    be->axpy = cu_axpy;
    be->maxpool2d_forward = cu_maxpool_forward;
    be->maxpool2d_backward = cu_maxpool_backward;
    be->avgpool_global_forward = cu_avgpool_forward;
    be->avgpool_global_backward = cu_avgpool_backward;
    be->linear_forward = cu_linear_forward;
    be->linear_backward = cu_linear_backward;
    be->f32_to_f16 = cu_f32_to_f16;
    be->conv2d_backward_dual = cu_conv2d_backward_dual;
    be->batchnorm_backward_dual = cu_bn_backward_dual;
    be->relu_backward_dual = cu_relu_backward_dual;
    be->maxpool2d_backward_dual = cu_maxpool_backward_dual;
    be->linear_backward_dual = cu_linear_backward_dual;
    kdc_cuda_fill_zoo_ops(be);
    kdc_status st = cu_init(im, err);
    if (st != KDC_OK) {
        kdc_error_prefix(err, "cuda:%d: ", index);
        cu_destroy(be);
        return st;
    }
    *out = be;
    return KDC_OK;
}

/* ------------------------------------------------------------------ */
/* extras of cuda_backend.h                                             */

kdc_cuda_impl *kdc_cuda_impl_of(kdc_backend *be, kdc_error *err)
{
    if (!be || be->device.type != KDC_DEVICE_CUDA || be->destroy != cu_destroy) {
        kdc_fail(err, KDC_EDEVICE, "backend %s is not a CUDA backend",
                 be && be->name ? be->name : "(null)");
        return NULL;
    }
    return (kdc_cuda_impl *)be->impl;
}

kdc_status kdc_backend_set_precision(kdc_backend *be, kdc_precision p, kdc_error *err)
{
    if (p != KDC_PREC_FP32 && p != KDC_PREC_TF32 && p != KDC_PREC_FP16)
        return kdc_fail(err, KDC_EINVAL, "unknown precision %d", (int)p);
    if (!be)
        return kdc_fail(err, KDC_EINVAL, "set_precision: no backend");
    if (be->device.type != KDC_DEVICE_CUDA) {
        if (p == KDC_PREC_FP32)
            return KDC_OK;
        return kdc_fail(err, KDC_EUNSUPPORTED,
                        "precision %s needs a cuda device (the %s backend computes in fp32)",
                        kdc_precision_name(p), be->name ? be->name : "cpu");
    }
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    im->precision = p;
    return KDC_OK;
}

kdc_status kdc_cuda_mem_stats_get(kdc_backend *be, kdc_cuda_mem_stats *out, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    kdc_cuda_allocator_stats(im->alloc, out);
    return KDC_OK;
}

kdc_status kdc_cuda_mem_release_cached(kdc_backend *be, kdc_error *err)
{
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    KDC_TRY(kdc_cuda_bind(im, err));
    /* cached blocks may still be read by enqueued ops */
    KDC_CUDA_TRY(err, cudaStreamSynchronize(im->stream));
    kdc_cuda_allocator_release_cached(im->alloc);
    return KDC_OK;
}
