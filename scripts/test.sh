#!/usr/bin/env bash
# The README's test command: set up, build everything (CUDA too where nvcc is
# installed), run every Check suite, the Python package's pytest suite, then the
# same Check suites under ASan + UBSan, the GPU checks (they say "not run"
# without a GPU) and the bundle check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
make -j"$jobs" all
make -j"$jobs" check
# The Python package (python/kdcache, docs/PYTHON.md): pytest, about a minute.
bash scripts/test_python.sh
make -j"$jobs" check SANITIZE=1
make check-gpu
# The GPU bundle in a minimal Debian root (docs/GPU.md): about 2.5 min the first
# time on a machine (debootstrap), under a minute once the root is cached.
make check-bundle
