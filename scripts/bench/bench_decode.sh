#!/usr/bin/env bash
# Decode + view + resize + normalise throughput on ONE core: kdcache's C pipeline
# (build/bench/bench_decode) against PIL + torchvision transforms, in the same run,
# on the same ImageNet-like JPEGs (500x375 / 375x500 crops of the real photographs
# in Debian's mate-backgrounds, quality 90). Results go to docs/PERFORMANCE.md by hand.
#
#   scripts/bench/bench_decode.sh [N_IMAGES (default 200)] [REPEAT (default 3)] [ROUNDS (default 5)]
#
# Each round runs every measurement once (C with the portable and the AVX2
# resampling kernels, then Python); the summary gives medians over the rounds of
# images/s by wall clock and by CPU time of the process (steadier when other jobs
# share the core), and the median of the per-round ratios kdcache / PIL.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root (scripts/bench/ moved in #12)
N=${1:-200}
R=${2:-3}
K=${3:-5}
PY=/usr/bin/python3
make -s build/bench/bench_decode
dir=$(mktemp -d "${TMPDIR:-/tmp}/kdc_bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

$PY - "$dir" "$N" <<'PYEOF'
import glob, random, sys
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
srcs = sorted(glob.glob("/usr/share/backgrounds/mate/nature/*.jpg"))
imgs = [Image.open(p).convert("RGB") for p in srcs]
rng = random.Random(0)
for k in range(n):
    im = imgs[k % len(imgs)]
    w, h = (500, 375) if k % 4 else (375, 500)
    W, H = im.size
    s = rng.uniform(0.3, 1.0)
    cw, ch = int(min(W, H * w / h) * s), int(min(H, W * h / w) * s)
    x0, y0 = rng.randrange(W - cw + 1), rng.randrange(H - ch + 1)
    im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR).save(f"{out}/{k:05d}.jpg", quality=90)
PYEOF

echo "== $N images, $R passes, $K rounds, one core ($(nproc) cores on this machine)"
log="$dir/log.txt"
for k in $(seq "$K"); do
  for pol in rrc center; do
    for isa in portable auto; do
      taskset -c 0 build/bench/bench_decode --policy $pol --isa $isa --repeat "$R" "$dir"/*.jpg |
        sed "s/^kdcache /round $k kdcache-$isa /" >> "$log"
    done
  done
  taskset -c 0 $PY - "$dir" "$R" <<'PYEOF' | sed "s/^/round $k /" >> "$log"
import glob, sys, time
import torch
from PIL import Image
from torchvision import transforms as T
torch.set_num_threads(1)
files, R = sorted(glob.glob(sys.argv[1] + "/*.jpg")), int(sys.argv[2])
norm = [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
pipes = {"rrc": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] + norm),
         "center": T.Compose([T.Resize(256), T.CenterCrop(224)] + norm),
         "decode": lambda im: im}
for name, tf in pipes.items():
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(R):
        for f in files:
            with open(f, "rb") as fh:
                tf(Image.open(fh).convert("RGB"))
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    n = R * len(files)
    print(f"pil {name} {n} images {n / dt:.1f} images/s {n / dc:.1f} images/cpu-s")
PYEOF
done
$PY - "$log" <<'PYEOF'
import re, statistics, sys
from collections import defaultdict
rate = defaultdict(list)  # (impl, what, clock) -> [per round]
per_round = defaultdict(dict)
for line in open(sys.argv[1]):
    w = line.split()
    k = int(w[1])
    if w[2] == "pil":
        impl, what = "PIL+torchvision", w[3]
    else:
        impl, mode, pol = w[2], w[3], w[4]
        what = pol if mode == "pipeline" else (mode if mode == "decode-dct1/2" else "decode")
        if what != pol and pol != "rrc":
            continue  # decode-only lines: take the rrc run's
    wall, cpu = float(re.search(r"([\d.]+) images/s", line).group(1)), float(re.search(r"([\d.]+) images/cpu-s", line).group(1))
    rate[impl, what, "wall"].append(wall)
    rate[impl, what, "cpu"].append(cpu)
    per_round[k][impl, what] = cpu
med = lambda v: statistics.median(v) if v else float("nan")
print("medians over rounds; images/s by wall clock / by CPU time; ratio = median of per-round CPU-time ratios vs PIL+torchvision")
print(f"{'what':16s} {'PIL+torchvision':>18s} {'kdcache portable':>18s} {'ratio':>6s} {'kdcache AVX2':>18s} {'ratio':>6s}")
for what in ["rrc", "center", "decode", "decode-dct1/2"]:
    cells = []
    for impl in ["PIL+torchvision", "kdcache-portable", "kdcache-auto"]:
        wv, cv = rate[impl, what, "wall"], rate[impl, what, "cpu"]
        cells.append(f"{med(wv):7.0f} / {med(cv):7.0f}" if wv else "-")
        if impl != "PIL+torchvision":
            r = [d[impl, what] / d["PIL+torchvision", what] for d in per_round.values()
                 if (impl, what) in d and ("PIL+torchvision", what) in d]
            cells.append(f"{med(r):5.2f}x" if r else "-")
    widths = [18, 18, 6, 18, 6]
    print(f"{what:16s} " + " ".join(f"{c:>{w}s}" for c, w in zip(cells, widths)))
PYEOF
