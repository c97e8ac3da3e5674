#!/usr/bin/env bash
# check_bundle.sh - `make check-bundle`: proof that the GPU bundle is
# self-contained. Builds it (scripts/gpu/gpu_bundle.sh), then unpacks it in a
# minimal Debian root (debootstrap --variant=minbase bookworm, made once and
# cached) that has none of our libraries, and runs there, as root in a chroot
# with a clean environment (tests/bundle/inside_root.sh):
#   - ldd of every program: nothing missing, everything but glibc from the
#     bundle's lib/;
#   - every tool's --help; every check-gpu program (each says "not run");
#   - a small CPU run: kd-precompute, kd-train, kd-cache verify --data, on a
#     JPEG folder and teacher weights made by bundle_util; under LD_DEBUG=libs,
#     every library the tools initialise (the dlopen'ed OpenBLAS, oneDNN and
#     libgomp included) must be the bundle's or glibc's;
#   - --device cuda: a clean one-line error and exit 1;
#   - bundle_util gpu-info: cuDNN / cuBLAS "not loaded", the programs run anyway;
#   - scripts/gpu/gpu_check.sh on the tar.gz: "no GPU", exit 0.
# The minimal root does carry a few libraries that apt itself needs and that
# the bundle also holds (zlib, LZ4, nettle, GnuTLS, libstdc++, ...): during the
# run each of those files is hidden (an empty file bind-mounted over it, in a
# private mount namespace), so a program that reached for them would fail.
#
#   tests/bundle/check_bundle.sh
#   env: KDC_MINROOT (cache folder, default /var/cache/kdcache-minroot),
#        KDC_MIRROR (http://deb.debian.org/debian), NO_BUILD=1 (use the
#        existing build/dist/kdcache-gpu.tar.gz)
# Needs root (debootstrap, chroot, mount); otherwise says "not run" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)

if [ "$(id -u)" != 0 ]; then
    echo "check-bundle: not run: needs root (debootstrap, chroot, mount namespaces)"
    exit 0
fi
for c in debootstrap chroot unshare mount; do
    command -v "$c" > /dev/null || { echo "check-bundle: not run: no $c (apt-get install debootstrap)"; exit 0; }
done

bundle=build/dist/kdcache-gpu.tar.gz
if [ "${NO_BUILD:-0}" != 1 ] && ! command -v nvcc > /dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "check-bundle: not run: no nvcc (the bundle is the CUDA build)"
    exit 0
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
    bash scripts/gpu/gpu_bundle.sh "$bundle"
fi
[ -f "$bundle" ] || { echo "check-bundle: $bundle missing" >&2; exit 1; }
t_bundle=$(date +%s)

# ---- the minimal root, cached ----
cache=${KDC_MINROOT:-/var/cache/kdcache-minroot}
root=$cache/bookworm-minbase
made=cached
if [ ! -f "$root/.kdc-complete" ]; then
    rm -rf "$root.partial"
    mkdir -p "$cache"
    echo "check-bundle: making the minimal root in $root (debootstrap, about a minute)"
    # A root that cannot be made (no network, no mirror) is the machine's
    # problem, not the bundle's: say so loudly and claim nothing.
    if ! debootstrap --variant=minbase bookworm "$root.partial" "${KDC_MIRROR:-http://deb.debian.org/debian}" \
        > "$cache/debootstrap.log" 2>&1; then
        echo "check-bundle: not run: debootstrap could not make the minimal root (network?):" \
             "$(tail -n 1 "$cache/debootstrap.log"); see $cache/debootstrap.log"
        exit 0
    fi
    rm -rf "$root"
    mv "$root.partial" "$root"
    touch "$root/.kdc-complete"
    made="made in $(( $(date +%s) - t_bundle )) s"
fi
t_root=$(date +%s)
# It must stay minimal: none of our libraries, no CUDA, no Python.
ours=$(chroot "$root" dpkg-query -W -f='${Package}\n' 2> /dev/null |
    grep -E '^(libhdf5|libturbojpeg|libjpeg|libjansson|libopenblas|libblas|libdnnl|libcheck|check$|libsubunit|libgomp|libgfortran|libcurl|libaec|libsz|python3|cuda|libcudnn|nvidia)|-dev$' || true)
if [ -n "$ours" ] || [ -e "$root/usr/local/cuda" ]; then
    echo "check-bundle: $root is not minimal any more ($(echo $ours)); remove it to have it remade" >&2
    exit 1
fi

# ---- the run, in a private mount namespace ----
run=$(mktemp -d "$root/tmp/kdc-bundle.XXXXXX")
trap 'rm -rf "$run"' EXIT
cp "$bundle" "$run/kdcache-gpu.tar.gz"
cp scripts/gpu/gpu_check.sh tests/bundle/inside_root.sh "$run/"
# the root's copies of libraries the bundle brings too
libdir=$root/usr/lib/x86_64-linux-gnu
hide=()
for l in $(tar -tzf "$bundle" | sed -n 's|^kdcache-gpu/lib/||p'); do
    [ -n "$l" ] && [ -e "$libdir/$l" ] && hide+=("$(readlink -f "$libdir/$l")")
done
echo "check-bundle: hiding the root's own copies of ${#hide[@]} libraries the bundle brings"
inner=/tmp/$(basename "$run")
set +e
unshare --mount --propagation private bash -c '
    set -e
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    empty=$(mktemp)
    for f in "$@"; do mount --bind "$empty" "$f"; done
    chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
        TMPDIR=/tmp LANG=C /bin/bash '"$inner"'/inside_root.sh '"$inner"'
' bash "$root" "${hide[@]}"
rc=$?
set -e
t_end=$(date +%s)
if [ "$rc" = 0 ]; then
    echo "check-bundle: passed in $(( t_end - t0 )) s (bundle $(( t_bundle - t0 )) s, root $made, run in the root $(( t_end - t_root )) s)"
else
    echo "check-bundle: FAILED (exit $rc) after $(( t_end - t0 )) s"
fi
exit "$rc"
