/* views.h - the views of an image: which pixel box is cropped, whether it is
 * mirrored, and how the box becomes an S x S RGB image.
 *
 * A view is an integer box (y0, x0, h, w) in pixels of the original image plus a
 * flip flag (SPEC.md section 4). Views are drawn by policy:
 *   center    torchvision's eval transform Resize(R) + CenterCrop(S); 1 view, no flip
 *   rrc       RandomResizedCrop(S, scale, ratio) + RandomHorizontalFlip, exactly
 *             torchvision's get_params (10 attempts, then the ratio-clamped centre crop)
 *   pad-crop  the CIFAR recipe: Resize((S, S)), RandomCrop(S, padding=P) with black
 *             padding, RandomHorizontalFlip; the box is in the S x S frame (= the
 *             original pixels for S x S datasets) and may start at -P
 * Random draws come from Philox keyed by (seed, image index, view index) (rng.h),
 * so any view is recomputed alone. Rendering is a pure function of (pixels, view,
 * params): replaying a stored view gives the same bytes. docs/IMAGES.md is the
 * precise definition, including how the center view is replayed.
 *
 * Not the decoder (jpeg_decode.h) and not normalisation (image_batch.h). */
#ifndef KDC_VIEWS_H
#define KDC_VIEWS_H

#include <stdint.h>

#include "common/base/error.h"
#include "common/image/image_resize.h"

typedef enum img_view_policy {
    IMG_VIEW_CENTER = 0,
    IMG_VIEW_RRC = 1,
    IMG_VIEW_PAD_CROP = 2
} img_view_policy;

typedef struct img_view_params {
    img_view_policy policy;
    int image_size;  /* S: every view renders to S x S (default 224) */
    int resize_size; /* center: shorter side after the resize (default 256) */
    double scale[2]; /* rrc: area fraction range (default 0.08, 1) */
    double ratio[2]; /* rrc: aspect ratio w/h range (default 3/4, 4/3) */
    int pad;         /* pad-crop: P black pixels on each side (default 4) */
    uint64_t seed;
    int decode_scale; /* IMG_DECODE_SCALE_OFF (default) or _AUTO, see below */
} img_view_params;

/* --decode-scale: whether a view may be rendered from a JPEG decoded at a
 * reduced size (libjpeg-turbo's DCT-domain scaling by 1/2, 1/4 or 1/8).
 * OFF: always the full-size decode, torchvision's pixels. AUTO: the smallest
 * scale 1/2^k (k <= 3) at which the region the view resamples still has at
 * least as many pixels as its output along both axes (rrc: the crop box >= S;
 * center: the shorter side >= R), so a view whose crop is at least twice its
 * output size is decoded smaller. Pixels then differ slightly from
 * torchvision's: the choice is recorded in the cache and replayed. */
#define IMG_DECODE_SCALE_OFF 0
#define IMG_DECODE_SCALE_AUTO 1

typedef struct img_view {
    int32_t y0, x0, h, w;
    uint8_t flip;
} img_view;

/* Largest S, R, P accepted (a view buffer is S*S*3 bytes). */
#define IMG_MAX_VIEW_SIZE 4096

void img_view_params_default(img_view_params *p);
kdc_status img_view_params_check(const img_view_params *p, kdc_error *err);
kdc_status img_view_policy_parse(const char *s, img_view_policy *out, kdc_error *err);
const char *img_view_policy_name(img_view_policy p);

/* torchvision's RandomResizedCrop.get_params with its uniform draws taken from
 * u(ctx) in [0, 1): per attempt one draw for the area, one for the log-ratio, and
 * when the box fits one each for the top and left offsets (floor(u * range)).
 * Returns the number of draws used. flip is left 0. */
typedef double (*img_uniform_fn)(void *ctx);
int img_rrc_box(int W, int H, const double scale[2], const double ratio[2], img_uniform_fn u,
                void *ctx, img_view *out);

/* torchvision's Resize(R) + CenterCrop(S) geometry: the resized size (rw x rh) and
 * the crop's top-left corner in the resized image. */
typedef struct img_center_geom {
    int rw, rh, top, left;
} img_center_geom;
kdc_status img_center_geometry(int W, int H, int resize_size, int image_size, img_center_geom *g,
                               kdc_error *err);

/* Draws view `view_index` of image `image_index` (W x H pixels). */
kdc_status img_view_draw(const img_view_params *p, int W, int H, uint64_t image_index,
                         uint32_t view_index, img_view *out, kdc_error *err);

/* Checks that a stored view can be replayed on a W x H image under p (rrc: box
 * inside the image; pad-crop: S x S box within the padding; center: the box that
 * img_view_draw gives). */
kdc_status img_view_check(const img_view_params *p, int W, int H, const img_view *v,
                          kdc_error *err);

/* The DCT scale (in eighths: 8, 4, 2 or 1) view v of a W x H image is
 * decoded at under p->decode_scale; 8 when OFF and for pad-crop. */
int img_view_decode_eighths(const img_view_params *p, int W, int H, const img_view *v);

/* Per-thread buffers for rendering. */
typedef struct img_view_scratch {
    img_resample_scratch rs;
    uint8_t *frame; /* pad-crop: the S x S resized image */
    size_t frame_cap;
} img_view_scratch;
void img_view_scratch_free(img_view_scratch *s);

/* Renders view v of the W x H RGB image (stride bytes per row) into out, S x S x 3
 * packed RGB. Checks v first (img_view_check). */
kdc_status img_view_render(const img_view_params *p, const uint8_t *rgb, int W, int H,
                           size_t stride, const img_view *v, uint8_t *out, img_view_scratch *s,
                           kdc_error *err);

/* The same for a W x H image decoded at a reduced size dw x dh (a DCT-scaled
 * decode): v stays in original pixels and is mapped onto the decoded pixels
 * by dw / W and dh / H, each output pixel resampled from the scaled image
 * with PIL's box semantics (fractional box, filter clamped to the image).
 * With dw == W and dh == H it is img_view_render, byte for byte. */
kdc_status img_view_render_scaled(const img_view_params *p, const uint8_t *rgb, int dw, int dh,
                                  size_t stride, int W, int H, const img_view *v, uint8_t *out,
                                  img_view_scratch *s, kdc_error *err);

#endif
