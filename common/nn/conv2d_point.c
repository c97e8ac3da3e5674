/* conv2d_point.c - 1x1-map convolutions as GEMMs on the centre taps (conv2d_point.h).
 * Row-major views: x is [n, c_in], y and dy are [n, c_out] (NCHW with HW = 1),
 * the centre taps wc[o, i] = w[o, i, pad, pad] are gathered into the workspace. */
#include <string.h>

#include "common/nn/conv2d_point.h"
#include "common/nn/gemm.h"

int kdc_conv2d_point_applies(const kdc_conv2d_desc *d)
{
    /* the input pixel sits at tap (pad, pad) of the only output's window */
    return d->groups == 1 && d->h_in == 1 && d->w_in == 1 && d->h_out == 1 && d->w_out == 1 &&
           d->stride > 0 && d->pad >= 0 && d->pad < d->kh && d->pad < d->kw &&
           (1 + 2 * d->pad - d->kh) / d->stride + 1 == 1 && 1 + 2 * d->pad >= d->kh &&
           (1 + 2 * d->pad - d->kw) / d->stride + 1 == 1 && 1 + 2 * d->pad >= d->kw &&
           d->n > 0 && d->c_in > 0 && d->c_out > 0;
}

size_t kdc_conv2d_point_workspace_floats(const kdc_conv2d_desc *d)
{
    return (size_t)d->c_out * d->c_in;
}

static kdc_status check(const kdc_conv2d_desc *d, size_t work_floats, kdc_error *err)
{
    if (!kdc_conv2d_point_applies(d))
        return kdc_fail(err, KDC_EINVAL, "conv2d (1x1 map): descriptor is not a 1x1-map "
                                         "groups-1 convolution");
    if (work_floats < kdc_conv2d_point_workspace_floats(d))
        return kdc_fail(err, KDC_EINVAL, "conv2d (1x1 map): workspace of %zu floats, need %zu",
                        work_floats, kdc_conv2d_point_workspace_floats(d));
    return KDC_OK;
}

/* Offset of the centre tap (pad, pad) inside one kh x kw kernel. */
static size_t centre(const kdc_conv2d_desc *d)
{
    return (size_t)d->pad * d->kw + d->pad;
}

kdc_status kdc_conv2d_point_forward(const kdc_conv2d_desc *d, const float *x, const float *w,
                                    const float *bias, float *y, float *work,
                                    size_t work_floats, kdc_error *err)
{
    kdc_status st = check(d, work_floats, err);
    if (st)
        return st;
    size_t khw = (size_t)d->kh * d->kw, c0 = centre(d), ci = (size_t)d->c_in;
    for (size_t k = 0; k < (size_t)d->c_out * ci; k++)
        work[k] = w[k * khw + c0];
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < d->n; n++)
            memcpy(y + (size_t)n * d->c_out, bias, (size_t)d->c_out * sizeof(float));
        beta = 1.0f;
    }
    /* y[n, o] = x[n, :] . wc[o, :] */
    kdc_sgemm(0, 1, d->n, d->c_out, d->c_in, 1.0f, x, d->c_in, work, d->c_in, beta, y,
              d->c_out);
    return KDC_OK;
}

kdc_status kdc_conv2d_point_backward(const kdc_conv2d_desc *d, const float *x, const float *w,
                                     const float *dy, float *dx, float *dw, float *dbias,
                                     float *work, size_t work_floats, kdc_error *err)
{
    kdc_status st = check(d, work_floats, err);
    if (st)
        return st;
    if (!dw)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    size_t khw = (size_t)d->kh * d->kw, c0 = centre(d), nwc = (size_t)d->c_out * d->c_in;
    if (dx) { /* dx[n, i] = dy[n, :] . wc[:, i] */
        for (size_t k = 0; k < nwc; k++)
            work[k] = w[k * khw + c0];
        kdc_sgemm(0, 0, d->n, d->c_in, d->c_out, 1.0f, dy, d->c_out, work, d->c_in, 0.0f, dx,
                  d->c_in);
    }
    /* dwc[o, i] = sum_n dy[n, o] x[n, i]; every other tap saw only zero padding */
    kdc_sgemm(1, 0, d->c_out, d->c_in, d->n, 1.0f, dy, d->c_out, x, d->c_in, 0.0f, work,
              d->c_in);
    memset(dw, 0, nwc * khw * sizeof(float));
    for (size_t k = 0; k < nwc; k++)
        dw[k * khw + c0] = work[k];
    if (dbias) {
        for (int o = 0; o < d->c_out; o++) {
            double s = 0; /* fixed order: deterministic */
            for (int n = 0; n < d->n; n++)
                s += dy[(size_t)n * d->c_out + o];
            dbias[o] = (float)s;
        }
    }
    return KDC_OK;
}

kdc_status kdc_conv2d_point_backward_dual(const kdc_conv2d_desc *d, const float *x,
                                          const float *w, const float *dy2, float *dx2,
                                          float *dw0, float *dw1, float *work,
                                          size_t work_floats, kdc_error *err)
{
    kdc_status st = check(d, work_floats, err);
    if (st)
        return st;
    if (!dw0 || !dw1)
        return kdc_fail(err, KDC_EINVAL, "conv2d backward: dw is required");
    size_t khw = (size_t)d->kh * d->kw, c0 = centre(d), nwc = (size_t)d->c_out * d->c_in;
    if (dx2) { /* both streams as one batch of 2n rows: one GEMM */
        for (size_t k = 0; k < nwc; k++)
            work[k] = w[k * khw + c0];
        kdc_sgemm(0, 0, 2 * d->n, d->c_in, d->c_out, 1.0f, dy2, d->c_out, work, d->c_in, 0.0f,
                  dx2, d->c_in);
    }
    float *dw[2] = {dw0, dw1};
    for (int s = 0; s < 2; s++) {
        const float *dy = dy2 + (size_t)s * d->n * d->c_out;
        kdc_sgemm(1, 0, d->c_out, d->c_in, d->n, 1.0f, dy, d->c_out, x, d->c_in, 0.0f, work,
                  d->c_in);
        memset(dw[s], 0, nwc * khw * sizeof(float));
        for (size_t k = 0; k < nwc; k++)
            dw[s][k * khw + c0] = work[k];
    }
    return KDC_OK;
}
