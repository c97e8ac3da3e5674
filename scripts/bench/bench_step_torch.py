#!/usr/bin/python3
"""PyTorch twin of scripts/bench/bench_step.sh: a KD student step with the images and
the teacher logits already in memory (which favours PyTorch: no decoding, no cache).

  bench_step_torch.py ARCH OPT BATCH THREADS STEPS CLASSES [PX=32]

ARCH: resnet18 (torchvision), mobilenet_v1 (mdistiller's), resnet8x4 (mdistiller's CIFAR
ResNet); OPT: sgd or dot. Loss CE 0.1 + KD(T=4) 0.9 (mdistiller's kd_loss).
  sgd: one backward of the sum, torch.optim.SGD (momentum 0.9, wd 5e-4);
  dot: mdistiller's DOT: one forward, loss_kd.backward(retain_graph=True), then
       loss_ce.backward() (two backward passes), then the DOT update with separate
       momentum buffers (scripts/ref/ref_train.py's MdistillerDOT, delta 0.075).
Prints "ips X gflop Y": images/s over STEPS steps after 3 warm-up steps (best of the
steps' running rate is not taken: it is the plain mean), and the step's GFLOP
(convolutions and linear layers: forward, backward-data except the first
convolution, backward-weights; DOT: two backward passes), the same count kdcache's
step does, for the % of the sgemm ceiling."""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from ref_models import MobileNetV1  # noqa: E402
from ref_train import MdistillerDOT, ResNet8x4, kd_loss  # noqa: E402


def make(arch, classes):
    if arch == "resnet18":
        return torchvision.models.resnet18(num_classes=classes)
    if arch == "mobilenet_v1":
        return MobileNetV1(classes)
    if arch == "resnet8x4":
        return ResNet8x4(classes)
    raise SystemExit(f"bench_step_torch: unknown arch {arch}")


def logits_of(out):
    return out[0] if isinstance(out, tuple) else out


def step_gflop(model, x, dot):
    """Multiply-adds of the forward, from hooks; backward = 2x forward, except that
    the first convolution computes no input gradient."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            macs.append(out.numel() * k)
        elif isinstance(m, nn.Linear):
            macs.append(out.numel() * m.in_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    fwd, first = 2.0 * sum(macs), 2.0 * macs[0]
    bwd = 2 * fwd - first
    return (fwd + (2 if dot else 1) * bwd) / 1e9


def main():
    arch, opt_name = sys.argv[1], sys.argv[2]
    batch, threads, steps, classes = (int(v) for v in sys.argv[3:7])
    px = int(sys.argv[7]) if len(sys.argv) > 7 else 32
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make(arch, classes).train()
    pool = 4  # distinct batches in memory, cycled
    xs = torch.randn(pool, batch, 3, px, px)
    ys = torch.randint(0, classes, (pool, batch))
    ts = 3 * torch.randn(pool, batch, classes)
    params = list(model.parameters())
    dot = opt_name == "dot"
    if dot:
        opt = MdistillerDOT(params, 0.05, 0.9 - 0.075, 0.9 + 0.075, 5e-4)
    else:
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    gflop = step_gflop(model, xs[0], dot)
    model.train()
    t0 = None
    for s in range(steps + 3):
        if s == 3:
            t0 = time.perf_counter()
        x, y, t = xs[s % pool], ys[s % pool], ts[s % pool]
        z = logits_of(model(x))
        loss_ce = 0.1 * F.cross_entropy(z, y)
        loss_kd = 0.9 * kd_loss(z, t, 4.0)
        if dot:
            for p in params:
                p.grad = None
            loss_kd.backward(retain_graph=True)
            g_kd = {i: p.grad for i, p in enumerate(params) if p.grad is not None}
            for p in params:
                p.grad = None
            loss_ce.backward()
            g_task = {i: p.grad for i, p in enumerate(params) if p.grad is not None}
            opt.step(g_task, g_kd)
        else:
            opt.zero_grad(set_to_none=True)
            (loss_ce + loss_kd).backward()
            opt.step()
    ips = steps * batch / (time.perf_counter() - t0)
    print(f"ips {ips:.1f} gflop {gflop:.3f}")


if __name__ == "__main__":
    main()
