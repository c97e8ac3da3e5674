/* model_init.c - the seeded random generator used to initialise models.
 *
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64, normals by the
 * Box-Muller transform in double precision. It does not reproduce PyTorch's
 * generator (nothing needs bit-equal random weights); it only makes a seed
 * give the same weights on every machine and backend. */
#include <math.h>

#include "common/models/model_build.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(kdc_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void kdc_rng_seed(kdc_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

double kdc_rng_uniform(kdc_rng *r)
{
    /* the top 53 bits give every double in [0, 1) on a 2^-53 grid */
    return (double)(next_u64(r) >> 11) * 0x1.0p-53;
}

double kdc_rng_normal(kdc_rng *r)
{
    /* 1 - u lies in (0, 1], so the log is finite */
    double u1 = 1.0 - kdc_rng_uniform(r), u2 = kdc_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void kdc_init_normal(float *x, size_t n, double std, kdc_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(std * kdc_rng_normal(r));
}

void kdc_init_uniform(float *x, size_t n, double bound, kdc_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(bound * (2.0 * kdc_rng_uniform(r) - 1.0));
}
