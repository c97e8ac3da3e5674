/* model.h - a network as a graph of layer nodes, and its executor.
 *
 * A kdc_model holds the nodes of one architecture (conv, batch norm, ReLU,
 * max pool, global average pool, linear, residual add), its parameters under
 * the exact state_dict names of the PyTorch definition it mirrors, and the
 * activation memory of the last input shape. Every op runs through the
 * kdc_backend table (backend.h), so the same model runs on the CPU and on a GPU.
 *
 * What it is not: no loss, no optimiser, no file I/O. Losses produce the
 * upstream gradients given to kdc_model_backward; optimisers read the
 * parameter table and a gradient set; formats/checkpoint.c loads and saves
 * the parameter table.
 *
 * Architectures (kdc_model_create's arch, see docs/MODELS.md): resnet18,
 * resnet34, resnet50, resnet101, resnet152, wide_resnet50_2 (torchvision),
 * mobilenet_v1 (mdistiller's ImageNet MobileNetV1), resnet8x4, resnet32x4
 * (mdistiller CIFAR ResNet), wrn_16_2, wrn_40_2 (mdistiller WideResNet).
 * Every one ends in a global average pool, so any input size works; at the
 * native resolution this equals the originals' fixed-size average pools. */
#ifndef KDC_MODEL_H
#define KDC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/backend.h"
#include "common/base/error.h"
#include "common/base/params.h"

typedef struct kdc_model kdc_model;

/* Gradients of the trainable parameters, laid out like the parameter table:
 * grad[i] belongs to params.items[i] (same shape, on the model's device);
 * grad[i].data is NULL for buffers (running stats, num_batches_tracked).
 * All gradients live in one contiguous float array `flat` of `flat_numel`
 * elements, in table order, so an optimiser may treat them as one vector
 * (the trainable parameters are contiguous in the same order, see
 * kdc_model_flat_weights). Owned by the caller: kdc_model_grads_alloc/free. */
typedef struct kdc_grad_set {
    int count;
    kdc_tensor *grad;
    float *flat;
    size_t flat_numel;
} kdc_grad_set;

/* The architectures kdc_model_create accepts, NULL-terminated. */
const char *const *kdc_model_arch_names(void);

/* Builds `arch` with `num_classes` outputs on backend `be` (which must outlive
 * the model) and initialises it the way its PyTorch definition does, from a
 * generator seeded with `seed`: conv kaiming_normal(fan_out, relu), BN weight 1
 * and bias 0, running mean 0 / var 1, Linear weight and bias uniform in
 * +-1/sqrt(fan_in) (PyTorch's default; mdistiller's WRN zeroes the fc bias).
 * The same seed gives the same weights on every backend. */
kdc_status kdc_model_create(const char *arch, int num_classes, kdc_backend *be, uint64_t seed,
                            kdc_model **out, kdc_error *err);
void kdc_model_free(kdc_model *m);

const char *kdc_model_arch(const kdc_model *m);
int kdc_model_num_classes(const kdc_model *m);
/* D, the width of the pooled penultimate features (the fc input). */
int kdc_model_feature_dim(const kdc_model *m);
/* Number of trainable scalars (PyTorch's sum(p.numel() for p in parameters())). */
size_t kdc_model_param_count(const kdc_model *m);
kdc_backend *kdc_model_backend(const kdc_model *m);
/* How many node outputs stay in the backend's blocked activation layout
 * (op_desc.h; 0 on a backend without one): the rest are NCHW. Every result is
 * the same floats in either layout. */
int kdc_model_blocked_nodes(const kdc_model *m);

/* Parameters and buffers under their state_dict names, in state_dict order.
 * The tensors live on the model's device; callers may overwrite their
 * contents (checkpoint loading, optimiser steps) but not their shapes. */
kdc_param_table *kdc_model_params(kdc_model *m);
/* The trainable parameters as one contiguous float vector on the device,
 * in table order (the layout of kdc_grad_set.flat). */
float *kdc_model_flat_weights(kdc_model *m, size_t *numel);

/* Forward pass. x: device pointer, n x 3 x h x w float32 NCHW. train != 0 uses
 * batch statistics, updates the BN running statistics (momentum 0.1, unbiased
 * variance) and num_batches_tracked, and keeps what backward needs; train == 0
 * uses the running statistics. On success *logits (n x num_classes) and
 * *features (n x D, may be NULL) point to device memory owned by the model,
 * valid until the next forward or inference call. Activation memory is
 * allocated on first use and reused while the input shape fits in it. */
kdc_status kdc_model_forward(kdc_model *m, const float *x, int n, int h, int w, int train,
                             const float **logits, const float **features, kdc_error *err);

/* Synchronised batch statistics, as PyTorch's SyncBatchNorm: with `sum` set,
 * every train-mode batch norm sums its per-channel [sum x, sum x^2, count]
 * through sum(ctx, buf, n) before normalising (so the mean, the biased
 * variance that normalises and the unbiased one that updates the running
 * statistics are those of every process's batch together), and backward
 * sums its per-channel [sum dy, sum dy * xhat] before the input gradient;
 * the gamma/beta gradients stay this process's. `sum` must replace buf
 * (host doubles) by its sum over the processes, every process calling it in
 * the same order; the model knows nothing of who they are. NULL (the
 * default): each process's own statistics. KDC_EUNSUPPORTED on a backend
 * without the phased batch-norm ops (backend.h). */
typedef kdc_status (*kdc_model_sum_fn)(void *ctx, double *buf, size_t n, kdc_error *err);
kdc_status kdc_model_set_bn_sum(kdc_model *m, kdc_model_sum_fn sum, void *ctx, kdc_error *err);

kdc_status kdc_model_grads_alloc(kdc_model *m, kdc_grad_set **out, kdc_error *err);
void kdc_model_grads_free(kdc_model *m, kdc_grad_set *g);

/* Backward pass through the activations of the last forward, which must have
 * been a train-mode forward. dlogits (n x num_classes) is the gradient of the
 * loss at the logits; dfeatures (n x D, nullable) is added to the gradient
 * arriving at the pooled features (a loss on the features, e.g. a projector).
 * The input x of that forward must still hold its values (the first
 * convolution's weight gradient reads it). Overwrites every entry of g with
 * the gradient of that loss; dinput
 * (n x 3 x h x w, nullable) receives the gradient at the input. The forward
 * activations are left intact, so backward may run several times after one
 * forward with different upstream gradients (DOT's task and distillation
 * gradients) into different gradient sets. */
kdc_status kdc_model_backward(kdc_model *m, const float *dlogits, const float *dfeatures,
                              kdc_grad_set *g, float *dinput, kdc_error *err);

/* DOT's two gradients in one backward pass: dlogits2 (2 x n x num_classes) is
 * stream 0's gradient at the logits, then stream 1's; dfeatures0/1 (nullable)
 * are added at the pooled features of their stream; g0 and g1 (distinct) are
 * overwritten with each stream's parameter gradients. Every layer's data
 * gradient carries both streams as one batch of 2n (the backend's *_dual ops);
 * results equal two kdc_model_backward calls to float rounding. Backends
 * without the dual ops get those two calls. No input gradient. */
kdc_status kdc_model_backward_dual(kdc_model *m, const float *dlogits2, const float *dfeatures0,
                                   const float *dfeatures1, kdc_grad_set *g0, kdc_grad_set *g1,
                                   kdc_error *err);

/* Teacher inference: eval-mode forward with every batch norm that directly
 * follows a convolution folded into that convolution's weights and a bias
 * (w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps)),
 * and activation buffers shared between layers whose lifetimes do not
 * overlap. kdc_model_infer folds on its first call and on the first call
 * after a train-mode forward; call kdc_model_refold after changing the
 * parameters any other way (e.g. loading weights) between inference calls. Outputs as kdc_model_forward (eval). */
kdc_status kdc_model_infer(kdc_model *m, const float *x, int n, int h, int w,
                           const float **logits, const float **features, kdc_error *err);
kdc_status kdc_model_refold(kdc_model *m, kdc_error *err);

#endif
