/* backend_cpu.h - the CPU kdc_backend (backend_cpu.c): the op table filled
 * with the layer functions of this folder. */
#ifndef KDC_BACKEND_CPU_H
#define KDC_BACKEND_CPU_H

#include "common/nn/backend.h"

/* The CPU backend; threads <= 0 means all online cores. */
kdc_status kdc_backend_cpu_create(int threads, kdc_backend **out, kdc_error *err);

#endif
