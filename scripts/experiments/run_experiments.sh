#!/usr/bin/env bash
# Fashion-MNIST end to end: data -> teacher (kd-train, CE) -> caches (kd-precompute)
# -> student sweeps (kd-train, five configurations x seeds) -> final evaluation.
#
#   scripts/experiments/run_experiments.sh [--full] [--out DIR] [--jobs N]
#                              [--lr LR] [--configs "ce kd_sgd ..."] [--reuse DIR]
#
# --lr and --configs change the student sweep (default 0.05, all five configurations);
# --reuse DIR starts OUT from DIR's data, teacher and caches (same profile required),
# so a second sweep does not retrain the teacher.
#
# It runs the built tools (build/bin) and writes everything under OUT (runs/quick or
# runs/full): params.txt, times.tsv (wall seconds per stage), logs/, teacher/,
# caches/, students/<config>-s<seed>/ (metrics.csv, eval.txt). It does not set up,
# build or print the results table: scripts/main_job.sh does that around it, and
# scripts/experiments/make_results.py reads OUT.
#
# A stage that completed in an earlier run with the same parameters is not redone
# (its marker is OUT/done/<stage>) and says so; different parameters wipe OUT. Any
# failing stage stops the script with its name, its log and a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (scripts/experiments/ since #12)

PROFILE=quick
OUT=""
REUSE=""
S_LR=0.05
CONFIGS="ce kd_sgd kd_dot kd_proj_dot kd_dot_topk"
JOBS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --full) PROFILE=full ;;
    --smoke) PROFILE=smoke ;;  # seconds-long plumbing check, not an experiment
    --quick) PROFILE=quick ;;
    --out) OUT="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --lr) S_LR="$2"; shift ;;
    --configs) CONFIGS="$2"; shift ;;
    --reuse) REUSE="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run_experiments: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || OUT="runs/$PROFILE"

# Sizes. Measured on the shared 2-core machine (docs/RESULTS.md, "Throughput"):
# resnet18 trains at ~120 img/s and mobilenet_v1 at ~130 img/s per thread at 32 px,
# kd-precompute runs resnet18 at ~570 views/s. The teacher sees far more data than
# the student (FINDINGS.md: a teacher trained on the student's subset does not help).
if [ "$PROFILE" = full ]; then
  T_PER_CLASS=6000; T_EPOCHS=2       # teacher: all 60000 training images
  S_PER_CLASS=200;  S_EPOCHS=12      # student: 2000 images
  VAL_PER_CLASS=all                  # the whole 10000-image test set
  VIEWS=8; SEEDS="1 2 3"
elif [ "$PROFILE" = smoke ]; then
  T_PER_CLASS=20; T_EPOCHS=1; S_PER_CLASS=10; S_EPOCHS=2; VAL_PER_CLASS=10
  VIEWS=2; SEEDS="1 2"
else
  T_PER_CLASS=1000; T_EPOCHS=2       # teacher: 10000 images
  S_PER_CLASS=100;  S_EPOCHS=10      # student: 1000 images
  VAL_PER_CLASS=100                  # 1000 test images
  VIEWS=4; SEEDS="1"
fi
TEACHER=resnet18
STUDENT=mobilenet_v1
TOPK=5
# kd-precompute writes images in ImageFolder order (sorted by class) and kd-train's
# cache stream shuffles only within windows of 8 chunks, so with more than 8 chunks a
# window holds a few classes and batches are class-skewed (measured: 16 chunks of 128
# images each held one or two classes). Chunks of at least 1/8 of the images make one
# window the whole subset, i.e. a full shuffle every epoch.
CHUNK=$(( ( (S_PER_CLASS * 10 + 7) / 8 + 63) / 64 * 64 ))

echo "run_experiments: $PROFILE version: teacher $TEACHER on $T_PER_CLASS images/class x" \
     "$T_EPOCHS epochs; caches of $VIEWS pad-crop views; student $STUDENT on $S_PER_CLASS" \
     "images/class x $S_EPOCHS epochs, seeds $SEEDS; val $VAL_PER_CLASS test images/class"
BIN=build/bin
for t in kd-train kd-precompute kd-cache; do
  [ -x "$BIN/$t" ] || { echo "run_experiments: $BIN/$t missing: build first (make tools)" >&2; exit 1; }
done

# Fashion-MNIST's 28 px images are resized to 32 (kd-train/kd-precompute --resize-size
# 32 --image-size 32); pad-crop is the CIFAR recipe (pad 4, random 32 crop, flip).
NORM="--mean 0.286,0.286,0.286 --std 0.353,0.353,0.353"
PIX="--image-size 32 --resize-size 32 $NORM"
T_OPT="--batch 64 --lr 0.05 --wd 5e-4 --momentum 0.9 --schedule cosine"
S_OPT="--batch 64 --lr $S_LR --wd 5e-4 --momentum 0.9 --schedule cosine"
KD="--ce-weight 0.1 --kd-weight 0.9 --temperature 4"   # mdistiller's CIFAR KD recipe

# What the data, teacher and caches depend on, then what only the students do: a
# change in the second part keeps the teacher and caches and redoes the students.
BASE_PARAMS="profile=$PROFILE teacher=$TEACHER t_per_class=$T_PER_CLASS t_epochs=$T_EPOCHS
s_per_class=$S_PER_CLASS val_per_class=$VAL_PER_CLASS views=$VIEWS topk=$TOPK chunk_images=$CHUNK
pix=$PIX
t_opt=$T_OPT"
STUDENT_PARAMS="student=$STUDENT s_epochs=$S_EPOCHS seeds=$SEEDS configs=$CONFIGS
s_opt=$S_OPT
kd=$KD
command=scripts/experiments/run_experiments.sh --$PROFILE --out $OUT --lr $S_LR --configs \"$CONFIGS\""
PARAMS="$BASE_PARAMS
$STUDENT_PARAMS"
NBASE=$(printf '%s\n' "$BASE_PARAMS" | wc -l)
if [ -n "$REUSE" ] && [ ! -f "$OUT/params.txt" ]; then
  [ -f "$REUSE/params.txt" ] && [ "$(head -n "$NBASE" "$REUSE/params.txt")" = "$BASE_PARAMS" ] ||
    { echo "run_experiments: --reuse $REUSE: not a run with these data/teacher/cache parameters" >&2; exit 1; }
  for st in data teacher cache_f16_feat cache_topk$TOPK cache_f16 cache_f32; do
    [ -f "$REUSE/done/$st" ] || { echo "run_experiments: --reuse $REUSE: stage $st not done there" >&2; exit 1; }
  done
  echo "run_experiments: starting $OUT from $REUSE's data, teacher and caches"
  mkdir -p "$OUT/done" "$OUT/logs"
  cp -r "$REUSE/teacher" "$REUSE/caches" "$OUT/"
  for st in data teacher cache_f16_feat cache_topk$TOPK cache_f16 cache_f32; do
    touch "$OUT/done/$st"; cp "$REUSE/logs/$st.log" "$OUT/logs/" 2>/dev/null || true
  done
  grep -v '^students' "$REUSE/times.tsv" > "$OUT/times.tsv" || true
  printf '%s\n' "$BASE_PARAMS" > "$OUT/params.txt"
fi
if [ -f "$OUT/params.txt" ] && [ "$(cat "$OUT/params.txt")" != "$PARAMS" ]; then
  if [ "$(head -n "$NBASE" "$OUT/params.txt")" = "$BASE_PARAMS" ]; then
    echo "run_experiments: student parameters changed; keeping data, teacher and caches"
    rm -rf "$OUT/students" "$OUT/done/students"
  else
    echo "run_experiments: $OUT holds a run with other parameters; starting afresh"
    rm -rf "$OUT"
  fi
fi
mkdir -p "$OUT/logs" "$OUT/done" "$OUT/caches" "$OUT/students"
printf '%s\n' "$PARAMS" > "$OUT/params.txt"
touch "$OUT/times.tsv"

die() { echo "run_experiments: $*" >&2; exit 1; }

# stage NAME CMD...: runs CMD with its output in OUT/logs/NAME.log, records its wall
# time, stops everything if it fails.
stage() {
  local name="$1"; shift
  if [ -f "$OUT/done/$name" ]; then
    echo "[$name] done in an earlier run with these parameters; kept"
    return 0
  fi
  echo "[$name] $(date +%H:%M:%S) start"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  { "$@" 2>&1 || echo "__rc=$?"; } | tee "$OUT/logs/$name.log" | grep -v '^__rc=' | sed "s/^/  /"
  rc=$(sed -n 's/^__rc=//p' "$OUT/logs/$name.log" | tail -n 1)
  rc=${rc:-0}
  t1=$(date +%s.%N)
  if [ "$rc" -ne 0 ]; then
    tail -n 5 "$OUT/logs/$name.log" >&2
    die "stage '$name' failed (exit $rc); full log: $OUT/logs/$name.log"
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  grep -v "^$name	" "$OUT/times.tsv" > "$OUT/times.tsv.tmp" || true
  printf '%s\t%s\n' "$name" "$secs" >> "$OUT/times.tsv.tmp"
  mv "$OUT/times.tsv.tmp" "$OUT/times.tsv"
  touch "$OUT/done/$name"
  echo "[$name] $(date +%H:%M:%S) done in ${secs}s"
}

# ---- data ----
per() { if [ "$1" != all ]; then echo "$2 $1"; fi; }
TDATA=data/fmnist-t$T_PER_CLASS-v$VAL_PER_CLASS
SDATA=data/fmnist-s$S_PER_CLASS-v$VAL_PER_CLASS
prepare() {
  /usr/bin/python3 scripts/experiments/prepare_fashion_mnist.py --out "$TDATA" \
    --train-per-class "$T_PER_CLASS" $(per "$VAL_PER_CLASS" --val-per-class)
  /usr/bin/python3 scripts/experiments/prepare_fashion_mnist.py --out "$SDATA" \
    --train-per-class "$S_PER_CLASS" $(per "$VAL_PER_CLASS" --val-per-class)
}
stage data prepare
VAL=$SDATA/val

# ---- teacher: CE only, online pad-crop views, all cores ----
# (30000 images x 2 epochs gave only 80.8% val: the full run uses all 60000.)
train_teacher() {
  rm -rf "$OUT/teacher"
  $BIN/kd-train --data "$TDATA/train" --student $TEACHER --out "$OUT/teacher" \
    --epochs $T_EPOCHS $T_OPT $PIX --view-policy pad-crop --pad 4 \
    --ce-weight 1 --kd-weight 0 --seed 0 --threads "$JOBS" --quiet --val "$VAL"
  $BIN/kd-train --eval-only --weights "$OUT/teacher/student.safetensors" --val "$VAL" \
    --student $TEACHER $PIX --threads "$JOBS" > "$OUT/teacher/eval.txt"
  cat "$OUT/teacher/eval.txt"
}
stage teacher train_teacher

# ---- caches: the same V pad-crop views (same seed) in every storage mode ----
# f16_feat is the one the KD/DOT/projector runs use; topk5 (no features) is config 5's;
# f32 and f16 without features are made only to compare sizes.
precompute() {
  local name="$1"; shift
  rm -f "$OUT/caches/$name.h5" "$OUT/caches/$name.h5.partial"
  $BIN/kd-precompute --data "$SDATA/train" --teacher $TEACHER \
    --weights "$OUT/teacher/student.safetensors" --out "$OUT/caches/$name.h5" \
    --view-policy pad-crop --pad 4 --views $VIEWS $PIX --seed 0 --threads "$JOBS" --quiet \
    --chunk-images $CHUNK "$@"
  $BIN/kd-cache info "$OUT/caches/$name.h5" > "$OUT/caches/$name.info"
  $BIN/kd-cache verify "$OUT/caches/$name.h5" --data "$SDATA/train"
}
stage cache_f16_feat precompute f16_feat --logits float16
stage cache_topk$TOPK precompute topk$TOPK --logits topk:$TOPK --no-features
stage cache_f16 precompute f16 --logits float16 --no-features
stage cache_f32 precompute f32 --logits float32 --no-features

# ---- students: five configurations x seeds, JOBS single-thread runs at a time ----
config_args() {
  case "$1" in
    ce)          echo "--view-policy pad-crop --pad 4 --ce-weight 1 --kd-weight 0" ;;
    kd_sgd)      echo "--cache $OUT/caches/f16_feat.h5 $KD --optimizer sgd" ;;
    kd_dot)      echo "--cache $OUT/caches/f16_feat.h5 $KD --optimizer dot --dot-delta 0.075" ;;
    kd_proj_dot) echo "--cache $OUT/caches/f16_feat.h5 $KD --proj-weight 2 --proj-alpha 4 --optimizer dot --dot-delta 0.075" ;;
    kd_dot_topk) echo "--cache $OUT/caches/topk$TOPK.h5 $KD --optimizer dot --dot-delta 0.075" ;;
  esac
}
student() {
  local cfg="$1" seed="$2" dir="$OUT/students/$1-s$2"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  {
    rm -rf "$dir" && mkdir -p "$dir" &&
    $BIN/kd-train --data "$SDATA/train" --student $STUDENT --out "$dir" \
      --epochs $S_EPOCHS $S_OPT $PIX $(config_args "$cfg") --seed "$seed" --threads 1 --quiet &&
    $BIN/kd-train --eval-only --weights "$dir/student.safetensors" --val "$VAL" \
      --student $STUDENT $PIX --threads 1 > "$dir/eval.txt"
  } > "$OUT/logs/student-$cfg-s$seed.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", b-a}' > "$dir/wall_s" 2>/dev/null || true
  echo "$rc" > "$dir/status" 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then
    echo "  $cfg seed $seed: $(cat "$dir/eval.txt")"
  else
    echo "  $cfg seed $seed: FAILED (exit $rc), log $OUT/logs/student-$cfg-s$seed.log" >&2
  fi
  return "$rc"
}
sweep() {
  local cfg seed
  for seed in $SEEDS; do
    for cfg in $CONFIGS; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
      student "$cfg" "$seed" &
    done
  done
  wait || true
  local bad=0
  for seed in $SEEDS; do
    for cfg in $CONFIGS; do
      [ "$(cat "$OUT/students/$cfg-s$seed/status" 2>/dev/null)" = 0 ] || bad=$((bad + 1))
    done
  done
  [ "$bad" -eq 0 ] || { echo "run_experiments: $bad student run(s) failed" >&2; return 1; }
}
echo "[students] $STUDENT, $S_PER_CLASS images per class, $S_EPOCHS epochs, seeds $SEEDS," \
     "configurations $CONFIGS, $JOBS at a time"
stage students sweep
echo "run_experiments: all stages done; results in $OUT"
