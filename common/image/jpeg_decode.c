/* jpeg_decode.c - file reading, CRC-32 and TurboJPEG decoding to RGB. */
#include "common/image/jpeg_decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <zlib.h>

struct img_decoder {
    tjhandle tj;
    uint8_t *file;
    size_t file_cap, file_len;
    uint8_t *pix; /* RGB output, or CMYK before conversion */
    size_t pix_cap;
    uint32_t crc;
    int w, h, subsamp, colorspace;
    uint64_t max_pixels;
    char name[512];
};

kdc_status img_decoder_create(img_decoder **out, kdc_error *err)
{
    img_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return kdc_fail(err, KDC_ENOMEM, "jpeg decoder: out of memory");
    d->tj = tjInitDecompress();
    if (!d->tj) {
        free(d);
        return kdc_fail(err, KDC_ENOMEM, "jpeg decoder: tjInitDecompress failed: %s",
                        tjGetErrorStr2(NULL));
    }
    d->max_pixels = IMG_MAX_PIXELS;
    *out = d;
    return KDC_OK;
}

void img_decoder_free(img_decoder *d)
{
    if (!d)
        return;
    if (d->tj)
        tjDestroy(d->tj);
    free(d->file);
    free(d->pix);
    free(d);
}

void img_decoder_set_max_pixels(img_decoder *d, uint64_t max_pixels) { d->max_pixels = max_pixels; }
int img_decoder_width(const img_decoder *d) { return d->w; }
int img_decoder_height(const img_decoder *d) { return d->h; }
uint64_t img_decoder_file_size(const img_decoder *d) { return d->file_len; }
uint32_t img_decoder_file_crc32(const img_decoder *d) { return d->crc; }

static int grow(uint8_t **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 1;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return 0;
    *p = q;
    *cap = n;
    return 1;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

/* libjpeg-turbo 2.1's tjDecompressHeader3 does not abort the decompressor when
 * a header fails to parse: the handle stays inside the bad header, and every
 * later file on it fails with the same message ("Unsupported marker type 0x44"),
 * so one bad file would cost every image after it on that thread. After any
 * TurboJPEG failure the handle is replaced by a fresh one (a rare path: the
 * allocation is per bad file, not per image). */
static kdc_status reset_handle(img_decoder *d, kdc_status st, kdc_error *err)
{
    tjDestroy(d->tj);
    d->tj = tjInitDecompress();
    if (!d->tj)
        return kdc_fail(err, KDC_ENOMEM, "jpeg decoder: tjInitDecompress failed: %s",
                        tjGetErrorStr2(NULL));
    return st;
}

/* Parses the header of the bytes in d->file. */
static kdc_status parse_header(img_decoder *d, kdc_error *err)
{
    d->w = d->h = 0;
    if (d->file_len == 0)
        return kdc_fail(err, KDC_EIMAGE, "%s: empty file", d->name);
    if (d->file_len < 2 || d->file[0] != 0xFF || d->file[1] != 0xD8)
        return kdc_fail(err, KDC_EIMAGE, "%s: not a JPEG file (starts with 0x%02x 0x%02x)", d->name,
                        d->file[0], d->file_len > 1 ? d->file[1] : 0);
    if (!d->tj && reset_handle(d, KDC_OK, err))
        return KDC_ENOMEM;
    int w, h, ss, cs;
    if (tjDecompressHeader3(d->tj, d->file, (unsigned long)d->file_len, &w, &h, &ss, &cs) != 0) {
        kdc_status st = kdc_fail(err, KDC_EIMAGE, "%s: bad JPEG header: %s", d->name,
                                 tjGetErrorStr2(d->tj));
        return reset_handle(d, st, err);
    }
    if (w <= 0 || h <= 0)
        return kdc_fail(err, KDC_EIMAGE, "%s: JPEG declares an empty image (%dx%d)", d->name, w, h);
    if ((uint64_t)w * (uint64_t)h > d->max_pixels)
        return kdc_fail(err, KDC_EIMAGE,
                        "%s: JPEG declares %dx%d = %llu pixels, over the decompression-bomb limit "
                        "of %llu (IMG_MAX_PIXELS)",
                        d->name, w, h, (unsigned long long)w * (unsigned long long)h,
                        (unsigned long long)d->max_pixels);
    d->w = w;
    d->h = h;
    d->subsamp = ss;
    d->colorspace = cs;
    return KDC_OK;
}

static void set_name(img_decoder *d, const char *name)
{
    snprintf(d->name, sizeof d->name, "%s", name ? name : "(memory)");
}

kdc_status img_decoder_load_mem(img_decoder *d, const uint8_t *buf, size_t n, const char *name,
                                kdc_error *err)
{
    set_name(d, name);
    d->w = d->h = 0;
    d->file_len = 0;
    if (n > IMG_MAX_FILE_BYTES)
        return kdc_fail(err, KDC_EIMAGE, "%s: %zu bytes, over the %zu-byte limit", d->name, n,
                        IMG_MAX_FILE_BYTES);
    if (!grow(&d->file, &d->file_cap, n ? n : 1))
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory for %zu bytes", d->name, n);
    if (n)
        memcpy(d->file, buf, n);
    d->file_len = n;
    d->crc = crc32_of(d->file, n);
    return parse_header(d, err);
}

kdc_status img_decoder_load_file(img_decoder *d, const char *path, kdc_error *err)
{
    set_name(d, path);
    d->w = d->h = 0;
    d->file_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kdc_fail(err, KDC_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return kdc_fail(err, KDC_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if ((uint64_t)st.st_size > IMG_MAX_FILE_BYTES) {
        fclose(f);
        return kdc_fail(err, KDC_EIMAGE, "%s: %llu bytes, over the %zu-byte limit", path,
                        (unsigned long long)st.st_size, IMG_MAX_FILE_BYTES);
    }
    if (!grow(&d->file, &d->file_cap, n ? n : 1)) {
        fclose(f);
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = n ? fread(d->file, 1, n, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n)
        return kdc_fail(err, KDC_EIO, "%s: read %zu of %zu bytes", path, got, n);
    d->file_len = n;
    d->crc = crc32_of(d->file, n);
    return parse_header(d, err);
}

/* PIL's cmyk2rgb (libImaging/Convert.c) applied to PIL's "CMYK;I" raw mode: PIL
 * inverts Adobe CMYK on load (ink = 255 - stored), then R = nk - nk*C/255 with
 * nk = 255 - K and its rounded division by 255. */
static inline uint8_t muldiv255(int a, int b)
{
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = 255 - in[4 * i], m = 255 - in[4 * i + 1], y = 255 - in[4 * i + 2];
        int nk = in[4 * i + 3]; /* 255 - (255 - stored K) */
        int r = nk - muldiv255(c, nk), g = nk - muldiv255(m, nk), b = nk - muldiv255(y, nk);
        out[3 * i] = (uint8_t)(r < 0 ? 0 : r);
        out[3 * i + 1] = (uint8_t)(g < 0 ? 0 : g);
        out[3 * i + 2] = (uint8_t)(b < 0 ? 0 : b);
    }
}

kdc_status img_decoder_decode(img_decoder *d, int scale_eighths, const uint8_t **rgb, int *w,
                              int *h, kdc_error *err)
{
    if (d->w <= 0)
        return kdc_fail(err, KDC_EINVAL, "%s: decode without a loaded image", d->name);
    if (scale_eighths < 1 || scale_eighths > 8)
        return kdc_fail(err, KDC_EINVAL, "%s: DCT scale %d/8 not in 1/8..8/8", d->name, scale_eighths);
    tjscalingfactor sf = {scale_eighths, 8};
    int ow = TJSCALED(d->w, sf), oh = TJSCALED(d->h, sf);
    int cmyk = d->colorspace == TJCS_CMYK || d->colorspace == TJCS_YCCK;
    int px = cmyk ? 4 : 3;
    /* CMYK decodes into the first 4/7 of the buffer and converts into the rest. */
    size_t npix, need;
    if (!kdc_size_mul((size_t)ow, (size_t)oh, &npix) || !kdc_size_mul(npix, cmyk ? 7 : 3, &need) ||
        !grow(&d->pix, &d->pix_cap, need))
        return kdc_fail(err, KDC_ENOMEM, "%s: out of memory for a %dx%d image", d->name, ow, oh);
    int rc = tjDecompress2(d->tj, d->file, (unsigned long)d->file_len, d->pix, ow, ow * px, oh,
                           cmyk ? TJPF_CMYK : TJPF_RGB, 0);
    if (rc != 0) {
        const char *msg = tjGetErrorStr2(d->tj);
        /* libjpeg warnings (e.g. extraneous bytes before a marker) still give a
         * complete image, as PIL accepts them; a premature end means missing data,
         * which PIL refuses ("image file is truncated"), and so do we. */
        int fatal = tjGetErrorCode(d->tj) != TJERR_WARNING || strstr(msg, "Premature end");
        kdc_status st = KDC_OK;
        if (fatal)
            st = kdc_fail(err, KDC_EIMAGE, "%s: corrupt or truncated JPEG: %s", d->name, msg);
        /* Warning or not, start the next file on a clean handle. */
        if ((st = reset_handle(d, st, err)))
            return st;
    }
    if (cmyk) {
        uint8_t *out = d->pix + npix * 4;
        cmyk_to_rgb(d->pix, out, npix);
        *rgb = out;
    } else {
        *rgb = d->pix;
    }
    *w = ow;
    *h = oh;
    return KDC_OK;
}

int img_is_jpeg_name(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}
