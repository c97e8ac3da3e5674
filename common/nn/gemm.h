/* gemm.h - single-precision matrix multiply through OpenBLAS, loaded at run time.
 *
 * Why dlopen and not -lopenblas: OpenBLAS 0.3.21 picks its kernels in its
 * library constructor from cpuid and does not know recent Xeons, so on an
 * AVX-512 machine it runs the SSE3 "Prescott" kernels (42 vs 222 GFLOP/s for
 * sgemm 2048^3 on 2 cores). The constructor honours OPENBLAS_CORETYPE, so
 * kdc_gemm_init detects the CPU itself (cpu_features.h), sets OPENBLAS_CORETYPE
 * when the user has not, and only then loads libopenblas.so.0 (or the file
 * named by KDC_OPENBLAS_LIB). KDC_OPENBLAS_CORETYPE=auto skips our choice
 * (OpenBLAS detects by itself); KDC_OPENBLAS_CORETYPE=NAME picks NAME.
 *
 * All matrices are row-major (C convention). This module is only the GEMM; the
 * layers that use it live in conv2d.c and linear.c. */
#ifndef KDC_GEMM_H
#define KDC_GEMM_H

#include "common/base/error.h"

/* Loads OpenBLAS once (thread-safe, pthread_once); later calls return the first
 * result. Fails with KDC_EUNSUPPORTED and a one-line reason when the library or
 * one of its symbols cannot be found. */
kdc_status kdc_gemm_init(kdc_error *err);

/* C[m x n] = alpha * op(A) * op(B) + beta * C, row-major, where op(A) is m x k
 * (A stored k x m when trans_a) and op(B) is k x n (B stored n x k when
 * trans_b). With beta == 0, C need not be initialised (NaNs in C are ignored).
 * If kdc_gemm_init failed or was never called successfully, kdc_sgemm tries to
 * init; on failure it computes with a slow portable loop, so results are right
 * but callers should init first and report the error. */
void kdc_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* OpenBLAS's thread count for later GEMMs (threads <= 0: leave as is). */
void kdc_gemm_set_threads(int threads);

/* "OpenBLAS SkylakeX" (the kernel OpenBLAS runs), or "portable loop (OpenBLAS not
 * loaded)". Valid after kdc_gemm_init. */
const char *kdc_gemm_backend_name(void);

/* The raw openblas_get_corename() / openblas_get_config() strings ("" if not
 * loaded), and the OPENBLAS_CORETYPE we set ("" when we left it alone because
 * the user set it or the CPU has neither AVX2 nor AVX-512). */
const char *kdc_gemm_corename(void);
const char *kdc_gemm_config(void);
const char *kdc_gemm_coretype_set(void);

#endif
