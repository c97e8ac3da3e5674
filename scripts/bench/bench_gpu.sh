#!/usr/bin/env bash
# bench_gpu.sh - GPU throughput of the two tools, next to what each image costs:
#   kd-precompute: images/s of a resnet50 teacher at 224 px (center view),
#                  once per precision of PRECISIONS
#   kd-train:      steps/s of a resnet18 student (KD + DOT from the fp32 cache)
# plus, where a Python with torchvision is found, one line per model of FLOPs
# and bytes per image, so the numbers can be compared with the card's peaks.
#
# Runs only where a GPU is: without one it says so and exits 2, measuring
# nothing. Inputs are synthetic and made by our own helper (bundle_util:
# smooth random 500x375 JPEGs, resnet50 weights from a seed), so nothing but
# the tools is needed and the figures are throughput, not accuracy.
# Wall-clock times include tool start-up and cuDNN's first-call setup; N is
# large enough by default that these are amortised.
#
# Works from the repository (programs in build/, `make bundle-bins`) and from
# an unpacked GPU bundle (programs in bin/ and bundle/, scripts/gpu/).
#
#   scripts/bench/bench_gpu.sh [N_IMAGES (2048)] [BATCH (64)]
#   env: DEVICE (cuda:0), BIN (the tools' folder), PRECISIONS (fp32; e.g.
#        "fp32 tf32 fp16": kd-precompute's --precision, one run each),
#        PRECISION (one precision, the older name of PRECISIONS),
#        DECODE_THREADS (kd-precompute's --decode-threads; default all cores:
#        on a GPU, JPEG decoding is usually the bottleneck), PYTHON (for the
#        FLOP counts only; default: the first python3 that imports torchvision)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

N=${1:-2048}
BATCH=${2:-64}
DEVICE=${DEVICE:-cuda:0}
if [ -x "$root/bin/kd-precompute" ]; then # an unpacked bundle
    BIN=${BIN:-$root/bin}
    UTIL=$root/bundle/bundle_util
else
    BIN=${BIN:-$root/build/bin}
    UTIL=$root/build/bundle/bundle_util
fi
PRECISIONS=${PRECISIONS:-${PRECISION:-fp32}}

die() { echo "bench_gpu: $*" >&2; exit 2; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
now() { date +%s.%N; }

# ---- refuse clearly where nothing can be measured ----
gpu_name="no GPU (DEVICE=$DEVICE)"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    # BENCH_NO_GPU_OK=1 with DEVICE=cpu: a dry run of this script (gpu_check.sh's GPU_CHECK_DRY)
    if [ "${BENCH_NO_GPU_OK:-0}" != 1 ] || [ "$DEVICE" != cpu ]; then
        die "no GPU on this machine (nvidia-smi finds none); nothing measured"
    fi
else
    gpu_name=$(nvidia-smi -L | head -n 1)
fi
for t in "$BIN/kd-precompute" "$BIN/kd-train" "$UTIL"; do
    [ -x "$t" ] || die "$t missing; run 'make bundle-bins' first"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- synthetic data and weights ----
start=$(now)
"$UTIL" images "$work/data" 10 $(( (N + 9) / 10 )) 500 375 1 "$(nproc)"
"$UTIL" weights "$work/resnet50.safetensors" resnet50 1000 0
N=$(( (N + 9) / 10 * 10 ))
echo "bench_gpu: inputs made in $(calc "$(now) - $start") s ($N JPEGs of 500x375, resnet50 weights)"

jpeg_bytes=$(du -sb "$work/data" | cut -f1)
DECODE_THREADS=${DECODE_THREADS:-$(nproc)}

# ---- FLOPs and bytes per image, where torchvision is there ----
py=
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch, torchvision' 2>/dev/null; then
        py=$p
        break
    fi
done
cost_ok=0
if [ -n "$py" ] && "$py" - "$work" <<'EOF'
import os, sys
import torch, torchvision
root = sys.argv[1]
# FLOPs (2 per multiply-add of conv and linear layers) and activation bytes
# (every layer output written once and read at least once) per image at 224 px.
def cost(model):
    macs, act = [0], [0]
    def hook(m, inp, out):
        act[0] += out.numel() * 4
        if isinstance(m, torch.nn.Conv2d):
            macs[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs[0] += out.numel() * m.in_features
    hs = [m.register_forward_hook(hook) for m in model.modules() if len(list(m.children())) == 0]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    for h in hs:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return 2 * macs[0], 2 * act[0], 4 * params
for name, m in (("resnet50", torchvision.models.resnet50()), ("resnet18", torchvision.models.resnet18())):
    f, a, w = cost(m)
    with open(os.path.join(root, name + ".cost"), "w") as fh:
        fh.write("%d %d %d\n" % (f, a, w))
EOF
then
    cost_ok=1
fi

echo "bench_gpu: $gpu_name, $N images, batch $BATCH, precisions: $PRECISIONS"

# ---- kd-precompute, once per precision ----
# Not --quiet: its closing report splits the time by stage (how long the
# teacher waited for decoded images, forward and writer rates); progress lines
# go to the same log and are dropped below.
train_cache=
failed=0
for prec in $PRECISIONS; do
    start=$(now)
    if ! "$BIN/kd-precompute" --data "$work/data" --teacher resnet50 \
        --weights "$work/resnet50.safetensors" --out "$work/cache_$prec.h5" \
        --view-policy center --image-size 224 --resize-size 256 --logits float16 \
        --batch "$BATCH" --device "$DEVICE" --decode-threads "$DECODE_THREADS" \
        --precision "$prec" 2> "$work/precompute_$prec.log"; then
        echo "kd-precompute resnet50 224px $prec: FAILED:"
        tail -n 5 "$work/precompute_$prec.log" | sed 's/^/  /'
        failed=1
        continue
    fi
    pre_s=$(calc "$(now) - $start")
    printf 'kd-precompute resnet50 224px %s: %.1f images/s (%.2f s wall, %d decode threads)\n' \
        "$prec" "$(calc "$N / $pre_s")" "$pre_s" "$DECODE_THREADS"
    grep -e ': wrote ' -e ': stages: ' "$work/precompute_$prec.log" | sed 's/^/  /' || true
    [ -z "$train_cache" ] && train_cache=$work/cache_$prec.h5
    rm -f "$work/cache_$prec.h5.partial"
done

# ---- kd-train: one epoch of KD from the first cache made ----
if [ -n "$train_cache" ]; then
    start=$(now)
    if "$BIN/kd-train" --data "$work/data" --cache "$train_cache" --student resnet18 \
        --out "$work/run" --epochs 1 --batch "$BATCH" --lr 0.1 --optimizer dot \
        --kd-weight 0.5 --ce-weight 0.5 --device "$DEVICE" --quiet 2> "$work/train.log"; then
        train_s=$(calc "$(now) - $start")
        steps=$(( (N + BATCH - 1) / BATCH ))
        printf 'kd-train resnet18 224px KD+DOT (cache %s): %.2f steps/s, %.1f images/s (%.2f s wall)\n' \
            "$(basename "$train_cache" .h5)" "$(calc "$steps / $train_s")" "$(calc "$N / $train_s")" \
            "$train_s"
    else
        echo "kd-train resnet18 224px KD+DOT: FAILED:"
        tail -n 5 "$work/train.log" | sed 's/^/  /'
        failed=1
    fi
else
    echo "kd-train resnet18 224px KD+DOT: not run: no cache was made"
fi

if [ "$cost_ok" = 1 ]; then
    read -r t_flops t_act t_w < "$work/resnet50.cost"
    read -r s_flops s_act s_w < "$work/resnet18.cost"
    printf 'per image, resnet50 forward: %.2f GFLOP, activations >= %.1f MB, weights %.1f MB per batch (%.2f MB/image at B=%d), input %.2f MB H2D, JPEG %.1f KB read\n' \
        "$(calc "$t_flops / 1e9")" "$(calc "$t_act / 1e6")" "$(calc "$t_w / 1e6")" \
        "$(calc "$t_w / 1e6 / $BATCH")" "$BATCH" "$(calc "3 * 224 * 224 * 4 / 1e6")" \
        "$(calc "$jpeg_bytes / $N / 1e3")"
    printf 'per image, resnet18 train step: ~%.2f GFLOP with one backward (3x forward), ~%.2f with DOT'"'"'s two (5x), activations >= %.1f MB, weights %.1f MB per batch\n' \
        "$(calc "3 * $s_flops / 1e9")" "$(calc "5 * $s_flops / 1e9")" "$(calc "$s_act / 1e6")" "$(calc "$s_w / 1e6")"
else
    echo "per image FLOPs: not computed (no python3 with torch and torchvision; set PYTHON)"
    printf 'per image, JPEG %.1f KB read, input %.2f MB H2D\n' "$(calc "$jpeg_bytes / $N / 1e3")" \
        "$(calc "3 * 224 * 224 * 4 / 1e6")"
fi
# kd-precompute converts on the GPU and downloads only the stored form:
# float16 logits (1000 classes) and float16 pooled features (2048).
printf 'per image, kd-precompute D2H: %d bytes (float16 logits + features; float32 would be %d)\n' \
    $(( (1000 + 2048) * 2 )) $(( (1000 + 2048) * 4 ))
if [ -f "$work/run/metrics.csv" ]; then
    echo "kd-train metrics.csv:"
    cat "$work/run/metrics.csv"
fi
exit $failed
