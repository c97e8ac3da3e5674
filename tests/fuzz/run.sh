#!/bin/sh
# tests/fuzz/run.sh - the long fuzz run of docs/FUZZ.md: every storage mode of
# v2 (float16, float32, top-k, with and without features), the v1 seeds for
# comparison, the safetensors and list-file parsers.
#
#   tests/fuzz/run.sh [--mutants N] [--jobs J] [--timeout SEC] [--seed S] [--build DIR]
#
# Uses DIR/fuzz/kd-fuzz (default build-asan: make SANITIZE=1 fuzz). Crashing and
# hanging inputs go to $OUT (default /tmp/kd-fuzz-run)/crashes; the summary to
# $OUT/summary.txt. Exit status 1 when a v2 cache, safetensors or list mutant
# crashed or hung (v1 findings are reported, not failed: libhdf5's global heap).
set -eu
mutants=2000 jobs=2 timeout=10 seed=1 build=build-asan
while [ $# -gt 0 ]; do
  case "$1" in
    --mutants) mutants=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "usage: $0 [--mutants N] [--jobs J] [--timeout SEC] [--seed S] [--build DIR]" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/../.." && pwd)
fz="$root/$build/fuzz/kd-fuzz"
[ -x "$fz" ] || { echo "$fz missing: make SANITIZE=1 fuzz (or --build build)" >&2; exit 2; }
out=${OUT:-/tmp/kd-fuzz-run}
rm -rf "$out"; mkdir -p "$out"
"$fz" --make-seeds "$out/seeds" >/dev/null
common="--mutants $mutants --jobs $jobs --timeout $timeout --seed $seed --quiet --crash-dir $out/crashes"
status=0
echo "== v2 caches ($mutants mutants per storage mode)" | tee "$out/summary.txt"
"$fz" --target cache $common "$out"/seeds/v2_*.h5 | tee -a "$out/summary.txt" || status=1
echo "== v1 caches (reported, not failed)" | tee -a "$out/summary.txt"
"$fz" --target cache $common "$root"/tests/fuzz/seeds_v1/v1_*.h5 | tee -a "$out/summary.txt" || true
echo "== safetensors" | tee -a "$out/summary.txt"
"$fz" --target safetensors $common "$out/seeds/weights.safetensors" | tee -a "$out/summary.txt" || status=1
echo "== list file" | tee -a "$out/summary.txt"
"$fz" --target list $common --root "$out/seeds/list_root" "$out/seeds/images.txt" | tee -a "$out/summary.txt" || status=1
exit $status
