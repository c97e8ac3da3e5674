/* op_desc.c - validation of the layer descriptors and their derived output
 * sizes (floor mode, as PyTorch). */
#include "common/nn/op_desc.h"

kdc_status kdc_conv2d_desc_init(kdc_conv2d_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c_in <= 0 || d->h_in <= 0 || d->w_in <= 0 || d->c_out <= 0 ||
        d->kh <= 0 || d->kw <= 0 || d->stride <= 0 || d->pad < 0 || d->groups <= 0)
        return kdc_fail(err, KDC_EINVAL, "conv2d: non-positive size in descriptor");
    if (d->c_in % d->groups || d->c_out % d->groups)
        return kdc_fail(err, KDC_EINVAL, "conv2d: channels %d -> %d not divisible by groups %d",
                        d->c_in, d->c_out, d->groups);
    if (!kdc_blk_valid(d->x_blk, d->c_in) || !kdc_blk_valid(d->y_blk, d->c_out))
        return kdc_fail(err, KDC_EINVAL, "conv2d: layout blocks %d / %d for %d -> %d channels",
                        d->x_blk, d->y_blk, d->c_in, d->c_out);
    int hp = d->h_in + 2 * d->pad - d->kh, wp = d->w_in + 2 * d->pad - d->kw;
    if (hp < 0 || wp < 0)
        return kdc_fail(err, KDC_EINVAL, "conv2d: input %dx%d smaller than kernel %dx%d",
                        d->h_in, d->w_in, d->kh, d->kw);
    d->h_out = hp / d->stride + 1;
    d->w_out = wp / d->stride + 1;
    return KDC_OK;
}

int kdc_blk_valid(int blk, int c)
{
    return blk == 0 || ((blk == 8 || blk == 16) && c > 0 && c % blk == 0);
}

kdc_status kdc_pool2d_desc_init(kdc_pool2d_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->c <= 0 || d->h_in <= 0 || d->w_in <= 0 || d->k <= 0 ||
        d->stride <= 0 || d->pad < 0 || 2 * d->pad > d->k)
        return kdc_fail(err, KDC_EINVAL, "pool2d: bad descriptor");
    if (!kdc_blk_valid(d->blk, d->c))
        return kdc_fail(err, KDC_EINVAL, "pool2d: layout block %d for %d channels", d->blk, d->c);
    int hp = d->h_in + 2 * d->pad - d->k, wp = d->w_in + 2 * d->pad - d->k;
    if (hp < 0 || wp < 0)
        return kdc_fail(err, KDC_EINVAL, "pool2d: input %dx%d smaller than window %d",
                        d->h_in, d->w_in, d->k);
    d->h_out = hp / d->stride + 1;
    d->w_out = wp / d->stride + 1;
    return KDC_OK;
}

kdc_status kdc_chan_copy_desc_check(const kdc_chan_copy_desc *d, kdc_error *err)
{
    if (d->n <= 0 || d->hw <= 0 || d->c <= 0 || d->x_c <= 0 || d->y_c <= 0 || d->x_off < 0 ||
        d->y_off < 0)
        return kdc_fail(err, KDC_EINVAL, "channel copy: bad descriptor");
    if (d->x_off > d->x_c - d->c || d->y_off > d->y_c - d->c)
        return kdc_fail(err, KDC_EINVAL,
                        "channel copy: %d channels at %d of %d -> at %d of %d do not fit", d->c,
                        d->x_off, d->x_c, d->y_off, d->y_c);
    return KDC_OK;
}
