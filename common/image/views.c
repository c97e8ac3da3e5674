/* views.c - drawing views (center, rrc, pad-crop) and rendering them to S x S RGB. */
#include "common/image/views.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/rng.h"

void img_view_params_default(img_view_params *p)
{
    memset(p, 0, sizeof *p);
    p->policy = IMG_VIEW_CENTER;
    p->image_size = 224;
    p->resize_size = 256;
    p->scale[0] = 0.08;
    p->scale[1] = 1.0;
    p->ratio[0] = 3.0 / 4.0;
    p->ratio[1] = 4.0 / 3.0;
    p->pad = 4;
    p->seed = 0;
}

const char *img_view_policy_name(img_view_policy p)
{
    switch (p) {
    case IMG_VIEW_CENTER: return "center";
    case IMG_VIEW_RRC: return "rrc";
    case IMG_VIEW_PAD_CROP: return "pad-crop";
    }
    return "unknown";
}

kdc_status img_view_policy_parse(const char *s, img_view_policy *out, kdc_error *err)
{
    for (int p = IMG_VIEW_CENTER; p <= IMG_VIEW_PAD_CROP; p++)
        if (strcmp(s, img_view_policy_name((img_view_policy)p)) == 0) {
            *out = (img_view_policy)p;
            return KDC_OK;
        }
    return kdc_fail(err, KDC_EINVAL, "view policy '%s': expected center, rrc or pad-crop", s);
}

kdc_status img_view_params_check(const img_view_params *p, kdc_error *err)
{
    if (p->policy < IMG_VIEW_CENTER || p->policy > IMG_VIEW_PAD_CROP)
        return kdc_fail(err, KDC_EINVAL, "view policy %d unknown", (int)p->policy);
    if (p->image_size < 1 || p->image_size > IMG_MAX_VIEW_SIZE)
        return kdc_fail(err, KDC_EINVAL, "image size %d not in 1..%d", p->image_size, IMG_MAX_VIEW_SIZE);
    if (p->policy == IMG_VIEW_CENTER &&
        (p->resize_size < p->image_size || p->resize_size > IMG_MAX_VIEW_SIZE))
        return kdc_fail(err, KDC_EINVAL, "resize size %d not in image size %d..%d", p->resize_size,
                        p->image_size, IMG_MAX_VIEW_SIZE);
    if (p->policy == IMG_VIEW_RRC) {
        /* Upper bounds keep sqrt(area * scale * ratio) far inside int range. */
        if (!(p->scale[0] > 0 && p->scale[0] <= p->scale[1] && p->scale[1] <= 100))
            return kdc_fail(err, KDC_EINVAL, "scale range %g,%g: need 0 < a <= b <= 100", p->scale[0],
                            p->scale[1]);
        if (!(p->ratio[0] > 0 && p->ratio[0] <= p->ratio[1] && p->ratio[1] <= 100 &&
              p->ratio[0] >= 0.01))
            return kdc_fail(err, KDC_EINVAL, "ratio range %g,%g: need 0.01 <= a <= b <= 100",
                            p->ratio[0], p->ratio[1]);
    }
    if (p->policy == IMG_VIEW_PAD_CROP && (p->pad < 0 || p->pad > IMG_MAX_VIEW_SIZE))
        return kdc_fail(err, KDC_EINVAL, "pad %d not in 0..%d", p->pad, IMG_MAX_VIEW_SIZE);
    if (p->decode_scale != IMG_DECODE_SCALE_OFF && p->decode_scale != IMG_DECODE_SCALE_AUTO)
        return kdc_fail(err, KDC_EINVAL, "decode scale %d: expected off (0) or auto (1)",
                        p->decode_scale);
    return KDC_OK;
}

/* Python's round(): half to even, which nearbyint does in the default rounding mode. */
static int py_round(double x) { return (int)nearbyint(x); }

static int draw_below(img_uniform_fn u, void *ctx, int n)
{
    int v = (int)floor(u(ctx) * n);
    return v >= n ? n - 1 : v;
}

int img_rrc_box(int W, int H, const double scale[2], const double ratio[2], img_uniform_fn u,
                void *ctx, img_view *out)
{
    /* torchvision/transforms/transforms.py, RandomResizedCrop.get_params (0.14). */
    const double area = (double)H * (double)W;
    const double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    int draws = 0;
    out->flip = 0;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * (scale[0] + (scale[1] - scale[0]) * u(ctx));
        double aspect = exp(lr0 + (lr1 - lr0) * u(ctx));
        draws += 2;
        int w = py_round(sqrt(target_area * aspect));
        int h = py_round(sqrt(target_area / aspect));
        if (0 < w && w <= W && 0 < h && h <= H) {
            out->y0 = draw_below(u, ctx, H - h + 1);
            out->x0 = draw_below(u, ctx, W - w + 1);
            out->h = h;
            out->w = w;
            return draws + 2;
        }
    }
    /* Fallback to the centre crop, clamping the aspect ratio into the range. */
    double in_ratio = (double)W / (double)H;
    int w, h;
    if (in_ratio < ratio[0]) {
        w = W;
        h = py_round(w / ratio[0]);
    } else if (in_ratio > ratio[1]) {
        h = H;
        w = py_round(h * ratio[1]);
    } else {
        w = W;
        h = H;
    }
    out->y0 = (H - h) / 2;
    out->x0 = (W - w) / 2;
    out->h = h;
    out->w = w;
    return draws;
}

/* Python's int(round(n / 2.0)) for an integer n >= 0: half to even. */
static int half_round_even(int n)
{
    int k = n / 2;
    return (n % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

kdc_status img_center_geometry(int W, int H, int resize_size, int image_size, img_center_geom *g,
                               kdc_error *err)
{
    if (W <= 0 || H <= 0)
        return kdc_fail(err, KDC_EINVAL, "center view of an empty image (%dx%d)", W, H);
    /* torchvision _compute_resized_output_size: new_long = int(R * long / short). */
    int shorter = W <= H ? W : H, longer = W <= H ? H : W;
    double nl = (double)resize_size * (double)longer / (double)shorter;
    if (nl > 1e9)
        return kdc_fail(err, KDC_EINVAL, "center view: %dx%d image is too elongated", W, H);
    int new_long = (int)nl;
    g->rw = W <= H ? resize_size : new_long;
    g->rh = W <= H ? new_long : resize_size;
    if (g->rw < image_size || g->rh < image_size)
        return kdc_fail(err, KDC_EINVAL, "center view: resized %dx%d is smaller than %d", g->rw,
                        g->rh, image_size);
    g->top = half_round_even(g->rh - image_size);
    g->left = half_round_even(g->rw - image_size);
    return KDC_OK;
}

static double rng_uniform_cb(void *ctx) { return kdc_philox_uniform((kdc_philox_stream *)ctx); }

kdc_status img_view_draw(const img_view_params *p, int W, int H, uint64_t image_index,
                         uint32_t view_index, img_view *out, kdc_error *err)
{
    if (W <= 0 || H <= 0)
        return kdc_fail(err, KDC_EINVAL, "view of an empty image (%dx%d)", W, H);
    kdc_philox_stream rng;
    kdc_philox_init(&rng, p->seed, image_index, view_index);
    const int S = p->image_size;
    switch (p->policy) {
    case IMG_VIEW_CENTER: {
        img_center_geom g;
        kdc_status st = img_center_geometry(W, H, p->resize_size, S, &g, err);
        if (st)
            return st;
        /* The crop's region in original pixels, rounded (informative: rendering
         * uses the exact geometry, see docs/IMAGES.md). */
        double sx = (double)W / g.rw, sy = (double)H / g.rh;
        out->x0 = (int32_t)floor(g.left * sx + 0.5);
        out->y0 = (int32_t)floor(g.top * sy + 0.5);
        out->w = (int32_t)floor((g.left + S) * sx + 0.5) - out->x0;
        out->h = (int32_t)floor((g.top + S) * sy + 0.5) - out->y0;
        out->flip = 0;
        return KDC_OK;
    }
    case IMG_VIEW_RRC:
        img_rrc_box(W, H, p->scale, p->ratio, rng_uniform_cb, &rng, out);
        out->flip = kdc_philox_uniform(&rng) < 0.5;
        return KDC_OK;
    case IMG_VIEW_PAD_CROP: {
        /* RandomCrop(S, padding=P) on the padded (S+2P)^2 frame: top, left in 0..2P. */
        int range = 2 * p->pad + 1;
        out->y0 = draw_below(rng_uniform_cb, &rng, range) - p->pad;
        out->x0 = draw_below(rng_uniform_cb, &rng, range) - p->pad;
        out->h = out->w = S;
        out->flip = kdc_philox_uniform(&rng) < 0.5;
        return KDC_OK;
    }
    }
    return kdc_fail(err, KDC_EINVAL, "view policy %d unknown", (int)p->policy);
}

kdc_status img_view_check(const img_view_params *p, int W, int H, const img_view *v,
                          kdc_error *err)
{
    if (v->flip > 1)
        return kdc_fail(err, KDC_EFORMAT, "view flip flag %u is not 0 or 1", v->flip);
    switch (p->policy) {
    case IMG_VIEW_CENTER: {
        img_view c;
        kdc_status st = img_view_draw(p, W, H, 0, 0, &c, err);
        if (st)
            return st;
        if (c.y0 != v->y0 || c.x0 != v->x0 || c.h != v->h || c.w != v->w || v->flip)
            return kdc_fail(err, KDC_EMISMATCH,
                            "center view (%d,%d,%d,%d,flip %u) is not the center box "
                            "(%d,%d,%d,%d) of a %dx%d image",
                            v->y0, v->x0, v->h, v->w, v->flip, c.y0, c.x0, c.h, c.w, W, H);
        return KDC_OK;
    }
    case IMG_VIEW_RRC:
        if (v->h <= 0 || v->w <= 0 || v->y0 < 0 || v->x0 < 0 || v->y0 > H - v->h || v->x0 > W - v->w)
            return kdc_fail(err, KDC_EFORMAT, "view box (%d,%d,%d,%d) is not inside a %dx%d image",
                            v->y0, v->x0, v->h, v->w, W, H);
        return KDC_OK;
    case IMG_VIEW_PAD_CROP:
        if (v->h != p->image_size || v->w != p->image_size || v->y0 < -p->pad || v->y0 > p->pad ||
            v->x0 < -p->pad || v->x0 > p->pad)
            return kdc_fail(err, KDC_EFORMAT,
                            "pad-crop box (%d,%d,%d,%d) is not an %d-pixel crop within padding %d",
                            v->y0, v->x0, v->h, v->w, p->image_size, p->pad);
        return KDC_OK;
    }
    return kdc_fail(err, KDC_EINVAL, "view policy %d unknown", (int)p->policy);
}

void img_view_scratch_free(img_view_scratch *s)
{
    img_resample_scratch_free(&s->rs);
    free(s->frame);
    s->frame = NULL;
    s->frame_cap = 0;
}

static void mirror_rows(uint8_t *img, int S)
{
    for (int y = 0; y < S; y++) {
        uint8_t *row = img + (size_t)y * S * 3;
        for (int a = 0, b = S - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[3 * a + c];
                row[3 * a + c] = row[3 * b + c];
                row[3 * b + c] = t;
            }
    }
}

int img_view_decode_eighths(const img_view_params *p, int W, int H, const img_view *v)
{
    if (p->decode_scale != IMG_DECODE_SCALE_AUTO || p->policy == IMG_VIEW_PAD_CROP)
        return 8;
    /* The pixels the view's resample reads along its shorter axis, and the
     * output size it needs there. */
    int64_t have, need;
    if (p->policy == IMG_VIEW_CENTER) {
        have = W < H ? W : H;
        need = p->resize_size;
    } else {
        have = v->w < v->h ? v->w : v->h;
        need = p->image_size;
    }
    int e = 8;
    while (e > 1 && have * (e / 2) >= need * 8)
        e /= 2;
    return e;
}

/* The rrc and center views of a DCT-scaled decode: the box (in original
 * pixels) mapped onto the dw x dh pixels. */
static kdc_status render_scaled_box(const img_view_params *p, const uint8_t *rgb, int dw, int dh,
                                    size_t stride, int W, int H, const img_view *v,
                                    uint8_t *out, img_view_scratch *s, kdc_error *err)
{
    const int S = p->image_size;
    const double fx = (double)dw / W, fy = (double)dh / H;
    img_axis ax, ay;
    if (p->policy == IMG_VIEW_CENTER) {
        img_center_geom g;
        kdc_status st = img_center_geometry(W, H, p->resize_size, S, &g, err);
        if (st)
            return st;
        ax = img_axis_resize(dw, g.rw);
        ay = img_axis_resize(dh, g.rh);
        ax.out_offset = g.left;
        ay.out_offset = g.top;
    } else {
        ax = (img_axis){.in_size = dw, .in0 = v->x0 * fx, .scale = v->w * fx / S};
        ay = (img_axis){.in_size = dh, .in0 = v->y0 * fy, .scale = v->h * fy / S};
    }
    ax.out_size = ay.out_size = S;
    kdc_status st = img_resample_rgb8(rgb, stride, &ax, &ay, out, (size_t)S * 3, &s->rs, err);
    if (st == KDC_OK && v->flip)
        mirror_rows(out, S);
    return st;
}

kdc_status img_view_render_scaled(const img_view_params *p, const uint8_t *rgb, int dw, int dh,
                                  size_t stride, int W, int H, const img_view *v, uint8_t *out,
                                  img_view_scratch *s, kdc_error *err)
{
    if (dw == W && dh == H)
        return img_view_render(p, rgb, W, H, stride, v, out, s, err);
    kdc_status st = img_view_check(p, W, H, v, err);
    if (st)
        return st;
    if (p->policy == IMG_VIEW_PAD_CROP || dw <= 0 || dh <= 0 || dw > W || dh > H)
        return kdc_fail(err, KDC_EINVAL, "view of a %dx%d image rendered from %dx%d pixels", W, H,
                        dw, dh);
    return render_scaled_box(p, rgb, dw, dh, stride, W, H, v, out, s, err);
}

kdc_status img_view_render(const img_view_params *p, const uint8_t *rgb, int W, int H,
                           size_t stride, const img_view *v, uint8_t *out, img_view_scratch *s,
                           kdc_error *err)
{
    kdc_status st = img_view_check(p, W, H, v, err);
    if (st)
        return st;
    const int S = p->image_size;
    const size_t ostride = (size_t)S * 3;
    if (p->policy == IMG_VIEW_CENTER) {
        /* Resize(R) then CenterCrop(S), computed as the crop's part of the resize:
         * the full-resize axes with an output offset (PIL-exact, see image_resize.h). */
        img_center_geom g;
        if ((st = img_center_geometry(W, H, p->resize_size, S, &g, err)))
            return st;
        img_axis ax = img_axis_resize(W, g.rw), ay = img_axis_resize(H, g.rh);
        ax.out_offset = g.left;
        ax.out_size = S;
        ay.out_offset = g.top;
        ay.out_size = S;
        return img_resample_rgb8(rgb, stride, &ax, &ay, out, ostride, &s->rs, err);
    }
    if (p->policy == IMG_VIEW_RRC) {
        /* F.resized_crop on PIL: img.crop(box).resize((S, S)): the filter sees only
         * the box's pixels. */
        img_axis ax = img_axis_resize(v->w, S), ay = img_axis_resize(v->h, S);
        const uint8_t *src = rgb + (size_t)v->y0 * stride + (size_t)v->x0 * 3;
        if ((st = img_resample_rgb8(src, stride, &ax, &ay, out, ostride, &s->rs, err)))
            return st;
    } else {
        /* pad-crop: Resize((S, S)) (a copy when the image is already S x S), then the
         * S x S box of the zero-padded frame. */
        const uint8_t *frame = rgb;
        size_t fstride = stride;
        if (W != S || H != S) {
            size_t need = (size_t)S * ostride;
            if (need > s->frame_cap) {
                uint8_t *q = realloc(s->frame, need);
                if (!q)
                    return kdc_fail(err, KDC_ENOMEM, "pad-crop: out of memory");
                s->frame = q;
                s->frame_cap = need;
            }
            img_axis ax = img_axis_resize(W, S), ay = img_axis_resize(H, S);
            if ((st = img_resample_rgb8(rgb, stride, &ax, &ay, s->frame, ostride, &s->rs, err)))
                return st;
            frame = s->frame;
            fstride = ostride;
        }
        int xa = v->x0 < 0 ? -v->x0 : 0;               /* first output column inside */
        int xb = v->x0 + S > S ? S - v->x0 : S;        /* end of the columns inside */
        for (int y = 0; y < S; y++) {
            uint8_t *row = out + (size_t)y * ostride;
            int sy = v->y0 + y;
            if (sy < 0 || sy >= S) {
                memset(row, 0, ostride);
                continue;
            }
            memset(row, 0, (size_t)xa * 3);
            memcpy(row + (size_t)xa * 3, frame + (size_t)sy * fstride + (size_t)(v->x0 + xa) * 3,
                   (size_t)(xb - xa) * 3);
            memset(row + (size_t)xb * 3, 0, (size_t)(S - xb) * 3);
        }
    }
    if (v->flip)
        mirror_rows(out, S);
    return KDC_OK;
}
