/* image_resize.c - Pillow's ImagingResample (bilinear, 8 bpc) for RGB rows.
 *
 * Follows Pillow's precompute_coeffs / normalize_coeffs_8bpc /
 * ImagingResample{Horizontal,Vertical}_8bpc step by step, including its rounding
 * (PRECISION_BITS = 22, truncating (int) casts), so that our bytes equal PIL's.
 * The passes here are the portable reference; image_resize_avx2.c has the same
 * passes in AVX2, chosen at run time. */
#include "common/image/image_resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/cpu_features.h"
#include "common/image/image_resize_kernels.h"

#define PRECISION_BITS IMG_PRECISION_BITS

img_axis img_axis_resize(int n, int m)
{
    img_axis a = {n, 0.0, m > 0 ? (double)n / (double)m : 1.0, 0, m};
    return a;
}

void img_resample_scratch_free(img_resample_scratch *s)
{
    free(s->kx);
    free(s->ky);
    free(s->bx);
    free(s->by);
    free(s->kd);
    free(s->tmp);
    free(s->acc);
    free(s->kxv);
    free(s->kyv);
    memset(s, 0, sizeof *s);
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    size_t bytes;
    if (!kdc_size_mul(n, elem, &bytes))
        return 0;
    if (bytes <= *cap)
        return 1;
    void *q = realloc(*p, bytes);
    if (!q)
        return 0;
    *p = q;
    *cap = bytes;
    return 1;
}

static double bilinear_filter(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. Returns ksize
 * (0 on allocation failure). bounds[2o] = first source pixel, bounds[2o+1] = count. */
static int axis_coeffs(const img_axis *a, int32_t **kk, size_t *kk_cap, int **bounds,
                       size_t *b_cap, img_resample_scratch *s)
{
    double scale = a->scale, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* bilinear support is 1 */
    int ksize = (int)ceil(support) * 2 + 1;
    size_t n;
    if (!kdc_size_mul((size_t)a->out_size, (size_t)ksize, &n) || !grow((void **)&s->kd, &s->kd_cap, n, sizeof(double)) ||
        !grow((void **)kk, kk_cap, n, sizeof(int32_t)) ||
        !grow((void **)bounds, b_cap, 2 * (size_t)a->out_size, sizeof(int)))
        return 0;
    double ss = 1.0 / filterscale;
    for (int o = 0; o < a->out_size; o++) {
        double center = a->in0 + ((double)(a->out_offset + o) + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > a->in_size)
            xmax = a->in_size;
        xmax -= xmin;
        double *k = s->kd + (size_t)o * (size_t)ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0.0;
        (*bounds)[2 * o] = xmin;
        (*bounds)[2 * o + 1] = xmax < 0 ? 0 : xmax;
    }
    for (size_t i = 0; i < n; i++) {
        double v = s->kd[i] * (1 << PRECISION_BITS);
        (*kk)[i] = (int32_t)(s->kd[i] < 0 ? -0.5 + v : 0.5 + v);
    }
    return ksize;
}

#define clip8 img_clip8

/* The kernels this scratch uses: AUTO becomes AVX2 or PORTABLE once (cpuid is
 * slow under some hypervisors, so not once per image). */
static img_resample_isa resolve_isa(img_resample_scratch *s)
{
    if (s->isa == IMG_RESAMPLE_AUTO) {
#if IMG_HAVE_AVX2_KERNELS
        kdc_cpu_features f = kdc_cpu_detect();
        s->isa = f.avx2 ? IMG_RESAMPLE_AVX2 : IMG_RESAMPLE_PORTABLE;
#else
        s->isa = IMG_RESAMPLE_PORTABLE;
#endif
    }
#if !IMG_HAVE_AVX2_KERNELS
    s->isa = IMG_RESAMPLE_PORTABLE;
#endif
    return s->isa;
}

/* An axis that is a pure integer shift (scale 1, integral start): PIL's weights are
 * then exactly one 1 and zeros, so copying gives the same bytes, faster. */
static int axis_is_shift(const img_axis *a, int *first)
{
    if (a->scale != 1.0 || a->in0 != floor(a->in0))
        return 0;
    double f = a->in0 + a->out_offset;
    if (f < 0 || f + a->out_size > a->in_size)
        return 0;
    *first = (int)f;
    return 1;
}

kdc_status img_resample_rgb8(const uint8_t *src, size_t src_stride, const img_axis *ax,
                             const img_axis *ay, uint8_t *dst, size_t dst_stride,
                             img_resample_scratch *s, kdc_error *err)
{
    if (ax->in_size <= 0 || ay->in_size <= 0 || ax->out_size <= 0 || ay->out_size <= 0 ||
        !(ax->scale > 0) || !(ay->scale > 0))
        return kdc_fail(err, KDC_EINVAL, "resample: empty source or output (%dx%d -> %dx%d)",
                        ax->in_size, ay->in_size, ax->out_size, ay->out_size);
    const int ow = ax->out_size, oh = ay->out_size;
    const img_resample_isa isa = resolve_isa(s);
    (void)isa; /* unused when no SIMD kernels are compiled in */
    int x_first = 0, y_first = 0;
    int x_shift = axis_is_shift(ax, &x_first), y_shift = axis_is_shift(ay, &y_first);

    int ksx = 0, ksy = 0;
    if (!x_shift && !(ksx = axis_coeffs(ax, &s->kx, &s->kx_cap, &s->bx, &s->bx_cap, s)))
        return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for %d coefficients", ow);
    if (!y_shift && !(ksy = axis_coeffs(ay, &s->ky, &s->ky_cap, &s->by, &s->by_cap, s)))
        return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for %d coefficients", oh);

    /* Source rows the vertical pass reads (Pillow's ybox_first / ybox_last). */
    int y0, y1;
    if (y_shift) {
        y0 = y_first;
        y1 = y_first + oh;
    } else {
        y0 = s->by[0];
        y1 = s->by[2 * (oh - 1)] + s->by[2 * (oh - 1) + 1];
    }

    /* Horizontal pass: rows y0..y1 to tmp, or straight to dst when y is a shift. */
    const uint8_t *hsrc; /* row r of the horizontal result is at hsrc + (r - y0) * hstride */
    size_t hstride;
    if (x_shift) {
        hsrc = src + (size_t)y0 * src_stride + (size_t)x_first * 3;
        hstride = src_stride;
    } else {
        uint8_t *hdst = dst;
        size_t rows = (size_t)(y1 - y0), hdst_stride = dst_stride;
        if (!y_shift) {
            size_t tmp_n;
            if (!kdc_size_mul(rows, (size_t)ow * 3, &tmp_n) ||
                !grow((void **)&s->tmp, &s->tmp_cap, tmp_n, 1))
                return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for a %dx%zu buffer", ow,
                                rows);
            hdst = s->tmp;
            hdst_stride = (size_t)ow * 3;
        }
        const uint8_t *in0 = src + (size_t)y0 * src_stride;
        int done = 0;
#if IMG_HAVE_AVX2_KERNELS
        if (isa == IMG_RESAMPLE_AVX2) {
            int groups = img_hcoeffs_avx2_groups(s->bx, ow);
            size_t kn;
            if (!kdc_size_mul(img_hcoeffs_avx2_len(groups), (size_t)ow, &kn) ||
                !grow((void **)&s->kxv, &s->kxv_cap, kn, sizeof(int16_t)))
                return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for %d coefficients", ow);
            img_hcoeffs_avx2(s->bx, s->kx, ksx, ow, groups, s->kxv);
            img_hpass_avx2(in0, src_stride, (int)rows, ax->in_size, s->bx, s->kx, ksx, s->kxv,
                           groups, ow, hdst, hdst_stride);
            done = 1;
        }
#endif
        if (!done)
            for (size_t y = 0; y < rows; y++) {
                const uint8_t *in = in0 + y * src_stride;
                uint8_t *out = hdst + y * hdst_stride;
                for (int xx = 0; xx < ow; xx++)
                    img_hpixel_c(in + (size_t)s->bx[2 * xx] * 3, s->kx + (size_t)xx * (size_t)ksx,
                                 s->bx[2 * xx + 1], out + 3 * (size_t)xx);
            }
        if (y_shift)
            return KDC_OK;
        hsrc = s->tmp;
        hstride = (size_t)ow * 3;
    }

    /* Vertical pass. */
    if (y_shift) {
        for (int yy = 0; yy < oh; yy++)
            memcpy(dst + (size_t)yy * dst_stride, hsrc + (size_t)yy * hstride, (size_t)ow * 3);
        return KDC_OK;
    }
    size_t accn = (size_t)ow * 3;
#if IMG_HAVE_AVX2_KERNELS
    if (isa == IMG_RESAMPLE_AVX2 && accn >= 16) {
        if (!grow((void **)&s->kyv, &s->kyv_cap, (size_t)ksy + 1, sizeof(int32_t)))
            return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for %d coefficients", ksy);
        img_vpass_avx2(hsrc, hstride, y0, s->by, s->ky, ksy, s->kyv, oh, accn, dst, dst_stride);
        return KDC_OK;
    }
#endif
    /* Row-wise accumulation (the same integer sums as Pillow's per-pixel loop, in
     * another order): contiguous, so the compiler vectorises it. */
    if (!grow((void **)&s->acc, &s->acc_cap, accn, sizeof(int32_t)))
        return kdc_fail(err, KDC_ENOMEM, "resample: out of memory for a %d-pixel row", ow);
    int32_t *acc = s->acc;
    for (int yy = 0; yy < oh; yy++) {
        const int ymin = s->by[2 * yy] - y0, n = s->by[2 * yy + 1];
        const int32_t *k = s->ky + (size_t)yy * (size_t)ksy;
        for (size_t i = 0; i < accn; i++)
            acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *row = hsrc + (size_t)(ymin + y) * hstride;
            const int32_t ky = k[y];
            for (size_t i = 0; i < accn; i++)
                acc[i] += row[i] * ky;
        }
        uint8_t *out = dst + (size_t)yy * dst_stride;
        for (size_t i = 0; i < accn; i++)
            out[i] = clip8(acc[i]);
    }
    return KDC_OK;
}
