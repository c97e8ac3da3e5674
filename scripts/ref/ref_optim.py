"""Reference trajectories for tests/train/test_optim.c: SGD against torch.optim.SGD, and DOT
against a line-by-line Python re-statement of mdistiller's DistillationOrientedTrainer
(mdistiller/engine/dot.py: step_kd() then step(), whose dot() runs a loop over the
parameters with a task gradient and then one over those with a distillation gradient).
Float64, from float32 initial values and gradients that the C test reads.

Per case NAME: NAME_meta.f64 [n_params, steps, momentum, delta, weight_decay],
NAME_sizes.i64, NAME_sides.i64 (1 task, 2 distillation, 3 both), NAME_lr.f64 (per step),
NAME_init.f32 (all parameters, list order), NAME_gtask.f32 / NAME_gkd.f32 (steps x total,
0 where a parameter has no such gradient), NAME_params.f64 (steps x total, after each
step), NAME_buf_task.f64 / NAME_buf_kd.f64 (final buffers of the parameters having that
side, list order). Usage: ref_optim.py OUTDIR"""
import numpy as np
import torch

from refutil import out_dir, save

D = out_dir()
rng = np.random.default_rng(5150)
TASK, KD, BOTH = 1, 2, 3
LRS = [0.1, 0.1, 0.05, 0.05, 0.01]


def make_inputs(sizes, sides):
    total = sum(sizes)
    steps = len(LRS)
    init = rng.normal(0, 1, total).astype(np.float32)
    gt = rng.normal(0, 1, (steps, total)).astype(np.float32)
    gk = rng.normal(0, 0.5, (steps, total)).astype(np.float32)
    off = np.cumsum([0] + sizes)
    for i, s in enumerate(sides):
        if not s & TASK:
            gt[:, off[i]:off[i + 1]] = 0
        if not s & KD:
            gk[:, off[i]:off[i + 1]] = 0
    return init, gt, gk, off


def split(vec, off):
    return [torch.tensor(vec[off[i]:off[i + 1]], dtype=torch.float64) for i in range(len(off) - 1)]


def save_case(name, sizes, sides, mu, delta, wd, init, gt, gk, traj, buf_task, buf_kd):
    save(D, f"{name}_meta", np.array([len(sizes), len(LRS), mu, delta, wd], dtype=np.float64))
    save(D, f"{name}_sizes", np.array(sizes, dtype=np.int64))
    save(D, f"{name}_sides", np.array(sides, dtype=np.int64))
    save(D, f"{name}_lr", np.array(LRS, dtype=np.float64))
    save(D, f"{name}_init", init)
    save(D, f"{name}_gtask", gt)
    save(D, f"{name}_gkd", gk)
    save(D, f"{name}_params", np.stack(traj))
    save(D, f"{name}_buf_task", np.concatenate(buf_task) if buf_task else np.zeros(0))
    save(D, f"{name}_buf_kd", np.concatenate(buf_kd) if buf_kd else np.zeros(0))


# ---- SGD: torch.optim.SGD on g_task + g_kd -----------------------------------------------
def sgd_case(name, sizes, sides, mu, wd):
    init, gt, gk, off = make_inputs(sizes, sides)
    params = [torch.nn.Parameter(p) for p in split(init, off)]
    opt = torch.optim.SGD(params, lr=LRS[0], momentum=mu, weight_decay=wd)
    traj = []
    for s, lr in enumerate(LRS):
        for g in opt.param_groups:
            g["lr"] = lr
        for p, a, b in zip(params, split(gt[s], off), split(gk[s], off)):
            p.grad = a + b
        opt.step()
        traj.append(torch.cat([p.detach() for p in params]).numpy())
    bufs = [opt.state[p]["momentum_buffer"].numpy() for p in params] if mu != 0 else []
    save_case(name, sizes, sides, mu, 0.0, wd, init, gt, gk, traj, bufs, [])


sgd_case("sgd", [12, 5, 7, 3], [BOTH, BOTH, TASK, KD], 0.9, 5e-4)
sgd_case("sgd_nomomentum", [6, 4], [BOTH, TASK], 0.0, 1e-4)


# ---- DOT: mdistiller's dot(), re-stated ---------------------------------------------------
class MdistillerDOT:
    """State and update of mdistiller's DistillationOrientedTrainer, one param group,
    dampening 0. Buffers are created lazily (None until a parameter's first step)."""

    def __init__(self, params, lr, momentum, momentum_kd, weight_decay):
        self.params, self.lr = params, lr
        self.momentum, self.momentum_kd, self.wd = momentum, momentum_kd, weight_decay
        self.task_buf = {}  # state['momentum_buffer']
        self.kd_buf = {}  # state['momentum_kd_buffer']

    def step(self, task_grads, kd_grads):
        """task_grads / kd_grads: {param index: grad} for the parameters that got one
        (mdistiller: p.grad is not None after the respective backward)."""
        kd_params = list(kd_grads)  # recorded by step_kd()
        task_params = list(task_grads)  # collected by step()
        mom, mom_kd, wd, lr = self.momentum, self.momentum_kd, self.wd, self.lr
        # dot(), first loop: parameters with a task gradient
        for i in task_params:
            p = self.params[i]
            d_p = task_grads[i]
            if wd != 0:
                d_p = d_p.add(p, alpha=wd)
            if mom != 0:
                buf = self.task_buf.get(i)
                if buf is None:
                    buf = torch.clone(d_p).detach()
                    self.task_buf[i] = buf
                elif i in kd_params:
                    buf.mul_(mom).add_(d_p)
                else:
                    buf.mul_((mom_kd + mom) / 2.0).add_(d_p)
                d_p = buf
            p.add_(d_p, alpha=-lr)
        # dot(), second loop: parameters with a distillation gradient
        for i in kd_params:
            p = self.params[i]
            d_p = kd_grads[i]
            buf = self.kd_buf.get(i)
            if buf is None:  # first step: the raw gradient, no weight decay
                buf = torch.clone(d_p).detach()
                self.kd_buf[i] = buf
            elif i in task_params:
                buf.mul_(mom_kd).add_(d_p)
            else:
                if wd != 0:
                    d_p = d_p.add(p, alpha=wd)
                buf.mul_((mom_kd + mom) / 2.0).add_(d_p)
            p.add_(buf, alpha=-lr)


def dot_case(name, sizes, sides, mu, delta, wd):
    init, gt, gk, off = make_inputs(sizes, sides)
    params = split(init, off)
    # as mdistiller's trainer: momentum = mu - delta, momentum_kd = mu + delta
    opt = MdistillerDOT(params, LRS[0], mu - delta, mu + delta, wd)
    traj = []
    for s, lr in enumerate(LRS):
        opt.lr = lr
        ga, gb = split(gt[s], off), split(gk[s], off)
        opt.step({i: ga[i] for i in range(len(sizes)) if sides[i] & TASK},
                 {i: gb[i] for i in range(len(sizes)) if sides[i] & KD})
        traj.append(torch.cat(params).numpy().copy())
    zeros = lambda i: np.zeros(sizes[i])
    buf_task = [opt.task_buf[i].numpy() if i in opt.task_buf else zeros(i)
                for i in range(len(sizes)) if sides[i] & TASK]
    buf_kd = [opt.kd_buf[i].numpy() for i in range(len(sizes)) if sides[i] & KD]
    save_case(name, sizes, sides, mu, delta, wd, init, gt, gk, traj, buf_task, buf_kd)
    return init, gt, gk, off, traj


# Student parameters get both gradients; the projector (weight, bias) only the
# distillation one; a task-only parameter exercises mdistiller's other `else` branch.
dot_case("dot", [12, 5, 8, 3, 4], [BOTH, BOTH, KD, KD, TASK], 0.9, 0.075, 5e-4)
# m_task = 0: mdistiller's `if momentum != 0` skips the task buffer altogether.
dot_case("dot_mtask0", [12, 8, 4], [BOTH, KD, TASK], 0.45, 0.45, 1e-3)

# Self-check of the re-statement: with delta = 0 and every parameter on both sides it is
# torch.optim.SGD on g_task + g_kd.
init, gt, gk, off, traj = dot_case("dot_delta0", [10, 6], [BOTH, BOTH], 0.9, 0.0, 5e-4)
params = [torch.nn.Parameter(p) for p in split(init, off)]
sgd = torch.optim.SGD(params, lr=LRS[0], momentum=0.9, weight_decay=5e-4)
for s, lr in enumerate(LRS):
    for g in sgd.param_groups:
        g["lr"] = lr
    for p, a, b in zip(params, split(gt[s], off), split(gk[s], off)):
        p.grad = a + b
    sgd.step()
    got = torch.cat([p.detach() for p in params]).numpy()
    assert np.allclose(got, traj[s], rtol=0, atol=1e-12), "DOT(delta=0) != SGD in float64"
