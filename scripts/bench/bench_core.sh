#!/usr/bin/env bash
# bench_core.sh - the issue-2 model numbers, kdcache vs PyTorch in the same run at
# the same thread count: resnet18 (batch 16) and resnet50 (batch 8) forward at
# 224 px, a resnet18 train step at 32 px batch 64 (forward + CE + backward + SGD),
# then where kdcache's time goes by op kind (build/bench/bench_core).
#
#   scripts/bench/bench_core.sh [THREADS=2] [REPS=3] [ROUNDS=2]
#
# Rounds alternate ours / PyTorch so both see the same machine load; the table
# in docs/PERFORMANCE.md ("Core") keeps the best of the rounds for each row.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (scripts/bench/ moved in #12)
THREADS=${1:-2}
REPS=${2:-3}
ROUNDS=${3:-2}
make -s build/bench/bench_models_cpu build/bench/bench_core >/dev/null
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  echo "## round $r"
  build/bench/bench_models_cpu --threads "$THREADS" --reps "$REPS"
  /usr/bin/python3 scripts/bench/bench_models_torch.py "$THREADS" "$REPS"
done
echo "## breakdown"
build/bench/bench_core --threads "$THREADS" --reps "$REPS"
