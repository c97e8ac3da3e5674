#!/usr/bin/env bash
# bench_zoo.sh - train-step images/s of the issue-17 students, kdcache's model code
# (build/bench/bench_models_cpu --set zoo: train forward, mean-CE gradient, backward,
# kd-train's SGD update) against PyTorch (scripts/bench/bench_zoo_torch.py: the same
# architectures, batch, input and SGD settings) in the same run, at the same threads:
# mdistiller's MobileNetV2, ShuffleV1, ShuffleV2, resnet20, resnet56, vgg8, wrn_16_2,
# wrn_40_1 at 32 px (batch 64, 100 classes), torchvision's mobilenet_v2 and
# shufflenet_v2_x1_0 at 96 px (batch 32, 1000 classes).
#
#   scripts/bench/bench_zoo.sh [THREADS=2] [REPS=3] [ROUNDS=1]
#
# Rounds alternate ours / PyTorch so that both see the same machine load; the table
# (docs/MODELS.md, "Speed of the new students") keeps the best step of all rounds
# per row and side, and the ratio ours / PyTorch of those. PyTorch runs with
# OMP_WAIT_POLICY=passive (its faster setting on a shared machine, bench_step.sh).
# BUILD=build-dev uses another build folder. Raw lines: $BUILD/bench-zoo/raw.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
REPS=${2:-3}
ROUNDS=${3:-1}
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" "$BUILD/bench/bench_models_cpu" >/dev/null
mkdir -p "$BUILD/bench-zoo"
RAW=$BUILD/bench-zoo/raw.txt
{
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
  for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    "$BUILD/bench/bench_models_cpu" --set zoo --threads "$THREADS" --reps "$REPS" | sed 's/^/ours /'
    OMP_WAIT_POLICY=passive /usr/bin/python3 scripts/bench/bench_zoo_torch.py "$THREADS" "$REPS" |
      sed 's/^/torch /'
  done
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RAW"
/usr/bin/python3 - "$RAW" "$THREADS" "$REPS" "$ROUNDS" <<'PYEOF'
import re, sys
raw, threads, reps, rounds = sys.argv[1:]
best = {}
order = []
for line in open(raw):
    m = re.match(r"(ours|torch) (\S+)\s+batch\s+(\d+)\s+(\d+)px\s+best\s+([\d.]+) ms", line)
    if not m:
        continue
    side, name, batch, px, ms = m.group(1), m.group(2), int(m.group(3)), m.group(4), float(m.group(5))
    if name not in order:
        order.append(name)
    key = (side, name)
    best[key] = min(best.get(key, 1e30), ms)
    best[("batch", name)] = batch
print(f"\n{threads} threads, best of {reps} steps x {rounds} round(s)\n")
print("| row | batch | kdcache images/s | PyTorch images/s | kdcache / PyTorch |")
print("|---|---|---|---|---|")
for name in order:
    b = best[("batch", name)]
    o, t = best.get(("ours", name)), best.get(("torch", name))
    ips = lambda ms: f"{b / ms * 1e3:.1f}" if ms else "-"
    ratio = f"{t / o:.2f}" if o and t else "-"
    print(f"| {name} | {b} | {ips(o)} | {ips(t)} | {ratio} |")
PYEOF
