#!/usr/bin/env bash
# gpu_e2e.sh - a short end-to-end run on the GPU, against the CPU path:
#
#   1. inputs (bundle_util, no Python): train/ 10 classes x PER_CLASS JPEGs of
#      80x64 px, val/ 10 x 10, a resnet18 teacher (10 classes, seed 5, random
#      BN statistics so that BN folding matters);
#   2. kd-precompute, rrc 2 views of 64 px, float32 logits, on DEVICE and on
#      REF_DEVICE: CHECKED, header, image table, boxes and flips equal, logits
#      within 2e-3 and float16 features within 2e-3 + 5e-4 of the CPU's
#      (relative to the maximum; the fp32 bounds of test_gpu_precompute,
#      docs/GPU.md);
#   3. kd-cache verify --data of the GPU's cache: CHECKED (exit 0);
#   4. kd-train, 2 epochs of KD + CE (SGD) from the GPU's cache, with --val, on
#      DEVICE and on REF_DEVICE (same cache, same seed): REPORTED, per epoch
#      loss and val top-1 side by side (BN training on small batches amplifies
#      rounding over the steps; test_gpu_kdtrain bounds 3 steps);
#   5. kd-train --eval-only of the GPU-trained student and of the teacher on
#      val/, on both devices: CHECKED, loss within 2e-3 relative (the
#      whole-model fp32 bound of test_gpu_ops) and top-1 / top-5 within one
#      image.
#
# Prints one "e2e: ..." line per step (ok / FAIL / reported) and exits 1 when a
# checked step fails. Works from the repository (`make bundle-bins`) and from
# an unpacked bundle.
#
#   scripts/gpu/gpu_e2e.sh [WORK_DIR (a new temporary folder, removed after)]
#   env: DEVICE (cuda:0), REF_DEVICE (cpu), PER_CLASS (32), EPOCHS (2),
#        THREADS (the CPU's threads; default all cores)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -x "$root/bin/kd-precompute" ]; then
    BIN=$root/bin
    UTIL=$root/bundle/bundle_util
else
    BIN=$root/build/bin
    UTIL=$root/build/bundle/bundle_util
fi
DEVICE=${DEVICE:-cuda:0}
REF_DEVICE=${REF_DEVICE:-cpu}
PER_CLASS=${PER_CLASS:-32}
EPOCHS=${EPOCHS:-2}
THREADS=${THREADS:-$(nproc)}

for t in "$BIN/kd-precompute" "$BIN/kd-train" "$BIN/kd-cache" "$UTIL"; do
    [ -x "$t" ] || { echo "e2e: not run: $t missing (make bundle-bins)"; exit 2; }
done
if [ -n "${1:-}" ]; then
    work=$1
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_e2e.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
failed=0
now() { date +%s.%N; }
t0=$(now)
elapsed() { awk "BEGIN { printf \"%.1f\", $(now) - $t0 }"; }

# Runs a tool with its stderr in $work/NAME.err; on failure prints the tail.
run() {
    local name=$1
    shift
    if "$@" > "$work/$name.out" 2> "$work/$name.err"; then
        return 0
    fi
    local rc=$?
    echo "e2e: $name FAILED (exit $rc): $*"
    tail -n 5 "$work/$name.err" | sed 's/^/  /'
    return 1
}

# ---- 1. inputs ----
"$UTIL" images "$work/train" 10 "$PER_CLASS" 80 64 11 "$THREADS" &&
    "$UTIL" images "$work/val" 10 10 80 64 12 "$THREADS" &&
    "$UTIL" weights "$work/teacher.safetensors" resnet18 10 5 random-bn ||
    { echo "e2e: inputs FAILED"; exit 1; }
echo "e2e: inputs: $((10 * PER_CLASS)) train and 100 val JPEGs of 80x64, resnet18 teacher ($(elapsed) s)"

# ---- 2. kd-precompute on both devices ----
pc() { # NAME DEVICE
    run "precompute_$1" "$BIN/kd-precompute" --data "$work/train" --teacher resnet18 \
        --weights "$work/teacher.safetensors" --out "$work/$1.h5" --view-policy rrc --views 2 \
        --image-size 64 --resize-size 72 --logits float32 --batch 32 --seed 3 \
        --threads "$THREADS" --device "$2" --quiet
}
if pc dev "$DEVICE" && pc ref "$REF_DEVICE"; then
    if line=$("$UTIL" cmp-cache "$work/dev.h5" "$work/ref.h5" 2e-3 2.5e-3); then
        echo "e2e: kd-precompute $DEVICE vs $REF_DEVICE: ok: ${line#cmp-cache: } ($(elapsed) s)"
    else
        echo "e2e: kd-precompute $DEVICE vs $REF_DEVICE: FAIL: ${line#cmp-cache: }"
        failed=1
    fi
else
    failed=1
fi

# ---- 3. kd-cache verify ----
if [ -f "$work/dev.h5" ]; then
    if run verify "$BIN/kd-cache" verify "$work/dev.h5" --data "$work/train"; then
        echo "e2e: kd-cache verify --data ($DEVICE's cache): ok: $(tail -n 1 "$work/verify.out")"
    else
        failed=1
    fi
fi

# ---- 4. kd-train on both devices from the GPU's cache ----
tr() { # NAME DEVICE
    run "train_$1" "$BIN/kd-train" --data "$work/train" --cache "$work/dev.h5" \
        --student resnet18 --out "$work/run_$1" --epochs "$EPOCHS" --batch 32 --lr 0.02 \
        --ce-weight 0.5 --kd-weight 0.5 --temperature 4 --val "$work/val" --seed 1 \
        --threads "$THREADS" --device "$2" --quiet
}
if [ -f "$work/dev.h5" ]; then
    ok_dev=0
    tr dev "$DEVICE" && ok_dev=1
    tr ref "$REF_DEVICE" || true
    if [ "$ok_dev" = 1 ] && [ -f "$work/run_ref/metrics.csv" ]; then
        echo "e2e: kd-train $EPOCHS epochs, $DEVICE vs $REF_DEVICE from the same cache (reported):"
        # epoch,lr,loss,ce_loss,kd_loss,proj_loss,train_top1,train_top5,val_loss,val_top1,...
        paste -d, "$work/run_dev/metrics.csv" "$work/run_ref/metrics.csv" | awk -F, -v d="$DEVICE" -v r="$REF_DEVICE" '
            NR == 1 { next }
            { rel = ($3 - $16) / ($16 != 0 ? $16 : 1); if (rel < 0) rel = -rel
              printf "  epoch %d: loss %s %.5f, %s %.5f (rel. diff %.2g); val loss %.5f / %.5f; val top-1 %.2f / %.2f %%; %s %.1f img/s, %s %.1f img/s\n",
                     $1, d, $3, r, $16, rel, $9, $22, $10, $23, d, $12, r, $25 }'
    elif [ "$ok_dev" = 1 ]; then
        echo "e2e: kd-train on $DEVICE: ok (the $REF_DEVICE run failed, nothing to compare)"
    else
        failed=1
    fi
fi

# ---- 5. evaluation of the same weights on both devices ----
ev() { # NAME ARCH WEIGHTS DEVICE
    run "eval_$1" "$BIN/kd-train" --eval-only --student "$2" --weights "$3" --val "$work/val" \
        --image-size 64 --resize-size 72 --batch 50 --threads "$THREADS" --device "$4"
}
eval_pair() { # TAG WHAT WEIGHTS
    local tag=$1 what=$2
    if ev "${tag}_dev" resnet18 "$3" "$DEVICE" && ev "${tag}_ref" resnet18 "$3" "$REF_DEVICE"; then
        # "images N top1 X top5 Y loss Z"
        if awk -v what="$what" -v d="$DEVICE" -v r="$REF_DEVICE" '
            FNR == 1 && NR == 1 { n = $2; t1 = $4; t5 = $6; l = $8; next }
            { rel = (l - $8) / ($8 != 0 ? $8 : 1); if (rel < 0) rel = -rel
              one = 100.0 / n; d1 = t1 - $4; d5 = t5 - $6
              if (d1 < 0) d1 = -d1; if (d5 < 0) d5 = -d5
              ok = rel <= 2e-3 && d1 <= one + 1e-9 && d5 <= one + 1e-9
              printf "e2e: eval of the %s, %s vs %s: %s: loss %.6f / %.6f (rel. diff %.2g, bound 2e-3), top-1 %.2f / %.2f, top-5 %.2f / %.2f %% (bound one image, %.2f)\n",
                     what, d, r, ok ? "ok" : "FAIL", l, $8, rel, t1, $4, t5, $6, one
              exit ok ? 0 : 1 }' "$work/eval_${tag}_dev.out" "$work/eval_${tag}_ref.out"; then
            :
        else
            failed=1
        fi
    else
        failed=1
    fi
}
[ -f "$work/run_dev/student.safetensors" ] &&
    eval_pair student "student trained on $DEVICE" "$work/run_dev/student.safetensors"
eval_pair teacher teacher "$work/teacher.safetensors"

echo "e2e: done in $(elapsed) s: $([ $failed = 0 ] && echo "every checked step ok" || echo "FAILED")"
exit $failed
