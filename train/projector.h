/* projector.h - the trained projector of the projector loss (ALGORITHMS.md
 * section 3): a Linear layer from the student's pooled features (Ds) to the
 * cached teacher features (Dt), with bias, on the model's backend.
 *
 * Its two tensors are named projector.weight [Dt, Ds] and projector.bias [Dt]
 * (the names kd-train --init reads and projector.safetensors holds). Weight
 * and bias live in one contiguous float vector (weight first), and so do their
 * gradients, so an optimiser treats the projector as one parameter vector.
 * Initialised as torch.nn.Linear: U(-1/sqrt(Ds), 1/sqrt(Ds)) for both, drawn
 * from Philox(seed ^ tag, 0, 0).
 *
 * Not the loss (train/losses.h: BN on both sides, log sum |d|^alpha). */
#ifndef KD_PROJECTOR_H
#define KD_PROJECTOR_H

#include <stdint.h>

#include "common/nn/backend.h"
#include "common/base/params.h"

typedef struct kd_projector {
    kdc_backend *be;
    int ds, dt, max_b;
    float *flat;      /* device: weight (dt x ds) then bias (dt) */
    float *grad;      /* device: their gradients, same layout */
    size_t numel;
    float *out;       /* device: max_b x dt, the last forward's output */
    float *dinput;    /* device: max_b x ds, gradient at the student features */
    kdc_param items[2];
    kdc_param_table table; /* projector.weight, projector.bias */
} kd_projector;

kdc_status kd_projector_init(kd_projector *p, kdc_backend *be, int ds, int dt, int max_b,
                             uint64_t seed, kdc_error *err);
void kd_projector_free(kd_projector *p);

/* out = z . W^T + b for z (n x ds, device). */
kdc_status kd_projector_forward(kd_projector *p, const float *z, int n, kdc_error *err);
/* From dout (n x dt, device): p->grad (overwritten) and p->dinput. */
kdc_status kd_projector_backward(kd_projector *p, const float *z, const float *dout, int n,
                                 kdc_error *err);

#endif
