#!/usr/bin/python3
"""PyTorch twin of `tests/bench/bench_models_cpu --set zoo`: the same train steps of
the issue-17 students (mdistiller's CIFAR MobileNetV2, ShuffleV1, ShuffleV2,
resnet20, resnet56, vgg8, wrn_16_2, wrn_40_1 at 32 px, batch 64, 100 classes;
torchvision's mobilenet_v2 and shufflenet_v2_x1_0 at 96 px, batch 32, 1000
classes), each step: forward in train mode, mean cross-entropy, backward,
torch.optim.SGD with kd-train's momentum 0.9 and weight decay 5e-4. Models from
scripts/ref/zoo_defs.py / ref_models.py (the definitions the tests check ours
against), inputs the same fixed pattern as the C bench. torchvision's
mobilenet_v2 keeps its Dropout(0.2) here (ours is the identity; it costs little).

  bench_zoo_torch.py [THREADS=2] [REPS=5] [ONLY]

One line per row, in the C bench's format: best and median wall time per step,
images/s from the best, median CPU time of the process per step."""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from ref_models import WideResNet  # noqa: E402
from zoo_defs import zoo_model  # noqa: E402

ROWS = [  # name, arch, batch, px, classes (as the --set zoo rows of bench_models_cpu.c)
    ("MobileNetV2-train32", "MobileNetV2", 64, 32, 100),
    ("ShuffleV1-train32", "ShuffleV1", 64, 32, 100),
    ("ShuffleV2-train32", "ShuffleV2", 64, 32, 100),
    ("resnet20-train32", "resnet20", 64, 32, 100),
    ("resnet56-train32", "resnet56", 64, 32, 100),
    ("vgg8-train32", "vgg8", 64, 32, 100),
    ("wrn_16_2-train32", "wrn_16_2", 64, 32, 100),
    ("wrn_40_1-train32", "wrn_40_1", 64, 32, 100),
    ("mobilenet_v2-train96", "mobilenet_v2", 32, 96, 1000),
    ("shufflenet_v2_x1_0-train96", "shufflenet_v2_x1_0", 32, 96, 1000),
]


def make(arch, classes):
    if arch == "wrn_16_2":
        return WideResNet(16, 2, classes)
    return zoo_model(arch, classes)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    only = sys.argv[3] if len(sys.argv) > 3 else None
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    print(f"# torch {torch.__version__}, {threads} threads")
    for name, arch, n, px, classes in ROWS:
        if only and only != name:
            continue
        m = make(arch, classes).train()
        x = (torch.arange(n * 3 * px * px) % 251).float().div(125).sub(1).reshape(n, 3, px, px)
        y = torch.arange(n) % classes
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        ts, cs = [], []
        for k in range(reps + 1):  # k == 0 warms up
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
            if k:
                ts.append(time.perf_counter() - t0)
                cs.append(time.process_time() - c0)
        ts.sort()
        print(f"{name:26s} batch {n:3d} {px:3d}px  best {ts[0] * 1e3:8.1f} ms  "
              f"median {statistics.median(ts) * 1e3:8.1f} ms  {n / ts[0]:8.1f} images/s  "
              f"cpu {statistics.median(cs) * 1e3:8.1f} ms", flush=True)


if __name__ == "__main__":
    main()
