#!/usr/bin/env bash
# The ImageNet scale simulation of docs/SCALE.md, rerunnable by anyone:
#
#   scripts/scale_sim.sh [--scale F] [--work DIR] [--parts tiny,photos,cache,budget]
#                        [--photos N] [--torch-limit N] [--cache-views V]
#                        [--gpu-img-s G] [--student-img-s G2] [--cores K] [--threads T]
#
#   tiny    a synthetic ImageNet-shaped ImageFolder: round(1,281,167 x F) 8x8 JPEGs in
#           1,000 class folders (tests/bench/make_scale_folder): time to list, to read +
#           CRC every file; a synthetic-teacher cache of it; kd-train's start-up time
#           and peak RSS (with the cache, and online); kd-cache verify (with and without
#           --data) and merge (two shards) times.
#   photos  N (default round(20,000 x F)) real-size JPEGs cut from Debian's photographs
#           (mate-backgrounds, nature/*.jpg; ~400 x 380 px, ~80 KB at quality 100):
#           kd-precompute's data path per core (tests/bench/bench_datapath: read + CRC,
#           decode, V rrc views, resize, flip, normalise; no teacher) for V = 1, 4, 10,
#           also with one decode per view (the old path) and --decode-scale auto, against
#           PIL + torchvision on one core (scripts/bench/bench_datapath_torch.py, the
#           first --torch-limit images); kd-train's data path per core
#           (tests/bench/bench_train_data: cache stream, checks, decode, replayed view,
#           batch); --decode-scale auto on 800-1600 px photos.
#   cache   synthetic-teacher caches of ImageNet shape: round(1,281,167 x F) images x
#           --cache-views V (default 2) x 1,000 classes, float16 and topk:10, without
#           and with 2,048 features (tests/bench/bench_cache_synth): file size, write
#           and read MB/s, LZ4 ratio, bytes read per epoch. Each file is removed after
#           its measurement; the largest needs ~7.9 GB per view at F = 1.
#   budget  the ImageNet budget on a K-core box (default 16) with a GPU running the
#           ResNet-50 teacher at G img/s (default 2,500) and training the student at
#           G2 img/s (default 3,482: timm's resnet18 AMP figure on an RTX 3090), from
#           the figures above.
#
# Results: DIR/results.txt (one "key value" line per figure) and DIR/*.log; the
# summary is printed at the end. Every figure is a measurement of this run except
# the stated GPU rate. Page cache: warm (the script never drops caches; on a shared
# machine it cannot). Default DIR: /work/scale_sim or $TMPDIR/kdc_scale_sim.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
F=1
WORK=${KDC_SCALE_WORK:-/work/scale_sim}
[ -d "$(dirname "$WORK")" ] || WORK=${TMPDIR:-/tmp}/kdc_scale_sim
PARTS=tiny,photos,cache,budget
PHOTOS=
TORCH_LIMIT=2000
CACHE_VIEWS=2
GPU=2500
STUDENT=3482
CORES=16
THREADS=2
while [ $# -gt 0 ]; do
    case "$1" in
    --scale) F=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --photos) PHOTOS=$2; shift 2 ;;
    --torch-limit) TORCH_LIMIT=$2; shift 2 ;;
    --cache-views) CACHE_VIEWS=$2; shift 2 ;;
    --gpu-img-s) GPU=$2; shift 2 ;;
    --student-img-s) STUDENT=$2; shift 2 ;;
    --cores) CORES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "scale_sim.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
N=$(awk -v f="$F" 'BEGIN { n = int(1281167 * f + 0.5); print n < 1000 ? 1000 : n }')
[ -n "$PHOTOS" ] || PHOTOS=$(awk -v f="$F" 'BEGIN { n = int(20000 * f + 0.5); print n < 200 ? 200 : n }')
PY=/usr/bin/python3
BIN=$ROOT/build/bin
B=$ROOT/build/bench
mkdir -p "$WORK"
RES=$WORK/results.txt
touch "$RES" # one "key value" line per figure; a rerun appends, the last line of a key counts
make -s -j2 tools build/bench/make_scale_folder build/bench/bench_datapath \
    build/bench/bench_cache_synth build/bench/bench_train_data >/dev/null
SRCS=$(ls /usr/share/backgrounds/mate/nature/*.jpg 2>/dev/null || true)
has() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
put() { echo "$1 $2" >> "$RES"; echo "  $1 = $2"; }
# field LINE WORD: the number just before WORD in LINE ("... 12.3 s wall" -> 12.3 for "s wall")
field() { echo "$1" | grep -oE "[0-9.]+ $2" | head -1 | awk '{print $1}'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

echo "scale_sim: F=$F ($N images, $PHOTOS photos), work $WORK, $(nproc) cores: $(uptime)"
df -h "$WORK" | tail -1

# kd-train until its first training step: seconds and peak RSS then.
startup() {
    local tag=$1; shift
    local out=$WORK/run_$tag err=$WORK/train_$tag.log
    rm -rf "$out"
    local t0; t0=$(now)
    "$BIN/kd-train" "$@" --out "$out" --log-every 0.2 >/dev/null 2>"$err" &
    local pid=$! s="" rss=""
    while kill -0 $pid 2>/dev/null; do
        if grep -q "step [0-9]" "$err"; then
            s=$(since "$t0")
            rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || true)
            break
        fi
        sleep 0.1
    done
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if [ -z "$s" ]; then
        echo "scale_sim: kd-train ($tag) stopped before its first step:" >&2
        tail -3 "$err" >&2
        return 1
    fi
    put "train_startup_s_$tag" "$s"
    put "train_startup_rss_mb_$tag" "$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')"
}

if has tiny; then
    echo "== tiny: $N 8x8 JPEGs in 1000 classes"
    T=$WORK/tiny_$N
    if [ ! -f "$T.done" ]; then
        rm -rf "$T"
        "$B/make_scale_folder" tiny "$T" "$N" 1000 | tee "$WORK/tiny_make.log"
        touch "$T.done"
    fi
    put tiny_images "$N"
    C=$WORK/tiny_$N.h5
    L=$("$B/bench_cache_synth" --out "$C" --data "$T" --views 1 --classes 1000 --logits topk:10 \
        --policy center --image-size 32 --resize-size 32 --threads "$THREADS" --read-epochs 0 |
        tee "$WORK/tiny_cache.log")
    put tiny_list_s "$(echo "$L" | grep -oE 'list [0-9.]+' | awk '{print $2}')"
    put tiny_read_crc_s "$(echo "$L" | grep -oE 'threads [0-9.]+ s' | awk '{print $2}')"
    put tiny_cache_mb "$(echo "$L" | grep -oE 'file [0-9.]+ MB' | awk '{print $2}')"
    t0=$(now)
    "$BIN/kd-cache" verify "$C" > "$WORK/tiny_verify.log"
    put tiny_verify_s "$(since "$t0")"
    t0=$(now)
    "$BIN/kd-cache" verify "$C" --data "$T" > "$WORK/tiny_verify_data.log"
    put tiny_verify_data_s "$(since "$t0")"
    for i in 0 1; do
        "$B/bench_cache_synth" --out "$WORK/tiny_s$i.h5" --data "$T" --views 1 --classes 1000 \
            --logits topk:10 --policy center --image-size 32 --resize-size 32 \
            --threads "$THREADS" --shard $i/2 > "$WORK/tiny_shard$i.log"
    done
    rm -f "$WORK/tiny_merged.h5"
    t0=$(now)
    "$BIN/kd-cache" merge "$WORK/tiny_merged.h5" "$WORK/tiny_s0.h5" "$WORK/tiny_s1.h5" \
        > "$WORK/tiny_merge.log"
    put tiny_merge_s "$(since "$t0")"
    rm -f "$WORK/tiny_s0.h5" "$WORK/tiny_s1.h5" "$WORK/tiny_merged.h5"
    startup cache --data "$T" --cache "$C" --student resnet8x4 --epochs 1 --batch 64 \
        --threads "$THREADS"
    startup online --data "$T" --student resnet8x4 --epochs 1 --batch 64 --threads "$THREADS" \
        --view-policy center --image-size 32 --resize-size 32
fi

if has photos; then
    [ -n "$SRCS" ] || { echo "scale_sim: no /usr/share/backgrounds/mate/nature/*.jpg (apt-get install mate-backgrounds)" >&2; exit 1; }
    P=$WORK/photos_$PHOTOS
    if [ ! -f "$P.done" ]; then
        rm -rf "$P"
        # shellcheck disable=SC2086
        "$B/make_scale_folder" photos "$P" "$PHOTOS" 100 --quality 100 $SRCS | tee "$WORK/photos_make.log"
        touch "$P.done"
    fi
    echo "== photos: $PHOTOS real-size JPEGs, data paths on one core"
    TL=$TORCH_LIMIT
    [ "$TL" -le "$PHOTOS" ] || TL=$PHOTOS
    for V in 1 4 10; do
        L=$("$B/bench_datapath" --views $V --threads 1 "$P" | tee -a "$WORK/datapath.log")
        put "c_img_per_cpu_s_v$V" "$(field "$L" img/cpu-s)"
        L=$("$B/bench_datapath" --views $V --threads 1 --per-view --limit "$TL" "$P" |
            tee -a "$WORK/datapath.log")
        put "c_perview_img_per_cpu_s_v$V" "$(field "$L" img/cpu-s)"
        L=$("$B/bench_datapath" --views $V --threads 1 --decode-scale auto "$P" |
            tee -a "$WORK/datapath.log")
        put "c_auto_img_per_cpu_s_v$V" "$(field "$L" img/cpu-s)"
        L=$($PY scripts/bench/bench_datapath_torch.py "$P" $V 224 64 "$TL" 1 |
            tee -a "$WORK/datapath.log")
        put "torch_img_per_cpu_s_v$V" "$(field "$L" img/cpu-s)"
    done
    L=$("$B/bench_datapath" --views 1 --threads "$THREADS" "$P" | tee -a "$WORK/datapath.log")
    put "c_img_per_s_wall_v1_t$THREADS" "$(field "$L" 'img/s wall')"
    "$B/bench_cache_synth" --out "$WORK/photos_v10.h5" --data "$P" --views 10 --classes 1000 \
        --threads "$THREADS" --read-epochs 0 > "$WORK/photos_cache.log"
    L=$("$B/bench_train_data" --data "$P" --cache "$WORK/photos_v10.h5" --threads 1 |
        tee -a "$WORK/datapath.log")
    put train_samples_per_cpu_s "$(field "$L" samples/cpu-s)"
    rm -f "$WORK/photos_v10.h5"
    echo "== decode-scale auto on 800-1600 px photos"
    G=$WORK/large_300
    if [ ! -f "$G.done" ]; then
        rm -rf "$G"
        # shellcheck disable=SC2086
        "$B/make_scale_folder" photos "$G" 300 10 --quality 95 --width 800,1600 $SRCS > "$WORK/large_make.log"
        touch "$G.done"
    fi
    for d in off auto; do
        L=$("$B/bench_datapath" --views 1 --threads 1 --decode-scale $d "$G" | tee -a "$WORK/datapath.log")
        put "large_${d}_img_per_cpu_s" "$(field "$L" img/cpu-s)"
    done
fi

if has cache; then
    echo "== synthetic-teacher caches: $N images x $CACHE_VIEWS views x 1000 classes"
    put cache_images "$N"
    put cache_views "$CACHE_VIEWS"
    for mode in float16 topk:10; do
        for D in 0 2048; do
            tag=${mode%%:*}_d$D
            L=$("$B/bench_cache_synth" --out "$WORK/cache_$tag.h5" --images "$N" \
                --views "$CACHE_VIEWS" --classes 1000 --logits "$mode" --features $D \
                --read-epochs 2 | tee "$WORK/cache_$tag.log")
            echo "$L"
            put "cache_${tag}_mb_per_view" "$(echo "$L" | grep -oE '[0-9.]+ MB per view' | awk '{print $1}')"
            put "cache_${tag}_write_mb_s" "$(field "$L" 'MB/s of file,')"
            put "cache_${tag}_lz4_ratio" "$(echo "$L" | grep -oE 'LZ4 ratio [0-9.]+' | awk '{print $3}')"
            put "cache_${tag}_read_mb_s" "$(echo "$L" | grep 'read epoch 1' | grep -oE '[0-9.]+ MB/s' | awk '{print $1}')"
            put "cache_${tag}_read_fraction" "$(echo "$L" | grep 'read epoch 1' | grep -oE '= [0-9.]+ of the file' | awk '{print $2}')"
            put "cache_${tag}_samples_s" "$(echo "$L" | grep 'read epoch 1' | grep -oE '[0-9]+ samples/s' | awk '{print $1}')"
            rm -f "$WORK/cache_$tag.h5"
        done
    done
fi

if has budget; then
    echo "== budget: ImageNet (1,281,167 images) on $CORES cores + a GPU at $GPU img/s (ResNet-50)"
    $PY - "$RES" "$CORES" "$GPU" "$STUDENT" <<'PYEOF'
import sys
res = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    try:
        res[k] = float(v)
    except ValueError:
        pass
cores, gpu, student, N = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), 1281167
def g(k):
    return res.get(k)
for V in (1, 10):
    c = g(f"c_img_per_cpu_s_v{V}")
    if c is None:
        continue
    cpu = c * cores          # images/s the CPU side can decode and cut V views of
    gpu_img = gpu / V        # images/s the teacher can run V views of
    rate = min(cpu, gpu_img)
    print(f"kd-precompute V={V}: CPU {cpu:,.0f} img/s ({c:.0f}/core x {cores}), GPU {gpu_img:,.0f} img/s "
          f"-> {rate:,.0f} img/s, {N / rate / 3600:.2f} h, bottleneck {'CPU' if cpu < gpu_img else 'GPU'}")
t = g("train_samples_per_cpu_s")
if t:
    cpu = t * cores
    rate = min(cpu, student)
    print(f"kd-train: CPU data path {t:.0f} samples/s per core x {cores} = {cpu:,.0f} img/s, student "
          f"on the GPU {student:,.0f} img/s -> {rate:,.0f} img/s, {N / rate / 60:.1f} min per epoch, "
          f"bottleneck {'CPU' if cpu < student else 'GPU'}")
for tag in ("float16_d0", "float16_d2048", "topk_d0", "topk_d2048"):
    mb = g(f"cache_{tag}_mb_per_view")
    if mb:
        full = mb * N / res.get("cache_images", N)
        frac, rd = g(f"cache_{tag}_read_fraction") or 0, g(f"cache_{tag}_read_mb_s") or 0
        # views' worth of bytes an epoch read here; one view (or all of them) at V = 10
        worth = frac * res.get("cache_views", 1)
        views10 = 1 if worth < 1.2 else 10
        print(f"cache {tag}: {full / 1e3:,.2f} GB per view at ImageNet size; V=10 -> "
              f"{full * 10 / 1e3:,.1f} GB; an epoch read {worth:.2f} views' worth "
              f"({frac:.3f} of the file) at {rd:,.0f} MB/s, "
              f"{g(f'cache_{tag}_samples_s') or 0:,.0f} samples/s; at V=10: "
              f"{full * views10 / 1e3:,.1f} GB per epoch, "
              f"{full * views10 / rd if rd else 0:,.0f} s at that rate")
PYEOF
fi
echo "scale_sim: results in $RES"
