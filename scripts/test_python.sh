#!/usr/bin/env bash
# The Python package's tests (tests/python/, pytest under Debian's Python), with
# the C tools of this checkout's build/ (make all first). Prints pytest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export KDC_BIN="${KDC_BIN:-$PWD/build/bin}"
export PYTHONDONTWRITEBYTECODE=1
echo "== python: pytest tests/python (kdcache package, docs/PYTHON.md)"
exec nice -n 10 /usr/bin/python3 -m pytest tests/python -q -rfE -p no:cacheprovider "$@"
