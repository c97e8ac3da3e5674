/* cpu_features.c - cpuid / xgetbv feature detection (x86-64 only; zeros elsewhere). */
#include "common/base/cpu_features.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 bits the OS sets when it saves the state on context switches:
 * SSE (1) + AVX upper halves (2); opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7). */
#define XCR0_YMM 0x06u
#define XCR0_ZMM 0xe0u

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

kdc_cpu_features kdc_cpu_detect(void)
{
    kdc_cpu_features f = {0, 0, 0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx)
        return f;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_YMM) != XCR0_YMM)
        return f;
    f.fma = fma;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    f.avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    f.avx512 = avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & XCR0_ZMM) == XCR0_ZMM;
    return f;
}
#else
kdc_cpu_features kdc_cpu_detect(void)
{
    kdc_cpu_features f = {0, 0, 0};
    return f;
}
#endif

const char *kdc_cpu_openblas_coretype(const kdc_cpu_features *f)
{
    if (f->avx512 && f->avx2 && f->fma)
        return "SkylakeX";
    if (f->avx2 && f->fma)
        return "Haswell";
    return NULL;
}
