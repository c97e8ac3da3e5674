#!/usr/bin/python3
"""Reference fixtures for tests/dist/test_dist.c: kd-train's steps on R ranks
re-stated with DistributedDataParallel's rules, in one process, float64.

The rules (torch/nn/parallel/distributed.py and its C++ Reducer):
  - rank r takes the r-th contiguous slice of each global batch of 8
    (a short batch of n: floor(r n / R) .. floor((r+1) n / R));
  - each rank's forward uses its own batch statistics (no SyncBatchNorm);
  - each gradient is divided by R and summed over the ranks (bucket.div_(world),
    then all-reduce sum), separately for DOT's task and distillation gradients
    (two autograd.grad calls, two all-reduces) and for the projector;
  - the same optimiser step everywhere; the running statistics that survive are
    rank 0's (broadcast_buffers).
The dataset, initial weights, teacher outputs and recipe are ref_train.py's
(lr 0.01, constant schedule), with 7 images per class and --batch 16.

Writes to OUTDIR what ref_train.py writes (data/, init.safetensors, teacher_*,
init_student.safetensors (the student alone),
tensors.txt, init_*) and, per case, <case>_<tensor>.f64 and
<case>_torch32_err.txt:
  sgd2      2 ranks, SGD on 0.1 CE + 0.9 KD + 2 projector loss
  dot2      2 ranks, DOT: task CE, distillation KD (no projector loss)
  dotproj2  2 ranks, DOT with the projector loss on the distillation side
  syncbn    2 ranks with SyncBatchNorm, SGD on 0.1 CE + 0.9 KD
  syncbn_dotproj  2 ranks with SyncBatchNorm, DOT with the projector loss
SyncBatchNorm under DDP, re-stated: SyncBatchNorm's forward uses the
statistics of the union of the slices, and its backward sums dy and dy * xhat
over the ranks before each rank's input gradient, so rank r's input gradient
is that of sum_r' L_r' through rank r's samples; its gamma/beta gradients are
each rank's own, and DDP's mean over the ranks is then the gradient of
(1/R) sum_r L_r. So: one forward of the global batch (PyTorch's BatchNorm2d
over all of it: SyncBatchNorm's statistics and running-statistic update), each
rank's loss on its slice of the outputs, autograd of (1/R) sum_r L_r. The
projector loss's batch normalisation is a function (F.batch_norm), not a
module that convert_sync_batchnorm would convert: it stays per rank, so with
the projector this is not one process's loss (log of a sum per slice).
Usage: ref_dist.py OUTDIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_train as rt  # noqa: E402
import refutil  # noqa: E402
from export_weights import save_file  # noqa: E402


def rank_losses(logits, feat, proj, y, tl, tf, dt, w_proj):
    """One rank's (task, distillation) losses on its slice."""
    task = rt.W_CE * F.cross_entropy(logits, y)
    distill = rt.W_KD * rt.kd_loss(logits, tl.to(dt), rt.T)
    if w_proj > 0:
        distill = distill + w_proj * rt.proj_loss(proj(feat), tf.to(dt), rt.ALPHA)
    return task, distill


def run_ddp(name, init_sd, init_proj, x, y, tl, tf, dt, ranks, w_proj, dot, sync=False):
    model = rt.ResNet8x4(rt.C).to(dt)
    model.load_state_dict({k: v.to(dt) if v.is_floating_point() else v
                           for k, v in init_sd.items()})
    proj = nn.Linear(256, rt.DT).to(dt)
    proj.weight.data.copy_(init_proj[0].to(dt))
    proj.bias.data.copy_(init_proj[1].to(dt))
    model.train()
    student = list(model.parameters())
    allp = student + [proj.weight, proj.bias]
    ns = len(student)
    if dot:
        opt = rt.MdistillerDOT(allp, rt.LR, rt.MOM - rt.DELTA, rt.MOM + rt.DELTA, rt.WD)
    else:
        opt = torch.optim.SGD(allp, lr=rt.LR, momentum=rt.MOM, weight_decay=rt.WD)
    buffers = [b for _, b in model.named_buffers()]
    n = x.shape[0]
    for b0 in range(0, n, rt.BATCH):
        nb = min(n, b0 + rt.BATCH) - b0
        if ranks > 1 and nb < 2 * ranks:
            continue  # a rank would get fewer than 2 images: left out
        task_sum = [None] * len(allp)
        kd_sum = [None] * len(allp)
        rank0_buffers = None
        if sync:  # SyncBatchNorm: one forward of the global batch, per-rank losses
            logits, feat = model(x[b0:b0 + nb].to(dt))
            task, distill = 0, 0
            for r in range(ranks):
                lo, hi = r * nb // ranks, (r + 1) * nb // ranks
                t_r, d_r = rank_losses(logits[lo:hi], feat[lo:hi], proj, y[b0 + lo:b0 + hi],
                                       tl[b0 + lo:b0 + hi], tf[b0 + lo:b0 + hi], dt, w_proj)
                task, distill = task + t_r / ranks, distill + d_r / ranks
            params = allp if w_proj > 0 else student
            if dot:
                task_sum[:ns] = torch.autograd.grad(task, student, retain_graph=True)
                for i, g in enumerate(torch.autograd.grad(distill, params)):
                    kd_sum[i] = g
            else:
                for i, g in enumerate(torch.autograd.grad(task + distill, params)):
                    task_sum[i] = g
            rank0_buffers = [b.detach().clone() for b in buffers]
        for r in range(ranks if not sync else 0):
            lo, hi = b0 + r * nb // ranks, b0 + (r + 1) * nb // ranks
            logits, feat = model(x[lo:hi].to(dt))
            if r == 0:
                rank0_buffers = [b.detach().clone() for b in buffers]
            task, distill = rank_losses(logits, feat, proj, y[lo:hi], tl[lo:hi], tf[lo:hi], dt,
                                        w_proj)
            if dot:
                gt = torch.autograd.grad(task, student, retain_graph=True)
                gk = torch.autograd.grad(distill, allp if w_proj > 0 else student,
                                         allow_unused=True)
                sets = [(task_sum, gt), (kd_sum, gk)]
            else:
                params = allp if w_proj > 0 else student
                sets = [(task_sum, torch.autograd.grad(task + distill, params))]
            for acc, gs in sets:
                for i, g in enumerate(gs):
                    if g is None:
                        continue
                    g = g / ranks  # the Reducer divides first
                    acc[i] = g if acc[i] is None else acc[i] + g
        with torch.no_grad():  # broadcast_buffers: rank 0's statistics survive
            for b, v in zip(buffers, rank0_buffers):
                b.copy_(v)
        if dot:
            opt.step({i: g for i, g in enumerate(task_sum) if g is not None and i < ns},
                     {i: g for i, g in enumerate(kd_sum) if g is not None})
        else:
            for p, g in zip(allp, task_sum):
                p.grad = g
            opt.step()
    out = dict(model.state_dict())
    out["projector.weight"] = proj.weight.detach()
    out["projector.bias"] = proj.bias.detach()
    return out


# 28 images in global batches of 16 and 12: slices of 8 and 6 per rank (BN on
# slices of 2-4 samples is so ill-conditioned that float32 rounding, PyTorch's
# own included, reaches a per cent of the update).
rt.PER_CLASS = 7
rt.BATCH = 16

CASES = {  # name: (ranks, projector weight, dot, SyncBatchNorm)
    "sgd2": (2, rt.W_PROJ, False, False),
    "dot2": (2, 0.0, True, False),
    "dotproj2": (2, rt.W_PROJ, True, False),
    "syncbn": (2, 0.0, False, True),
    "syncbn_dotproj": (2, rt.W_PROJ, True, True),
}


def main():
    d = refutil.out_dir()
    rng = np.random.default_rng(2024)
    paths = rt.make_dataset(d, rng)
    x, y = rt.load_pixels(paths)
    n = x.shape[0]
    g = torch.Generator().manual_seed(7)
    tl = (torch.randn(n, rt.C, generator=g) * 3).half().float()
    tf = (torch.rand(n, rt.DT, generator=g) * 2).half().float()
    refutil.save(d, "teacher_logits", tl)
    refutil.save(d, "teacher_features", tf)
    torch.manual_seed(11)
    model = rt.ResNet8x4(rt.C)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    proj = nn.Linear(256, rt.DT)
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}
    tensors = dict(init_sd)
    tensors["projector.weight"] = proj.weight.detach().clone()
    tensors["projector.bias"] = proj.bias.detach().clone()
    save_file(tensors, os.path.join(d, "init.safetensors"))
    save_file(init_sd, os.path.join(d, "init_student.safetensors"))  # runs without projector
    for k, v in tensors.items():
        refutil.save(d, f"init_{k}", v.double() if v.is_floating_point() else v)
    with open(os.path.join(d, "tensors.txt"), "w") as f:
        f.write("\n".join(tensors) + "\n")
    pw = (tensors["projector.weight"], tensors["projector.bias"])
    for case, (ranks, wp, dot, sync) in CASES.items():
        ref = run_ddp(case, init_sd, pw, x, y, tl, tf, torch.float64, ranks, wp, dot, sync)
        refs32 = rt.float32_runs(
            lambda xi: run_ddp(case, init_sd, pw, xi, y, tl, tf, torch.float32, ranks, wp, dot,
                               sync), x)
        rt.save_case(d, case, tensors, ref, refs32)


if __name__ == "__main__":
    main()
