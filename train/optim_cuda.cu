/* optim_cuda.cu - fused SGD and DOT updates (optim_cuda.h), twins of
 * train/sgd.c and train/dot.c.
 *
 * The parameter list becomes a table of runs (maximal stretches that are
 * contiguous in values, gradients and buffers and receive the same
 * gradients); a step is one launch with gridDim.y = number of runs and a
 * grid-stride loop over each run's elements, so a run's category (both
 * gradients / task only / distillation only) is uniform per block and no
 * thread diverges on it.
 *
 * Same floats as the CPU: every operation is written with the _rn
 * intrinsics (__fmul_rn, __fadd_rn, __fsub_rn), which nvcc never contracts
 * into a fused multiply-add, in the order of the C loops; the C build does
 * not contract either (-std=c11 implies -ffp-contract=off in GCC, and
 * x86-64 without -march has no FMA). Hyperparameters are cast to float32 on
 * the host exactly as the CPU step does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cuda/cuda_internal.h"

extern "C" {
#include "train/optim_cuda.h"
}

static const int kThreads = 256;
static const size_t kMaxBlocksX = 4 * 65535; /* grid-stride covers the rest */
static const size_t kMaxRuns = 65535;        /* gridDim.y limit */

/* One stretch of elements; NULL where the run has no such gradient / buffer.
 * For SGD, bt is the (single) momentum buffer. */
struct opt_run {
    float *value;
    const float *gt, *gk;
    float *bt, *bk;
    size_t n;
};

__global__ void sgd_kernel(const opt_run *runs, float lr, float wd, float mu, int first,
                           int use_buf)
{
    const opt_run r = runs[blockIdx.y];
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < r.n; j += stride) {
        float th = r.value[j];
        float g = r.gt ? (r.gk ? __fadd_rn(r.gt[j], r.gk[j]) : r.gt[j]) : r.gk[j];
        float d = __fadd_rn(g, __fmul_rn(wd, th));
        if (use_buf) {
            float v = first ? d : __fadd_rn(__fmul_rn(mu, r.bt[j]), d);
            r.bt[j] = v;
            d = v;
        }
        r.value[j] = __fsub_rn(th, __fmul_rn(lr, d));
    }
}

/* dot.c's step_both / step_task_only / step_distill_only, per element. */
__global__ void dot_kernel(const opt_run *runs, float lr, float wd, float m_task, float m_kd,
                           float mu, int first, int task_buf)
{
    const opt_run r = runs[blockIdx.y];
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < r.n; j += stride) {
        float th = r.value[j];
        if (r.gt) {
            /* mdistiller's loop 1: task buffer, weight decay on this side only */
            float d = __fadd_rn(r.gt[j], __fmul_rn(wd, th));
            if (task_buf) {
                float m = r.gk ? m_task : mu;
                float v = first ? d : __fadd_rn(__fmul_rn(m, r.bt[j]), d);
                r.bt[j] = v;
                d = v;
            }
            th = __fsub_rn(th, __fmul_rn(lr, d));
            if (r.gk) { /* loop 2 for a parameter with both gradients */
                float v = first ? r.gk[j] : __fadd_rn(__fmul_rn(m_kd, r.bk[j]), r.gk[j]);
                r.bk[j] = v;
                th = __fsub_rn(th, __fmul_rn(lr, v));
            }
        } else {
            /* distillation only: raw gradient on the first step, then mu and weight decay */
            float v =
                first ? r.gk[j]
                      : __fadd_rn(__fmul_rn(mu, r.bk[j]), __fadd_rn(r.gk[j], __fmul_rn(wd, th)));
            r.bk[j] = v;
            th = __fsub_rn(th, __fmul_rn(lr, v));
        }
        r.value[j] = th;
    }
}

/* ---- setup ---- */

static kdc_status check_device_ptr(const kdc_cuda_impl *im, const void *p, const char *opt,
                                   size_t i, const char *what, kdc_error *err)
{
    cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* not sticky: clear it for the next call */
        return kdc_fail(err, KDC_EINVAL, "%s: parameter %zu: %s pointer %p: %s", opt, i, what, p,
                        cudaGetErrorString(e));
    }
    if (a.type != cudaMemoryTypeDevice || a.device != im->device)
        return kdc_fail(err, KDC_EINVAL, "%s: parameter %zu: %s %p is not device memory of %s", opt,
                        i, what, p, im->name);
    return KDC_OK;
}

/* Validates the list as kd_sgd_init / kd_dot_init do, checks every pointer
 * and builds the host run table (caller frees *out). bt_base / bk_base are
 * the device buffers: a parameter with a task gradient (SGD: every
 * parameter, two_buffers = 0) takes the next n floats of bt_base, one with a
 * distillation gradient the next n of bk_base. */
static kdc_status build_runs(const char *opt, const kdc_cuda_impl *im, const kd_param_ref *params,
                             size_t n_params, int two_buffers, float *bt_base, float *bk_base,
                             opt_run **out, size_t *n_runs, size_t *max_run, kdc_error *err)
{
    *out = NULL;
    opt_run *runs = (opt_run *)calloc(n_params, sizeof *runs);
    if (!runs)
        return kdc_fail(err, KDC_ENOMEM, "%s: out of host memory", opt);
    size_t nr = 0, ot = 0, ok = 0, mx = 0;
    for (size_t i = 0; i < n_params; i++) {
        const kd_param_ref *p = &params[i];
        kdc_status st = check_device_ptr(im, p->value, opt, i, "value", err);
        if (st == KDC_OK && p->grad_task)
            st = check_device_ptr(im, p->grad_task, opt, i, "task gradient", err);
        if (st == KDC_OK && p->grad_distill)
            st = check_device_ptr(im, p->grad_distill, opt, i, "distillation gradient", err);
        if (st) {
            free(runs);
            return st;
        }
        opt_run r = {p->value, p->grad_task, p->grad_distill, NULL, NULL, p->n};
        if (!two_buffers) {
            r.bt = bt_base + ot;
            ot += p->n;
        } else {
            if (p->grad_task) {
                r.bt = bt_base + ot;
                ot += p->n;
            }
            if (p->grad_distill) {
                r.bk = bk_base + ok;
                ok += p->n;
            }
        }
        opt_run *q = nr ? &runs[nr - 1] : NULL;
        int joins = q && !q->gt == !r.gt && !q->gk == !r.gk && q->value + q->n == r.value &&
                    (!r.gt || q->gt + q->n == r.gt) && (!r.gk || q->gk + q->n == r.gk) &&
                    (!r.bt || q->bt + q->n == r.bt) && (!r.bk || q->bk + q->n == r.bk);
        if (joins)
            q->n += r.n;
        else
            runs[nr++] = r;
        size_t last = runs[nr - 1].n;
        mx = last > mx ? last : mx;
    }
    if (nr > kMaxRuns) {
        free(runs);
        return kdc_fail(err, KDC_EINVAL,
                        "%s: %zu separate parameter runs (more than %zu; keep parameters "
                        "contiguous)",
                        opt, nr, kMaxRuns);
    }
    *out = runs;
    *n_runs = nr;
    *max_run = mx;
    return KDC_OK;
}

/* Common list checks of optim.h's inits; *n_task / *n_distill count floats. */
static kdc_status check_list(const char *opt, const kd_param_ref *params, size_t n_params,
                             size_t *total, size_t *n_task, size_t *n_distill, kdc_error *err)
{
    if (!params || n_params == 0)
        return kdc_fail(err, KDC_EINVAL, "%s: no parameters", opt);
    *total = *n_task = *n_distill = 0;
    for (size_t i = 0; i < n_params; i++) {
        const kd_param_ref *p = &params[i];
        if (!p->value || p->n == 0)
            return kdc_fail(err, KDC_EINVAL, "%s: parameter %zu has no values", opt, i);
        if (!p->grad_task && !p->grad_distill)
            return kdc_fail(err, KDC_EINVAL, "%s: parameter %zu receives no gradient", opt, i);
        if (!kdc_size_add(*total, p->n, total) ||
            (p->grad_task && !kdc_size_add(*n_task, p->n, n_task)) ||
            (p->grad_distill && !kdc_size_add(*n_distill, p->n, n_distill)))
            return kdc_fail(err, KDC_ENOMEM, "%s: parameter sizes overflow", opt);
    }
    size_t bytes;
    if (!kdc_size_mul(*total + 1, sizeof(float), &bytes))
        return kdc_fail(err, KDC_ENOMEM, "%s: momentum buffer sizes overflow", opt);
    return KDC_OK;
}

/* Device buffer of n (+1) floats, zeroed. */
static kdc_status alloc_zero(kdc_backend *be, size_t n, float **out, kdc_error *err)
{
    void *p = NULL;
    size_t bytes = (n + 1) * sizeof(float);
    kdc_status st = be->alloc(be, bytes, &p, err);
    if (st)
        return st;
    if ((st = be->fill_zero(be, p, bytes, err))) {
        be->free(be, p);
        return st;
    }
    *out = (float *)p;
    return KDC_OK;
}

static kdc_status upload_runs(kdc_backend *be, const opt_run *h, size_t n, void **out,
                              kdc_error *err)
{
    kdc_status st = be->alloc(be, n * sizeof *h, out, err);
    if (st == KDC_OK && (st = be->copy_h2d(be, *out, h, n * sizeof *h, err))) {
        be->free(be, *out);
        *out = NULL;
    }
    return st;
}

static unsigned grid_x(size_t n)
{
    size_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b > kMaxBlocksX ? kMaxBlocksX : b ? b : 1);
}

static kdc_status check_lr(const char *opt, double lr, kdc_error *err)
{
    if (!(lr >= 0.0) || !isfinite(lr))
        return kdc_fail(err, KDC_EINVAL, "%s: learning rate %g must be finite and >= 0", opt, lr);
    return KDC_OK;
}

/* ---- SGD ---- */

void kd_cuda_sgd_free(kd_cuda_sgd *opt)
{
    if (!opt)
        return;
    if (opt->be) {
        if (opt->buf)
            opt->be->free(opt->be, opt->buf);
        if (opt->runs)
            opt->be->free(opt->be, opt->runs);
    }
    memset(opt, 0, sizeof *opt);
}

kdc_status kd_cuda_sgd_init(kd_cuda_sgd *opt, kdc_backend *be, const kd_param_ref *params,
                            size_t n_params, double momentum, double weight_decay, kdc_error *err)
{
    if (!opt)
        return kdc_fail(err, KDC_EINVAL, "SGD: NULL optimiser");
    memset(opt, 0, sizeof *opt);
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    if (!(momentum >= 0.0 && momentum < 1.0))
        return kdc_fail(err, KDC_EINVAL, "SGD: momentum %g outside [0, 1)", momentum);
    if (!(weight_decay >= 0.0) || !isfinite(weight_decay))
        return kdc_fail(err, KDC_EINVAL, "SGD: weight decay %g must be finite and >= 0",
                        weight_decay);
    size_t total, nt, nk;
    kdc_status st = check_list("SGD", params, n_params, &total, &nt, &nk, err);
    if (st || (st = kdc_cuda_bind(im, err)))
        return st;
    opt->be = be;
    if ((st = alloc_zero(be, total, &opt->buf, err)))
        return st;
    opt_run *runs = NULL;
    st = build_runs("SGD", im, params, n_params, 0, opt->buf, NULL, &runs, &opt->n_runs,
                    &opt->max_run, err);
    if (st == KDC_OK)
        st = upload_runs(be, runs, opt->n_runs, &opt->runs, err);
    free(runs);
    if (st) {
        kd_cuda_sgd_free(opt);
        return st;
    }
    opt->momentum = momentum;
    opt->weight_decay = weight_decay;
    opt->n_params = n_params;
    opt->n_buf = total;
    return KDC_OK;
}

kdc_status kd_cuda_sgd_step(kd_cuda_sgd *opt, double lr, kdc_error *err)
{
    if (!opt || !opt->runs)
        return kdc_fail(err, KDC_EINVAL, "SGD: optimiser not initialised");
    kdc_status st = check_lr("SGD", lr, err);
    kdc_cuda_impl *im = st ? NULL : kdc_cuda_impl_of(opt->be, err);
    if (st || !im)
        return st ? st : KDC_EDEVICE;
    if ((st = kdc_cuda_bind(im, err)))
        return st;
    /* the CPU step's casts: PyTorch keeps float32 tensors and float32 scalars */
    const float lr_f = (float)lr, wd = (float)opt->weight_decay, mu = (float)opt->momentum;
    dim3 grid(grid_x(opt->max_run), (unsigned)opt->n_runs);
    sgd_kernel<<<grid, kThreads, 0, im->stream>>>((const opt_run *)opt->runs, lr_f, wd, mu,
                                                  opt->steps == 0, opt->momentum != 0.0);
    KDC_CUDA_CHECK_LAUNCH(err, "sgd");
    opt->steps++;
    return KDC_OK;
}

kdc_status kd_cuda_sgd_get_state(kd_cuda_sgd *opt, float *buf, size_t n_buf, kdc_error *err)
{
    if (!opt || !opt->buf)
        return kdc_fail(err, KDC_EINVAL, "SGD: optimiser not initialised");
    if (n_buf != opt->n_buf || !buf)
        return kdc_fail(err, KDC_EMISMATCH, "SGD state: room for %zu momentum floats, have %zu",
                        n_buf, opt->n_buf);
    return opt->be->copy_d2h(opt->be, buf, opt->buf, n_buf * sizeof(float), err);
}

kdc_status kd_cuda_sgd_set_state(kd_cuda_sgd *opt, const float *buf, size_t n_buf, uint64_t steps,
                                 kdc_error *err)
{
    if (!opt || !opt->buf)
        return kdc_fail(err, KDC_EINVAL, "SGD: optimiser not initialised");
    if (n_buf != opt->n_buf)
        return kdc_fail(err, KDC_EMISMATCH,
                        "SGD state: %zu momentum floats saved, the parameters need %zu", n_buf,
                        opt->n_buf);
    if (steps > 0 && !buf)
        return kdc_fail(err, KDC_EINVAL, "SGD state: NULL momentum buffer");
    kdc_backend *be = opt->be;
    kdc_status st = steps > 0 ? be->copy_h2d(be, opt->buf, buf, n_buf * sizeof(float), err)
                              : be->fill_zero(be, opt->buf, n_buf * sizeof(float), err);
    if (st == KDC_OK)
        opt->steps = steps;
    return st;
}

/* ---- DOT ---- */

void kd_cuda_dot_free(kd_cuda_dot *opt)
{
    if (!opt)
        return;
    if (opt->be) {
        if (opt->buf_task)
            opt->be->free(opt->be, opt->buf_task);
        if (opt->buf_distill)
            opt->be->free(opt->be, opt->buf_distill);
        if (opt->runs)
            opt->be->free(opt->be, opt->runs);
    }
    memset(opt, 0, sizeof *opt);
}

kdc_status kd_cuda_dot_init(kd_cuda_dot *opt, kdc_backend *be, const kd_param_ref *params,
                            size_t n_params, double momentum, double delta, double weight_decay,
                            kdc_error *err)
{
    if (!opt)
        return kdc_fail(err, KDC_EINVAL, "DOT: NULL optimiser");
    memset(opt, 0, sizeof *opt);
    kdc_cuda_impl *im = kdc_cuda_impl_of(be, err);
    if (!im)
        return KDC_EDEVICE;
    if (!isfinite(momentum) || !isfinite(delta) || !(delta >= 0.0) || !(momentum - delta >= 0.0) ||
        !(momentum + delta < 1.0))
        return kdc_fail(err, KDC_EINVAL,
                        "DOT: momentum %g and delta %g give task momentum %g and distillation "
                        "momentum %g; need delta >= 0, both in [0, 1)",
                        momentum, delta, momentum - delta, momentum + delta);
    if (!(weight_decay >= 0.0) || !isfinite(weight_decay))
        return kdc_fail(err, KDC_EINVAL, "DOT: weight decay %g must be finite and >= 0",
                        weight_decay);
    size_t total, nt, nk;
    kdc_status st = check_list("DOT", params, n_params, &total, &nt, &nk, err);
    if (st || (st = kdc_cuda_bind(im, err)))
        return st;
    opt->be = be;
    if ((st = alloc_zero(be, nt, &opt->buf_task, err)) ||
        (st = alloc_zero(be, nk, &opt->buf_distill, err))) {
        kd_cuda_dot_free(opt);
        return st;
    }
    opt_run *runs = NULL;
    st = build_runs("DOT", im, params, n_params, 1, opt->buf_task, opt->buf_distill, &runs,
                    &opt->n_runs, &opt->max_run, err);
    if (st == KDC_OK)
        st = upload_runs(be, runs, opt->n_runs, &opt->runs, err);
    free(runs);
    if (st) {
        kd_cuda_dot_free(opt);
        return st;
    }
    opt->momentum = momentum;
    opt->delta = delta;
    opt->weight_decay = weight_decay;
    opt->n_params = n_params;
    opt->n_task = nt;
    opt->n_distill = nk;
    return KDC_OK;
}

kdc_status kd_cuda_dot_step(kd_cuda_dot *opt, double lr, kdc_error *err)
{
    if (!opt || !opt->runs)
        return kdc_fail(err, KDC_EINVAL, "DOT: optimiser not initialised");
    kdc_status st = check_lr("DOT", lr, err);
    kdc_cuda_impl *im = st ? NULL : kdc_cuda_impl_of(opt->be, err);
    if (st || !im)
        return st ? st : KDC_EDEVICE;
    if ((st = kdc_cuda_bind(im, err)))
        return st;
    /* as kd_dot_step: momenta in double as mdistiller's Python, then float32 */
    const double m_task = opt->momentum - opt->delta, m_kd = opt->momentum + opt->delta;
    const float mt = (float)m_task, mk = (float)m_kd, mu = (float)((m_kd + m_task) / 2.0);
    const float lr_f = (float)lr, wd = (float)opt->weight_decay;
    dim3 grid(grid_x(opt->max_run), (unsigned)opt->n_runs);
    dot_kernel<<<grid, kThreads, 0, im->stream>>>((const opt_run *)opt->runs, lr_f, wd, mt, mk, mu,
                                                  opt->steps == 0, m_task != 0.0);
    KDC_CUDA_CHECK_LAUNCH(err, "dot");
    opt->steps++;
    return KDC_OK;
}

kdc_status kd_cuda_dot_get_state(kd_cuda_dot *opt, float *buf_task, size_t n_task,
                                 float *buf_distill, size_t n_distill, kdc_error *err)
{
    if (!opt || !opt->runs)
        return kdc_fail(err, KDC_EINVAL, "DOT: optimiser not initialised");
    if (n_task != opt->n_task || n_distill != opt->n_distill || (n_task && !buf_task) ||
        (n_distill && !buf_distill))
        return kdc_fail(err, KDC_EMISMATCH,
                        "DOT state: room for %zu task + %zu distillation floats, have %zu + %zu",
                        n_task, n_distill, opt->n_task, opt->n_distill);
    kdc_backend *be = opt->be;
    kdc_status st = KDC_OK;
    if (n_task)
        st = be->copy_d2h(be, buf_task, opt->buf_task, n_task * sizeof(float), err);
    if (st == KDC_OK && n_distill)
        st = be->copy_d2h(be, buf_distill, opt->buf_distill, n_distill * sizeof(float), err);
    return st;
}

kdc_status kd_cuda_dot_set_state(kd_cuda_dot *opt, const float *buf_task, size_t n_task,
                                 const float *buf_distill, size_t n_distill, uint64_t steps,
                                 kdc_error *err)
{
    if (!opt || !opt->runs)
        return kdc_fail(err, KDC_EINVAL, "DOT: optimiser not initialised");
    if (n_task != opt->n_task || n_distill != opt->n_distill)
        return kdc_fail(err, KDC_EMISMATCH,
                        "DOT state: %zu task + %zu distillation momentum floats saved, the "
                        "parameters need %zu + %zu",
                        n_task, n_distill, opt->n_task, opt->n_distill);
    if (steps > 0 && ((n_task && !buf_task) || (n_distill && !buf_distill)))
        return kdc_fail(err, KDC_EINVAL, "DOT state: NULL momentum buffer");
    kdc_backend *be = opt->be;
    kdc_status st = KDC_OK;
    if (steps > 0) {
        if (n_task)
            st = be->copy_h2d(be, opt->buf_task, buf_task, n_task * sizeof(float), err);
        if (st == KDC_OK && n_distill)
            st = be->copy_h2d(be, opt->buf_distill, buf_distill, n_distill * sizeof(float), err);
    } else {
        st = be->fill_zero(be, opt->buf_task, n_task * sizeof(float), err);
        if (st == KDC_OK)
            st = be->fill_zero(be, opt->buf_distill, n_distill * sizeof(float), err);
    }
    if (st == KDC_OK)
        opt->steps = steps;
    return st;
}
