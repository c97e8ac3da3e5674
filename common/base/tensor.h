/* tensor.h - the tensor descriptor: shape, element type and the device that
 * holds the bytes.
 *
 * A kdc_tensor does not own a backend; memory on a device is allocated and
 * freed through that device's kdc_backend (backend.h). CPU tensors can also be
 * made here directly, for loaders and tests. */
#ifndef KDC_TENSOR_H
#define KDC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef enum kdc_dtype {
    KDC_F32 = 0,
    KDC_F16 = 1,
    KDC_I64 = 2 /* only for bookkeeping buffers such as num_batches_tracked */
} kdc_dtype;

typedef enum kdc_device_type { KDC_DEVICE_CPU = 0, KDC_DEVICE_CUDA = 1 } kdc_device_type;

typedef struct kdc_device {
    kdc_device_type type;
    int index; /* GPU ordinal; 0 for the CPU */
} kdc_device;

/* NCHW needs 4; a conv weight is OIHW. */
#define KDC_MAX_DIMS 4

typedef struct kdc_tensor {
    void *data;
    kdc_dtype dtype;
    kdc_device device;
    int ndim;
    int64_t shape[KDC_MAX_DIMS];
} kdc_tensor;

size_t kdc_dtype_size(kdc_dtype dt);
const char *kdc_dtype_name(kdc_dtype dt);
size_t kdc_tensor_numel(const kdc_tensor *t);
size_t kdc_tensor_nbytes(const kdc_tensor *t);
int kdc_tensor_same_shape(const kdc_tensor *a, const kdc_tensor *b);

/* Writes "[64, 3, 7, 7]" into buf. */
void kdc_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* CPU tensor, zero-filled, 64-byte aligned. */
kdc_status kdc_tensor_alloc_cpu(kdc_tensor *t, kdc_dtype dt, int ndim, const int64_t *shape,
                                kdc_error *err);
void kdc_tensor_free_cpu(kdc_tensor *t);

#endif
