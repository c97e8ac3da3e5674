"""PyTorch twin of tests/bench/bench_models_cpu.c: the same rows (torchvision
resnet18/resnet50 eval forward at 224 px, a resnet18 SGD train step at 32 px
batch 64, mean cross-entropy) timed with Debian's PyTorch. "infer" rows are the
eval forward under torch.inference_mode (PyTorch does not fold BN by itself).
Usage: /usr/bin/python3 scripts/bench/bench_models_torch.py [THREADS] [REPS] [ONLY]"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

ROWS = [  # name, arch, batch, px, mode (as bench_models_cpu.c)
    ("resnet18-fwd", "resnet18", 16, 224, 0),
    ("resnet18-infer", "resnet18", 16, 224, 1),
    ("resnet50-fwd", "resnet50", 8, 224, 0),
    ("resnet50-infer", "resnet50", 8, 224, 1),
    ("resnet18-train32", "resnet18", 64, 32, 2),
]

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
only = sys.argv[3] if len(sys.argv) > 3 else None
torch.set_num_threads(threads)
torch.manual_seed(1)
print(f"# torch {torch.__version__}, {threads} threads")
for name, arch, n, px, mode in ROWS:
    if only and only != name:
        continue
    m = getattr(torchvision.models, arch)(num_classes=1000)
    x = (torch.arange(n * 3 * px * px) % 251).float().div(125).sub(1).reshape(n, 3, px, px)
    y = torch.arange(n) % 1000
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    m.train(mode == 2)
    ts, cs = [], []
    for k in range(reps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        if mode == 2:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        else:
            with torch.inference_mode():
                m(x)
        if k:
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
    ts.sort()
    print(f"{name:18} batch {n:3d} {px:3d}px  best {ts[0] * 1e3:8.1f} ms  "
          f"median {statistics.median(ts) * 1e3:8.1f} ms  {n / ts[0]:8.1f} images/s  "
          f"cpu {statistics.median(cs) * 1e3:8.1f} ms", flush=True)
