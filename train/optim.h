/* optim.h - the optimisers of kd-train as plain CPU loops over float buffers: SGD with
 * momentum (torch.optim.SGD semantics) and DOT, the Distillation-Oriented Trainer
 * (mdistiller/engine/dot.py). docs/TRAINING_MATH.md gives the update rules and what of
 * mdistiller's code is matched; the CUDA update kernels are checked against these.
 *
 * An optimiser updates a list of parameters it does not own. Each entry names the
 * parameter's values and the gradients it receives: the task gradient (from the CE
 * loss), the distillation gradient (KD + projector losses), or both. SGD steps on their
 * sum; DOT keeps one momentum buffer per side. Gradient pointers are read at every
 * step, so the caller may repoint them between steps (but not change which are NULL).
 *
 * Momentum buffers are public plain arrays (checkpoints save and restore them for
 * kd-train --resume): parameter i's buffer starts at offset[i] and has params[i].n
 * floats. `steps` counts the steps taken; buffers hold data only once steps > 0,
 * because the first step initialises them with the raw gradient (PyTorch's rule).
 * Not here: learning-rate schedules (schedule.h), gradient computation (losses.h). */
#ifndef KD_OPTIM_H
#define KD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/threadpool.h"

typedef struct kd_param_ref {
    float *value;              /* n floats, updated in place */
    const float *grad_task;    /* dL_task/dtheta, NULL if the task loss does not reach it */
    const float *grad_distill; /* dL_distill/dtheta, NULL if no distillation loss reaches it */
    size_t n;
} kd_param_ref;

/* offset[i] for a side a parameter does not have */
#define KD_OPTIM_NO_BUFFER SIZE_MAX

/* ---- SGD: torch.optim.SGD(momentum=mu, weight_decay=wd), no dampening, no Nesterov --
 *   g = grad_task + grad_distill (whichever are present) + wd * theta
 *   v = g on the first step, else mu * v + g;   theta -= lr * v      (mu = 0: v = g) */

typedef struct kd_sgd {
    double momentum, weight_decay;
    size_t n_params;
    kd_param_ref *params; /* a copy of the caller's list */
    size_t *offset;       /* into buf */
    float *buf;           /* momentum buffers, list order, n_buf floats */
    size_t n_buf;
    uint64_t steps;
    kdc_pool *pool; /* NULL (init's default): the caller's thread; else split over it */
} kd_sgd;

kdc_status kd_sgd_init(kd_sgd *opt, const kd_param_ref *params, size_t n_params, double momentum,
                       double weight_decay, kdc_error *err);
kdc_status kd_sgd_step(kd_sgd *opt, double lr, kdc_error *err);
/* Restores buffers saved from opt->buf / opt->n_buf / opt->steps. */
kdc_status kd_sgd_set_state(kd_sgd *opt, const float *buf, size_t n_buf, uint64_t steps,
                            kdc_error *err);
void kd_sgd_free(kd_sgd *opt);

/* ---- DOT: m_task = mu - delta, m_kd = mu + delta ---------------------------------------
 * parameter with both gradients (every student parameter):
 *   v_task = m_task * v_task + (g_task + wd * theta)     first step: g_task + wd * theta
 *   v_kd   = m_kd   * v_kd   +  g_kd                     first step: g_kd
 *   theta -= lr * v_task;  theta -= lr * v_kd            (in this order, as mdistiller)
 * parameter with one gradient (e.g. the projector: distillation only), mu' = (m_task +
 * m_kd) / 2:
 *   task only:    v = mu' * v + (g + wd * theta)         first step: g + wd * theta
 *   distill only: v = mu' * v + (g + wd * theta)         first step: g  (no weight decay)
 * mdistiller quirk kept: with m_task = 0 the task side keeps no buffer (v_task = g_task
 * + wd * theta every step), also for task-only parameters. */

typedef struct kd_dot {
    double momentum, delta, weight_decay;
    size_t n_params;
    kd_param_ref *params; /* a copy of the caller's list */
    size_t *off_task;     /* into buf_task, or KD_OPTIM_NO_BUFFER */
    size_t *off_distill;  /* into buf_distill, or KD_OPTIM_NO_BUFFER */
    float *buf_task;      /* n_task floats: parameters with a task gradient, list order */
    float *buf_distill;   /* n_distill floats: parameters with a distillation gradient */
    size_t n_task, n_distill;
    uint64_t steps;
    kdc_pool *pool; /* NULL (init's default): the caller's thread; else split over it */
} kd_dot;

/* momentum = mu, delta >= 0 with 0 <= mu - delta and mu + delta < 1. */
kdc_status kd_dot_init(kd_dot *opt, const kd_param_ref *params, size_t n_params, double momentum,
                       double delta, double weight_decay, kdc_error *err);
kdc_status kd_dot_step(kd_dot *opt, double lr, kdc_error *err);
kdc_status kd_dot_set_state(kd_dot *opt, const float *buf_task, size_t n_task,
                            const float *buf_distill, size_t n_distill, uint64_t steps,
                            kdc_error *err);
void kd_dot_free(kd_dot *opt);

#endif
