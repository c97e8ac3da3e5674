/* losses_cuda.h - GPU twins of the cross-entropy and vanilla-KD losses of
 * losses.h, fused: one kernel per loss writes the gradient dL/dz (scaled by w
 * and 1/B, set or added as kd_grad_mode says) and each row's share of the
 * weighted loss, so the trainer never copies logits to the host. The CPU
 * functions of losses.h are the specification; tests/gpu/test_gpu_ops.c
 * checks these against them.
 *
 * Only in builds with CUDA (KDC_HAVE_CUDA); all pointers are device memory of
 * `be`, a CUDA backend. row_loss (B doubles, may be NULL) receives
 * w * (loss of row b) / B, so its sum is what kd_ce_forward / kd_kd_forward
 * return; kd_cuda_sum_rows adds it up on the host (one synchronising copy).
 * Labels are not validated on the GPU (the caller's host labels are, by
 * kd_cuda_check_labels); an out-of-range label yields a NaN row loss and no
 * out-of-bounds access.
 * Not here yet: top-k KD, the projector loss, the optimiser updates. */
#ifndef KD_LOSSES_CUDA_H
#define KD_LOSSES_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "common/backend.h"
#include "train/losses.h"

/* Host-side check of labels before they are uploaded. */
kdc_status kd_cuda_check_labels(const int32_t *labels, size_t B, size_t C, kdc_error *err);

/* dlogits = w * (softmax(z) - onehot(y)) / B;  row_loss[b] = w * (lse(z_b) - z_b[y_b]) / B */
kdc_status kd_cuda_ce(kdc_backend *be, const float *logits, const int32_t *labels, size_t B,
                      size_t C, float weight, kd_grad_mode mode, float *dlogits,
                      double *row_loss, kdc_error *err);

/* dstudent = w * T * (p_s - p_t) / B;
 * row_loss[b] = w * T^2 * sum_c p_t (log p_t - log p_s) / B   (0 log 0 = 0) */
kdc_status kd_cuda_kd(kdc_backend *be, const float *student, const float *teacher, size_t B,
                      size_t C, float temperature, float weight, kd_grad_mode mode,
                      float *dstudent, double *row_loss, kdc_error *err);

/* Downloads B row losses and returns their sum in *loss. */
kdc_status kd_cuda_sum_rows(kdc_backend *be, const double *row_loss, size_t B, double *loss,
                            kdc_error *err);

#endif
