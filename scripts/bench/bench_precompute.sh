#!/usr/bin/env bash
# bench_precompute.sh - images/s of kd-precompute vs a PyTorch script doing the same
# job (scripts/bench/bench_precompute_torch.py: PIL decode, torchvision eval transform,
# forward, float16 logits + features saved), same machine, same threads, same run.
#
#   scripts/bench/bench_precompute.sh [IMAGES=64] [REPEATS=3] [THREADS=2] [BATCH=16]
#
# Data: IMAGES JPEGs of ~500x375 (ImageNet-like sizes) cut from the Debian photos
# (mate-backgrounds) into build/bench-precompute/data; teachers: the random-weight
# resnet18 / resnet50 of build/fixtures/precompute (make build/fixtures/precompute/.stamp).
# Both tools run alternately REPEATS times per architecture; the median wall time of
# the whole command (weights loading, checksums, decode, forward, writing) is reported.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (scripts/bench/ moved in #12)
IMAGES=${1:-64}
REPEATS=${2:-3}
THREADS=${3:-2}
BATCH=${4:-16}
PY=/usr/bin/python3
B=build/bench-precompute
FX=build/fixtures/precompute
make -s build/bin/kd-precompute >/dev/null
[ -f $FX/.stamp ] || make -s $FX/.stamp
if [ ! -f $B/data.$IMAGES ]; then
  rm -rf $B/data && mkdir -p $B
  $PY - "$B/data" "$IMAGES" <<'PYEOF'
import glob, os, sys
import numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
photos = sorted(glob.glob('/usr/share/backgrounds/mate/nature/*.jpg'))
for k in range(n):
    im = Image.open(photos[k % len(photos)]).convert('RGB')
    W, H = im.size
    w = int(rng.integers(W // 3, W)); h = min(H, int(w * rng.uniform(0.6, 0.9)))
    x = int(rng.integers(0, W - w + 1)); y = int(rng.integers(0, H - h + 1))
    c = im.crop((x, y, x + w, y + h))
    s = 500 / max(c.size)
    c = c.resize((round(c.size[0] * s), round(c.size[1] * s)), Image.BILINEAR)
    d = os.path.join(root, f'class{k % 4}')
    os.makedirs(d, exist_ok=True)
    c.save(os.path.join(d, f'{k:05d}.jpg'), quality=90)
PYEOF
  touch $B/data.$IMAGES
fi

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

echo "kd-precompute vs PyTorch: $IMAGES images (~500x375 JPEG), 224px center view,"
echo "float16 logits + features, threads $THREADS, batch $BATCH, median of $REPEATS runs"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| teacher | kd-precompute img/s | PyTorch img/s | speed-up | kd-precompute stages (last run) |"
echo "|---|---|---|---|---|"
for arch in resnet18 resnet50; do
  ours=() theirs=() stages=""
  for r in $(seq "$REPEATS"); do
    rm -f $B/$arch.h5 $B/$arch.h5.partial
    t0=$(now)
    log=$(./build/bin/kd-precompute --data $B/data --teacher $arch --weights $FX/$arch.safetensors \
          --out $B/$arch.h5 --threads "$THREADS" --batch "$BATCH" --logits float16 2>&1)
    t1=$(now)
    ours+=("$(echo "$IMAGES / ($t1 - $t0)" | bc -l)")
    stages=$(echo "$log" | grep 'stages:' | sed 's/^kd-precompute: stages: //')
    t0=$(now)
    $PY scripts/bench/bench_precompute_torch.py --data $B/data --arch $arch --weights $FX/$arch.safetensors \
        --out $B/$arch.npz --threads "$THREADS" --workers "$THREADS" --batch "$BATCH" >/dev/null
    t1=$(now)
    theirs+=("$(echo "$IMAGES / ($t1 - $t0)" | bc -l)")
  done
  o=$(printf '%s\n' "${ours[@]}" | median)
  t=$(printf '%s\n' "${theirs[@]}" | median)
  printf '| %s | %.1f | %.1f | %.2fx | %s |\n' "$arch" "$o" "$t" "$(echo "$o / $t" | bc -l)" "$stages"
done
