#!/usr/bin/env bash
# bench_gpu.sh - GPU throughput of the two tools, next to what each image costs:
#   kd-precompute: images/s of a resnet50 teacher at 224 px (center view)
#   kd-train:      steps/s of a resnet18 student (KD from that cache)
# plus one line per model of FLOPs and bytes per image, so the numbers can be
# compared with the card's peak FLOP/s and memory bandwidth.
#
# Runs only where a GPU is: without one it says so and exits 2, measuring
# nothing. Inputs are synthetic (random-pixel JPEGs and randomly initialised
# torchvision weights, made with Debian's PyTorch), so the figures are
# throughput, not accuracy. Wall-clock times include tool start-up and cuDNN's
# first-call setup; N is large enough by default that these are amortised.
#
#   scripts/bench/bench_gpu.sh [N_IMAGES (2048)] [BATCH (64)]
#   env: DEVICE (cuda:0), BIN (build/bin), PYTHON (/usr/bin/python3),
#        PRECISION (unset: the tool's default; else kd-precompute's --precision
#        fp32|tf32|fp16), DECODE_THREADS (kd-precompute's --decode-threads;
#        default all cores: on a GPU, JPEG decoding is usually the bottleneck)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-2048}
BATCH=${2:-64}
DEVICE=${DEVICE:-cuda:0}
BIN=${BIN:-build/bin}
PYTHON=${PYTHON:-/usr/bin/python3}

die() { echo "bench_gpu: $*" >&2; exit 2; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

# ---- refuse clearly where nothing can be measured ----
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    die "no GPU on this machine (nvidia-smi finds none); nothing measured"
fi
for t in kd-precompute kd-train; do
    [ -x "$BIN/$t" ] || die "$BIN/$t missing; run make first"
done
gpu_name=$(nvidia-smi -L | head -n 1)

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpu.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- synthetic data and weights ----
"$PYTHON" - "$work" "$N" <<'EOF'
import json, os, struct, sys
import numpy as np
from PIL import Image
import torch, torchvision

root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):
    d = os.path.join(root, "data", "c%02d" % (i % 10))
    os.makedirs(d, exist_ok=True)
    # 375x500, the typical ImageNet size, smooth enough to compress like a photo
    img = rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)
    Image.fromarray(img).resize((500, 375), Image.BILINEAR).save(
        os.path.join(d, "%06d.jpg" % i), quality=90)

def save_safetensors(sd, path):
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        v = v.detach().contiguous()
        dt = {torch.float32: "F32", torch.int64: "I64"}[v.dtype]
        b = v.numpy().tobytes()
        header[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

torch.manual_seed(0)
save_safetensors(torchvision.models.resnet50().state_dict(), os.path.join(root, "resnet50.safetensors"))

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

jpeg_bytes=$(du -sb "$work/data" | cut -f1)
read -r t_flops t_act t_w < "$work/resnet50.cost"
read -r s_flops s_act s_w < "$work/resnet18.cost"

prec_args=()
[ -n "${PRECISION:-}" ] && prec_args=(--precision "$PRECISION")
DECODE_THREADS=${DECODE_THREADS:-$(nproc)}

# ---- kd-precompute ----
# Not --quiet: its closing report splits the time by stage (how long the
# teacher waited for decoded images, forward and writer rates); progress lines
# go to the same log and are dropped below.
start=$(date +%s.%N)
"$BIN/kd-precompute" --data "$work/data" --teacher resnet50 --weights "$work/resnet50.safetensors" \
    --out "$work/cache.h5" --view-policy center --image-size 224 --resize-size 256 \
    --logits float16 --batch "$BATCH" --device "$DEVICE" --decode-threads "$DECODE_THREADS" \
    "${prec_args[@]}" 2> "$work/precompute.log" || { cat "$work/precompute.log" >&2; exit 1; }
end=$(date +%s.%N)
pre_s=$(calc "$end - $start")

# ---- kd-train: one epoch of KD from the cache ----
start=$(date +%s.%N)
"$BIN/kd-train" --data "$work/data" --cache "$work/cache.h5" --student resnet18 --out "$work/run" \
    --epochs 1 --batch "$BATCH" --lr 0.1 --optimizer dot --kd-weight 0.5 --ce-weight 0.5 \
    --device "$DEVICE" --quiet
end=$(date +%s.%N)
train_s=$(calc "$end - $start")
steps=$(( (N + BATCH - 1) / BATCH ))

echo "bench_gpu: $gpu_name, $N images, batch $BATCH, precision ${PRECISION:-default}"
printf 'kd-precompute resnet50 224px: %.1f images/s (%.2f s wall, %d decode threads)\n' \
    "$(calc "$N / $pre_s")" "$pre_s" "$DECODE_THREADS"
grep -e ': wrote ' -e ': stages: ' "$work/precompute.log" | sed 's/^/  /' || true
printf 'kd-train resnet18 224px KD+DOT: %.2f steps/s, %.1f images/s (%.2f s wall)\n' \
    "$(calc "$steps / $train_s")" "$(calc "$N / $train_s")" "$train_s"
printf 'per image, resnet50 forward: %.2f GFLOP, activations >= %.1f MB, weights %.1f MB per batch (%.2f MB/image at B=%d), input %.2f MB H2D, JPEG %.1f KB read\n' \
    "$(calc "$t_flops / 1e9")" "$(calc "$t_act / 1e6")" "$(calc "$t_w / 1e6")" \
    "$(calc "$t_w / 1e6 / $BATCH")" "$BATCH" "$(calc "3 * 224 * 224 * 4 / 1e6")" \
    "$(calc "$jpeg_bytes / $N / 1e3")"
# kd-precompute converts on the GPU and downloads only the stored form:
# float16 logits (1000 classes) and float16 pooled features (2048).
printf 'per image, kd-precompute D2H: %d bytes (float16 logits + features; float32 would be %d)\n' \
    $(( (1000 + 2048) * 2 )) $(( (1000 + 2048) * 4 ))
printf 'per image, resnet18 train step: ~%.2f GFLOP with one backward (3x forward), ~%.2f with DOT'"'"'s two (5x), activations >= %.1f MB, weights %.1f MB per batch\n' \
    "$(calc "3 * $s_flops / 1e9")" "$(calc "5 * $s_flops / 1e9")" "$(calc "$s_act / 1e6")" "$(calc "$s_w / 1e6")"
[ -f "$work/run/metrics.csv" ] && { echo "kd-train metrics.csv:"; cat "$work/run/metrics.csv"; }
