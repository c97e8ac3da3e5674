#!/bin/sh
# tests/layout/check_script_roots.sh - every script under scripts/ that changes
# to the repository root with `cd "$(dirname "$0")/..."` climbs as many folders
# as it lies deep (scripts/x.sh: .., scripts/bench/x.sh: ../..). Scripts moved
# into subfolders in #12 kept '..' and ran from scripts/ (the main job broke).
set -eu
cd "$(dirname "$0")/../.."
bad=0
for f in $(find scripts -name '*.sh' | sort); do
  line=$(grep -o 'cd "$(dirname "$0")/[./]*"' "$f" | head -1) || true
  [ -n "$line" ] || continue
  ups=$(echo "$line" | grep -o '\.\.' | wc -l)
  depth=$(echo "$f" | tr -cd '/' | wc -c)
  if [ "$ups" -ne "$depth" ]; then
    echo "check_script_roots: $f climbs $ups folder(s) but lies $depth deep" >&2
    bad=1
  fi
done
[ $bad -eq 0 ] && echo "check_script_roots: every script cds to the repository root"
exit $bad
