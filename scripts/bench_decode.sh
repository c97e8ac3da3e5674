#!/usr/bin/env bash
# Decode + view + resize + normalise throughput on ONE core: kdcache's C pipeline
# (build/bench/bench_decode) against PIL + torchvision transforms, in the same run,
# on the same ImageNet-like JPEGs (500x375 / 375x500 crops of the real photographs
# in Debian's mate-backgrounds, quality 90). Results go to docs/PERFORMANCE.md by hand.
#
#   scripts/bench_decode.sh [N_IMAGES (default 200)] [REPEAT (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
R=${2:-3}
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

echo "== $N images, $R passes, one core ($(nproc) cores on this machine)"
for pol in rrc center; do
  taskset -c 0 build/bench/bench_decode --policy $pol --repeat "$R" "$dir"/*.jpg
done
taskset -c 0 $PY - "$dir" "$R" <<'PYEOF'
import glob, sys, time
import torch
from PIL import Image
from torchvision import transforms as T
torch.set_num_threads(1)
files, R = sorted(glob.glob(sys.argv[1] + "/*.jpg")), int(sys.argv[2])
norm = [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
pipes = {"rrc": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] + norm),
         "center": T.Compose([T.Resize(256), T.CenterCrop(224)] + norm)}
for name, tf in pipes.items():
    t0 = time.perf_counter()
    for _ in range(R):
        for f in files:
            with open(f, "rb") as fh:
                tf(Image.open(fh).convert("RGB"))
    dt = time.perf_counter() - t0
    print(f"PIL+torchvision pipeline       {name:8s} {R * len(files):5d} images {R * len(files) / dt:7.1f} images/s")
t0 = time.perf_counter()
for _ in range(R):
    for f in files:
        with open(f, "rb") as fh:
            Image.open(fh).convert("RGB")
dt = time.perf_counter() - t0
print(f"PIL decode                     -        {R * len(files):5d} images {R * len(files) / dt:7.1f} images/s")
PYEOF
