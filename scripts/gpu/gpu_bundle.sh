#!/usr/bin/env bash
# gpu_bundle.sh - builds with CUDA=1 and packs everything a bare GPU machine
# needs to run our GPU checks into one tar.gz (docs/GPU.md, "The bundle"):
#
#   kdcache-gpu/bin/       kd-precompute, kd-train, kd-cache
#   kdcache-gpu/gpu/       the check-gpu programs (build/gpu/*)
#   kdcache-gpu/bench/     the benchmark programs (build/bench/*)
#   kdcache-gpu/bundle/    bundle_util (inputs, cache comparison, gpu-info)
#   kdcache-gpu/lib/       every shared library those load, except glibc, the
#                          NVIDIA driver and cuDNN / cuBLAS (found at run time,
#                          common/cuda/cuda_libs.h); the programs find them
#                          through their rpath $ORIGIN/../lib
#   kdcache-gpu/scripts/   gpu/gpu_check.sh, gpu/gpu_e2e.sh, bench/bench_gpu.sh
#   kdcache-gpu/BUILD_INFO commit, build machine, versions, the newest glibc
#                          symbol version any file needs
#   kdcache-gpu/MANIFEST   every file with its size (and the Debian package a
#                          library came from)
#
# The libraries are what `ldd` lists for every program plus what the tools
# dlopen (OpenBLAS, oneDNN and their dependencies: bundle_util objects loads
# them the way the tools do and lists the process's shared objects). Programs
# are copied without debug sections (strip --strip-debug; symbols stay).
# tar + gzip only (a minimal system has no xz or zstd). Fails if the archive
# reaches 40 MiB.
#
#   scripts/gpu/gpu_bundle.sh [OUT.tar.gz (build/dist/kdcache-gpu.tar.gz)]
#   env: JOBS (make -j, default nproc), NO_BUILD=1 (pack what build/ holds)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/dist/kdcache-gpu.tar.gz}
jobs=${JOBS:-$(nproc)}
max_bytes=$((40 * 1024 * 1024))
name=kdcache-gpu

if [ "${NO_BUILD:-0}" != 1 ]; then
    make -j"$jobs" CUDA=1 bundle-bins
fi
B=build
progs=("$B"/bin/kd-precompute "$B"/bin/kd-train "$B"/bin/kd-cache)
for f in "$B"/gpu/* "$B"/bench/* "$B"/bundle/*; do
    [ -f "$f" ] && [ -x "$f" ] && progs+=("$f")
done
for p in "${progs[@]}"; do
    [ -x "$p" ] || { echo "gpu_bundle: $p missing" >&2; exit 1; }
done
# The CUDA build is what this is for: refuse a CPU-only build.
if ! grep -q "cudnnConvolutionForward" "$B/bin/kd-precompute"; then
    echo "gpu_bundle: $B/bin/kd-precompute has no CUDA backend (build with CUDA=1)" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
# Staging and the partial archive stay out of the output's folder, which the
# device tool carries whole (docs/GPU.md): a killed run leaves nothing there.
stage=$(mktemp -d "$B/gpu-bundle-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
R=$stage/$name
mkdir -p "$R"/{bin,gpu,bench,bundle,lib,scripts/gpu,scripts/bench}

for p in "${progs[@]}"; do
    sub=$(basename "$(dirname "$p")")
    strip --strip-debug -o "$R/$sub/$(basename "$p")" "$p"
done
cp scripts/gpu/gpu_check.sh scripts/gpu/gpu_e2e.sh "$R/scripts/gpu/"
cp scripts/bench/bench_gpu.sh "$R/scripts/bench/"
chmod +x "$R"/scripts/*/*.sh

# ---- shared libraries ----
# glibc's own libraries stay the target's; so do the driver, cuDNN and cuBLAS.
skip_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libmvec\.so|libnss_|libBrokenLocale|libthread_db|libc_malloc_debug|libcuda\.so|libcudnn|libcublas|libnvidia|libnvrtc|libnvJitLink)'
libs=$(mktemp)
for p in "${progs[@]}"; do
    if ldd "$p" | grep -q 'not found'; then
        echo "gpu_bundle: $p: a library is missing here:" >&2
        ldd "$p" | grep 'not found' >&2
        exit 1
    fi
    ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' >> "$libs"
done
# What the tools dlopen (OpenBLAS, oneDNN, libgomp, ...), with their dependencies.
if ! "$B/bundle/bundle_util" objects > "$stage/objects.txt"; then
    echo "gpu_bundle: OpenBLAS or oneDNN cannot be loaded here (scripts/setup.sh)" >&2
    exit 1
fi
sed -n 's/^object: \(\/.*\)/\1/p' "$stage/objects.txt" >> "$libs"
copied=()
for l in $(sort -u "$libs"); do
    base=$(basename "$l")
    [[ $base =~ $skip_re ]] && continue
    [ -e "$R/lib/$base" ] && continue
    cp -L "$l" "$R/lib/$base"
    chmod 644 "$R/lib/$base"
    copied+=("$l" "$(readlink -f "$l")")
done
rm -f "$libs"
# Which Debian package each library came from (one dpkg query for all; with
# merged /usr a file may be registered under /lib or /usr/lib).
manifest_libs=
owners=$(dpkg -S "${copied[@]}" 2> /dev/null || true)
for ((i = 0; i < ${#copied[@]}; i += 2)); do
    pkg=$(awk -v a="${copied[i]}" -v b="${copied[i + 1]}" -F': ' '$2 == a || $2 == b { sub(/:.*/, "", $1); print $1; exit }' <<< "$owners")
    ver=$([ -n "$pkg" ] && dpkg-query -W -f='${Version}' "$pkg" 2> /dev/null || true)
    manifest_libs+="lib/$(basename "${copied[i]}") ${pkg:-?} ${ver:-?}"$'\n'
done

# ---- BUILD_INFO, MANIFEST ----
glibc_need=$(for f in "$R"/bin/* "$R"/gpu/* "$R"/bench/* "$R"/bundle/* "$R"/lib/*; do
    objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*'
done | sort -u -V | tail -n 1)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
nvcc_ver=$("${NVCC:-/usr/local/cuda/bin/nvcc}" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || true)
hdr() { sed -n "s/^#define $2 \([0-9]*\).*/\1/p" "/usr/local/cuda/include/$1" 2>/dev/null | head -n 1; }
{
    echo "commit: $commit$dirty"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m)"
    echo "glibc-built: $(getconf GNU_LIBC_VERSION)"
    echo "glibc-needed: ${glibc_need#GLIBC_} (newest GLIBC_ symbol version any bundled file uses)"
    echo "gcc: $(cc -dumpfullversion 2>/dev/null || cc -dumpversion)"
    echo "nvcc: ${nvcc_ver:-unknown}"
    echo "cudnn-headers: $(hdr cudnn_version.h CUDNN_MAJOR).$(hdr cudnn_version.h CUDNN_MINOR).$(hdr cudnn_version.h CUDNN_PATCHLEVEL)"
    echo "cublas-headers: $(hdr cublas_api.h CUBLAS_VER_MAJOR).$(hdr cublas_api.h CUBLAS_VER_MINOR).$(hdr cublas_api.h CUBLAS_VER_PATCH)"
} > "$R/BUILD_INFO"
{
    echo "# file bytes [debian-package version]"
    (cd "$R" && find . -type f ! -name MANIFEST -printf '%P %s\n' | sort) | while read -r f s; do
        info=$(grep -F "$f " <<<"$manifest_libs" | head -n 1 | cut -d' ' -f2- || true)
        echo "$f $s${info:+ $info}"
    done
} > "$R/MANIFEST"

tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -9 > "$stage/out.tar.gz"
size=$(stat -c %s "$stage/out.tar.gz")
if [ "$size" -ge "$max_bytes" ]; then
    echo "gpu_bundle: $out would be $size bytes, over the 40 MiB limit" >&2
    exit 1
fi
mv "$stage/out.tar.gz" "$out"
nlib=$(find "$R/lib" -type f | wc -l)
raw=$(du -sb "$R" | cut -f1)
printf 'gpu_bundle: %s: %.1f MiB (%d programs, %d libraries, %.1f MiB unpacked), commit %s%s\n' \
    "$out" "$(awk "BEGIN { print $size / 1048576 }")" "${#progs[@]}" "$nlib" \
    "$(awk "BEGIN { print $raw / 1048576 }")" "${commit:0:12}" "$dirty"
