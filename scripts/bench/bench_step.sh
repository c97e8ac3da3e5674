#!/usr/bin/env bash
# bench_step.sh - the student step against PyTorch at equal threads, in one run (issue 18):
# for the resnet18 (torchvision), mobilenet_v1 and resnet8x4 students at 32 px, batch 64,
# CE 0.1 + KD(T=4) 0.9, SGD and DOT:
#   - kd-train end to end: JPEG decode + views + the float16 teacher cache + step
#     (epoch 2's images/s from metrics.csv, so primitive creation is not counted);
#   - kdcache's step alone: build/bench/bench_models_cpu (<arch>-train32 / <arch>-dot32:
#     forward, loss gradients, backward (DOT: the fused two-stream backward), update),
#     images/s from the median step;
#   - PyTorch (Debian's 1.13, OMP_WAIT_POLICY=passive, its faster setting on a shared
#     machine): scripts/bench/bench_step_torch.py, images and teacher logits already in
#     memory; DOT is mdistiller's (one forward, two backward passes);
#   - the step's GFLOP/s as % of the sgemm ceiling that build/bench/bench_gemm measures
#     in the same round (2048^3, same threads);
#   - resnet18 forward at 224 px, batch 16 (bench_models_cpu / bench_models_torch.py).
# Every round measures everything once, in the same order; the table keeps, per cell,
# the best of the rounds (the least disturbed by other jobs), and the ratios are of
# those bests. Raw lines go to build/bench-step/raw.txt.
#
#   scripts/bench/bench_step.sh [ROUNDS=3] [THREADS=2] [IMAGES=640] [STUDENTS="resnet18 mobilenet_v1 resnet8x4"]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
THREADS=${2:-2}
IMAGES=${3:-640}
STUDENTS=${4:-"resnet18 mobilenet_v1 resnet8x4"}
BATCH=64
PY=/usr/bin/python3
B=build/bench-step
STEPS=$((IMAGES / BATCH))
make -s build/bin/kd-train build/bin/kd-precompute build/bench/bench_models_cpu \
  build/bench/bench_gemm >/dev/null
mkdir -p $B
if [ ! -f $B/data.$IMAGES ]; then
  rm -rf $B/data $B/cache.h5
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
    --out $B/cache.h5 --image-size 32 --resize-size 32 --logits float16 --threads "$THREADS" \
    --quiet
  touch $B/data.$IMAGES
fi

RAW=$B/raw.txt
: >"$RAW"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg); $THREADS threads, batch $BATCH, $STEPS steps per epoch" |
  tee -a "$RAW"
for r in $(seq "$ROUNDS"); do
  g=$(build/bench/bench_gemm --threads "$THREADS" --reps 3 | awk '/GFLOP/ {print $(NF-1)}')
  echo "$r gemm - $g" | tee -a "$RAW"
  for s in $STUDENTS; do
    for o in sgd dot; do
      rm -rf $B/run
      build/bin/kd-train --data $B/data --cache $B/cache.h5 --student "$s" --out $B/run \
        --epochs 2 --batch $BATCH --lr 0.05 --ce-weight 0.1 --kd-weight 0.9 --temperature 4 \
        --schedule constant --optimizer "$o" --threads "$THREADS" --quiet
      e2e=$(awk -F, 'NR==3 {print $12}' $B/run/metrics.csv)
      row=$s-train32
      [ "$o" = dot ] && row=$s-dot32
      step=$(build/bench/bench_models_cpu --threads "$THREADS" --reps 7 --only "$row" --classes 10 |
        awk -v b=$BATCH '/images\/s/ {for (i = 1; i <= NF; i++) if ($i == "median") print b / ($(i + 1) / 1000)}')
      t=$(OMP_WAIT_POLICY=passive $PY scripts/bench/bench_step_torch.py "$s" "$o" $BATCH "$THREADS" \
        "$STEPS" 10)
      tips=$(echo "$t" | awk '{print $2}')
      gf=$(echo "$t" | awk '{print $4}')
      echo "$r $s-$o $e2e $step $tips $gf" | tee -a "$RAW"
    done
  done
  f=$(build/bench/bench_models_cpu --threads "$THREADS" --reps 5 --only resnet18-fwd |
    awk '/images\/s/ {for (i = 1; i <= NF; i++) if ($i == "images/s") print $(i - 1)}')
  tf=$(OMP_WAIT_POLICY=passive $PY scripts/bench/bench_models_torch.py "$THREADS" 5 resnet18-fwd |
    awk '/resnet18-fwd/ {for (i = 1; i <= NF; i++) if ($i == "images/s") print $(i - 1)}')
  echo "$r fwd224 $f $tf" | tee -a "$RAW"
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW"

# best of the rounds per cell; ratios of the bests
awk '
  $2 == "gemm" { if ($4 > gemm) gemm = $4; next }
  $2 == "fwd224" { if ($3 > f) f = $3; if ($4 > tf) tf = $4; next }
  /^#/ { next }
  {
    k = $2; if (!(k in e)) order[n++] = k
    if ($3 > e[k]) e[k] = $3; if ($4 > s[k]) s[k] = $4; if ($5 > t[k]) t[k] = $5; gf[k] = $6
  }
  END {
    printf "sgemm ceiling (bench_gemm 2048^3, best of rounds): %.1f GFLOP/s\n\n", gemm
    print "| student-optimiser | kd-train end to end | kdcache step alone | end to end / step | PyTorch (in memory) | e2e vs PyTorch | step vs PyTorch | step GFLOP | kdcache step % of sgemm | PyTorch % of sgemm |"
    print "|---|---|---|---|---|---|---|---|---|---|"
    for (i = 0; i < n; i++) {
      k = order[i]
      printf "| %s | %.1f | %.1f | %.0f%% | %.1f | %.2fx | %.2fx | %.2f | %.0f%% | %.0f%% |\n", k, e[k], s[k],
        100 * e[k] / s[k], t[k], e[k] / t[k], s[k] / t[k], gf[k],
        100 * s[k] / 64 * gf[k] / gemm, 100 * t[k] / 64 * gf[k] / gemm
    }
    for (i = 0; i < n; i++) {
      k = order[i]; if (k !~ /-sgd$/) continue
      b = k; sub(/-sgd$/, "", b)
      if ((b "-dot") in s)
        printf "%s: DOT step / SGD step (kdcache step alone) = %.2fx; PyTorch %.2fx\n", b,
          s[k] / s[b "-dot"], t[k] / t[b "-dot"]
    }
    printf "resnet18 forward 224 px batch 16: kdcache %.1f images/s, PyTorch %.1f, %.2fx\n", f, tf, f / tf
  }' "$RAW"
