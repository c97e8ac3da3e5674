#!/usr/bin/env bash
# gpu_check.sh - the one command to run on a GPU machine (docs/GPU.md). It
# unpacks the bundle that scripts/gpu/gpu_bundle.sh made and runs, each stage
# under its own time limit, all within GPU_CHECK_BUDGET seconds (450: the
# device machines give a command 10 minutes, our issue asks for under 8):
#
#   unpack     the bundle; the programs start (every library found)
#   info       nvidia-smi; the CUDA runtime, driver, cuDNN and cuBLAS found
#              (bundle_util gpu-info, common/cuda/cuda_libs.h); PyTorch's view
#   check-gpu  every check-gpu suite (gpu/test_gpu_*)
#   bench      scripts/bench/bench_gpu.sh: kd-precompute resnet50 224 px in
#              fp32, tf32 (compute capability 8.0 and up) and fp16, kd-train
#              resnet18 (BENCH_IMAGES images, default 2048)
#   e2e        scripts/gpu/gpu_e2e.sh: kd-precompute and kd-train on the GPU,
#              caches and evaluations compared with the CPU path
#
# Each stage ends "ok", "FAIL" or "not run: <why>" and the script goes on.
# Reports, in REPORT_DIR: summary.txt (one line per stage, the numbers that
# matter, the verdict; also printed at the end), env.txt (machine, nvidia-smi,
# libraries, PyTorch), check-gpu.log, bench.log, e2e.log.
# Exit 1 when a stage failed, else 0 (also when there is no GPU: then every
# GPU stage says "not run: no GPU ..." and nothing is claimed).
#
#   bash scripts/gpu/gpu_check.sh [BUNDLE.tar.gz | BUNDLE_DIR] [REPORT_DIR]
#     BUNDLE: default the bundle this script is in (when run from an unpacked
#             bundle), else build/dist/kdcache-gpu.tar.gz beside it
#     REPORT_DIR: default $OUT if set, else ./gpu-report-<date>
#   env: PYTHON (the interpreter for the wheel search and PyTorch's view;
#        default the first of python3, python, /usr/bin/python3 that imports
#        torch), GPU_CHECK_BUDGET (450), BENCH_IMAGES (2048), KDC_CUDNN_DIR,
#        KDC_CUBLAS_DIR, KDC_CUDA_WHEEL_DIRS (cuda_libs.h; the wheels found are
#        appended to the last),
#        GPU_CHECK_DRY=1: a dry run of this script's own logic on a machine
#        without a GPU: the CPU stands in for cuda:0 everywhere (check-gpu
#        suites with KDC_GPU_TEST_DEVICE=cpu, bench and e2e with DEVICE=cpu,
#        small sizes); every line of the report says "DRY RUN"; checks nothing
#        about the GPU
set -uo pipefail

T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
here=$(cd "$(dirname "$0")" && pwd)

src=${1:-}
if [ -z "$src" ]; then
    if [ -f "$here/../../BUILD_INFO" ]; then
        src=$(cd "$here/../.." && pwd)
    else
        src=$here/../../build/dist/kdcache-gpu.tar.gz
    fi
fi
report=${2:-${OUT:-$PWD/gpu-report-$(date +%Y%m%d-%H%M%S)}}
mkdir -p "$report" || { echo "gpu_check: cannot create $report" >&2; exit 1; }
report=$(cd "$report" && pwd)
S=$report/summary.txt
E=$report/env.txt
: > "$S"
: > "$E"

failed=0
incomplete=0
now() { date +%s; }
left() { echo $(( T0 + BUDGET - $(now) )); }
# A stage's time limit: what is left, less what the later stages are promised.
limit() { # RESERVE_FOR_LATER MAX
    local l=$(( $(left) - $1 ))
    [ "$l" -gt "$2" ] && l=$2
    echo "$l"
}
say() { echo "$*" >> "$S"; }
stage() { # NAME STATUS SECONDS DETAIL
    local line
    line=$(printf '%-10s %s (%s s)%s' "$1:" "$2" "$3" "${4:+: $4}")
    say "$line"
    echo "gpu_check: $line"
    case $2 in
    FAIL*) failed=1 ;;
    "not run"*) incomplete=1 ;;
    esac
}
section() { printf '\n==== %s ====\n' "$1" >> "$E"; }
# Runs "$@" with a time limit; stdout+stderr to FILE (appended).
timed() { # SECONDS FILE CMD...
    local s=$1 f=$2
    shift 2
    timeout -k 5 "$s" "$@" >> "$f" 2>&1
}

DRY=${GPU_CHECK_DRY:-0}
say "kdcache GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget $BUDGET s"
[ "$DRY" = 1 ] && say "DRY RUN: the CPU stands in for cuda:0 (GPU_CHECK_DRY=1); nothing about a GPU is checked"

# ---------------------------------------------------------------- unpack
t=$(now)
B=
if [ -d "$src" ]; then
    B=$(cd "$src" && pwd)
elif [ -f "$src" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/kdcache-gpu.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if tar -xzf "$src" -C "$work" 2> "$report/unpack.err" && [ -f "$work/kdcache-gpu/BUILD_INFO" ]; then
        B=$work/kdcache-gpu
        rm -f "$report/unpack.err"
    fi
fi
if [ -z "$B" ]; then
    stage unpack "FAIL" $(( $(now) - t )) "cannot unpack '$src' ($(head -c 300 "$report/unpack.err" 2>/dev/null))"
    for s in info check-gpu bench e2e; do stage "$s" "not run: no bundle" 0; done
    cat "$S"
    exit 1
fi
section "bundle ($B)"
cat "$B/BUILD_INFO" >> "$E"
say "bundle: $(sed -n 's/^commit: //p' "$B/BUILD_INFO"), built $(sed -n 's/^built: //p' "$B/BUILD_INFO")"
need=$(sed -n 's/^glibc-needed: \([0-9.]*\).*/\1/p' "$B/BUILD_INFO")
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
start_err=
if [ -n "$need" ] && [ -n "$have" ] &&
    [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
    start_err="this machine's glibc $have is older than the $need the bundle needs"
elif ! "$B/bin/kd-cache" --help > /dev/null 2> "$report/start.err"; then
    start_err="bin/kd-cache does not start: $(head -c 400 "$report/start.err")"
fi
rm -f "$report/start.err"
missing=
if command -v ldd > /dev/null 2>&1; then
    for p in "$B"/bin/* "$B"/gpu/* "$B"/bench/* "$B"/bundle/*; do
        m=$(ldd "$p" 2> /dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
        [ -n "$m" ] && missing+="$(basename "$p"): $m; "
    done
fi
if [ -n "$start_err" ] || [ -n "$missing" ]; then
    stage unpack "FAIL" $(( $(now) - t )) "${start_err}${missing:+ missing libraries: $missing}"
    for s in info check-gpu bench e2e; do stage "$s" "not run: the bundle's programs cannot start" 0; done
    cat "$S"
    exit 1
fi
stage unpack ok $(( $(now) - t )) "glibc ${have:-?} (needs ${need:-?}), every program starts"

# ---------------------------------------------------------------- info
t=$(now)
section machine
{
    uname -a
    (. /etc/os-release 2> /dev/null && echo "$PRETTY_NAME")
    echo "glibc: ${have:-?}"
    echo "cpus: $(nproc)"
    grep -m1 MemTotal /proc/meminfo 2> /dev/null
    echo "budget: $BUDGET s"
} >> "$E" 2>&1
section nvidia-smi
gpu_reason=
q=
if command -v nvidia-smi > /dev/null 2>&1; then
    timed 30 "$E" nvidia-smi
    q=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
        --format=csv,noheader 2> /dev/null | head -n 1)
    [ -n "$q" ] && say "nvidia-smi: $q" || gpu_reason="nvidia-smi lists no GPU"
else
    echo "nvidia-smi: not found" >> "$E"
    gpu_reason="no nvidia-smi"
fi

# Python: the interpreter that imports torch (or $PYTHON), for the wheels'
# folders (cuDNN and cuBLAS) and PyTorch's own view of the machine.
py=${PYTHON:-}
if [ -z "$py" ]; then
    for p in python3 python /usr/bin/python3; do
        if command -v "$p" > /dev/null 2>&1 && timeout 60 "$p" -c 'import torch' > /dev/null 2>&1; then
            py=$p
            break
        fi
    done
fi
section python
if [ -n "$py" ] && command -v "$py" > /dev/null 2>&1; then
    echo "python: $(command -v "$py")" >> "$E"
    wheels=$(timeout 60 "$py" - 2>> "$E" <<'EOF'
import glob, os
dirs = []
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
for r in roots:
    for pat in ("libcudnn.so.9", "libcublas.so.13"):
        for f in sorted(glob.glob(os.path.join(r, "**", pat), recursive=True)):
            d = os.path.dirname(f)
            if d not in dirs:
                dirs.append(d)
print(":".join(dirs))
EOF
    )
    echo "wheel folders with cuDNN / cuBLAS: ${wheels:-none}" >> "$E"
    if [ -n "$wheels" ]; then
        export KDC_CUDA_WHEEL_DIRS=${KDC_CUDA_WHEEL_DIRS:+$KDC_CUDA_WHEEL_DIRS:}$wheels
    fi
    timed 90 "$E" "$py" -c '
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("torch sees", torch.cuda.device_count(), "GPU(s):", p.name, "compute %d.%d" % (p.major, p.minor))
else:
    print("torch sees no GPU")
' || echo "(PyTorch's view failed or timed out)" >> "$E"
else
    echo "python: none imports torch (set PYTHON); wheels not searched" >> "$E"
fi
for v in KDC_CUDNN_DIR KDC_CUBLAS_DIR KDC_CUDA_WHEEL_DIRS LD_LIBRARY_PATH; do
    echo "$v=${!v:-}" >> "$E"
done

section "gpu-info (what our programs load)"
info=$report/gpu-info.tmp
timeout -k 5 60 "$B/bundle/bundle_util" gpu-info > "$info" 2>&1
info_rc=$?
cat "$info" >> "$E"
for k in cuda-runtime cuda-driver gpus gpu0 cublas cudnn libs-error backend; do
    grep -m1 "^$k: " "$info" | sed 's/^/  /' >> "$S"
done
cc=$(sed -n 's/^gpu0: .*, compute \([0-9]*\)\.\([0-9]*\),.*/\1\2/p' "$info")
if [ "$DRY" = 1 ]; then
    gpu_ok=1
    stage info ok $(( $(now) - t )) "DRY RUN, cpu stands in for cuda:0"
elif grep -q '^backend: cuda:0 created, a 3x3 convolution ran' "$info"; then
    gpu_ok=1
    stage info ok $(( $(now) - t )) "cuda:0 works"
elif grep -q '^backend: cuda:0 created' "$info"; then
    # the backend starts but its first convolution failed: the GPU stages still
    # run (they will say more), the info stage fails
    gpu_ok=1
    stage info "FAIL" $(( $(now) - t )) "$(sed -n 's/^backend: //p' "$info" | head -n 1)"
else
    gpu_ok=0
    why=$(sed -n 's/^backend: \(cuda:0 not created: \)\{0,1\}//p' "$info" | head -n 1)
    [ -z "$why" ] && why="bundle_util gpu-info exited $info_rc"
    gpu_reason="no GPU (${gpu_reason:+$gpu_reason; }$why)"
    if [ -n "$q" ]; then
        # nvidia-smi sees a GPU but our programs cannot use it: that is a failure.
        stage info "FAIL" $(( $(now) - t )) "nvidia-smi sees a GPU, cuda:0 does not start: $why"
        gpu_reason="cuda:0 does not start ($why)"
    else
        stage info ok $(( $(now) - t )) "$gpu_reason"
    fi
fi
rm -f "$info"

# ---------------------------------------------------------------- check-gpu
t=$(now)
L=$report/check-gpu.log
: > "$L"
# the op checks first (everything else builds on them), then any suite added later
suites=()
for s in test_gpu_ops test_gpu_train test_gpu_kdtrain test_gpu_precompute; do
    [ -x "$B/gpu/$s" ] && suites+=("$B/gpu/$s")
done
for s in "$B"/gpu/test_gpu_*; do
    case " ${suites[*]} " in *" $s "*) ;; *) [ -x "$s" ] && suites+=("$s") ;; esac
done
budget=$(limit 230 300) # bench and e2e are promised 230 s
details=
suite_fail=0
suite_notrun=0
n=${#suites[@]}
i=0
for s in "${suites[@]}"; do
    i=$((i + 1))
    name=$(basename "$s")
    # this suite's share: what the stage has left, keeping 20 s for each later one
    sl=$(( budget - ($(now) - t) - 20 * (n - i) ))
    if [ "$sl" -lt 10 ]; then
        details+=" $name not run (out of time);"
        suite_notrun=1
        continue
    fi
    echo "==== $name (limit $sl s)" >> "$L"
    first=$(( $(wc -l < "$L") + 1 ))
    ts=$(now)
    if [ "$DRY" = 1 ]; then
        KDC_GPU_TEST_DEVICE=cpu KDC_BIN=$B/bin timed "$sl" "$L" "$s"
    else
        KDC_BIN=$B/bin timed "$sl" "$L" "$s"
    fi
    rc=$?
    dt=$(( $(now) - ts ))
    res=$(tail -n +"$first" "$L" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        details+=" $name TIMED OUT after $dt s;"
        suite_fail=1
    elif [ "$rc" != 0 ]; then
        details+=" $name FAILED (exit $rc, $dt s);"
        suite_fail=1
    elif [ -z "$res" ] && tail -n +"$first" "$L" | grep -q 'not run'; then
        details+=" $name not run;"
        suite_notrun=1
    else
        details+=" $name ${res#*: } ($dt s);"
    fi
done
if [ "$gpu_ok" = 0 ]; then
    stage check-gpu "not run: $gpu_reason" $(( $(now) - t )) "${details# }"
elif [ "$suite_fail" = 1 ]; then
    stage check-gpu "FAIL" $(( $(now) - t )) "${details# }"
elif [ "$suite_notrun" = 1 ]; then
    stage check-gpu "not run: a suite did not run" $(( $(now) - t )) "${details# }"
else
    stage check-gpu ok $(( $(now) - t )) "${details# }"
fi
# the measured differences and timings the suites print
grep -E '^check-gpu: ' "$L" | grep -v 'not run' | head -n 60 | sed 's/^/  /' >> "$S"
grep -E '^tests/gpu/.*:[FE]:' "$L" | head -n 20 | sed 's/^/  /' >> "$S"

# ---------------------------------------------------------------- bench
t=$(now)
L=$report/bench.log
: > "$L"
if [ "$gpu_ok" = 0 ]; then
    stage bench "not run: $gpu_reason" 0
else
    precs="fp32 fp16"
    why_precs=" (no tf32: it needs compute capability 8.0, this GPU has ${cc:-?})"
    if [ -n "$cc" ] && [ "$cc" -ge 80 ]; then
        precs="fp32 tf32 fp16"
        why_precs=
    fi
    [ "$DRY" = 1 ] && precs=fp32 && why_precs=" (DRY RUN on the CPU)"
    bl=$(limit 100 240) # e2e is promised 100 s
    if [ "$bl" -lt 30 ]; then
        stage bench "not run: out of time ($(left) s left)" 0
    else
        if [ "$DRY" = 1 ]; then
            DEVICE=cpu BENCH_NO_GPU_OK=1 PRECISIONS=$precs timed "$bl" "$L" \
                bash "$B/scripts/bench/bench_gpu.sh" "${BENCH_IMAGES:-40}" 10
        else
            PRECISIONS=$precs timed "$bl" "$L" bash "$B/scripts/bench/bench_gpu.sh" "${BENCH_IMAGES:-2048}" 64
        fi
        rc=$?
        case $rc in
        0) stage bench ok $(( $(now) - t )) "kd-precompute in $precs$why_precs" ;;
        2) stage bench "not run: $(tail -n 1 "$L")" $(( $(now) - t )) ;;
        124 | 137) stage bench "FAIL" $(( $(now) - t )) "timed out after $bl s" ;;
        *) stage bench "FAIL" $(( $(now) - t )) "exit $rc" ;;
        esac
        grep -E '^(kd-precompute|kd-train |per image)|^  kd-precompute: stages|FAILED' "$L" | sed 's/^/  /' >> "$S"
    fi
fi

# ---------------------------------------------------------------- e2e
t=$(now)
L=$report/e2e.log
: > "$L"
if [ "$gpu_ok" = 0 ]; then
    stage e2e "not run: $gpu_reason" 0
else
    el=$(limit 5 300)
    if [ "$el" -lt 30 ]; then
        stage e2e "not run: out of time ($(left) s left)" 0
    else
        if [ "$DRY" = 1 ]; then
            DEVICE=cpu PER_CLASS=8 EPOCHS=1 timed "$el" "$L" bash "$B/scripts/gpu/gpu_e2e.sh"
        else
            timed "$el" "$L" bash "$B/scripts/gpu/gpu_e2e.sh"
        fi
        rc=$?
        case $rc in
        0) stage e2e ok $(( $(now) - t )) "every checked comparison within its bound" ;;
        124 | 137) stage e2e "FAIL" $(( $(now) - t )) "timed out after $el s" ;;
        *) stage e2e "FAIL" $(( $(now) - t )) "exit $rc" ;;
        esac
        grep -E '^e2e: |^  epoch ' "$L" | sed 's/^/  /' >> "$S"
    fi
fi

# ---------------------------------------------------------------- verdict
total=$(( $(now) - T0 ))
if [ "$DRY" = 1 ]; then
    verdict="DRY RUN $([ "$failed" = 1 ] && echo FAILED || echo "finished"), the CPU stood in for the GPU: nothing about a GPU was checked"
elif [ "$failed" = 1 ]; then
    verdict="FAIL"
elif [ "$gpu_ok" = 0 ]; then
    verdict="no GPU, nothing on a GPU was checked"
elif [ "$incomplete" = 1 ]; then
    verdict="INCOMPLETE (a stage did not run)"
else
    verdict="PASS"
fi
say "result: $verdict; $total s of the $BUDGET s budget; reports in $report"
echo
cat "$S"
[ "$failed" = 1 ] && exit 1
exit 0
