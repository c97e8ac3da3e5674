#!/usr/bin/env bash
# bench_train.sh - kd-train steps/s with KD from a cache vs (a) PyTorch training the
# same student with the same losses from precomputed logits and (b) PyTorch online KD
# running the teacher every step (resnet32x4 and resnet50), same machine, same
# threads, same run (scripts/bench/bench_train_torch.py).
#
#   scripts/bench/bench_train.sh [IMAGES=1280] [THREADS=2] [BATCH=64]
#
# Data: IMAGES synthetic 32x32 JPEGs in 10 classes (build/bench-train/data); cache:
# kd-precompute with a random-weight resnet32x4 teacher, center view, float16
# logits. Student resnet8x4, CE 0.1 + KD(T=4) 0.9, SGD; kd-train's rate is the
# epoch's images/s from metrics.csv (one epoch of IMAGES/BATCH steps, all of it
# timed); PyTorch's is timed over the same number of steps after 3 warm-up steps.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (scripts/bench/ moved in #12)
IMAGES=${1:-1280}
THREADS=${2:-2}
BATCH=${3:-64}
PY=/usr/bin/python3
B=build/bench-train
make -s build/bin/kd-train build/bin/kd-precompute >/dev/null
if [ ! -f $B/data.$IMAGES ]; then
  rm -rf $B && mkdir -p $B
  $PY - "$B/data" "$IMAGES" <<'PYEOF'
import os, sys
import numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):
    c = i % 10
    d = os.path.join(root, f"c{c}")
    os.makedirs(d, exist_ok=True)
    g = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    a = np.asarray(Image.fromarray(g).resize((32, 32), Image.BILINEAR)).astype(float)
    a += rng.normal(0, 12, a.shape)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(f"{d}/{i:05d}.jpg", quality=90)
PYEOF
  $PY - "$B/teacher.safetensors" <<'PYEOF'
import os, sys
sys.path[:0] = ["scripts/ref", "scripts/tools"]
import torch
from ref_models import CifarResNet
from export_weights import save_file
torch.manual_seed(0)
save_file(CifarResNet(32, [32, 64, 128, 256], 10).state_dict(), sys.argv[1])
PYEOF
  build/bin/kd-precompute --data $B/data --teacher resnet32x4 --weights $B/teacher.safetensors \
    --out $B/cache.h5 --image-size 32 --resize-size 32 --logits float16 --threads $THREADS --quiet
  touch $B/data.$IMAGES
fi
STEPS=$((IMAGES / BATCH))
rm -rf $B/run
build/bin/kd-train --data $B/data --cache $B/cache.h5 --student resnet8x4 --out $B/run \
  --epochs 1 --batch $BATCH --lr 0.05 --ce-weight 0.1 --kd-weight 0.9 --temperature 4 \
  --schedule constant --threads $THREADS --quiet
ips=$(awk -F, 'NR==2 {print $12}' $B/run/metrics.csv)
kd=$(awk -v i="$ips" -v b="$BATCH" 'BEGIN {printf "%.3f", i / b}')
a=$($PY scripts/bench/bench_train_torch.py cached $B/data $BATCH $THREADS $STEPS | awk '{print $2}')
b1=$($PY scripts/bench/bench_train_torch.py online $B/data $BATCH $THREADS $STEPS resnet32x4 | awk '{print $2}')
b2=$($PY scripts/bench/bench_train_torch.py online $B/data $BATCH $THREADS $STEPS resnet50 | awk '{print $2}')
echo "resnet8x4 32px batch $BATCH threads $THREADS, $STEPS steps (steps/s):"
echo "  kd-train, KD from the float16 cache           $kd"
echo "  (a) PyTorch, precomputed logits               $a"
echo "  (b) PyTorch online KD, resnet32x4 teacher     $b1"
echo "  (b) PyTorch online KD, resnet50 teacher       $b2"
