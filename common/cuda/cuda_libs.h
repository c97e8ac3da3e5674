/* cuda_libs.h - cuDNN and cuBLAS, loaded at run time, and a report of what
 * was found.
 *
 * The binaries are not linked against libcudnn / libcublas: cuda_libs.cu
 * defines every cuDNN / cuBLAS function the code calls as a small trampoline
 * that jumps through a pointer filled by kdc_cuda_libs_load (dlopen + dlsym),
 * so call sites keep calling cudnnXxx / cublasXxx, the same binary starts on
 * a machine without them, and a function missing from the list there fails the
 * link (and scripts/gpu/check_cuda_shim.sh, run when libkdcuda.a is built).
 * The CUDA runtime stays static (cudart_static) and loads the driver itself.
 *
 * Where the libraries are looked for, first hit wins, cuBLAS and cuDNN each:
 *   1. $KDC_CUBLAS_DIR / $KDC_CUDNN_DIR (a folder; a user's override);
 *   2. every folder of $KDC_CUDA_WHEEL_DIRS (':'-separated; scripts/gpu/ put
 *      the lib folders of PyTorch's nvidia-* wheels there);
 *   3. /usr/local/cuda/lib64;
 *   4. the loader's own search (rpath $ORIGIN/../lib, LD_LIBRARY_PATH,
 *      ld.so.cache, /lib, /usr/lib).
 * In 1-3 the file is tried as DIR/NAME and DIR/lib/NAME (a wheel's package
 * folder, e.g. site-packages/nvidia/cudnn). libcublasLt is loaded from the
 * folder that holds libcublas first, so that a folder without an rpath still
 * gives a matching pair. Both libraries are loaded once per process. */
#ifndef KDC_CUDA_LIBS_H
#define KDC_CUDA_LIBS_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>

#include "common/base/error.h"

/* Loads cuBLAS, then cuDNN, and resolves every function of the list. Only the
 * first call does the work; later calls return its result. KDC_EDEVICE with
 * one line naming what was tried when either is missing or lacks a function.
 * Builds without CUDA: KDC_EDEVICE ("this build has no CUDA backend"). */
kdc_status kdc_cuda_libs_load(kdc_error *err);

/* What this process found, as "key: value" lines (docs/GPU.md lists the keys):
 * CUDA runtime and driver versions, the GPUs, and per library its version and
 * path or why it was not loaded, then every loaded shared object of the CUDA
 * family (driver, cuDNN and cuBLAS sub-libraries, NVRTC) by path. Loads the
 * libraries first (kdc_cuda_libs_load), initialises the CUDA runtime, never
 * fails. Writes at most `size` bytes including the NUL; returns the length the
 * whole report needs (like snprintf). */
size_t kdc_cuda_libs_report(char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
