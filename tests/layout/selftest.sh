#!/usr/bin/env bash
# selftest.sh - check_includes.sh must fail on each kind of wrong-way include
# and pass on a tree that follows the rules (so the CI check can fail).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mk() { mkdir -p "$tmp/t/$(dirname "$1")"; printf '#include "%s"\n' "$2" > "$tmp/t/$1"; }
fresh() { rm -rf "$tmp/t"; mkdir -p "$tmp/t"/{common,formats,train,precompute,tests}; }
expect() { # expect PASS|FAIL description
  if "$here/check_includes.sh" "$tmp/t" > "$tmp/out" 2>&1; then got=PASS; else got=FAIL; fi
  if [ "$got" != "$1" ]; then echo "selftest: $2: expected $1, got $got"; cat "$tmp/out"; exit 1; fi
}
fresh; mk common/nn/a.c common/base/error.h; mk formats/f.c common/nn/backend.h
mk train/t.c precompute/p.h; rm "$tmp/t/train/t.c"; mk train/t.c formats/f.h
expect PASS "a tree that follows the rules"
cases=(
  "common/base/x.c common/nn/backend.h"
  "common/image/x.c common/nn/tensor_ops.h"
  "common/nn/x.c common/models/model.h"
  "common/models/x.c common/cuda/cuda_backend.h"
  "common/nn/x.c train/trainer.h"
  "formats/x.c common/models/model.h"
  "formats/x.c common/nn/conv2d.h"
  "train/x.c precompute/teacher.h"
  "precompute/x.c train/losses.h"
  "common/base/x.c error.h"
  "common/dist/x.c common/nn/backend.h"
  "common/nn/x.c common/dist/dist.h"
)
for c in "${cases[@]}"; do
  set -- $c
  fresh; mk "$1" "$2"
  expect FAIL "$1 including $2"
done
echo "selftest: check_includes.sh fails on all ${#cases[@]} wrong-way includes and passes a good tree"
