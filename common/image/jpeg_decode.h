/* jpeg_decode.h - reading image files and decoding JPEG to 8-bit RGB with
 * libjpeg-turbo's TurboJPEG API.
 *
 * One img_decoder per thread: it owns the TurboJPEG handle and the file and pixel
 * buffers, which grow to the largest image seen and are reused (no allocation per
 * image in steady state). Grayscale JPEGs are expanded to RGB, CMYK and YCCK JPEGs
 * are converted to RGB exactly as PIL's Image.convert("RGB") does (Adobe-inverted
 * CMYK, which is what PIL assumes too), so our pixels equal torchvision's.
 * Decoding uses the accurate integer IDCT and fancy upsampling, libjpeg's (and
 * PIL's) defaults.
 *
 * Every error names the file. Not handled: PNG and other formats (docs/IMAGES.md). */
#ifndef KDC_JPEG_DECODE_H
#define KDC_JPEG_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

/* Decompression-bomb guard: the largest width x height decoded. This is PIL's
 * Image.MAX_IMAGE_PIXELS (89,478,485 = 256 MiB of RGBA), the size at which PIL
 * starts to warn; ImageNet's largest photo is ~ 5,000 x 4,000 = 20 Mpx. An RGB
 * buffer at the limit is 268 MB per decoding thread. */
#define IMG_MAX_PIXELS 89478485u
/* Files larger than this are refused before reading (no JPEG photo is near it). */
#define IMG_MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct img_decoder img_decoder;

kdc_status img_decoder_create(img_decoder **out, kdc_error *err);
void img_decoder_free(img_decoder *d);
/* Overrides IMG_MAX_PIXELS for this decoder (tests, or very large scans). */
void img_decoder_set_max_pixels(img_decoder *d, uint64_t max_pixels);

/* Reads a whole file into the decoder, records its size and zlib CRC-32, and
 * parses the JPEG header (width, height), checking the pixel limit. `name` is the
 * path used in messages. */
kdc_status img_decoder_load_file(img_decoder *d, const char *path, kdc_error *err);
/* The same from memory (the bytes are copied); name is used in messages. */
kdc_status img_decoder_load_mem(img_decoder *d, const uint8_t *buf, size_t n, const char *name,
                                kdc_error *err);

/* After a successful load: the image's size in pixels and the file's bytes. */
int img_decoder_width(const img_decoder *d);
int img_decoder_height(const img_decoder *d);
uint64_t img_decoder_file_size(const img_decoder *d);
uint32_t img_decoder_file_crc32(const img_decoder *d);

/* Decodes the loaded JPEG to packed RGB (stride = 3 * width). scale_eighths in
 * 1..8 selects libjpeg-turbo's DCT-domain downscaling by scale_eighths/8 (8 = full
 * size); the decoded size is then ceil(W * s / 8) x ceil(H * s / 8). The pixels
 * stay owned by the decoder and are valid until its next load. */
kdc_status img_decoder_decode(img_decoder *d, int scale_eighths, const uint8_t **rgb, int *w,
                              int *h, kdc_error *err);

/* Whether a path has a JPEG extension (.jpg, .jpeg, any case). */
int img_is_jpeg_name(const char *path);

#endif
