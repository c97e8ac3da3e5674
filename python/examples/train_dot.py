#!/usr/bin/python3
"""A PyTorch training loop on a kdcache file: KD from the cached teacher
outputs with the DOT optimiser (Zhao et al., ICCV 2023), re-stated here in a
few lines as mdistiller's DistillationOrientedTrainer (docs/TRAINING_MATH.md,
"DOT"), for a CIFAR-style ResNet8x4 student (mdistiller's, as kd-train's
resnet8x4).

  python3 train_dot.py --cache CACHE.h5 --data DIR --epochs 10 --out student.pt

With --no-shuffle, --schedule constant and the same weights (--init), this loop
takes the steps kd-train takes with
  kd-train --student resnet8x4 --optimizer dot --no-shuffle --schedule constant
           --ce-weight A --kd-weight B --temperature T --lr LR --wd WD
           --momentum MU --dot-delta DELTA --batch B --seed S
(tests/python/test_train_dot.py checks it to float rounding): the batches come
from kdcache.CacheDataset in cache row order, with kd-train's view per epoch.
A batch of one is not trained on, as in kd-train (batch norm needs two).
"""

import argparse
import sys
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kdcache  # noqa: E402


# ---- the student: mdistiller's CIFAR ResNet8x4 (kd-train's resnet8x4, same names) ----
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet8x4(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.layer1 = nn.Sequential(Block(32, 64, 1))
        self.layer2 = nn.Sequential(Block(64, 128, 2))
        self.layer3 = nn.Sequential(Block(128, 256, 2))
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---- DOT: two momentum buffers, task (mu - delta) and distillation (mu + delta) ----
class DOT:
    """mdistiller's DistillationOrientedTrainer for parameters that all get
    both gradients (a plain student): v_task = m_task v_task + (g_task + wd p),
    v_kd = m_kd v_kd + g_kd (buffers start at the first gradient), then
    p -= lr v_task; p -= lr v_kd."""

    def __init__(self, params, lr, momentum, delta, weight_decay):
        self.params = list(params)
        self.lr, self.wd = lr, weight_decay
        self.m_task, self.m_kd = momentum - delta, momentum + delta
        self.v_task = [None] * len(self.params)
        self.v_kd = [None] * len(self.params)

    @torch.no_grad()
    def step(self, task_grads, kd_grads):
        for i, (p, g) in enumerate(zip(self.params, task_grads)):
            d = g.add(p, alpha=self.wd)
            if self.v_task[i] is None:
                self.v_task[i] = d.clone()
            elif self.m_task != 0:
                self.v_task[i].mul_(self.m_task).add_(d)
            else:
                self.v_task[i] = d
            p.add_(self.v_task[i], alpha=-self.lr)
        for i, (p, g) in enumerate(zip(self.params, kd_grads)):
            if self.v_kd[i] is None:
                self.v_kd[i] = g.clone()
            else:
                self.v_kd[i].mul_(self.m_kd).add_(g)
            p.add_(self.v_kd[i], alpha=-self.lr)


def kd_loss(student, teacher, T):
    """Vanilla KD (mdistiller's kd_loss): T^2 KL(softmax(t/T) || softmax(s/T))."""
    log_ps = F.log_softmax(student / T, dim=1)
    pt = F.softmax(teacher / T, dim=1)
    return F.kl_div(log_ps, pt, reduction="none").sum(1).mean() * T * T


def kd_loss_topk(student, index, value, T):
    """KD from a top-k cache: the teacher renormalised over its K stored classes."""
    log_ps = F.log_softmax(student / T, dim=1).gather(1, index)
    q = F.softmax(value / T, dim=1)
    return (q * (torch.log(q) - log_ps)).sum(1).mean() * T * T


def train(args, log=print):
    dtype = getattr(torch, args.dtype)
    ds = kdcache.CacheDataset(args.cache, args.data, seed=args.seed)
    C = ds.header["num_classes"]
    model = ResNet8x4(C)
    if args.init:
        model.load_state_dict(torch.load(args.init))
    model = model.to(dtype).train()
    params = list(model.parameters())
    opt = DOT(params, args.lr, args.momentum, args.dot_delta, args.wd)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch,
                                             shuffle=not args.no_shuffle, generator=g,
                                             num_workers=args.workers)
        total, n = 0.0, 0
        for b in loader:
            if b["image"].shape[0] < 2:
                continue
            x = b["image"].to(dtype)
            logits = model(x)
            task = args.ce_weight * F.cross_entropy(logits, b["label"])
            if "logits" in b:
                distill = args.kd_weight * kd_loss(logits, b["logits"].to(dtype),
                                                   args.temperature)
            else:
                distill = args.kd_weight * kd_loss_topk(logits, b["topk_index"],
                                                        b["topk_value"].to(dtype),
                                                        args.temperature)
            gt = torch.autograd.grad(task, params, retain_graph=True)
            gk = torch.autograd.grad(distill, params)
            opt.step(gt, gk)
            total += float(task + distill)
            n += 1
        log(f"epoch {epoch + 1}/{args.epochs}: loss {total / max(n, 1):.4f} ({n} steps)")
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="student.pt")
    p.add_argument("--init", help="a state_dict (torch.save) to start from")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--dot-delta", type=float, default=0.075)
    p.add_argument("--ce-weight", type=float, default=0.1)
    p.add_argument("--kd-weight", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shuffle", action="store_true", help="cache row order (as kd-train's)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)
    model = train(args)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
