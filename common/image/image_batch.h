/* image_batch.h - a batch of rendered views as an NCHW float32 tensor, with what
 * happened to each sample (its view, image size, status and error message).
 *
 * Normalisation is torchvision's ToTensor + Normalize done in float32 in the same
 * order ((v / 255 - mean) / std), so the floats are bit-identical to torchvision's
 * for the same bytes. A failed sample keeps its slot (zeros) and its message, so
 * the caller decides to skip it or stop (--strict).
 *
 * Not the loader (loader.h) that fills batches. */
#ifndef KDC_IMAGE_BATCH_H
#define KDC_IMAGE_BATCH_H

#include <stdint.h>

#include "common/base/error.h"
#include "common/base/tensor.h"
#include "common/image/views.h"

typedef struct img_norm {
    float mean[3];
    float std[3];
} img_norm;

/* ImageNet: mean 0.485 0.456 0.406, std 0.229 0.224 0.225. */
void img_norm_default(img_norm *n);
kdc_status img_norm_check(const img_norm *n, kdc_error *err);
/* S x S x 3 packed RGB -> 3 x S x S floats. */
void img_normalize_chw(const uint8_t *hwc, int S, const img_norm *n, float *chw);

typedef struct img_sample {
    int64_t index;       /* image index in the dataset */
    uint32_t view_index; /* view number for this image */
    img_view view;       /* the view rendered (drawn or replayed) */
    int32_t height, width; /* original image size; 0 if the header failed */
    int32_t label;
    uint64_t file_size;
    uint32_t crc32;      /* of the bytes decoded */
    kdc_status status;   /* KDC_OK or why this sample has no pixels */
    char msg[KDC_ERROR_MSG_MAX];
} img_sample;

typedef struct img_batch {
    size_t seq;         /* batch number within the plan */
    int count;          /* samples in this batch (the last one may be short) */
    int capacity;
    int image_size;
    int failed;         /* samples with status != KDC_OK */
    kdc_tensor pixels;  /* [capacity, 3, S, S] float32 on the CPU; rows >= count unused */
    img_sample *samples;
} img_batch;

kdc_status img_batch_alloc(img_batch *b, int capacity, int image_size, kdc_error *err);
void img_batch_free(img_batch *b);
/* Pixels of sample i. */
float *img_batch_sample_pixels(img_batch *b, int i);

#endif
