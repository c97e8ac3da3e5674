#!/usr/bin/env bash
# The README's test command: set up, build everything (CUDA too where nvcc is
# installed), run every Check suite, then the same suites under ASan + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
make -j"$jobs" all
make -j"$jobs" check
make -j"$jobs" check SANITIZE=1
make check-gpu
