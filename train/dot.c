/* dot.c - DOT, the Distillation-Oriented Trainer (Zhao et al., ICCV 2023), as
 * mdistiller/engine/dot.py implements it: SGD with separate momentum buffers for the
 * task and the distillation gradient (m_task = mu - delta, m_kd = mu + delta), weight
 * decay on the task side only, and mdistiller's rule for parameters that receive only
 * one of the two gradients. Not plain SGD (sgd.c).
 *
 * mdistiller's dot() runs two loops: first over parameters with a task gradient
 * (update theta with the task buffer), then over parameters with a distillation
 * gradient (update theta again with that buffer). Every operation is elementwise, so
 * one fused loop per parameter that keeps that order per element gives the same floats. */
#include "train/optim.h"
#include "train/optim_loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kd_dot_free(kd_dot *opt)
{
    if (!opt)
        return;
    free(opt->params);
    free(opt->off_task);
    free(opt->off_distill);
    free(opt->buf_task);
    free(opt->buf_distill);
    memset(opt, 0, sizeof *opt);
}

kdc_status kd_dot_init(kd_dot *opt, const kd_param_ref *params, size_t n_params, double momentum,
                       double delta, double weight_decay, kdc_error *err)
{
    if (!opt)
        return kdc_fail(err, KDC_EINVAL, "DOT: NULL optimiser");
    memset(opt, 0, sizeof *opt);
    if (!params || n_params == 0)
        return kdc_fail(err, KDC_EINVAL, "DOT: no parameters");
    if (!isfinite(momentum) || !isfinite(delta) || !(delta >= 0.0) || !(momentum - delta >= 0.0) ||
        !(momentum + delta < 1.0))
        return kdc_fail(err, KDC_EINVAL,
                        "DOT: momentum %g and delta %g give task momentum %g and distillation "
                        "momentum %g; need delta >= 0, both in [0, 1)",
                        momentum, delta, momentum - delta, momentum + delta);
    if (!(weight_decay >= 0.0) || !isfinite(weight_decay))
        return kdc_fail(err, KDC_EINVAL, "DOT: weight decay %g must be finite and >= 0",
                        weight_decay);
    size_t n_task = 0, n_distill = 0;
    for (size_t i = 0; i < n_params; i++) {
        const kd_param_ref *p = &params[i];
        if (!p->value || p->n == 0)
            return kdc_fail(err, KDC_EINVAL, "DOT: parameter %zu has no values", i);
        if (!p->grad_task && !p->grad_distill)
            return kdc_fail(err, KDC_EINVAL, "DOT: parameter %zu receives no gradient", i);
        if ((p->grad_task && !kdc_size_add(n_task, p->n, &n_task)) ||
            (p->grad_distill && !kdc_size_add(n_distill, p->n, &n_distill)))
            return kdc_fail(err, KDC_ENOMEM, "DOT: parameter sizes overflow");
    }
    size_t bt, bd;
    if (!kdc_size_mul(n_task, sizeof(float), &bt) || !kdc_size_mul(n_distill, sizeof(float), &bd))
        return kdc_fail(err, KDC_ENOMEM, "DOT: momentum buffer sizes overflow");
    opt->params = malloc(n_params * sizeof *opt->params);
    opt->off_task = malloc(n_params * sizeof *opt->off_task);
    opt->off_distill = malloc(n_params * sizeof *opt->off_distill);
    /* +1: a side that no parameter has still gets a valid (unused) pointer */
    opt->buf_task = calloc(n_task + 1, sizeof(float));
    opt->buf_distill = calloc(n_distill + 1, sizeof(float));
    if (!opt->params || !opt->off_task || !opt->off_distill || !opt->buf_task ||
        !opt->buf_distill) {
        kd_dot_free(opt);
        return kdc_fail(err, KDC_ENOMEM, "DOT: out of memory for %zu + %zu momentum floats", n_task,
                        n_distill);
    }
    memcpy(opt->params, params, n_params * sizeof *opt->params);
    size_t ot = 0, od = 0;
    for (size_t i = 0; i < n_params; i++) {
        opt->off_task[i] = params[i].grad_task ? ot : KD_OPTIM_NO_BUFFER;
        opt->off_distill[i] = params[i].grad_distill ? od : KD_OPTIM_NO_BUFFER;
        ot += params[i].grad_task ? params[i].n : 0;
        od += params[i].grad_distill ? params[i].n : 0;
    }
    opt->n_params = n_params;
    opt->n_task = n_task;
    opt->n_distill = n_distill;
    opt->momentum = momentum;
    opt->delta = delta;
    opt->weight_decay = weight_decay;
    opt->steps = 0;
    return KDC_OK;
}

typedef struct dot_ctx {
    float *th, *vt, *vk;
    const float *gt, *gk;
    float lr, wd, m_task, m_kd, mu;
    int first, task_buf;
} dot_ctx;

/* Both gradients: task buffer with m_task and weight decay, then distillation
 * buffer with m_kd, theta updated by each in turn (mdistiller's two loops). The
 * common case (not the first step, a task buffer) is a branch-free loop that
 * vectorises; the same float expressions in the same order in every case. */
KD_OPTIM_VECTORISE static void step_both(void *vc, size_t b, size_t e)
{
    const dot_ctx *c = vc;
    float *th = c->th, *vt = c->vt, *vk = c->vk;
    const float *gt = c->gt, *gk = c->gk;
    const float lr = c->lr, wd = c->wd, m_task = c->m_task, m_kd = c->m_kd;
    if (!c->first && c->task_buf) {
        KD_OPTIM_IVDEP
        for (size_t j = b; j < e; j++) {
            float t = th[j];
            vt[j] = m_task * vt[j] + (gt[j] + wd * t);
            t = t - lr * vt[j];
            vk[j] = m_kd * vk[j] + gk[j];
            th[j] = t - lr * vk[j];
        }
        return;
    }
    for (size_t j = b; j < e; j++) {
        float t = th[j];
        float d = gt[j] + wd * t;
        if (c->task_buf) {
            vt[j] = c->first ? d : m_task * vt[j] + d;
            d = vt[j];
        }
        t = t - lr * d;
        vk[j] = c->first ? gk[j] : m_kd * vk[j] + gk[j];
        th[j] = t - lr * vk[j];
    }
}

/* Task gradient only: mdistiller's task loop, `else` branch, momentum (m_task+m_kd)/2. */
static void step_task_only(void *vc, size_t b, size_t e)
{
    const dot_ctx *c = vc;
    float *th = c->th, *vt = c->vt;
    const float *gt = c->gt;
    for (size_t j = b; j < e; j++) {
        float d = gt[j] + c->wd * th[j];
        if (c->task_buf) {
            vt[j] = c->first ? d : c->mu * vt[j] + d;
            d = vt[j];
        }
        th[j] = th[j] - c->lr * d;
    }
}

/* Distillation gradient only (the projector): mdistiller's kd loop, `else` branch. Its
 * first step clones the raw gradient before the weight-decay line is reached. */
static void step_distill_only(void *vc, size_t b, size_t e)
{
    const dot_ctx *c = vc;
    float *th = c->th, *vk = c->vk;
    const float *gk = c->gk;
    for (size_t j = b; j < e; j++) {
        vk[j] = c->first ? gk[j] : c->mu * vk[j] + (gk[j] + c->wd * th[j]);
        th[j] = th[j] - c->lr * vk[j];
    }
}

kdc_status kd_dot_step(kd_dot *opt, double lr, kdc_error *err)
{
    if (!opt || !opt->buf_task)
        return kdc_fail(err, KDC_EINVAL, "DOT: optimiser not initialised");
    if (!(lr >= 0.0) || !isfinite(lr))
        return kdc_fail(err, KDC_EINVAL, "DOT: learning rate %g must be finite and >= 0", lr);
    for (size_t i = 0; i < opt->n_params; i++) {
        const kd_param_ref *p = &opt->params[i];
        if (!p->grad_task != (opt->off_task[i] == KD_OPTIM_NO_BUFFER) ||
            !p->grad_distill != (opt->off_distill[i] == KD_OPTIM_NO_BUFFER))
            return kdc_fail(err, KDC_EINVAL,
                            "DOT: parameter %zu changed which gradients it receives", i);
    }
    /* The momenta are computed in double as mdistiller's Python does, then cast to
     * float32 as torch does for a float32 tensor's scalar arguments. */
    const double m_task = opt->momentum - opt->delta, m_kd = opt->momentum + opt->delta;
    dot_ctx c = {.lr = (float)lr, .wd = (float)opt->weight_decay, .m_task = (float)m_task,
                 .m_kd = (float)m_kd, .mu = (float)((m_kd + m_task) / 2.0),
                 .first = opt->steps == 0, .task_buf = m_task != 0.0};
    for (size_t i = 0; i < opt->n_params; i++) {
        const kd_param_ref *p = &opt->params[i];
        c.th = p->value;
        c.vt = p->grad_task ? opt->buf_task + opt->off_task[i] : NULL;
        c.vk = p->grad_distill ? opt->buf_distill + opt->off_distill[i] : NULL;
        c.gt = p->grad_task;
        c.gk = p->grad_distill;
        kdc_pool_fn fn = p->grad_task && p->grad_distill ? step_both
                         : p->grad_task                  ? step_task_only
                                                         : step_distill_only;
        kdc_pool_parallel_for(opt->pool, p->n, KD_OPTIM_GRAIN, fn, &c);
    }
    opt->steps++;
    return KDC_OK;
}

kdc_status kd_dot_set_state(kd_dot *opt, const float *buf_task, size_t n_task,
                            const float *buf_distill, size_t n_distill, uint64_t steps,
                            kdc_error *err)
{
    if (!opt || !opt->buf_task)
        return kdc_fail(err, KDC_EINVAL, "DOT: optimiser not initialised");
    if (n_task != opt->n_task || n_distill != opt->n_distill)
        return kdc_fail(err, KDC_EMISMATCH,
                        "DOT state: %zu task + %zu distillation momentum floats saved, the "
                        "parameters need %zu + %zu",
                        n_task, n_distill, opt->n_task, opt->n_distill);
    if (steps > 0 && ((n_task && !buf_task) || (n_distill && !buf_distill)))
        return kdc_fail(err, KDC_EINVAL, "DOT state: NULL momentum buffer");
    if (steps > 0) {
        if (n_task)
            memcpy(opt->buf_task, buf_task, n_task * sizeof(float));
        if (n_distill)
            memcpy(opt->buf_distill, buf_distill, n_distill * sizeof(float));
    } else {
        memset(opt->buf_task, 0, n_task * sizeof(float));
        memset(opt->buf_distill, 0, n_distill * sizeof(float));
    }
    opt->steps = steps;
    return KDC_OK;
}
