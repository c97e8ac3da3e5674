#!/usr/bin/python3
"""Reference fixtures for tests/train/test_train.c: a few full kd-train steps of
resnet8x4 re-done in PyTorch, float64.

Writes to OUTDIR:
  data/<class>/<i>.jpg      a small ImageFolder of real (synthetic) 32x32 JPEGs
  init.safetensors          resnet8x4 (4 classes) + projector.weight/bias (16 x 256)
  teacher_logits.f32        N x C "cached" teacher logits (values exact in float16)
  teacher_features.f32      N x Dt teacher features (exact in float16)
  <case>_<tensor>.f64       every student tensor and the projector after the steps
  <case>_loss.f64           the (ce, kd, proj) terms of the first step, unweighted
  <case>_torch32_err.txt    per tensor: PyTorch float32's error relative to the update
Cases (1 epoch, dataset order, batch 8: batches of 8, 8, 4 images; constant lr):
  sgd   torch.optim.SGD(momentum 0.9, wd 5e-4) on 0.1 CE + 0.9 KD(T=4) + 2 log-sum(alpha 4)
  dot   mdistiller's DOT re-stated (mu 0.9, delta 0.075), task = CE,
        distillation = KD + projector loss (the projector only on the distillation side)
Pixels: PIL decode + ToTensor + Normalize(ImageNet) in float32, as torchvision; the
center view of a 32x32 image with S = R = 32 is the whole image.
Usage: ref_train.py OUTDIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import refutil  # noqa: E402
from export_weights import save_file  # noqa: E402

torch.set_num_threads(2)

C, PER_CLASS, S, DT, BATCH = 4, 5, 32, 16, 8
LR, MOM, WD, DELTA = 0.01, 0.9, 5e-4, 0.075
W_CE, W_KD, T, W_PROJ, ALPHA = 0.1, 0.9, 4.0, 2.0, 4.0
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---- mdistiller's CIFAR ResNet (resnet8x4), same module and parameter names ----
class Block(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet8x4(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        f = [32, 64, 128, 256]
        self.conv1 = nn.Conv2d(3, f[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f[0])
        self.layer1 = nn.Sequential(Block(f[0], f[1], 1))
        self.layer2 = nn.Sequential(Block(f[1], f[2], 2))
        self.layer3 = nn.Sequential(Block(f[2], f[3], 2))
        self.fc = nn.Linear(f[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        feat = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(feat), feat


def make_dataset(d, rng):
    """Smooth random colour fields plus noise, with a class-dependent tint."""
    paths = []
    for c in range(C):
        os.makedirs(os.path.join(d, "data", f"class{c}"), exist_ok=True)
        for i in range(PER_CLASS):
            grid = rng.uniform(0, 255, (4, 4, 3))
            grid[..., c % 3] = 0.5 * grid[..., c % 3] + 120
            img = Image.fromarray(grid.astype(np.uint8)).resize((S, S), Image.BILINEAR)
            a = np.asarray(img).astype(np.float64) + rng.normal(0, 12, (S, S, 3))
            p = os.path.join(d, "data", f"class{c}", f"{i:02d}.jpg")
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(p, quality=90)
            paths.append((p, c))
    return paths


def load_pixels(paths):
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    xs = []
    for p, _ in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        x = torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)  # ToTensor
        xs.append((x - mean) / std)  # Normalize, float32 as torchvision
    return torch.stack(xs), torch.tensor([c for _, c in paths])


def kd_loss(s, t, temp):
    """mdistiller's kd_loss."""
    log_ps = F.log_softmax(s / temp, dim=1)
    pt = F.softmax(t / temp, dim=1)
    return F.kl_div(log_ps, pt, reduction="none").sum(1).mean() * temp * temp


def proj_loss(f, t, alpha):
    """log sum |BN(f) - BN(t)|^alpha, BN without affine, batch statistics, eps 1e-4."""
    fs = F.batch_norm(f, None, None, training=True, eps=1e-4)
    ft = F.batch_norm(t, None, None, training=True, eps=1e-4)
    return torch.log((fs - ft).abs().pow(alpha).sum())


class MdistillerDOT:
    """mdistiller's DistillationOrientedTrainer.step_kd()/step() re-stated for one
    param group (dampening 0): task_grads / kd_grads map parameter index -> gradient
    for the parameters that got one (the same rules as scripts/ref/ref_optim.py)."""

    def __init__(self, params, lr, momentum, momentum_kd, wd):
        self.params, self.lr, self.mom, self.mom_kd, self.wd = params, lr, momentum, momentum_kd, wd
        self.task_buf, self.kd_buf = {}, {}

    @torch.no_grad()
    def step(self, task_grads, kd_grads):
        mom, mom_kd, wd, lr = self.mom, self.mom_kd, self.wd, self.lr
        for i, g in task_grads.items():
            p = self.params[i]
            d_p = g.add(p, alpha=wd)
            buf = self.task_buf.get(i)
            if buf is None:
                buf = self.task_buf[i] = d_p.clone()
            elif i in kd_grads:
                buf.mul_(mom).add_(d_p)
            else:
                buf.mul_((mom_kd + mom) / 2.0).add_(d_p)
            p.add_(buf, alpha=-lr)
        for i, g in kd_grads.items():
            p = self.params[i]
            buf = self.kd_buf.get(i)
            if buf is None:
                buf = self.kd_buf[i] = g.clone()
            elif i in task_grads:
                buf.mul_(mom_kd).add_(g)
            else:
                buf.mul_((mom_kd + mom) / 2.0).add_(g.add(p, alpha=wd))
            p.add_(buf, alpha=-lr)


def run_case(name, init_sd, init_proj, x, y, tl, tf, dt):
    """Returns the state after the steps, computed in dtype dt."""
    model = ResNet8x4(C).to(dt)
    model.load_state_dict({k: v.to(dt) if v.is_floating_point() else v for k, v in init_sd.items()})
    proj = nn.Linear(256, DT).to(dt)
    proj.weight.data.copy_(init_proj[0].to(dt))
    proj.bias.data.copy_(init_proj[1].to(dt))
    model.train()
    student = [p for p in model.parameters()]
    projp = [proj.weight, proj.bias]
    allp = student + projp
    if name == "sgd":
        opt = torch.optim.SGD(allp, lr=LR, momentum=MOM, weight_decay=WD)
    else:
        opt = MdistillerDOT(allp, LR, MOM - DELTA, MOM + DELTA, WD)
    n = x.shape[0]
    first = None
    for b0 in range(0, n, BATCH):
        idx = slice(b0, min(n, b0 + BATCH))
        logits, feat = model(x[idx].to(dt))
        ce = F.cross_entropy(logits, y[idx])
        kd = kd_loss(logits, tl[idx].to(dt), T)
        pl = proj_loss(proj(feat), tf[idx].to(dt), ALPHA)
        if first is None:
            first = torch.stack([ce, kd, pl]).detach()
        task = W_CE * ce
        distill = W_KD * kd + W_PROJ * pl
        if name == "sgd":
            opt.zero_grad()
            (task + distill).backward()
            opt.step()
        else:
            gt = torch.autograd.grad(task, student, retain_graph=True)
            gk = torch.autograd.grad(distill, allp)
            ns = len(student)
            opt.step({i: gt[i] for i in range(ns)}, {i: gk[i] for i in range(len(allp))})
    out = dict(model.state_dict())
    out["projector.weight"] = proj.weight.detach()
    out["projector.bias"] = proj.bias.detach()
    return out, first


def float32_runs(run, x):
    """PyTorch float32 as it runs, and on pixels moved by a float32 kernel's
    rounding (relative 2^-20, the 1e-6 that tests/nn/test_layers measures for one
    convolution; four draws): run(x) for each. These few steps turn that into
    1e-3..1e-2 of the update (ReLU units near zero flip, BN over 2-4 images), so
    one run's error says little: kd-train's own AVX2 and AVX-512 oneDNN runs
    differ by 1e-2 of conv1's update."""
    runs = [run(x)]
    for s in range(4):
        gp = torch.Generator().manual_seed(100 + s)
        runs.append(run(x * (1 + 2.0**-20 * (2 * torch.rand(x.shape, generator=gp) - 1))))
    return runs


def save_case(d, name, init, ref, refs32):
    """The float64 result, and PyTorch's own float32 error per tensor relative to
    the update (max|f32 - f64| / max|f64 - init|): the accuracy a float32
    implementation of the same steps reaches (FINDINGS.md, Numerics). It is the
    worst of several float32 runs (refs32), so that it measures how much these
    steps amplify rounding, not the luck of one summation order."""
    if isinstance(refs32, dict):
        refs32 = [refs32]
    lines = []
    for k, v in ref.items():
        refutil.save(d, f"{name}_{k}", v.double() if v.is_floating_point() else v)
        if v.is_floating_point():
            upd = (v - init[k].double()).abs().max().item()
            err = max((r[k].double() - v).abs().max().item() for r in refs32)
            lines.append(f"{k} {err / upd if upd > 0 else 0:.6g}")
    with open(os.path.join(d, f"{name}_torch32_err.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    d = refutil.out_dir()
    rng = np.random.default_rng(2024)
    paths = make_dataset(d, rng)
    x, y = load_pixels(paths)
    n = x.shape[0]
    g = torch.Generator().manual_seed(7)
    # Teacher outputs, rounded to float16 so every storage mode holds them exactly.
    tl = (torch.randn(n, C, generator=g) * 3).half().float()
    tf = (torch.rand(n, DT, generator=g) * 2).half().float()
    refutil.save(d, "teacher_logits", tl)
    refutil.save(d, "teacher_features", tf)

    torch.manual_seed(11)
    model = ResNet8x4(C)
    # Non-trivial BN affine parameters and running statistics.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    proj = nn.Linear(256, DT)
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}
    tensors = dict(init_sd)
    tensors["projector.weight"] = proj.weight.detach().clone()
    tensors["projector.bias"] = proj.bias.detach().clone()
    save_file(tensors, os.path.join(d, "init.safetensors"))
    for k, v in tensors.items():
        refutil.save(d, f"init_{k}", v.double() if v.is_floating_point() else v)
    with open(os.path.join(d, "tensors.txt"), "w") as f:
        f.write("\n".join(tensors) + "\n")
    pw = (tensors["projector.weight"], tensors["projector.bias"])
    for case in ("sgd", "dot"):
        ref, first = run_case(case, init_sd, pw, x, y, tl, tf, torch.float64)
        refs32 = float32_runs(
            lambda xi: run_case(case, init_sd, pw, xi, y, tl, tf, torch.float32)[0], x)
        save_case(d, case, tensors, ref, refs32)
        refutil.save(d, f"{case}_loss", first.double())


if __name__ == "__main__":
    main()
