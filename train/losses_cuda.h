/* losses_cuda.h - GPU twins of the losses of losses.h: cross-entropy, vanilla
 * KD from full or top-k teacher logits (fused: one kernel per loss writes the
 * gradient dL/dz, scaled by w and 1/B, set or added as kd_grad_mode says, and
 * each row's share of the weighted loss), and the projector loss (forward
 * and backward through the student-side batch norm). The trainer never
 * copies logits or features to the host. The CPU functions of losses.h are
 * the specification; tests/gpu/test_gpu_ops.c (CE, KD) and
 * tests/gpu/test_gpu_train.c (top-k KD, projector) check these against them.
 *
 * Only in builds with CUDA (KDC_HAVE_CUDA); all pointers are device memory of
 * `be`, a CUDA backend, unless a comment says "host". row_loss (B doubles,
 * may be NULL) receives w * (loss of row b) / B, so its sum is what the
 * matching kd_*_forward returns; kd_cuda_sum_rows adds it up on the host (one
 * synchronising copy). Labels and top-k indices are not validated on the GPU
 * (the caller's host copies are, by kd_cuda_check_labels /
 * kd_cuda_check_topk); an out-of-range one yields a NaN row loss and no
 * out-of-bounds access.
 * Not here: the optimiser updates (optim_cuda.h). */
#ifndef KD_LOSSES_CUDA_H
#define KD_LOSSES_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/backend.h"
#include "train/losses.h"

/* Host-side check of labels before they are uploaded. */
kdc_status kd_cuda_check_labels(const int32_t *labels, size_t B, size_t C, kdc_error *err);

/* dlogits = w * (softmax(z) - onehot(y)) / B;  row_loss[b] = w * (lse(z_b) - z_b[y_b]) / B */
kdc_status kd_cuda_ce(kdc_backend *be, const float *logits, const int32_t *labels, size_t B,
                      size_t C, float weight, kd_grad_mode mode, float *dlogits, double *row_loss,
                      kdc_error *err);

/* dstudent = w * T * (p_s - p_t) / B;
 * row_loss[b] = w * T^2 * sum_c p_t (log p_t - log p_s) / B   (0 log 0 = 0) */
kdc_status kd_cuda_kd(kdc_backend *be, const float *student, const float *teacher, size_t B,
                      size_t C, float temperature, float weight, kd_grad_mode mode, float *dstudent,
                      double *row_loss, kdc_error *err);

/* ---- top-k KD (losses.h, kd_kd_topk_*; the renormalise-over-K rule) ----
 * topk_value: B x K float16 bits, topk_index: B x K int32 class indices. */

/* Host-side check of a top-k batch before it is uploaded, with the CPU
 * function's rules: indices in [0, C), 1 <= K <= C, one value above -inf per
 * row. */
kdc_status kd_cuda_check_topk(const uint16_t *topk_value, const int32_t *topk_index, size_t B,
                              size_t C, size_t K, kdc_error *err);

/* dstudent = w * T * (p_s - q scattered to idx) / B,  q = softmax_k(v / T);
 * row_loss[b] = w * T^2 * sum_k q_k (log q_k - log p_s[idx_k]) / B */
kdc_status kd_cuda_kd_topk(kdc_backend *be, const float *student, const uint16_t *topk_value,
                           const int32_t *topk_index, size_t B, size_t C, size_t K,
                           float temperature, float weight, kd_grad_mode mode, float *dstudent,
                           double *row_loss, kdc_error *err);

/* ---- projector loss (losses.h, kd_proj_*) ----
 * Workspace on the device, made once for the largest batch (kd_proj_ws's
 * twin); the backward reads what the last forward left in it, so both must
 * run on the same f, on the backend's one stream, in that order. */
typedef struct kd_cuda_proj_ws {
    kdc_backend *be;
    size_t max_B, D;
    float *d;        /* device, max_B x D: BN(f) - BN(t) of the last forward */
    double *stats;   /* device, 4 x D: mean and rstd of f, then of t */
    double *partial; /* device, KD_CUDA_PROJ_BLOCKS partial sums of |d|^alpha, then S */
    size_t B;        /* host: batch of the last forward (0: none yet) */
    double alpha;    /* host: alpha of the last forward */
} kd_cuda_proj_ws;

/* Blocks of the |d|^alpha reduction: a fixed count, so S is summed in the
 * same order on every run (deterministic). */
#define KD_CUDA_PROJ_BLOCKS 128

kdc_status kd_cuda_proj_ws_init(kd_cuda_proj_ws *ws, kdc_backend *be, size_t max_B, size_t D,
                                kdc_error *err);
void kd_cuda_proj_ws_free(kd_cuda_proj_ws *ws);

/* Enqueues the forward on f, t (B x D). loss (device, 1 double, may be NULL)
 * receives w * log S. Where the CPU forward refuses (S = 0, i.e. identical
 * normalised features, or NaN inputs) the GPU cannot tell without a
 * synchronisation: the loss is NaN and the backward's gradient is NaN, which
 * the trainer's NaN check catches. Host-checked: 2 <= B <= max_B, alpha
 * finite and >= 1. */
kdc_status kd_cuda_proj_forward(kd_cuda_proj_ws *ws, const float *f, const float *t, size_t B,
                                double alpha, float weight, double *loss, kdc_error *err);
/* df = dL/df (B x D) through the batch-statistics BN, for the f and alpha of
 * the last forward (weight may differ from it). */
kdc_status kd_cuda_proj_backward(kd_cuda_proj_ws *ws, const float *f, float weight,
                                 kd_grad_mode mode, float *df, kdc_error *err);

/* Downloads B row losses and returns their sum in *loss. */
kdc_status kd_cuda_sum_rows(kdc_backend *be, const double *row_loss, size_t B, double *loss,
                            kdc_error *err);

#endif
