/* cpu_features.h - what the x86 CPU we run on can execute, from cpuid + xgetbv.
 *
 * Used to pick OpenBLAS's kernel (gemm.c) because OpenBLAS 0.3.21 does not know
 * newer Xeon models and falls back to its "Prescott" (SSE3) kernels. A feature
 * counts only when the OS also saves its register state (XCR0), as a CPU with
 * AVX-512 under a kernel that does not enable ZMM state cannot use it.
 * This is not a general CPU database; on non-x86 builds everything reads 0. */
#ifndef KDC_CPU_FEATURES_H
#define KDC_CPU_FEATURES_H

typedef struct kdc_cpu_features {
    int avx2;    /* AVX2 with OS-enabled YMM state */
    int fma;     /* FMA3 with OS-enabled YMM state */
    int avx512;  /* AVX-512 F, BW, DQ and VL with OS-enabled opmask/ZMM state */
} kdc_cpu_features;

/* Reads cpuid and xgetbv; cheap, no side effects. */
kdc_cpu_features kdc_cpu_detect(void);

/* The OPENBLAS_CORETYPE name of the best OpenBLAS sgemm kernel family these
 * features can run: "SkylakeX" with AVX-512, "Haswell" with AVX2+FMA, NULL when
 * OpenBLAS's own detection should be trusted. */
const char *kdc_cpu_openblas_coretype(const kdc_cpu_features *f);

#endif
