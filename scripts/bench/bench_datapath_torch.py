"""PIL + torchvision's data path of a teacher-caching run, on one process:
read each file (and its zlib CRC-32, as kd-precompute records), decode once
with PIL, then V x (RandomResizedCrop(S) + RandomHorizontalFlip + ToTensor +
Normalize), stacked into batches of B. The fair "decode once, V views" Python
recipe (FKD's). Run with Debian's /usr/bin/python3 at torch.set_num_threads(T).

usage: bench_datapath_torch.py ROOT VIEWS [SIZE] [BATCH] [LIMIT] [THREADS]
Prints images/s by wall clock and per CPU-second of this process."""
import io, os, sys, time, zlib

import torch
import torchvision.transforms as T
from PIL import Image

root, V = sys.argv[1], int(sys.argv[2])
S = int(sys.argv[3]) if len(sys.argv) > 3 else 224
B = int(sys.argv[4]) if len(sys.argv) > 4 else 64
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 0
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
torch.set_num_threads(threads)
torch.manual_seed(1)
files = []
for c in sorted(os.listdir(root)):
    d = os.path.join(root, c)
    files += [os.path.join(d, f) for f in sorted(os.listdir(d))]
if limit:
    files = files[:limit]
tf = T.Compose([T.RandomResizedCrop(S), T.RandomHorizontalFlip(), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
w0, c0 = time.monotonic(), time.process_time()
batch, check = [], 0.0
for p in files:
    with open(p, "rb") as f:
        data = f.read()
    zlib.crc32(data)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    for v in range(V):
        batch.append(tf(img))
        if len(batch) == B:
            check += float(torch.stack(batch)[0, 0, 0, 0])
            batch = []
if batch:
    torch.stack(batch)
wall, cpu = time.monotonic() - w0, time.process_time() - c0
n = len(files)
print(f"torch views {V} threads {threads} size {S}: {n} images, {wall:.1f} s wall, {cpu:.1f} s cpu: "
      f"{n / wall:.1f} img/s wall, {n / cpu:.1f} img/cpu-s, {n * V / cpu:.1f} views/cpu-s")
