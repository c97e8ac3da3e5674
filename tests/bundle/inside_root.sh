#!/bin/bash
# inside_root.sh DIR - the part of `make check-bundle` that runs inside the
# minimal root (tests/bundle/check_bundle.sh copies it to DIR with the bundle
# and gpu_check.sh). Plain bash and coreutils only: that is all there is.
# One "ok"/"FAIL" line per check; exit 1 if any failed.
set -uo pipefail
D=$1
cd "$D" || exit 1
bad=0
ok() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; bad=1; }
# glibc's own files, which the bundle leaves to the system
# DIR/bin/../lib/x -> DIR/lib/x (how the loader spells $ORIGIN/../lib)
norm() { sed 's|/[^/]*/\.\./|/|'; }
glibc_re='/(ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libmvec\.so\.1)$'

echo "check-bundle (inside $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(getconf GNU_LIBC_VERSION | cut -d' ' -f2)):"
for c in python3 nvidia-smi nvcc; do
    command -v "$c" > /dev/null && fail "$c is installed in the minimal root"
done
[ -e /usr/local/cuda ] && fail "/usr/local/cuda exists in the minimal root"

tar -xzf kdcache-gpu.tar.gz || { fail "tar -xzf"; exit 1; }
B=$D/kdcache-gpu
ok "unpacked ($(du -sh "$B" | cut -f1))"

# ---- every program links against the bundle and glibc only ----
for p in "$B"/bin/* "$B"/gpu/* "$B"/bench/* "$B"/bundle/*; do
    out=$(ldd "$p" 2>&1)
    if grep -q 'not found' <<< "$out"; then
        fail "ldd $(basename "$p"): $(grep 'not found' <<< "$out" | tr -s ' \t' ' ' | tr '\n' ';')"
        continue
    fi
    foreign=$(awk '$2 == "=>" { print $3 }' <<< "$out" | norm | grep -v "^$B/lib/" |
        grep -Ev "$glibc_re" || true)
    if [ -n "$foreign" ]; then
        fail "ldd $(basename "$p"): outside the bundle: $(head -n 5 <<< "$foreign" | tr '\n' ' ')"
    fi
done
[ "$bad" = 0 ] && ok "ldd: every program's libraries are the bundle's or glibc's"

# ---- --help ----
for t in kd-precompute kd-train kd-cache; do
    if "$B/bin/$t" --help > help.out 2>&1 && grep -q '^usage: ' help.out; then
        ok "$t --help"
    else
        fail "$t --help: $(head -c 300 help.out)"
    fi
done

# ---- the check-gpu programs start and say they did not run ----
for p in "$B"/gpu/*; do
    if KDC_BIN=$B/bin timeout 120 "$p" > gpu.out 2>&1 && grep -q 'not run' gpu.out; then
        ok "$(basename "$p"): $(grep -m1 'not run' gpu.out)"
    else
        fail "$(basename "$p"): $(tail -c 300 gpu.out)"
    fi
done

# ---- a small CPU run under LD_DEBUG=libs ----
# Every library a process initialises must come from the bundle or glibc,
# including what the tools dlopen (OpenBLAS, oneDNN, libgomp).
check_inits() { # NAME LD_DEBUG_OUTPUT (one file per process: NAME.PID)
    local inits foreign
    inits=$(cat "$2".* 2> /dev/null | sed -n 's/.*calling init: //p' | norm | sort -u)
    foreign=$(grep -v "^$B/lib/" <<< "$inits" | grep -Ev "$glibc_re" || true)
    if [ -z "$inits" ]; then
        fail "$1: LD_DEBUG printed nothing"
    elif [ -n "$foreign" ]; then
        fail "$1 initialised libraries from outside the bundle: $(head -n 5 <<< "$foreign" | tr '\n' ' ')"
    else
        ok "$1 initialised $(wc -l <<< "$inits") libraries, all the bundle's or glibc's" \
           "($(grep -c "^$B/lib/" <<< "$inits") from the bundle$(grep -qE 'libopenblas|libdnnl' <<< "$inits" && echo ", OpenBLAS and oneDNN among them"))"
    fi
}
U=$B/bundle/bundle_util
"$U" images data 3 8 48 40 1 2 && "$U" weights teacher.safetensors resnet8x4 3 5 random-bn &&
    "$U" images val 3 4 48 40 2 2 || fail "bundle_util made no inputs"
if LD_DEBUG=libs LD_DEBUG_OUTPUT=$D/ld.pc "$B/bin/kd-precompute" --data data --teacher resnet8x4 --weights teacher.safetensors \
    --out cache.h5 --view-policy pad-crop --views 2 --image-size 32 --pad 4 --resize-size 32 \
    --batch 8 --threads 2 --quiet --device cpu 2> pc.log; then
    ok "kd-precompute --device cpu: $(ls -l cache.h5 | awk '{ print $5 }') bytes"
    check_inits kd-precompute "$D/ld.pc"
else
    fail "kd-precompute: $(tail -n 3 pc.log)"
fi
if LD_DEBUG=libs LD_DEBUG_OUTPUT=$D/ld.tr "$B/bin/kd-train" --data data --cache cache.h5 --student resnet8x4 --out run \
    --epochs 1 --batch 8 --lr 0.01 --kd-weight 1 --ce-weight 0.5 --val val --threads 2 \
    --quiet --device cpu 2> tr.log && [ -f run/student.safetensors ] && [ -f run/metrics.csv ]; then
    ok "kd-train --device cpu: $(tail -n 1 run/metrics.csv | cut -d, -f1-4,9-10)"
    check_inits kd-train "$D/ld.tr"
else
    fail "kd-train: $(tail -n 3 tr.log)"
fi
if "$B/bin/kd-cache" verify cache.h5 --data data > verify.out 2>&1; then
    ok "kd-cache verify --data: $(tail -n 1 verify.out)"
else
    fail "kd-cache verify: $(tail -n 3 verify.out)"
fi

# ---- the GPU path fails cleanly ----
"$B/bin/kd-precompute" --data data --teacher resnet8x4 --weights teacher.safetensors \
    --out gpu.h5 --image-size 32 --resize-size 32 --device cuda > cuda.out 2>&1
rc=$?
if [ "$rc" = 1 ] && [ "$(wc -l < cuda.out)" = 1 ] && grep -q 'cuda:0' cuda.out && [ ! -e gpu.h5 ]; then
    ok "kd-precompute --device cuda: exit 1, $(cat cuda.out)"
else
    fail "kd-precompute --device cuda: exit $rc, $(head -c 300 cuda.out)"
fi
"$U" gpu-info > info.out 2>&1
if grep -q '^cublas: not loaded' info.out && grep -q '^cudnn: not tried' info.out &&
    grep -q '^backend: cuda:0 not created' info.out; then
    ok "bundle_util gpu-info: $(grep '^cublas: ' info.out | cut -c1-160)..."
else
    fail "bundle_util gpu-info: $(head -c 600 info.out)"
fi

# ---- gpu_check.sh: "no GPU", exit 0 ----
bash "$D/gpu_check.sh" "$D/kdcache-gpu.tar.gz" "$D/report" > check.out 2>&1
rc=$?
if [ "$rc" = 0 ] && grep -q '^result: no GPU' report/summary.txt &&
    grep -q '^unpack: *ok' report/summary.txt &&
    [ "$(grep -c '^\(check-gpu\|bench\|e2e\): *not run: no GPU' report/summary.txt)" = 3 ]; then
    ok "gpu_check.sh: exit 0, $(grep '^result: ' report/summary.txt | cut -c1-120)"
else
    fail "gpu_check.sh: exit $rc"
    sed 's/^/       /' check.out | tail -n 20
fi
ls report > /dev/null 2>&1 && echo "  report files: $(ls report | tr '\n' ' ')"

[ "$bad" = 0 ] && echo "check-bundle: every check passed inside the minimal root"
exit "$bad"
