/* image_resize.h - PIL's antialiased bilinear resampling of 8-bit RGB images.
 *
 * A re-implementation of Pillow's ImagingResample (src/libImaging/Resample.c,
 * BILINEAR filter, 8 bits per channel), which is what torchvision's Resize and
 * RandomResizedCrop run on PIL images: separable, horizontal pass first, a
 * triangle filter widened by the downscale factor (antialiasing), coefficients
 * normalised to sum 1 and then rounded to 22-bit fixed point, results rounded to
 * 8 bits after each pass. With the same geometry it gives PIL's bytes exactly.
 *
 * The geometry of each axis is PIL's `box=` semantics, extended with an output
 * offset so that a crop of a resized image can be computed without computing the
 * whole resized image (output pixel o of the crop is pixel out_offset + o of the
 * full output; its centre in the source is in0 + (out_offset + o + 0.5) * scale).
 *
 * Speed: on x86-64 CPUs with AVX2 (detected at run time) both passes run in
 * image_resize_avx2.c with the same integer sums in 32-bit lanes, so the bytes are
 * the same as the portable C passes here; see image_resize_kernels.h.
 *
 * Not a general image library: RGB only, bilinear only. */
#ifndef KDC_IMAGE_RESIZE_H
#define KDC_IMAGE_RESIZE_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef struct img_axis {
    int in_size;    /* source pixels along this axis (the filter never reads outside) */
    double in0;     /* PIL box start, in source pixels */
    double scale;   /* source pixels per output pixel: (box end - box start) / full output size */
    int out_offset; /* first output pixel computed, in the full output */
    int out_size;   /* output pixels computed */
} img_axis;

/* The axis of a plain resize of n source pixels to m output pixels (PIL
 * img.resize with no box): in0 = 0, scale = n / m. */
img_axis img_axis_resize(int n, int m);

/* Which kernels run the passes. AUTO picks AVX2 when the CPU (and OS) support it;
 * PORTABLE forces the plain C passes (tests compare the two). */
typedef enum img_resample_isa {
    IMG_RESAMPLE_AUTO = 0,
    IMG_RESAMPLE_PORTABLE = 1,
    IMG_RESAMPLE_AVX2 = 2
} img_resample_isa;

/* Buffers reused across calls (grown, never shrunk): allocate once per thread.
 * Zero-initialise it ({0}); `isa` may be set before the first call. */
typedef struct img_resample_scratch {
    int32_t *kx, *ky;  /* fixed-point coefficients, ksize per output pixel */
    int *bx, *by;      /* per output pixel: first source pixel, count */
    double *kd;        /* double coefficients before rounding */
    uint8_t *tmp;      /* horizontal pass output */
    int32_t *acc;      /* vertical pass: one output row of sums */
    int16_t *kxv;      /* AVX2 horizontal coefficients, split in 15-bit halves */
    int32_t *kyv;      /* AVX2 vertical coefficients, pairs of 15-bit halves */
    size_t kx_cap, ky_cap, bx_cap, by_cap, kd_cap, tmp_cap, acc_cap, kxv_cap, kyv_cap;
    img_resample_isa isa; /* AUTO is resolved (and stored) on the first call */
} img_resample_scratch;

void img_resample_scratch_free(img_resample_scratch *s);

/* Resamples src (in_size of ax by in_size of ay pixels, RGB, src_stride bytes per
 * row) to dst (ax->out_size by ay->out_size, RGB, dst_stride bytes per row). */
kdc_status img_resample_rgb8(const uint8_t *src, size_t src_stride, const img_axis *ax,
                             const img_axis *ay, uint8_t *dst, size_t dst_stride,
                             img_resample_scratch *s, kdc_error *err);

#endif
