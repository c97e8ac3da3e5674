"""Times the conv2d shapes of tests/bench/bench_layers.c with PyTorch (Debian's,
/usr/bin/python3) for a per-layer comparison. Same columns as bench_layers.
Usage: /usr/bin/python3 scripts/bench/bench_layers_torch.py [THREADS] [SET] [REPS]"""
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [  # set, name, n, c_in, hw, c_out, k, stride, pad, groups (as bench_layers.c)
    ("r18", "conv1 7x7/2", 16, 3, 224, 64, 7, 2, 3, 1),
    ("r18", "l1 3x3", 16, 64, 56, 64, 3, 1, 1, 1),
    ("r18", "l2 3x3/2", 16, 64, 56, 128, 3, 2, 1, 1),
    ("r18", "l2 3x3", 16, 128, 28, 128, 3, 1, 1, 1),
    ("r18", "l2 down 1x1/2", 16, 64, 56, 128, 1, 2, 0, 1),
    ("r18", "l3 3x3", 16, 256, 14, 256, 3, 1, 1, 1),
    ("r18", "l4 3x3", 16, 512, 7, 512, 3, 1, 1, 1),
    ("r50", "l1 1x1 64>64", 8, 64, 56, 64, 1, 1, 0, 1),
    ("r50", "l1 3x3", 8, 64, 56, 64, 3, 1, 1, 1),
    ("r50", "l1 1x1 64>256", 8, 64, 56, 256, 1, 1, 0, 1),
    ("r50", "l1 1x1 256>64", 8, 256, 56, 64, 1, 1, 0, 1),
    ("r50", "l2 1x1 512>128", 8, 512, 28, 128, 1, 1, 0, 1),
    ("r50", "l2 3x3", 8, 128, 28, 128, 3, 1, 1, 1),
    ("r50", "l3 1x1 1024>256", 8, 1024, 14, 256, 1, 1, 0, 1),
    ("r50", "l3 3x3", 8, 256, 14, 256, 3, 1, 1, 1),
    ("r50", "l4 1x1 2048>512", 8, 2048, 7, 512, 1, 1, 0, 1),
    ("r50", "l4 3x3", 8, 512, 7, 512, 3, 1, 1, 1),
    ("r18train", "conv1 7x7/2", 64, 3, 32, 64, 7, 2, 3, 1),
    ("r18train", "l1 3x3", 64, 64, 8, 64, 3, 1, 1, 1),
    ("r18train", "l2 3x3", 64, 128, 4, 128, 3, 1, 1, 1),
    ("r18train", "l3 3x3", 64, 256, 2, 256, 3, 1, 1, 1),
    ("r18train", "l4 3x3", 64, 512, 1, 512, 3, 1, 1, 1),
    ("mbv1", "dw 3x3 32", 16, 32, 112, 32, 3, 1, 1, 32),
    ("mbv1", "dw 3x3/2 64", 16, 64, 112, 64, 3, 2, 1, 64),
    ("mbv1", "dw 3x3 256", 16, 256, 28, 256, 3, 1, 1, 256),
    ("mbv1", "pw 1x1 256", 16, 256, 28, 256, 1, 1, 0, 1),
]

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
which = sys.argv[2] if len(sys.argv) > 2 else "all"
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
torch.set_num_threads(threads)
print(f"# torch {torch.__version__}, {threads} threads")
print(f"{'set':9} {'layer':18} {'n,cin,hw>cout':22} {'fwd ms':>9} {'GF/s':>7} {'bwd ms':>9} {'GF/s':>7}")
tf = tb = 0.0
for st, name, n, ci, hw, co, k, s, p, g in SHAPES:
    if which != "all" and which != st:
        continue
    x = torch.randn(n, ci, hw, hw, requires_grad=True)
    w = torch.randn(co, ci // g, k, k, requires_grad=True)
    bf = bb = 1e30
    for r in range(reps + 1):
        t0 = time.perf_counter()
        y = F.conv2d(x, w, None, s, p, 1, g)
        t1 = time.perf_counter()
        dy = torch.ones_like(y)
        t1b = time.perf_counter()
        gx, gw = torch.autograd.grad(y, (x, w), dy)
        t2 = time.perf_counter()
        if r:
            bf, bb = min(bf, t1 - t0), min(bb, t2 - t1b)
    macs = y.numel() * (ci // g) * k * k
    print(f"{st:9} {name:18} {f'{n},{ci},{hw}>{co}':22} {bf*1e3:9.2f} {2*macs/bf*1e-9:7.1f} "
          f"{bb*1e3:9.2f} {4*macs/bb*1e-9:7.1f}")
    tf += bf
    tb += bb
print(f"# total fwd {tf*1e3:.1f} ms, bwd {tb*1e3:.1f} ms")
