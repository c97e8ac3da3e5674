/* losses.h - the training losses of kd-train as plain CPU functions on float buffers:
 * cross-entropy, vanilla KD (Hinton) from full or top-k cached teacher logits, and the
 * projector loss of Miles & Mikolajczyk. docs/TRAINING_MATH.md states the math; the
 * shared ALGORITHMS.md (sections 1 and 3) is what it follows.
 *
 * Conventions (llm.c style: every buffer and shape is an argument):
 * - Logits are row-major B x C float32. Labels and class indices are int32.
 * - `weight` is the loss weight w: every forward returns the WEIGHTED loss (what enters
 *   the total), accumulated in double; pass weight 1 to get the bare term for logging.
 * - Every backward writes dL/dz already scaled by w and by the 1/B of the batch mean,
 *   so it can seed a model backward directly. `mode` says whether it overwrites the
 *   gradient buffer or adds to it (SGD seeds one backward with the sum of the terms;
 *   DOT seeds two separate ones).
 * - Bad shapes or labels return KDC_EINVAL with one line in err; nothing is written then.
 *
 * These functions are the specification the CUDA kernels are checked against. They
 * are not the model: the projector's Linear layer lives with the model layers. */
#ifndef KD_LOSSES_H
#define KD_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef enum kd_grad_mode {
    KD_GRAD_SET = 0, /* grad = dL/dz */
    KD_GRAD_ADD = 1  /* grad += dL/dz */
} kd_grad_mode;

/* ---- cross-entropy: L = w * mean_b( -log softmax(z_b)[y_b] ) ------------------------ */

kdc_status kd_ce_forward(double *loss, const float *logits, const int32_t *labels, size_t B,
                         size_t C, float weight, kdc_error *err);
/* dlogits = w * (softmax(z) - onehot(y)) / B */
kdc_status kd_ce_backward(float *dlogits, const float *logits, const int32_t *labels, size_t B,
                          size_t C, float weight, kd_grad_mode mode, kdc_error *err);

/* ---- vanilla KD from full teacher logits --------------------------------------------
 * L = w * T^2 * mean_b sum_c p_t (log p_t - log p_s),  p_t = softmax(z_t/T),
 * p_s = softmax(z_s/T), 0*log0 = 0 (mdistiller's kd_loss). T > 0. */

kdc_status kd_kd_forward(double *loss, const float *student, const float *teacher, size_t B,
                         size_t C, float temperature, float weight, kdc_error *err);
/* dstudent = w * T * (p_s - p_t) / B */
kdc_status kd_kd_backward(float *dstudent, const float *student, const float *teacher, size_t B,
                          size_t C, float temperature, float weight, kd_grad_mode mode,
                          kdc_error *err);

/* ---- vanilla KD from a top-k cache ---------------------------------------------------
 * Per sample the K largest teacher logits (float16 bits, sorted descending as the cache
 * stores them; the code does not rely on the order) and their class indices (distinct,
 * in [0, C)). Rule (docs/TRAINING_MATH.md, "top-k"): the teacher distribution is
 * renormalised over its K classes, q_k = softmax_k(v/T), and is 0 elsewhere; the student
 * keeps its full softmax over C classes:
 *   L = w * T^2 * mean_b sum_k q_k (log q_k - log p_s[idx_k])
 *   dL/dz_s = w * T * (p_s - q scattered to idx) / B
 * With K = C this is exactly kd_kd_* on the same (float16) teacher logits. */

kdc_status kd_kd_topk_forward(double *loss, const float *student, const uint16_t *topk_value,
                              const int32_t *topk_index, size_t B, size_t C, size_t K,
                              float temperature, float weight, kdc_error *err);
kdc_status kd_kd_topk_backward(float *dstudent, const float *student, const uint16_t *topk_value,
                               const int32_t *topk_index, size_t B, size_t C, size_t K,
                               float temperature, float weight, kd_grad_mode mode, kdc_error *err);

/* ---- projector loss (ALGORITHMS.md section 3) ----------------------------------------
 * f = projector output (B x D), t = cached teacher features (B x D).
 * BN = batch statistics per feature, biased variance, eps KD_PROJ_BN_EPS, no affine.
 * d = BN(f) - BN(t);  S = sum |d|^alpha;  L = w * log S.
 * The backward returns dL/df THROUGH the student-side batch norm; the teacher side gets
 * no gradient. Needs B >= 2 (with one sample BN outputs zeros and log S = -inf) and
 * alpha >= 1 (|d|^(alpha-1) must stay finite at d = 0).
 *
 * The forward keeps what the backward needs in a workspace made once at setup for the
 * largest batch; the backward must follow the forward on the same f. */

#define KD_PROJ_BN_EPS 1e-4f /* the official SRD/torchdistill value */

typedef struct kd_proj_ws {
    size_t max_B, D;
    float *d;       /* max_B x D: BN(f) - BN(t) of the last forward */
    double *f_mean; /* D: batch mean of f */
    double *f_rstd; /* D: 1 / sqrt(biased var(f) + eps) */
    double *acc;    /* 2 x D: teacher statistics, then backward sums */
    double sum;     /* S of the last forward */
    size_t B;       /* batch size of the last forward (0: none yet) */
    double alpha;   /* alpha of the last forward */
} kd_proj_ws;

kdc_status kd_proj_ws_init(kd_proj_ws *ws, size_t max_B, size_t D, kdc_error *err);
void kd_proj_ws_free(kd_proj_ws *ws);

kdc_status kd_proj_forward(double *loss, kd_proj_ws *ws, const float *f, const float *t, size_t B,
                           double alpha, float weight, kdc_error *err);
/* df = dL/df for the f and alpha of the last forward (weight may differ from it). */
kdc_status kd_proj_backward(float *df, kd_proj_ws *ws, const float *f, float weight,
                            kd_grad_mode mode, kdc_error *err);

#endif
