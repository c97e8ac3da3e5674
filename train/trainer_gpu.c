/* trainer_gpu.c - the device-resident training step of trainer_gpu.h. */
#include "train/trainer_gpu.h"

#include <stdlib.h>
#include <string.h>

#ifdef KDC_HAVE_CUDA

#include "common/cuda/cuda_backend.h"
#include "train/losses_cuda.h"
#include "train/train_ddp.h"
#include "train/optim_cuda.h"
#include "train/step_stats_cuda.h"

/* Offsets inside an upload slot are multiples of this (alignment of every
 * device array carved from it). */
#define SLOT_ALIGN 256

struct kd_gpu {
    kdc_backend *be;
    kd_gpu_config c;
    kdc_model *model;
    kd_projector *proj;
    kdc_grad_set *g_first, *g_second;

    kdc_cuda_uploader *up;
    /* slot layout: labels, teacher logits | top-k values + indices, teacher
     * features, then pixels (last, so a short batch copies only its part) */
    size_t off_labels, off_logits, off_tval, off_tidx, off_feat, off_pixels, pixel_bytes;

    float *dl_task, *df; /* device: logit gradients (DOT: 2 x B x C, the task then the
                          * distillation stream), projector-output gradient */
    double *rows;                /* device: row CE (B), row KD (B), projector loss (1) */
    int32_t *rank;               /* device: B */
    kd_cuda_step_stats *stats;   /* device */
    kd_cuda_step_stats *stats_h; /* pinned host */
    kd_cuda_proj_ws pws;
    kd_cuda_sgd sgd;
    kd_cuda_dot dot;
    int opt_ready;
    int pending; /* a step was enqueued and its statistics not yet read */
    void *stream;   /* the backend's (NCCL enqueues there) */
    kdc_nccl *nccl; /* several ranks: the communicator of them */
};

static size_t align_up(size_t x)
{
    return (x + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
}

/* Adds `bytes` (= a * b * elem) at the end of the layout; 0 on overflow. */
static int layout_add(size_t *end, size_t *off, size_t a, size_t b, size_t elem)
{
    size_t n;
    if (!kdc_size_mul(a, b, &n) || !kdc_size_mul(n, elem, &n) || !kdc_size_add(*end, n, &n))
        return 0;
    *off = *end;
    *end = align_up(n);
    return *end >= n;
}

void kd_gpu_free(kd_gpu *g)
{
    if (!g)
        return;
    kdc_backend *be = g->be;
    kdc_cuda_uploader_destroy(g->up); /* waits for the copies and the compute stream */
    kdc_nccl_free(g->nccl);
    if (g->opt_ready) {
        if (g->c.dot)
            kd_cuda_dot_free(&g->dot);
        else
            kd_cuda_sgd_free(&g->sgd);
    }
    kd_cuda_proj_ws_free(&g->pws);
    void *dev[] = {g->dl_task, g->df, g->rows, g->rank, g->stats};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i])
            be->free(be, dev[i]);
    kdc_cuda_host_free(be, g->stats_h);
    free(g);
}

static kdc_status dev_alloc(kdc_backend *be, void *pp, size_t a, size_t elem, kdc_error *err)
{
    size_t bytes;
    if (!kdc_size_mul(a ? a : 1, elem, &bytes))
        return kdc_fail(err, KDC_ENOMEM, "device buffer of %zu x %zu bytes overflows", a, elem);
    return be->alloc(be, bytes, (void **)pp, err);
}

static kdc_status create_buffers(kd_gpu *g, kdc_error *err)
{
    const kd_gpu_config *c = &g->c;
    kdc_backend *be = g->be;
    size_t B = c->max_batch, C = c->classes, S = c->image_size, end = 0;
    int ok = layout_add(&end, &g->off_labels, B, 1, sizeof(int32_t));
    if (c->teacher == KD_GPU_TEACHER_FULL)
        ok = ok && layout_add(&end, &g->off_logits, B, C, sizeof(float));
    if (c->teacher == KD_GPU_TEACHER_TOPK)
        ok = ok && layout_add(&end, &g->off_tval, B, c->topk, sizeof(uint16_t)) &&
             layout_add(&end, &g->off_tidx, B, c->topk, sizeof(int32_t));
    if (g->proj)
        ok = ok && layout_add(&end, &g->off_feat, B, c->teacher_dim, sizeof(float));
    size_t per = 3 * S * S, slot = end;
    ok = ok && kdc_size_mul(per, sizeof(float), &g->pixel_bytes) &&
         layout_add(&slot, &g->off_pixels, B, per, sizeof(float));
    if (!ok)
        return kdc_fail(err, KDC_ENOMEM, "upload slots for batch %zu of %zu px overflow", B, S);
    kdc_status st;
    if ((st = kdc_cuda_uploader_create(be, slot, &g->up, err)) ||
        (st = dev_alloc(be, &g->dl_task, (c->dot ? 2 : 1) * B * C, sizeof(float), err)) ||
        (g->proj && (st = dev_alloc(be, &g->df, B * c->teacher_dim, sizeof(float), err))) ||
        (st = dev_alloc(be, &g->rows, 2 * B + 1, sizeof(double), err)) ||
        (st = dev_alloc(be, &g->rank, B, sizeof(int32_t), err)) ||
        (st = dev_alloc(be, &g->stats, 1, sizeof(kd_cuda_step_stats), err)) ||
        (st = kdc_cuda_host_alloc(be, sizeof(kd_cuda_step_stats), (void **)&g->stats_h, err)))
        return st;
    if (g->proj && (st = kd_cuda_proj_ws_init(&g->pws, be, B, c->teacher_dim, err)))
        return st;
    return KDC_OK;
}

kdc_status kd_gpu_create(kdc_backend *be, const kd_gpu_config *c, kdc_model *model,
                         kd_projector *proj, kdc_grad_set *g_first, kdc_grad_set *g_second,
                         const kd_param_ref *params, size_t n_params, kd_gpu **out,
                         kdc_error *err)
{
    *out = NULL;
    if (be->device.type != KDC_DEVICE_CUDA)
        return kdc_fail(err, KDC_EINVAL, "GPU trainer on the %s backend", be->name);
    if (c->max_batch < 2 || c->classes < 1 || c->image_size < 1 || !g_first ||
        (c->dot && !g_second) || (proj && c->teacher_dim < 1) ||
        (c->teacher == KD_GPU_TEACHER_TOPK && (c->topk < 1 || c->topk > c->classes)))
        return kdc_fail(err, KDC_EINVAL, "GPU trainer: bad configuration");
    kd_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return kdc_fail(err, KDC_ENOMEM, "out of memory");
    g->be = be;
    g->c = *c;
    g->model = model;
    g->proj = proj;
    g->g_first = g_first;
    g->g_second = g_second;
    kdc_status st = create_buffers(g, err);
    /* the stream call makes be's GPU current: NCCL joins on the current device */
    if (!st && kdc_dist_size(c->dist) > 1 && !(st = kdc_cuda_stream(be, &g->stream, err)) &&
        (st = kdc_nccl_init(c->dist, &g->nccl, err)))
        kdc_error_prefix(err, "%d GPU ranks: ", kdc_dist_size(c->dist));
    if (!st) {
        st = c->dot ? kd_cuda_dot_init(&g->dot, be, params, n_params, c->momentum, c->dot_delta,
                                       c->weight_decay, err)
                    : kd_cuda_sgd_init(&g->sgd, be, params, n_params, c->momentum,
                                       c->weight_decay, err);
        g->opt_ready = st == KDC_OK;
    }
    if (st) {
        kd_gpu_free(g);
        return st;
    }
    *out = g;
    return KDC_OK;
}

/* Hands the slot taken by host_slot back unused (a zero-byte submit). */
static kdc_status skip_slot(kd_gpu *g, kdc_status st, kdc_error *err)
{
    void *dev = NULL;
    kdc_error e2;
    if (st) /* keep the first error */
        (void)kdc_cuda_uploader_submit(g->up, 0, &dev, &e2);
    else
        st = kdc_cuda_uploader_submit(g->up, 0, &dev, err);
    return st;
}

static kdc_status pack_batch(kd_gpu *g, const kd_batch *kb, unsigned char *h, kdc_error *err)
{
    const kd_gpu_config *c = &g->c;
    size_t n = (size_t)kb->count, C = c->classes;
    kdc_status st;
    if ((st = kd_cuda_check_labels(kb->label, n, C, err)))
        return st;
    memcpy(h + g->off_labels, kb->label, n * sizeof(int32_t));
    if (c->teacher == KD_GPU_TEACHER_FULL) {
        if (!kb->logits)
            return kdc_fail(err, KDC_EINVAL, "KD needs cached teacher logits; the batch has none");
        memcpy(h + g->off_logits, kb->logits, n * C * sizeof(float));
    } else if (c->teacher == KD_GPU_TEACHER_TOPK) {
        if (!kb->topk_index || !kb->topk_value)
            return kdc_fail(err, KDC_EINVAL, "top-k KD: the batch has no top-k teacher outputs");
        if ((st = kd_cuda_check_topk(kb->topk_value, kb->topk_index, n, C, c->topk, err)))
            return st;
        memcpy(h + g->off_tval, kb->topk_value, n * c->topk * sizeof(uint16_t));
        memcpy(h + g->off_tidx, kb->topk_index, n * c->topk * sizeof(int32_t));
    }
    if (g->proj) {
        if (!kb->features)
            return kdc_fail(err, KDC_EINVAL, "projector loss: the batch has no teacher features");
        memcpy(h + g->off_feat, kb->features, n * c->teacher_dim * sizeof(float));
    }
    return KDC_OK;
}

kdc_status kd_gpu_load(kd_gpu *g, kd_data *d, kd_gpu_batch *b, kdc_error *err)
{
    memset(b, 0, sizeof *b);
    void *slot = NULL;
    kdc_status st = kdc_cuda_uploader_host_slot(g->up, &slot, err);
    if (st)
        return st;
    unsigned char *h = slot;
    kd_batch kb;
    if ((st = kd_data_next_into(d, &kb, (float *)(void *)(h + g->off_pixels), err)))
        return skip_slot(g, st, err);
    if (kb.count == 0 && !kb.pixels) {
        b->end = 1;
        return skip_slot(g, KDC_OK, err);
    }
    b->count = kb.count;
    if (kb.count < 2) /* not trained on (see trainer.h) */
        return skip_slot(g, KDC_OK, err);
    if ((size_t)kb.count > g->c.max_batch)
        return skip_slot(g, kdc_fail(err, KDC_EINVAL, "batch of %d > %zu", kb.count,
                                     g->c.max_batch),
                         err);
    if ((st = pack_batch(g, &kb, h, err)))
        return skip_slot(g, st, err);
    void *dev = NULL;
    if ((st = kdc_cuda_uploader_submit(g->up, g->off_pixels + (size_t)kb.count * g->pixel_bytes,
                                       &dev, err)))
        return st;
    b->dev = dev;
    return KDC_OK;
}

/* Backward pass(es) into the gradient sets; dfeat: gradient at the student
 * features from the projector (NULL without). As trainer.c's CPU step. */
static kdc_status backward(kd_gpu *g, size_t n, int has_kd, const float *dfeat, kdc_error *err)
{
    const kd_gpu_config *c = &g->c;
    kdc_backend *be = g->be;
    kdc_status st;
    if (!c->dot)
        return kdc_model_backward(g->model, g->dl_task, dfeat, g->g_first, NULL, err);
    const float *df_task = c->proj_task_side ? dfeat : NULL;
    const float *df_kd = c->proj_task_side ? NULL : dfeat;
    float *dl_kd = g->dl_task + n * c->classes; /* stacked after the task stream */
    if (has_kd || df_kd) { /* one backward pass carrying both streams */
        if (!has_kd && (st = be->fill_zero(be, dl_kd, n * c->classes * sizeof(float), err)))
            return st;
        return kdc_model_backward_dual(g->model, g->dl_task, df_task, df_kd, g->g_first,
                                       g->g_second, err);
    }
    if ((st = kdc_model_backward(g->model, g->dl_task, df_task, g->g_first, NULL, err)))
        return st;
    /* no distillation term: its gradient is zero */
    return be->fill_zero(be, g->g_second->flat, g->g_second->flat_numel * sizeof(float), err);
}

/* DDP's mean over the GPU ranks of one device gradient vector, in buckets
 * from the end (the order backward produces them; not yet overlapped with
 * the backward pass: docs/DISTRIBUTED.md). */
static kdc_status mean_over_ranks(kd_gpu *g, float *grad, size_t n, kdc_error *err)
{
    size_t bucket = KD_DDP_BUCKET_BYTES / sizeof(float);
    for (size_t end = n; end > 0;) {
        size_t start = end > bucket ? end - bucket : 0;
        kdc_status st = kdc_nccl_mean_f32(g->nccl, grad + start, end - start, g->stream, err);
        if (st)
            return kdc_error_prefix(err, "gradient all-reduce: ");
        end = start;
    }
    return KDC_OK;
}

static kdc_status reduce_grads(kd_gpu *g, kdc_error *err)
{
    if (!g->nccl || kdc_nccl_size(g->nccl) == 1)
        return KDC_OK;
    kdc_status st = mean_over_ranks(g, g->g_first->flat, g->g_first->flat_numel, err);
    if (!st && g->c.dot)
        st = mean_over_ranks(g, g->g_second->flat, g->g_second->flat_numel, err);
    if (!st && g->proj)
        st = mean_over_ranks(g, g->proj->grad, g->proj->numel, err);
    return st;
}

kdc_status kd_gpu_step(kd_gpu *g, const kd_gpu_batch *b, double lr, kdc_error *err)
{
    const kd_gpu_config *c = &g->c;
    kdc_backend *be = g->be;
    kdc_status st;
    g->pending = 0;
    if (!b->dev || b->count < 2 || (size_t)b->count > c->max_batch)
        return kdc_fail(err, KDC_EINVAL, "GPU step on a batch of %d that was not uploaded",
                        b->count);
    size_t n = (size_t)b->count, C = c->classes, B = c->max_batch;
    const unsigned char *p = b->dev;
    const float *x = (const float *)(const void *)(p + g->off_pixels);
    const int32_t *labels = (const int32_t *)(const void *)(p + g->off_labels);
    const float *z = NULL, *feat = NULL;
    if ((st = kdc_model_forward(g->model, x, (int)n, (int)c->image_size, (int)c->image_size, 1, &z,
                                g->proj ? &feat : NULL, err)))
        return st;
    double *row_ce = g->rows, *row_kd = g->rows + B, *proj_loss = g->rows + 2 * B;

    /* CE: the fused kernel scales loss and gradient by the same weight; with
     * weight 0 the loss is still wanted for the log, the gradient is zero. */
    if (c->w_ce > 0)
        st = kd_cuda_ce(be, z, labels, n, C, c->w_ce, KD_GRAD_SET, g->dl_task, row_ce, err);
    else if (!(st = kd_cuda_ce(be, z, labels, n, C, 1.0f, KD_GRAD_SET, NULL, row_ce, err)))
        st = be->fill_zero(be, g->dl_task, n * C * sizeof(float), err);
    if (st)
        return st;

    /* KD: into the task gradient (SGD) or its own (DOT) */
    int has_kd = c->teacher != KD_GPU_TEACHER_NONE;
    float *dl_kd = c->dot ? g->dl_task + n * C : g->dl_task;
    kd_grad_mode mode = c->dot ? KD_GRAD_SET : KD_GRAD_ADD;
    if (c->teacher == KD_GPU_TEACHER_TOPK)
        st = kd_cuda_kd_topk(be, z, (const uint16_t *)(const void *)(p + g->off_tval),
                             (const int32_t *)(const void *)(p + g->off_tidx), n, C, c->topk,
                             c->temperature, c->w_kd, mode, dl_kd, row_kd, err);
    else if (c->teacher == KD_GPU_TEACHER_FULL)
        st = kd_cuda_kd(be, z, (const float *)(const void *)(p + g->off_logits), n, C,
                        c->temperature, c->w_kd, mode, dl_kd, row_kd, err);
    if (st)
        return st;

    /* projector loss: bare value for the log, gradient with its weight */
    const float *dfeat = NULL;
    if (g->proj) {
        const float *tf = (const float *)(const void *)(p + g->off_feat);
        if ((st = kd_projector_forward(g->proj, feat, (int)n, err)) ||
            (st = kd_cuda_proj_forward(&g->pws, g->proj->out, tf, n, c->proj_alpha, 1.0f,
                                       proj_loss, err)) ||
            (st = kd_cuda_proj_backward(&g->pws, g->proj->out, c->w_proj, KD_GRAD_SET, g->df,
                                        err)) ||
            (st = kd_projector_backward(g->proj, feat, g->df, (int)n, err)))
            return st;
        dfeat = g->proj->dinput;
    }
    if ((st = kd_cuda_step_stats_compute(be, z, labels, n, C, row_ce, has_kd ? row_kd : NULL,
                                         g->proj ? proj_loss : NULL, g->rank, g->stats, err)) ||
        (st = backward(g, n, has_kd, dfeat, err)) || (st = reduce_grads(g, err)))
        return st;
    st = c->dot ? kd_cuda_dot_step(&g->dot, lr, err) : kd_cuda_sgd_step(&g->sgd, lr, err);
    g->pending = st == KDC_OK;
    return st;
}

kdc_status kd_gpu_step_result(kd_gpu *g, kd_gpu_losses *L, kdc_error *err)
{
    memset(L, 0, sizeof *L);
    if (!g->pending)
        return kdc_fail(err, KDC_EINVAL, "GPU step result without a step");
    g->pending = 0;
    kdc_status st = g->be->copy_d2h(g->be, g->stats_h, g->stats, sizeof *g->stats_h, err);
    if (st)
        return st;
    const kd_gpu_config *c = &g->c;
    const kd_cuda_step_stats *s = g->stats_h;
    /* the row losses carry the weight the kernels were given */
    L->ce = c->w_ce > 0 ? s->ce_sum / (double)c->w_ce : s->ce_sum;
    L->kd = c->teacher != KD_GPU_TEACHER_NONE ? s->kd_sum / (double)c->w_kd : 0.0;
    L->proj = g->proj ? s->proj : 0.0;
    L->top1 = s->top1;
    L->top5 = s->top5;
    return KDC_OK;
}

void kd_gpu_opt_sizes(const kd_gpu *g, size_t *n0, size_t *n1, uint64_t *steps)
{
    if (g->c.dot) {
        *n0 = g->dot.n_task;
        *n1 = g->dot.n_distill;
        *steps = g->dot.steps;
    } else {
        *n0 = g->sgd.n_buf;
        *n1 = 0;
        *steps = g->sgd.steps;
    }
}

kdc_status kd_gpu_opt_get(kd_gpu *g, float *b0, size_t n0, float *b1, size_t n1, kdc_error *err)
{
    if (g->c.dot)
        return kd_cuda_dot_get_state(&g->dot, b0, n0, b1, n1, err);
    return kd_cuda_sgd_get_state(&g->sgd, b0, n0, err);
}

kdc_status kd_gpu_opt_set(kd_gpu *g, const float *b0, size_t n0, const float *b1, size_t n1,
                          uint64_t steps, kdc_error *err)
{
    if (g->c.dot)
        return kd_cuda_dot_set_state(&g->dot, b0, n0, b1, n1, steps, err);
    return kd_cuda_sgd_set_state(&g->sgd, b0, n0, steps, err);
}

#else /* !KDC_HAVE_CUDA: no kd_gpu can exist; the rest is never reached. */

#define NO_CUDA "this build has no CUDA backend (rebuild with nvcc on PATH or `make CUDA=1`)"

struct kd_gpu {
    int unused;
};

kdc_status kd_gpu_create(kdc_backend *be, const kd_gpu_config *c, kdc_model *model,
                         kd_projector *proj, kdc_grad_set *g_first, kdc_grad_set *g_second,
                         const kd_param_ref *params, size_t n_params, kd_gpu **out,
                         kdc_error *err)
{
    (void)be, (void)c, (void)model, (void)proj, (void)g_first, (void)g_second, (void)params,
        (void)n_params;
    *out = NULL;
    return kdc_fail(err, KDC_EDEVICE, "GPU training: " NO_CUDA);
}

void kd_gpu_free(kd_gpu *g)
{
    free(g);
}

kdc_status kd_gpu_load(kd_gpu *g, kd_data *d, kd_gpu_batch *b, kdc_error *err)
{
    (void)g, (void)d;
    memset(b, 0, sizeof *b);
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kd_gpu_step(kd_gpu *g, const kd_gpu_batch *b, double lr, kdc_error *err)
{
    (void)g, (void)b, (void)lr;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kd_gpu_step_result(kd_gpu *g, kd_gpu_losses *L, kdc_error *err)
{
    (void)g;
    memset(L, 0, sizeof *L);
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

void kd_gpu_opt_sizes(const kd_gpu *g, size_t *n0, size_t *n1, uint64_t *steps)
{
    (void)g;
    *n0 = *n1 = 0;
    *steps = 0;
}

kdc_status kd_gpu_opt_get(kd_gpu *g, float *b0, size_t n0, float *b1, size_t n1, kdc_error *err)
{
    (void)g, (void)b0, (void)n0, (void)b1, (void)n1;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

kdc_status kd_gpu_opt_set(kd_gpu *g, const float *b0, size_t n0, const float *b1, size_t n1,
                          uint64_t steps, kdc_error *err)
{
    (void)g, (void)b0, (void)n0, (void)b1, (void)n1, (void)steps;
    return kdc_fail(err, KDC_EDEVICE, NO_CUDA);
}

#endif
