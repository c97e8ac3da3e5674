/* image_resize_avx2.c - AVX2 kernels for the two passes of Pillow's bilinear
 * resampling (image_resize.c), byte-exact with the portable C passes.
 *
 * Each kernel is compiled with __attribute__((target("avx2"))), not with a global
 * -mavx2, so the library still runs on CPUs without AVX2: image_resize.c calls
 * these only after cpuid says AVX2 is there (cpu_features.h). Why the sums are the
 * same integers as Pillow's: image_resize_kernels.h.
 *
 * Horizontal: one output pixel of two rows at a time, one row per 128-bit half
 * (Pillow-SIMD's shuffle + vpmaddwd idea, for packed RGB): 16 source bytes (4
 * taps) of each row, byte shuffles make int16 pairs (R_a R_b G_a G_b B_a B_b 0 0)
 * of taps 0,1 and of taps 2,3, and vpmaddwd with the pair coefficients gives
 * per-channel 32-bit sums of two taps. Shuffles that cross the 128-bit halves
 * are the slow ones on Intel cores; this layout needs one per two output pixels.
 * Vertical: 16 output bytes at a time (all channels alike), two source rows per
 * step interleaved as int16 pairs, so one vpmaddwd does two taps for 8 bytes.
 *
 * Not a general SIMD library; x86-64 with GCC or Clang only (elsewhere the file
 * is empty and the portable passes run). */
#include "common/image/image_resize_kernels.h"

#if IMG_HAVE_AVX2_KERNELS

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2")))

/* 4 taps per group; per group, for taps (0,1) then (2,3): 16 int16 low halves
 * and 16 high halves. */
#define HGROUP 64

int img_hcoeffs_avx2_groups(const int *bounds, int ow)
{
    int maxn = 0;
    for (int xo = 0; xo < ow; xo++)
        maxn = bounds[2 * xo + 1] > maxn ? bounds[2 * xo + 1] : maxn;
    return maxn > 0 ? (maxn + 3) / 4 : 1;
}

size_t img_hcoeffs_avx2_len(int groups) { return (size_t)groups * HGROUP; }

void img_hcoeffs_avx2(const int *bounds, const int32_t *kk, int ksize, int ow, int groups,
                      int16_t *kv)
{
    const size_t per = img_hcoeffs_avx2_len(groups);
    memset(kv, 0, per * (size_t)ow * sizeof *kv);
    for (int xo = 0; xo < ow; xo++) {
        const int n = bounds[2 * xo + 1];
        const int32_t *k = kk + (size_t)xo * (size_t)ksize;
        int16_t *v = kv + (size_t)xo * per;
        for (int t = 0; t < n; t++) {
            /* tap t: group t/4, pair (t/2)%2, pair member t%2; lanes R, G, B of
             * both 128-bit halves (one source row each) */
            int16_t *g = v + (size_t)(t / 4) * HGROUP + ((t / 2) % 2) * 32;
            int16_t lo = (int16_t)(k[t] & 0x7fff), hi = (int16_t)(k[t] >> 15);
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < 3; c++) {
                    g[8 * h + 2 * c + t % 2] = lo;
                    g[16 + 8 * h + 2 * c + t % 2] = hi;
                }
        }
    }
}

/* The R, G, B sums (lanes 0-2) of one output pixel for row a (low half) and row b
 * (high half): `groups` groups of 4 taps from pa and pb. Inlined with a constant
 * `groups` where it matters. */
static AVX2 inline __m256i hsum2(const uint8_t *pa, const uint8_t *pb, const __m256i *k,
                                 int groups)
{
    /* int16 pairs (R_a R_b G_a G_b B_a B_b 0 0) of pixels 0,1 (bytes 0..5) and of
     * pixels 2,3 (bytes 6..11) of the group, in each half */
    const __m256i s01 = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                         0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
    const __m256i s23 = _mm256_setr_epi8(6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,
                                         6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1);
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    for (int g = 0; g < groups; g++) {
        __m256i px = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(pa + 12 * g))),
            _mm_loadu_si128((const __m128i *)(pb + 12 * g)), 1);
        __m256i x01 = _mm256_shuffle_epi8(px, s01), x23 = _mm256_shuffle_epi8(px, s23);
        const __m256i *kg = k + 4 * g;
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(x01, _mm256_loadu_si256(kg)));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(x01, _mm256_loadu_si256(kg + 1)));
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(x23, _mm256_loadu_si256(kg + 2)));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(x23, _mm256_loadu_si256(kg + 3)));
    }
    return _mm256_add_epi32(lo, _mm256_slli_epi32(hi, 15));
}

/* Rows a and b (b may be a again), output pixels [0, end): each pixel is stored
 * as 4 bytes, the 4th overwritten by the next pixel, so end < ow. Two rows share
 * the coefficient loads and the rounding. */
static AVX2 inline void hrows2(const uint8_t *ina, const uint8_t *inb, uint8_t *outa,
                               uint8_t *outb, const int *bounds, const int16_t *kv, int groups,
                               int end)
{
    const int r = 1 << (IMG_PRECISION_BITS - 1);
    const __m256i round = _mm256_setr_epi32(r, r, r, 0, r, r, r, 0);
    const __m256i zero = _mm256_setzero_si256(), max8 = _mm256_set1_epi32(255);
    /* bytes 0, 4, 8 of each half: the R, G, B results */
    const __m256i gather = _mm256_setr_epi8(0, 4, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                            -1, -1, 0, 4, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                            -1, -1, -1, -1);
    const size_t per = (size_t)groups * HGROUP;
    for (int xo = 0; xo < end; xo++) {
        const size_t off = (size_t)bounds[2 * xo] * 3;
        const __m256i *k = (const __m256i *)(kv + (size_t)xo * per);
        __m256i s = hsum2(ina + off, inb + off, k, groups);
        s = _mm256_srai_epi32(_mm256_add_epi32(s, round), IMG_PRECISION_BITS);
        s = _mm256_min_epi32(_mm256_max_epi32(s, zero), max8); /* Pillow's clip8 */
        s = _mm256_shuffle_epi8(s, gather);
        int va = _mm256_cvtsi256_si32(s);
        int vb = _mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
        memcpy(outa + 3 * (size_t)xo, &va, 4);
        memcpy(outb + 3 * (size_t)xo, &vb, 4);
    }
}

AVX2 void img_hpass_avx2(const uint8_t *src, size_t src_stride, int rows, int in_w,
                         const int *bounds, const int32_t *kk, int ksize, const int16_t *kv,
                         int groups, int ow, uint8_t *dst, size_t dst_stride)
{
    const size_t row_bytes = (size_t)in_w * 3;
    /* Output pixels [0, end) read whole 16-byte groups inside the row and have a
     * next pixel to overwrite their 4th byte; the rest (the last one or two) go
     * through the scalar code. xmin never decreases, so this is a prefix. */
    int end = 0;
    while (end < ow - 1 && (size_t)bounds[2 * end] * 3 + (size_t)(groups - 1) * 12 + 16 <= row_bytes)
        end++;
    for (int y = 0; y < rows; y += 2) {
        const uint8_t *ina = src + (size_t)y * src_stride;
        const uint8_t *inb = y + 1 < rows ? ina + src_stride : ina;
        uint8_t *outa = dst + (size_t)y * dst_stride;
        uint8_t *outb = y + 1 < rows ? outa + dst_stride : outa;
        if (groups == 1)
            hrows2(ina, inb, outa, outb, bounds, kv, 1, end);
        else if (groups == 2)
            hrows2(ina, inb, outa, outb, bounds, kv, 2, end);
        else
            hrows2(ina, inb, outa, outb, bounds, kv, groups, end);
        for (int xo = end; xo < ow; xo++) {
            const uint8_t *p = ina + (size_t)bounds[2 * xo] * 3;
            const int32_t *k = kk + (size_t)xo * (size_t)ksize;
            img_hpixel_c(p, k, bounds[2 * xo + 1], outa + 3 * (size_t)xo);
            if (y + 1 < rows)
                img_hpixel_c(p + src_stride, k, bounds[2 * xo + 1], outb + 3 * (size_t)xo);
        }
    }
}

/* 16 output bytes of one output row: taps on rows r, r + stride, ... (n of them)
 * at byte offset i. */
static AVX2 inline __m128i vsum16(const uint8_t *r, size_t stride, const int32_t *kp, int n,
                                  size_t i)
{
    r += i;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int t = 0;
    for (; t + 1 < n; t += 2) {
        __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r + (size_t)t * stride)));
        __m256i y = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r + (size_t)(t + 1) * stride)));
        __m256i l = _mm256_unpacklo_epi16(x, y), h = _mm256_unpackhi_epi16(x, y);
        __m256i klo = _mm256_set1_epi32(kp[t]), khi = _mm256_set1_epi32(kp[t + 1]);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(l, klo));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(h, klo));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(l, khi));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(h, khi));
    }
    if (t < n) { /* odd tap count: pair the last row with zeros */
        __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r + (size_t)t * stride)));
        __m256i z = _mm256_setzero_si256();
        __m256i l = _mm256_unpacklo_epi16(x, z), h = _mm256_unpackhi_epi16(x, z);
        __m256i klo = _mm256_set1_epi32(kp[t]), khi = _mm256_set1_epi32(kp[t + 1]);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(l, klo));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(h, klo));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(l, khi));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(h, khi));
    }
    const __m256i round = _mm256_set1_epi32(1 << (IMG_PRECISION_BITS - 1));
    __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(a0, round), _mm256_slli_epi32(a2, 15));
    __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(a1, round), _mm256_slli_epi32(a3, 15));
    s0 = _mm256_srai_epi32(s0, IMG_PRECISION_BITS);
    s1 = _mm256_srai_epi32(s1, IMG_PRECISION_BITS);
    /* unpacklo/hi took elements 0-3,8-11 / 4-7,12-15; the in-lane pack undoes it. */
    __m256i p = _mm256_packs_epi32(s0, s1);
    return _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
}

AVX2 void img_vpass_avx2(const uint8_t *src, size_t src_stride, int row_base, const int *bounds,
                         const int32_t *kk, int ksize, int32_t *kyv, int oh, size_t rowbytes,
                         uint8_t *dst, size_t dst_stride)
{
    for (int yo = 0; yo < oh; yo++) {
        const int ymin = bounds[2 * yo] - row_base, n = bounds[2 * yo + 1];
        const int32_t *k = kk + (size_t)yo * (size_t)ksize;
        /* kyv[t], kyv[t + 1] for even t: the (t, t+1) pair of low halves, then of
         * high halves, as two int16 in one int32 (vpmaddwd's operand). */
        for (int t = 0; t < n; t += 2) {
            int32_t k0 = k[t], k1 = t + 1 < n ? k[t + 1] : 0;
            kyv[t] = (int32_t)((uint32_t)(k0 & 0x7fff) | ((uint32_t)(k1 & 0x7fff) << 16));
            kyv[t + 1] = (int32_t)((uint32_t)(uint16_t)(int16_t)(k0 >> 15) |
                                   ((uint32_t)(uint16_t)(int16_t)(k1 >> 15) << 16));
        }
        const uint8_t *r = src + (size_t)ymin * src_stride;
        uint8_t *out = dst + (size_t)yo * dst_stride;
        size_t i = 0;
        for (; i + 16 <= rowbytes; i += 16)
            _mm_storeu_si128((__m128i *)(out + i), vsum16(r, src_stride, kyv, n, i));
        if (i < rowbytes) /* the last 16 bytes again, overlapping: the same values */
            _mm_storeu_si128((__m128i *)(out + rowbytes - 16),
                             vsum16(r, src_stride, kyv, n, rowbytes - 16));
    }
}

#endif
