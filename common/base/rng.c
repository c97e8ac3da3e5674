/* rng.c - Philox-4x32-10 (Salmon et al. 2011, Random123's philox4x32_R(10)). */
#include "common/base/rng.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

void kdc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void kdc_philox_init(kdc_philox_stream *r, uint64_t seed, uint64_t a, uint32_t b)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = b;
    r->ctr[2] = (uint32_t)a;
    r->ctr[3] = (uint32_t)(a >> 32);
    r->pos = 4;
}

uint32_t kdc_philox_u32(kdc_philox_stream *r)
{
    if (r->pos == 4) {
        kdc_philox4x32_10(r->ctr, r->key, r->buf);
        r->ctr[0]++; /* 2^32 blocks per stream: far more than any view draws */
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

double kdc_philox_uniform(kdc_philox_stream *r)
{
    uint32_t w0 = kdc_philox_u32(r) >> 5;
    uint32_t w1 = kdc_philox_u32(r) >> 6;
    return ((double)w0 * 67108864.0 + (double)w1) * (1.0 / 9007199254740992.0);
}
