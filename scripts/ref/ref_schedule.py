"""Reference learning rates for tests/train/test_schedule.c from torch.optim.lr_scheduler:
the lr the optimiser holds at every step of a short run. Step decay is MultiStepLR
stepped once per epoch (and checked here against mdistiller's adjust_learning_rate);
cosine is CosineAnnealingLR stepped per step, with warm-up chained as torchvision's
reference recipe does: SequentialLR([LinearLR, CosineAnnealingLR], milestones=[W]).

Per case NAME: NAME_meta.f64 [kind (0 constant, 1 step, 2 cosine), lr, epochs,
steps_per_epoch, gamma, lr_min, warmup_epochs, warmup_start_factor],
NAME_milestones.i64, NAME_lr.f64 (epochs * steps_per_epoch values, in step order).
Usage: ref_schedule.py OUTDIR"""
import warnings

import numpy as np
import torch
from torch.optim import lr_scheduler as S

from refutil import out_dir, save

warnings.filterwarnings("ignore")  # SequentialLR's step(0) deprecation notice
D = out_dir()


def run(make, lr, epochs, spe, per_epoch):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        for _ in range(spe):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if not per_epoch:
                sched.step()
        if per_epoch:
            sched.step()
    return np.array(out, dtype=np.float64)


def case(name, kind, lr, epochs, spe, values, milestones=(), gamma=0.1, lr_min=0.0, warmup=0,
         f0=0.01):
    save(D, f"{name}_meta",
         np.array([kind, lr, epochs, spe, gamma, lr_min, warmup, f0], dtype=np.float64))
    save(D, f"{name}_milestones", np.array(list(milestones) or [0], dtype=np.int64))
    save(D, f"{name}_lr", values)


def step_case(name, lr, epochs, spe, milestones, gamma):
    v = run(lambda o: S.MultiStepLR(o, milestones=milestones, gamma=gamma), lr, epochs, spe, True)
    # mdistiller/engine/utils.py adjust_learning_rate: epochs from 1, decay when epoch > m
    for e in range(1, epochs + 1):
        n = int(np.sum(e > np.asarray(milestones)))
        want = lr * gamma ** n if n > 0 else lr
        assert np.allclose(v[(e - 1) * spe:e * spe], want, rtol=1e-12, atol=0), (name, e)
    case(name, 1, lr, epochs, spe, v, milestones, gamma)


def cosine_case(name, lr, epochs, spe, lr_min=0.0, warmup=0, f0=0.01):
    N, W = epochs * spe, warmup * spe
    if W == 0:
        make = lambda o: S.CosineAnnealingLR(o, T_max=N, eta_min=lr_min)
    else:
        make = lambda o: S.SequentialLR(
            o, [S.LinearLR(o, start_factor=f0, total_iters=W),
                S.CosineAnnealingLR(o, T_max=N - W, eta_min=lr_min)], milestones=[W])
    case(name, 2, lr, epochs, spe, run(make, lr, epochs, spe, False), lr_min=lr_min,
         warmup=warmup, f0=f0)


step_case("step_cifar", 0.05, 12, 3, [5, 8, 10], 0.1)
step_case("step_half", 0.2, 6, 2, [1, 2], 0.5)
cosine_case("cosine", 0.1, 5, 7)
cosine_case("cosine_min", 0.1, 4, 3, lr_min=1e-3)
cosine_case("cosine_warmup", 0.2, 6, 5, warmup=2, f0=0.01)
cosine_case("cosine_warmup_min", 0.4, 5, 4, lr_min=0.002, warmup=1, f0=0.25)
case("constant", 0, 0.01, 3, 2, run(lambda o: S.LambdaLR(o, lambda e: 1.0), 0.01, 3, 2, False))
