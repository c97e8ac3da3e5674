/* device.h - from a --device string to a backend: the one place that knows
 * every backend (the CPU one of nn/, the CUDA one of cuda/), so that neither
 * the op table nor the layers below it call up to an implementation. */
#ifndef KDC_DEVICE_H
#define KDC_DEVICE_H

#include "common/nn/backend.h"

/* Parses "cpu", "cuda", "cuda:1" and creates the backend; threads is the CPU
 * backend's thread count (<= 0: all online cores). */
kdc_status kdc_backend_create(const char *device, int threads, kdc_backend **out,
                              kdc_error *err);

#endif
