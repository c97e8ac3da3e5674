/* image_resize_kernels.h - internal: the two passes of image_resize.c, shared
 * between the portable C code (image_resize.c) and the AVX2 kernels
 * (image_resize_avx2.c). Not a public API: only image_resize*.c include it.
 *
 * Exactness: Pillow sums pixel * coefficient with 22-bit coefficients in 32-bit
 * ints; the sum never overflows (coefficients add up to ~2^22, pixels < 2^8).
 * The AVX2 kernels split each coefficient k = hi * 2^15 + lo (0 <= lo < 2^15,
 * hi <= 2^7), so that both halves fit the int16 lanes of vpmaddwd, and add
 * sum(p * lo) + (sum(p * hi) << 15): the same integer, whatever the order, since
 * 32-bit wrap-around addition is associative and the true total fits. Rounding
 * (the 2^21 bias, the arithmetic shift, clamping to 0..255) is Pillow's. */
#ifndef KDC_IMAGE_RESIZE_KERNELS_H
#define KDC_IMAGE_RESIZE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Pillow: 32 bits minus 8 for the result minus 2 for overflow headroom. */
#define IMG_PRECISION_BITS 22

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define IMG_HAVE_AVX2_KERNELS 1
#else
#define IMG_HAVE_AVX2_KERNELS 0
#endif

static inline uint8_t img_clip8(int32_t v)
{
    v >>= IMG_PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One output pixel of the horizontal pass: n taps from p (RGB), Pillow's order. */
static inline void img_hpixel_c(const uint8_t *p, const int32_t *k, int n, uint8_t *out)
{
    int32_t s0 = 1 << (IMG_PRECISION_BITS - 1), s1 = s0, s2 = s0;
    for (int x = 0; x < n; x++) {
        s0 += p[3 * x] * k[x];
        s1 += p[3 * x + 1] * k[x];
        s2 += p[3 * x + 2] * k[x];
    }
    out[0] = img_clip8(s0);
    out[1] = img_clip8(s1);
    out[2] = img_clip8(s2);
}

#if IMG_HAVE_AVX2_KERNELS
/* Groups of 4 taps per output pixel for img_hcoeffs_avx2: enough for the widest
 * filter window (bounds: first source pixel and count per output pixel). */
int img_hcoeffs_avx2_groups(const int *bounds, int ow);
/* int16 values per output pixel in img_hcoeffs_avx2's layout. */
size_t img_hcoeffs_avx2_len(int groups);

/* Rearranges the horizontal coefficients (kk: ksize per output pixel) for
 * img_hpass_avx2 into kv (groups * 64 int16 per output pixel): per group of 4
 * taps, for taps (0,1) then (2,3), 16 int16 low halves then 16 high halves laid
 * out as [k0 k1 k0 k1 k0 k1 0 0 | k0 k1 k0 k1 k0 k1 0 0] (RGB pairs of taps,
 * twice: one 128-bit half per source row). */
void img_hcoeffs_avx2(const int *bounds, const int32_t *kk, int ksize, int ow, int groups,
                      int16_t *kv);

/* Horizontal pass over `rows` rows of src (in_w RGB pixels each) into dst (ow
 * RGB pixels per row). Never reads outside the in_w * 3 bytes of a row, never
 * writes outside the ow * 3 bytes of an output row. */
void img_hpass_avx2(const uint8_t *src, size_t src_stride, int rows, int in_w, const int *bounds,
                    const int32_t *kk, int ksize, const int16_t *kv, int groups, int ow,
                    uint8_t *dst, size_t dst_stride);

/* Vertical pass: output row yo sums rows bounds[2yo] - row_base ... of src (each
 * rowbytes bytes, rowbytes >= 16) with kk[yo * ksize ...]. kyv: scratch for
 * ksize + 1 int32. */
void img_vpass_avx2(const uint8_t *src, size_t src_stride, int row_base, const int *bounds,
                    const int32_t *kk, int ksize, int32_t *kyv, int oh, size_t rowbytes,
                    uint8_t *dst, size_t dst_stride);
#endif

#endif
