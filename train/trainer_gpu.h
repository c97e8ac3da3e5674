/* trainer_gpu.h - kd-train's training step on a CUDA backend, with nothing
 * but a few bytes of statistics crossing the bus in the steady state.
 *
 * Per batch, kd_gpu_load takes the next batch of a kd_data straight into a
 * pinned buffer of the double-buffered uploader (common/cuda/cuda_backend.h): the
 * loader's decoded pixels are copied into it (kd_data_next_into, no other
 * host staging buffer), and the labels and the cached teacher outputs
 * the losses need (full logits or top-k values + indices, features) are
 * packed behind them; one asynchronous copy moves it all while the GPU still
 * works on the previous step. kd_gpu_step then enqueues, on the backend's
 * stream, the student's forward, the loss kernels of losses_cuda.h (CE, KD or
 * top-k KD, projector loss) writing the logit / feature gradients, the one
 * or two backward passes (SGD: one; DOT: task and distillation), the step
 * statistics (step_stats_cuda.h) and the fused optimiser step of
 * optim_cuda.h, and returns without waiting. kd_gpu_step_result waits for
 * that step and downloads its statistics (about 40 bytes). The trainer calls
 * load(next batch) between step and step_result, so decoding and the next
 * upload overlap the GPU's work.
 *
 * The math is that of the CPU step in trainer.c (same loss terms, same
 * gradient routing, same optimiser rules); results differ from the CPU's by
 * float32 rounding (cuDNN's and cuBLAS's summation orders), and a NaN loss
 * is seen one step late on the host: the optimiser has then already applied
 * the NaN gradient, which is harmless because the trainer stops without
 * saving. Labels and top-k indices are checked on the host before upload.
 *
 * Builds without CUDA have these functions too: kd_gpu_create fails with
 * KDC_EDEVICE, and a kd_gpu never exists. Not the epoch loop, not files. */
#ifndef KD_TRAINER_GPU_H
#define KD_TRAINER_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "common/dist/dist_nccl.h"
#include "common/nn/backend.h"
#include "common/models/model.h"
#include "train/optim.h"
#include "train/projector.h"
#include "train/train_data.h"

typedef enum kd_gpu_teacher {
    KD_GPU_TEACHER_NONE = 0, /* no KD term (kd weight 0) */
    KD_GPU_TEACHER_FULL,     /* batch.logits: B x C float */
    KD_GPU_TEACHER_TOPK      /* batch.topk_value / topk_index: B x K */
} kd_gpu_teacher;

typedef struct kd_gpu_config {
    size_t max_batch, classes, image_size; /* B, C, S */
    kd_gpu_teacher teacher;
    size_t topk;          /* K (top-k teacher) */
    size_t teacher_dim;   /* Dt when the projector loss is on (proj != NULL), else 0 */
    float w_ce, w_kd, w_proj, temperature;
    double proj_alpha;
    int dot;              /* 0: SGD on the sum; 1: DOT, two backward passes */
    int proj_task_side;   /* DOT: projector term on the task side */
    double momentum, dot_delta, weight_decay;
    /* Several GPU ranks (the job's; NULL: one rank): kd_gpu_create joins an
     * NCCL communicator of them (dist_nccl.h; collective), and every step
     * takes the gradients' mean over them. Each gradient vector (SGD's sum, DOT's task and
     * distillation gradients, the projector's) is averaged apart, in
     * KD_DDP_BUCKET_BYTES buckets from its end, on the backend's stream after
     * the backward pass and before the optimiser step. */
    kdc_dist *dist;
} kd_gpu_config;

typedef struct kd_gpu kd_gpu;

/* The model, projector (NULL without projector loss) and gradient sets
 * (SGD: g_first = the sum, g_second NULL; DOT: task, distillation) are the
 * caller's, on be, and must outlive the kd_gpu. params is the optimiser's
 * parameter list with those device pointers (as the CPU optimiser's). */
kdc_status kd_gpu_create(kdc_backend *be, const kd_gpu_config *c, kdc_model *model,
                         kd_projector *proj, kdc_grad_set *g_first, kdc_grad_set *g_second,
                         const kd_param_ref *params, size_t n_params, kd_gpu **out,
                         kdc_error *err);
void kd_gpu_free(kd_gpu *g);

/* A batch handed from kd_gpu_load to kd_gpu_step. */
typedef struct kd_gpu_batch {
    int end;         /* the epoch had no more batches */
    int count;       /* samples; batches of fewer than 2 are not uploaded */
    const void *dev; /* device copy of the packed batch (NULL when not uploaded) */
} kd_gpu_batch;

kdc_status kd_gpu_load(kd_gpu *g, kd_data *d, kd_gpu_batch *b, kdc_error *err);

/* Enqueues one training step on b (count >= 2) with learning rate lr. b's
 * device memory stays valid until the second kd_gpu_load after the one that
 * made it, so the trainer may load one batch ahead. */
kdc_status kd_gpu_step(kd_gpu *g, const kd_gpu_batch *b, double lr, kdc_error *err);

/* The bare loss terms (weight 1, KD with its T^2) and correct counts of the
 * last step; waits for it. */
typedef struct kd_gpu_losses {
    double ce, kd, proj;
    int64_t top1, top5;
} kd_gpu_losses;

kdc_status kd_gpu_step_result(kd_gpu *g, kd_gpu_losses *L, kdc_error *err);

/* The optimiser's momentum buffers in the CPU layout (optim.h; SGD: one
 * buffer, n1 = 0), for checkpoints. */
void kd_gpu_opt_sizes(const kd_gpu *g, size_t *n0, size_t *n1, uint64_t *steps);
kdc_status kd_gpu_opt_get(kd_gpu *g, float *b0, size_t n0, float *b1, size_t n1,
                          kdc_error *err);
kdc_status kd_gpu_opt_set(kd_gpu *g, const float *b0, size_t n0, const float *b1, size_t n1,
                          uint64_t steps, kdc_error *err);

#endif
