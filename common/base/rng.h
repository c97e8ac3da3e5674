/* rng.h - counter-based random numbers (Philox-4x32-10) for reproducible views.
 *
 * Every random draw is a pure function of (seed, stream, draw number): there is
 * no hidden state to advance in order, so the views of image 7 can be recomputed
 * alone, on any machine, by any thread, in any order. Philox-4x32-10 is the
 * generator of Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"
 * (SC'11), the same one as Random123, cuRAND and JAX; its known-answer vectors are
 * checked in tests/image/test_views.c.
 *
 * Not a cryptographic generator, and not a general-purpose sequential RNG. */
#ifndef KDC_RNG_H
#define KDC_RNG_H

#include <stdint.h>

/* One Philox-4x32 block: 10 rounds of the counter `ctr` under `key`. */
void kdc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A stream of draws for one (seed, a, b): key = seed, counter = (block, b, a_lo,
 * a_hi). For views: a = image index, b = view index. */
typedef struct kdc_philox_stream {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int pos; /* next unused word of buf; 4 = empty */
} kdc_philox_stream;

void kdc_philox_init(kdc_philox_stream *r, uint64_t seed, uint64_t a, uint32_t b);
uint32_t kdc_philox_u32(kdc_philox_stream *r);
/* Uniform double in [0, 1) with 53 random bits, from two consecutive words w0, w1:
 * ((w0 >> 5) * 2^26 + (w1 >> 6)) / 2^53. */
double kdc_philox_uniform(kdc_philox_stream *r);

#endif
