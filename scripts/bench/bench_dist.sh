#!/usr/bin/env bash
# bench_dist.sh - kd-train images/s on this machine: 2 ranks x 1 thread (mpirun)
# against 1 rank x 2 threads, and 1 rank x 1 thread for scale; the same recipe
# and the same global batch (docs/DISTRIBUTED.md, "Scaling on this machine").
#
#   scripts/bench/bench_dist.sh [IMAGES=768] [BATCH=64] [EPOCHS=2] [REPEAT=2]
#
# Data: IMAGES synthetic 32x32 JPEGs in 10 classes (build/bench-dist/data); cache:
# kd-precompute with a random-weight resnet32x4 teacher, center view, float16
# logits. Student resnet8x4, CE 0.1 + KD(T=4) 0.9, SGD, --batch BATCH (global).
# The rate is the last epoch's images/s from metrics.csv (rank 0 times the
# whole epoch, all ranks included: a step ends when the all-reduce does), so
# the first epoch's start-up is left out. The configurations take turns,
# REPEAT rounds, and the best round of each is shown (the machine may be
# shared: the load average before and after is printed with the table).
# Needs Open MPI (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${1:-768}
BATCH=${2:-64}
EPOCHS=${3:-2}
REPEAT=${4:-2}
PY=/usr/bin/python3
B=build/bench-dist
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
command -v mpirun >/dev/null || { echo "bench_dist.sh: no mpirun (scripts/setup.sh installs Open MPI)" >&2; exit 1; }
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
import sys
sys.path[:0] = ["scripts/ref", "scripts/tools"]
import torch
from ref_models import CifarResNet
from export_weights import save_file
torch.manual_seed(0)
save_file(CifarResNet(32, [32, 64, 128, 256], 10).state_dict(), sys.argv[1])
PYEOF
  build/bin/kd-precompute --data $B/data --teacher resnet32x4 --weights $B/teacher.safetensors \
    --out $B/cache.h5 --image-size 32 --resize-size 32 --logits float16 --threads 2 --quiet
  touch $B/data.$IMAGES
fi

# run LAUNCH THREADS EXTRA: prints the last epoch's images/s
run() {
  rm -rf $B/run
  $1 build/bin/kd-train --data $B/data --cache $B/cache.h5 --student resnet8x4 --out $B/run \
    --epochs $EPOCHS --batch $BATCH --lr 0.05 --ce-weight 0.1 --kd-weight 0.9 --temperature 4 \
    --schedule constant --threads $2 --quiet $3
  awk -F, 'END {print $12}' $B/run/metrics.csv
}
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 > b + 0) ? a : b}'; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)
one1=0 one2=0 two1=0 two1s=0
MPI="mpirun --oversubscribe --bind-to none -np 2"
for r in $(seq "$REPEAT"); do
  one1=$(best "$one1" "$(run "" 1 "")")
  one2=$(best "$one2" "$(run "" 2 "")")
  two1=$(best "$two1" "$(run "$MPI" 1 "")")
  two1s=$(best "$two1s" "$(run "$MPI" 1 "--sync-bn")")
done
echo "kd-train resnet8x4 32px, KD from the float16 cache, global batch $BATCH, $IMAGES images,"
echo "epoch $EPOCHS of $EPOCHS, best of $REPEAT rounds (images/s), $(nproc) cores,"
echo "load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  1 rank  x 1 thread              $one1"
echo "  1 rank  x 2 threads             $one2"
echo "  2 ranks x 1 thread (mpirun)     $two1"
echo "  2 ranks x 1 thread, --sync-bn   $two1s"
