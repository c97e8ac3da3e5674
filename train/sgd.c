/* sgd.c - SGD with momentum and weight decay, as torch.optim.SGD (1.13,
 * _single_tensor_sgd) with dampening 0 and nesterov False: the buffer starts as the
 * first gradient. The gradient stepped on is the sum of the task and distillation
 * gradients a parameter has. Not DOT (dot.c). */
#include "train/optim.h"
#include "train/optim_loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kd_sgd_free(kd_sgd *opt)
{
    if (!opt)
        return;
    free(opt->params);
    free(opt->offset);
    free(opt->buf);
    memset(opt, 0, sizeof *opt);
}

kdc_status kd_sgd_init(kd_sgd *opt, const kd_param_ref *params, size_t n_params, double momentum,
                       double weight_decay, kdc_error *err)
{
    if (!opt)
        return kdc_fail(err, KDC_EINVAL, "SGD: NULL optimiser");
    memset(opt, 0, sizeof *opt);
    if (!params || n_params == 0)
        return kdc_fail(err, KDC_EINVAL, "SGD: no parameters");
    if (!(momentum >= 0.0 && momentum < 1.0))
        return kdc_fail(err, KDC_EINVAL, "SGD: momentum %g outside [0, 1)", momentum);
    if (!(weight_decay >= 0.0) || !isfinite(weight_decay))
        return kdc_fail(err, KDC_EINVAL, "SGD: weight decay %g must be finite and >= 0",
                        weight_decay);
    size_t total = 0;
    for (size_t i = 0; i < n_params; i++) {
        const kd_param_ref *p = &params[i];
        if (!p->value || p->n == 0)
            return kdc_fail(err, KDC_EINVAL, "SGD: parameter %zu has no values", i);
        if (!p->grad_task && !p->grad_distill)
            return kdc_fail(err, KDC_EINVAL, "SGD: parameter %zu receives no gradient", i);
        if (!kdc_size_add(total, p->n, &total))
            return kdc_fail(err, KDC_ENOMEM, "SGD: parameter sizes overflow");
    }
    size_t bytes;
    if (!kdc_size_mul(total, sizeof(float), &bytes))
        return kdc_fail(err, KDC_ENOMEM, "SGD: %zu floats of momentum overflow", total);
    opt->params = malloc(n_params * sizeof *opt->params);
    opt->offset = malloc(n_params * sizeof *opt->offset);
    opt->buf = calloc(total, sizeof(float));
    if (!opt->params || !opt->offset || !opt->buf) {
        kd_sgd_free(opt);
        return kdc_fail(err, KDC_ENOMEM, "SGD: out of memory for %zu momentum floats", total);
    }
    memcpy(opt->params, params, n_params * sizeof *opt->params);
    size_t off = 0;
    for (size_t i = 0; i < n_params; i++) {
        opt->offset[i] = off;
        off += params[i].n;
    }
    opt->n_params = n_params;
    opt->n_buf = total;
    opt->momentum = momentum;
    opt->weight_decay = weight_decay;
    opt->steps = 0;
    return KDC_OK;
}

typedef struct sgd_ctx {
    float *th, *v;
    const float *ga, *gb;
    float lr, wd, mu;
    int first, use_buf;
} sgd_ctx;

/* Elements [b, e) of one parameter. The common case (both or one gradient,
 * momentum buffer, not the first step) is a branch-free loop that vectorises;
 * every case computes the same float expressions in the same order, so the
 * result does not depend on the split (or on vectorisation: no contraction). */
KD_OPTIM_VECTORISE static void sgd_task(void *vc, size_t b, size_t e)
{
    const sgd_ctx *c = vc;
    float *th = c->th, *v = c->v;
    const float *ga = c->ga, *gb = c->gb;
    const float lr = c->lr, wd = c->wd, mu = c->mu;
    if (c->use_buf && !c->first && ga && gb) {
        KD_OPTIM_IVDEP
        for (size_t j = b; j < e; j++) {
            float d = (ga[j] + gb[j]) + wd * th[j];
            v[j] = mu * v[j] + d;
            th[j] = th[j] - lr * v[j];
        }
        return;
    }
    if (c->use_buf && !c->first && (ga || gb)) {
        const float *g = ga ? ga : gb;
        KD_OPTIM_IVDEP
        for (size_t j = b; j < e; j++) {
            float d = g[j] + wd * th[j];
            v[j] = mu * v[j] + d;
            th[j] = th[j] - lr * v[j];
        }
        return;
    }
    for (size_t j = b; j < e; j++) {
        float g = ga ? (gb ? ga[j] + gb[j] : ga[j]) : gb[j];
        float d = g + wd * th[j];
        if (c->use_buf) {
            v[j] = c->first ? d : mu * v[j] + d;
            d = v[j];
        }
        th[j] = th[j] - lr * d;
    }
}

kdc_status kd_sgd_step(kd_sgd *opt, double lr, kdc_error *err)
{
    if (!opt || !opt->buf)
        return kdc_fail(err, KDC_EINVAL, "SGD: optimiser not initialised");
    if (!(lr >= 0.0) || !isfinite(lr))
        return kdc_fail(err, KDC_EINVAL, "SGD: learning rate %g must be finite and >= 0", lr);
    for (size_t i = 0; i < opt->n_params; i++)
        if (!opt->params[i].grad_task && !opt->params[i].grad_distill)
            return kdc_fail(err, KDC_EINVAL, "SGD: parameter %zu lost its gradient", i);
    /* PyTorch keeps tensors in float32 and casts the Python-float hyperparameters to it. */
    sgd_ctx c = {.lr = (float)lr, .wd = (float)opt->weight_decay, .mu = (float)opt->momentum,
                 .first = opt->steps == 0, .use_buf = opt->momentum != 0.0};
    for (size_t i = 0; i < opt->n_params; i++) {
        const kd_param_ref *p = &opt->params[i];
        c.th = p->value;
        c.v = opt->buf + opt->offset[i];
        c.ga = p->grad_task;
        c.gb = p->grad_distill;
        kdc_pool_parallel_for(opt->pool, p->n, KD_OPTIM_GRAIN, sgd_task, &c);
    }
    opt->steps++;
    return KDC_OK;
}

kdc_status kd_sgd_set_state(kd_sgd *opt, const float *buf, size_t n_buf, uint64_t steps,
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
    if (steps > 0)
        memcpy(opt->buf, buf, n_buf * sizeof(float));
    else
        memset(opt->buf, 0, n_buf * sizeof(float));
    opt->steps = steps;
    return KDC_OK;
}
