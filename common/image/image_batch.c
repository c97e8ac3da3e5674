/* image_batch.c - batch buffers and torchvision-exact normalisation. */
#include "common/image/image_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void img_norm_default(img_norm *n)
{
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(n->mean, mean, sizeof mean);
    memcpy(n->std, std, sizeof std);
}

kdc_status img_norm_check(const img_norm *n, kdc_error *err)
{
    for (int c = 0; c < 3; c++)
        if (!isfinite(n->mean[c]) || !isfinite(n->std[c]) || !(n->std[c] > 0))
            return kdc_fail(err, KDC_EINVAL, "normalisation channel %d: mean %g std %g (std must be > 0)",
                            c, n->mean[c], n->std[c]);
    return KDC_OK;
}

void img_normalize_chw(const uint8_t *hwc, int S, const img_norm *n, float *chw)
{
    const size_t plane = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        /* A table of the 256 possible values: the same float ops as torchvision,
         * ((float)v / 255 - mean) / std, computed once per channel. */
        float lut[256];
        for (int v = 0; v < 256; v++)
            lut[v] = ((float)v / 255.0f - n->mean[c]) / n->std[c];
        float *out = chw + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++)
            out[i] = lut[hwc[3 * i + (size_t)c]];
    }
}

kdc_status img_batch_alloc(img_batch *b, int capacity, int image_size, kdc_error *err)
{
    memset(b, 0, sizeof *b);
    if (capacity < 1 || image_size < 1 || image_size > IMG_MAX_VIEW_SIZE)
        return kdc_fail(err, KDC_EINVAL, "batch of %d images of %d pixels", capacity, image_size);
    int64_t shape[4] = {capacity, 3, image_size, image_size};
    kdc_status st = kdc_tensor_alloc_cpu(&b->pixels, KDC_F32, 4, shape, err);
    if (st)
        return st;
    b->samples = calloc((size_t)capacity, sizeof *b->samples);
    if (!b->samples) {
        kdc_tensor_free_cpu(&b->pixels);
        return kdc_fail(err, KDC_ENOMEM, "batch of %d images: out of memory", capacity);
    }
    b->capacity = capacity;
    b->image_size = image_size;
    return KDC_OK;
}

void img_batch_free(img_batch *b)
{
    if (b->samples)
        kdc_tensor_free_cpu(&b->pixels);
    free(b->samples);
    memset(b, 0, sizeof *b);
}

float *img_batch_sample_pixels(img_batch *b, int i)
{
    return (float *)b->pixels.data + (size_t)i * 3 * (size_t)b->image_size * (size_t)b->image_size;
}
