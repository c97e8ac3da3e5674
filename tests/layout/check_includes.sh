#!/usr/bin/env bash
# check_includes.sh - fails on an #include that goes the wrong way between the
# architectural layers. The rules are written once here and explained in
# docs/DEVELOPING.md; each folder's README.md says the same for its folder.
#
#   common/base      includes nothing else of the project
#   common/image     base only (decoding and views know nothing of tensors' ops)
#   common/nn        base only (layers, the op table, the CPU backend)
#   common/cuda      base, nn
#   common/device    base, nn, cuda (the one place that knows every backend)
#   common/models    base, nn (models reach a device only through the op table)
#   common/dist      base only (ranks and collectives know no tensors' ops);
#                    no other common/ layer includes it (train/, precompute/ do)
#   common/*         never formats/, train/, precompute/, tests/
#   formats/         base, image, and nn/backend.h alone (params live on a device);
#                    never models, layers, cuda, train/, precompute/
#   train/           never precompute/ or tests/;  precompute/ never train/ or tests/
#
# Usage: tests/layout/check_includes.sh [ROOT]   (exit 1 and one line per violation)
set -euo pipefail
root=${1:-.}
cd "$root"

# folder-prefix : space-separated forbidden include prefixes
rules=(
  "common/base/:common/image/ common/nn/ common/cuda/ common/device/ common/models/ common/dist/"
  "common/image/:common/nn/ common/cuda/ common/device/ common/models/ common/dist/"
  "common/nn/:common/image/ common/cuda/ common/device/ common/models/ common/dist/"
  "common/cuda/:common/image/ common/device/ common/models/ common/dist/"
  "common/device/:common/image/ common/models/ common/dist/"
  "common/models/:common/image/ common/cuda/ common/device/ common/dist/"
  "common/dist/:common/image/ common/nn/ common/cuda/ common/device/ common/models/"
  "common/:formats/ train/ precompute/ tests/"
  "formats/:common/models/ common/cuda/ common/device/ train/ precompute/ tests/"
  "train/:precompute/ tests/"
  "precompute/:train/ tests/"
)
# formats/ may use nn/backend.h (device copies of parameters) and nothing else of nn/.
formats_nn_allowed="common/nn/backend.h common/nn/op_desc.h"

bad=0
while IFS= read -r -d '' f; do
  while IFS= read -r inc; do
    case "$inc" in common/*|formats/*|train/*|precompute/*|tests/*) ;;
      *) echo "$f: #include \"$inc\" is not a path from the repository root"; bad=1; continue ;;
    esac
    for r in "${rules[@]}"; do
      dir=${r%%:*}
      [[ $f == "$dir"* ]] || continue
      for p in ${r#*:}; do
        if [[ $inc == "$p"* ]]; then
          echo "$f: #include \"$inc\" goes the wrong way (${dir} must not include ${p})"
          bad=1
        fi
      done
    done
    if [[ $f == formats/* && $inc == common/nn/* && " $formats_nn_allowed " != *" $inc "* ]]; then
      echo "$f: #include \"$inc\" goes the wrong way (formats/ must not include layers)"
      bad=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done < <(find common formats train precompute tests -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) -print0)

if [ "$bad" -ne 0 ]; then
  echo "check_includes: include rules broken (see docs/DEVELOPING.md)" >&2
  exit 1
fi
echo "check_includes: every include goes the right way"
