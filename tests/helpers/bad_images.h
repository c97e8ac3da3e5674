/* bad_images.h - image files that real datasets contain and a decoder must
 * survive: each costs exactly one image, never the images after it.
 *
 * ImageNet's train set has CMYK JPEGs, a PNG named .JPEG and truncated files;
 * the header variants are what a flipped byte or a broken download gives. The
 * bytes are made here (from a good JPEG the caller names), never checked in. */
#ifndef KDC_TEST_BAD_IMAGES_H
#define KDC_TEST_BAD_IMAGES_H

#include <stdint.h>

typedef enum kdc_test_bad_kind {
    KDC_BAD_MARKER,    /* ff d8 ff 44 then garbage: a marker libjpeg does not know */
    KDC_BAD_ZERO_DIMS, /* a good JPEG whose SOF claims 0 x 0 pixels */
    KDC_BAD_HUGE_DIMS, /* a good JPEG whose SOF claims 65535 x 65535 (over libjpeg's 65500) */
    KDC_BAD_TRUNCATED, /* the first 60% of a good JPEG */
    KDC_BAD_PNG,       /* a valid PNG (named like a JPEG by the caller) */
    KDC_BAD_EMPTY,     /* zero bytes */
    KDC_BAD_KINDS
} kdc_test_bad_kind;

/* A short name for file names and messages: "marker", "zero_dims", ... */
const char *kdc_test_bad_name(kdc_test_bad_kind k);

/* Writes a bad file of kind k at path; good_jpeg is the JPEG the header and
 * truncation variants start from. Fails the current test when it cannot. */
void kdc_test_write_bad_image(const char *path, kdc_test_bad_kind k, const char *good_jpeg);

/* A w x h CMYK JPEG (TurboJPEG writes it as Adobe YCCK): a valid image that
 * must decode. */
void kdc_test_write_cmyk_jpeg(const char *path, int w, int h, uint64_t seed);

/* Puts one file of every bad kind into folder dir (which exists) as
 * bad_<name>.JPEG, plus a CMYK JPEG cmyk.JPEG when with_cmyk. Returns the
 * number of bad files (KDC_BAD_KINDS). */
int kdc_test_add_bad_images(const char *dir, const char *good_jpeg, int with_cmyk);

#endif
