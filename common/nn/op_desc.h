/* op_desc.h - the shape descriptors of the layer ops (convolution, batch
 * norm, pooling): what a layer function and every backend's op agree on.
 * Layers include this, not backend.h, so that the CPU kernels sit below the
 * op table that dispatches to them. */
#ifndef KDC_OP_DESC_H
#define KDC_OP_DESC_H

#include "common/base/error.h"

/* Activation layouts. Every desc below says in `*blk` fields which one its
 * activations (and their gradients) use: 0 is NCHW; a block size B (8 or 16)
 * is oneDNN's blocked nChw{B}c (format tag aBcd{B}b), the layout its
 * convolutions compute in on AVX2 (B = 8) and AVX-512 (B = 16):
 *   element (n, c, p) of an N x C x HW tensor is at ((n * C/B + c/B) * HW + p) * B + c % B,
 * with C a multiple of B. Keeping activations blocked between convolutions
 * saves the reorders into and out of it around every convolution. With
 * HW = 1 both layouts are the same bytes. Only backends whose act_blk
 * (backend.h) is non-zero accept a non-zero block. */

/* Convolution with square kernels and symmetric stride / zero padding,
 * dilation 1, as every torchvision / mdistiller model here uses. */
typedef struct kdc_conv2d_desc {
    int n, c_in, h_in, w_in;
    int c_out, kh, kw;
    int stride, pad, groups;
    int h_out, w_out; /* derived by kdc_conv2d_desc_init */
    int x_blk, y_blk; /* layouts of x / dx and of y / dy (0: NCHW) */
    int relu;         /* forward only: y = max(conv + bias, 0), the ReLU fused (inference) */
} kdc_conv2d_desc;

/* Fills h_out / w_out and validates (channels divisible by groups, positive
 * output size). */
kdc_status kdc_conv2d_desc_init(kdc_conv2d_desc *d, kdc_error *err);

/* Batch norm over N x C x HW (HW = 1 for a B x D feature matrix).
 * momentum follows PyTorch: running = (1 - momentum) * running + momentum * batch,
 * with the unbiased batch variance for running_var and the biased one for
 * normalising. */
typedef struct kdc_bn_desc {
    int n, c, hw;
    float eps;
    float momentum;
    int blk; /* layout of x, y, dy, dx (0: NCHW) */
} kdc_bn_desc;

typedef struct kdc_pool2d_desc {
    int n, c, h_in, w_in;
    int k, stride, pad;
    int h_out, w_out; /* derived by kdc_pool2d_desc_init (floor mode, as PyTorch) */
    int blk; /* layout of x, y, dy, dx (0: NCHW; max pooling only) */
} kdc_pool2d_desc;

/* Is blk a layout for c channels (0, or 8 / 16 dividing c)? */
int kdc_blk_valid(int blk, int c);

kdc_status kdc_pool2d_desc_init(kdc_pool2d_desc *d, kdc_error *err);

/* Channel copy between two NCHW tensors of the same n and hw: channels
 * [x_off, x_off + c) of x (x_c channels) go to channels [y_off, y_off + c) of
 * y (y_c channels). Concatenation is two copies into one y, a split (a slice
 * of channels) one copy out of x. */
typedef struct kdc_chan_copy_desc {
    int n, hw, c;
    int x_c, x_off;
    int y_c, y_off;
} kdc_chan_copy_desc;

/* Validates: positive sizes, both channel ranges inside their tensors. */
kdc_status kdc_chan_copy_desc_check(const kdc_chan_copy_desc *d, kdc_error *err);

#endif
