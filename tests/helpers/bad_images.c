/* bad_images.c - makers of the files of bad_images.h. */
#include "tests/helpers/bad_images.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "tests/helpers/testutil.h"

static const char *NAMES[KDC_BAD_KINDS] = {"marker",    "zero_dims", "huge_dims",
                                           "truncated", "png",       "empty"};

const char *kdc_test_bad_name(kdc_test_bad_kind k)
{
    return k < KDC_BAD_KINDS ? NAMES[k] : "?";
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    ck_assert(len > 0 && fseek(f, 0, SEEK_SET) == 0);
    uint8_t *b = malloc((size_t)len);
    ck_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(n == 0 || fwrite(b, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

/* Sets the height and width of the first SOF0/1/2 segment. */
static void patch_sof(uint8_t *b, size_t n, unsigned hgt, unsigned wid)
{
    size_t p = 2;
    while (p + 9 < n) {
        ck_assert_msg(b[p] == 0xFF, "not a marker at %zu", p);
        uint8_t m = b[p + 1];
        size_t len = ((size_t)b[p + 2] << 8) | b[p + 3];
        if (m >= 0xC0 && m <= 0xC2) {
            b[p + 5] = (uint8_t)(hgt >> 8);
            b[p + 6] = (uint8_t)hgt;
            b[p + 7] = (uint8_t)(wid >> 8);
            b[p + 8] = (uint8_t)wid;
            return;
        }
        p += 2 + len;
    }
    ck_abort_msg("no SOF marker");
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One PNG chunk: length, type, data, CRC-32 of type + data. */
static size_t png_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n)
{
    put_be32(out, n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    put_be32(out + 8 + n, (uint32_t)crc32(crc32(0, NULL, 0), out + 4, n + 4));
    return 12 + (size_t)n;
}

/* A 16 x 12 RGB PNG (ImageNet's n02105855_2933.JPEG is a PNG). */
static void write_png(const char *path)
{
    enum { W = 16, H = 12 };
    uint8_t raw[H * (1 + 3 * W)];
    for (int y = 0; y < H; y++) {
        raw[y * (1 + 3 * W)] = 0; /* filter: none */
        for (int x = 0; x < 3 * W; x++)
            raw[y * (1 + 3 * W) + 1 + x] = (uint8_t)(7 * x + 19 * y);
    }
    uLongf zn = compressBound(sizeof raw);
    uint8_t *z = malloc(zn), *png = malloc(zn + 128);
    ck_assert(z && png && compress(z, &zn, raw, sizeof raw) == Z_OK);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, W);
    put_be32(ihdr + 4, H);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* RGB */
    size_t n = 0;
    memcpy(png, sig, 8);
    n += 8;
    n += png_chunk(png + n, "IHDR", ihdr, 13);
    n += png_chunk(png + n, "IDAT", z, (uint32_t)zn);
    n += png_chunk(png + n, "IEND", NULL, 0);
    write_file(path, png, n);
    free(z);
    free(png);
}

void kdc_test_write_bad_image(const char *path, kdc_test_bad_kind k, const char *good_jpeg)
{
    size_t n = 0;
    uint8_t *b = NULL;
    switch (k) {
    case KDC_BAD_MARKER: {
        uint8_t g[256] = {0xFF, 0xD8, 0xFF, 0x44};
        float u[252];
        kdc_test_fill_uniform(u, 252, 44, 0.0f, 256.0f);
        for (int i = 0; i < 252; i++)
            g[4 + i] = (uint8_t)u[i];
        write_file(path, g, sizeof g);
        return;
    }
    case KDC_BAD_ZERO_DIMS:
    case KDC_BAD_HUGE_DIMS:
        b = read_file(good_jpeg, &n);
        patch_sof(b, n, k == KDC_BAD_ZERO_DIMS ? 0 : 65535, k == KDC_BAD_ZERO_DIMS ? 0 : 65535);
        write_file(path, b, n);
        break;
    case KDC_BAD_TRUNCATED:
        b = read_file(good_jpeg, &n);
        write_file(path, b, n * 6 / 10);
        break;
    case KDC_BAD_PNG: write_png(path); return;
    case KDC_BAD_EMPTY: write_file(path, NULL, 0); return;
    default: ck_abort_msg("bad kind %d", (int)k);
    }
    free(b);
}

void kdc_test_write_cmyk_jpeg(const char *path, int w, int h, uint64_t seed)
{
    size_t n = (size_t)w * (size_t)h * 4;
    unsigned char *px = malloc(n);
    float *u = malloc(n * sizeof *u);
    ck_assert(px && u);
    kdc_test_fill_uniform(u, n, seed, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) /* smooth ink with a little noise */
        px[i] = (unsigned char)(40.0f * u[i] + 60.0f +
                                50.0f * (float)((i / 4) % (size_t)w) / (float)w * (float)(i % 4));
    tjhandle tj = tjInitCompress();
    ck_assert_ptr_nonnull(tj);
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    ck_assert_msg(tjCompress2(tj, px, w, 0, h, TJPF_CMYK, &jpg, &len, TJSAMP_444, 90, 0) == 0,
                  "tjCompress2: %s", tjGetErrorStr2(tj));
    write_file(path, jpg, len);
    tjFree(jpg);
    tjDestroy(tj);
    free(px);
    free(u);
}

int kdc_test_add_bad_images(const char *dir, const char *good_jpeg, int with_cmyk)
{
    char p[4096];
    for (int k = 0; k < KDC_BAD_KINDS; k++) {
        snprintf(p, sizeof p, "%s/bad_%s.JPEG", dir, NAMES[k]);
        kdc_test_write_bad_image(p, (kdc_test_bad_kind)k, good_jpeg);
    }
    if (with_cmyk) {
        snprintf(p, sizeof p, "%s/cmyk.JPEG", dir);
        kdc_test_write_cmyk_jpeg(p, 40, 30, 77);
    }
    return KDC_BAD_KINDS;
}
