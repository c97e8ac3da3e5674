#!/usr/bin/env bash
# check_cuda_shim.sh SHIM.o OBJ... - fails when an object calls a cuDNN or
# cuBLAS function that the run-time shim (common/cuda/cuda_libs.cu) does not
# define. The binaries are not linked against libcudnn / libcublas, so such a
# call would be an undefined reference at link time anyway; this names the
# function and the object, and also catches objects no program links yet.
# Run by the Makefile each time libkdcuda.a is built.
set -euo pipefail
shim=$1
shift
[ -f "$shim" ] || { echo "check_cuda_shim: $shim missing (common/cuda/cuda_libs.cu not built?)" >&2; exit 1; }
defined=$(nm --defined-only "$shim" | awk '$2 == "T" && $3 ~ /^(cudnn|cublas)/ { print $3 }' | sort -u)
bad=0
for o in "$@"; do
    [ "$o" = "$shim" ] && continue
    for sym in $(nm -u "$o" | awk '$2 ~ /^(cudnn|cublas)/ { print $2 }' | sort -u); do
        if ! grep -qx "$sym" <<<"$defined"; then
            echo "error: $o calls $sym, which common/cuda/cuda_libs.cu does not load:" \
                 "add F($sym) to KDC_CUDNN_FUNCS or KDC_CUBLAS_FUNCS there (docs/GPU.md)" >&2
            bad=1
        fi
    done
done
exit $bad
