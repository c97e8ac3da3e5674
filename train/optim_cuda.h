/* optim_cuda.h - GPU twins of the optimisers of optim.h: SGD with momentum
 * (torch.optim.SGD) and DOT (mdistiller's DistillationOrientedTrainer), each
 * step ONE kernel launch over every parameter element. The CPU functions of
 * optim.h are the specification; tests/gpu/test_gpu_train.c checks that
 * these give the same floats, bit for bit, step after step.
 *
 * Only in builds with CUDA (KDC_HAVE_CUDA). The parameter list is the CPU
 * one (kd_param_ref: value, grad_task, grad_distill, n) with device pointers
 * of `be`, checked at init (cudaPointerGetAttributes: a host pointer is a
 * one-line KDC_EINVAL, not a crashed context). Entries that are contiguous
 * in values and gradients and have the same gradients (the model's flat
 * weights split per tensor: kdc_model_flat_weights / kdc_grad_set.flat) are
 * merged into one run, so a model plus its projector is two runs; the step
 * is one launch whatever the count.
 *
 * Differences from optim.h: gradient pointers are fixed at init (the model's
 * gradient sets are allocated once; init again to repoint), and the momentum
 * buffers live on the device: get_state / set_state move them to / from host
 * arrays in exactly the CPU layout (list order, parameter i at offset[i]), so
 * checkpoints are interchangeable between devices. Steps are asynchronous on
 * the backend's stream. Not here: learning-rate schedules, gradients. */
#ifndef KD_OPTIM_CUDA_H
#define KD_OPTIM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/backend.h"
#include "train/optim.h"

/* ---- SGD (kd_sgd's twin) ---- */
typedef struct kd_cuda_sgd {
    kdc_backend *be;
    double momentum, weight_decay;
    size_t n_params;
    size_t n_buf; /* momentum floats (sum of n), as kd_sgd.n_buf */
    float *buf;   /* device, n_buf floats; zeros until the first step */
    void *runs;   /* device: the merged run table (private layout) */
    size_t n_runs;
    size_t max_run; /* elements of the largest run (grid size) */
    uint64_t steps;
} kd_cuda_sgd;

kdc_status kd_cuda_sgd_init(kd_cuda_sgd *opt, kdc_backend *be, const kd_param_ref *params,
                            size_t n_params, double momentum, double weight_decay, kdc_error *err);
kdc_status kd_cuda_sgd_step(kd_cuda_sgd *opt, double lr, kdc_error *err);
/* Downloads the buffers (host, n_buf floats; synchronises). */
kdc_status kd_cuda_sgd_get_state(kd_cuda_sgd *opt, float *buf, size_t n_buf, kdc_error *err);
/* Uploads buffers saved from a kd_sgd or kd_cuda_sgd (host; zeros when steps == 0). */
kdc_status kd_cuda_sgd_set_state(kd_cuda_sgd *opt, const float *buf, size_t n_buf, uint64_t steps,
                                 kdc_error *err);
void kd_cuda_sgd_free(kd_cuda_sgd *opt);

/* ---- DOT (kd_dot's twin): m_task = mu - delta, m_kd = mu + delta ---- */
typedef struct kd_cuda_dot {
    kdc_backend *be;
    double momentum, delta, weight_decay;
    size_t n_params;
    size_t n_task, n_distill; /* as kd_dot */
    float *buf_task;          /* device, n_task floats (+1, never 0 bytes) */
    float *buf_distill;       /* device, n_distill floats (+1) */
    void *runs;
    size_t n_runs;
    size_t max_run;
    uint64_t steps;
} kd_cuda_dot;

kdc_status kd_cuda_dot_init(kd_cuda_dot *opt, kdc_backend *be, const kd_param_ref *params,
                            size_t n_params, double momentum, double delta, double weight_decay,
                            kdc_error *err);
kdc_status kd_cuda_dot_step(kd_cuda_dot *opt, double lr, kdc_error *err);
kdc_status kd_cuda_dot_get_state(kd_cuda_dot *opt, float *buf_task, size_t n_task,
                                 float *buf_distill, size_t n_distill, kdc_error *err);
kdc_status kd_cuda_dot_set_state(kd_cuda_dot *opt, const float *buf_task, size_t n_task,
                                 const float *buf_distill, size_t n_distill, uint64_t steps,
                                 kdc_error *err);
void kd_cuda_dot_free(kd_cuda_dot *opt);

#endif
