"""Reference values for tests/train/test_losses.c: cross-entropy, vanilla KD (full and top-k
teacher logits) and the projector loss, computed in float64 with PyTorch autograd from
float32 inputs (the C code gets exactly those inputs).

Each case NAME writes NAME_meta.f64 (shapes and hyperparameters), its inputs, NAME_loss.f64
(the weighted loss) and NAME_grad.f64 (d loss / d input). Usage: ref_losses.py OUTDIR"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from refutil import out_dir, save

torch.set_default_dtype(torch.float64)
D = out_dir()
rng = np.random.default_rng(20240606)


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def extreme(B, C):
    """Logits at +-80 plus small noise: exp() overflows without max subtraction."""
    return f32(rng.choice([-80.0, 80.0], size=(B, C)) + rng.uniform(-1, 1, size=(B, C)))


# ---- cross-entropy: w * F.cross_entropy(z, y) (mean) ----------------------------------
def ce_case(name, z, w):
    B, C = z.shape
    y = rng.integers(0, C, size=B)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = w * F.cross_entropy(zt, torch.tensor(y))
    loss.backward()
    save(D, f"{name}_meta", np.array([B, C, w], dtype=np.float64))
    save(D, f"{name}_logits", z)
    save(D, f"{name}_labels", y.astype(np.int64))
    save(D, f"{name}_loss", np.array([loss.item()]))
    save(D, f"{name}_grad", zt.grad)


ce_case("ce_small", f32(rng.normal(0, 3, (8, 10))), 1.0)
ce_case("ce_wide", f32(rng.normal(0, 2, (4, 1000))), 0.5)
ce_case("ce_extreme", extreme(6, 20), 0.1)


# ---- vanilla KD, mdistiller's kd_loss times the weight --------------------------------
def kd_ref(zs, zt, T, w):
    log_ps = F.log_softmax(zs / T, dim=1)
    pt = F.softmax(zt / T, dim=1)
    return w * T * T * F.kl_div(log_ps, pt, reduction="none").sum(1).mean()


def kd_case(name, zs, zt, T, w):
    B, C = zs.shape
    s = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    loss = kd_ref(s, torch.tensor(zt, dtype=torch.float64), T, w)
    assert math.isfinite(loss.item()), name
    loss.backward()
    save(D, f"{name}_meta", np.array([B, C, T, w], dtype=np.float64))
    save(D, f"{name}_student", zs)
    save(D, f"{name}_teacher", zt)
    save(D, f"{name}_loss", np.array([loss.item()]))
    save(D, f"{name}_grad", s.grad)


kd_case("kd_t1", f32(rng.normal(0, 3, (8, 10))), f32(rng.normal(0, 3, (8, 10))), 1.0, 0.5)
kd_case("kd_t4", f32(rng.normal(0, 3, (8, 100))), f32(rng.normal(0, 5, (8, 100))), 4.0, 0.9)
kd_case("kd_t2_5", f32(rng.normal(0, 2, (5, 37))), f32(rng.normal(0, 2, (5, 37))), 2.5, 1.0)
kd_case("kd_extreme_t1", extreme(6, 20), extreme(6, 20), 1.0, 1.0)
kd_case("kd_extreme_t4", extreme(6, 20), extreme(6, 20), 4.0, 0.9)
# Teacher probabilities that are exactly 0 even in float64 (exp(-2000)): 0*log0 = 0.
zt0 = f32(rng.normal(0, 1, (4, 12)))
zt0[:, 0] += 1000.0
zt0[:, 1:6] -= 1000.0
kd_case("kd_zero_pt", f32(rng.normal(0, 2, (4, 12))), zt0, 1.0, 1.0)
# Student close to the teacher: KL is small, a float forward would lose digits.
ztc = f32(rng.normal(0, 3, (8, 100)))
kd_case("kd_close", f32(ztc + rng.normal(0, 0.05, ztc.shape)), ztc, 4.0, 0.9)


# ---- KD from a top-k cache: teacher renormalised over its K stored classes ------------
def topk_case(name, zs, zt_full, K, T, w):
    B, C = zs.shape
    # The cache stores float16 logits: round first, then take the K largest, descending.
    zt16 = torch.tensor(zt_full).half().double()
    val, idx = torch.topk(zt16, K, dim=1, largest=True, sorted=True)
    s = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    # The rule, restated independently of the C code: q = softmax over the K values,
    # zero elsewhere; student keeps its full log-softmax.
    log_q = F.log_softmax(val / T, dim=1)
    q = log_q.exp()
    log_ps = F.log_softmax(s / T, dim=1).gather(1, idx)
    terms = torch.where(q > 0, q * (log_q - log_ps), torch.zeros_like(q))
    loss = w * T * T * terms.sum(1).mean()
    loss.backward()
    if K == C:  # with every class stored the rule is exactly KD on the float16 logits
        full = kd_ref(torch.tensor(zs, dtype=torch.float64), zt16, T, w)
        assert abs(full.item() - loss.item()) <= 1e-12 * max(1.0, abs(loss.item())), name
    save(D, f"{name}_meta", np.array([B, C, K, T, w], dtype=np.float64))
    save(D, f"{name}_student", zs)
    save(D, f"{name}_teacher_full", f32(zt16.numpy()))
    save(D, f"{name}_value", f32(val.numpy()))  # exact float16 values
    save(D, f"{name}_index", idx.numpy().astype(np.int64))
    save(D, f"{name}_loss", np.array([loss.item()]))
    save(D, f"{name}_grad", s.grad)


topk_case("topk_k5_t4", f32(rng.normal(0, 3, (8, 100))), f32(rng.normal(0, 4, (8, 100))), 5, 4.0, 0.9)
topk_case("topk_k10_t1", f32(rng.normal(0, 3, (6, 1000))), f32(rng.normal(0, 4, (6, 1000))), 10, 1.0, 0.5)
topk_case("topk_k1_t2", f32(rng.normal(0, 3, (4, 10))), f32(rng.normal(0, 3, (4, 10))), 1, 2.0, 1.0)
topk_case("topk_extreme", extreme(6, 20), extreme(6, 20), 3, 1.0, 1.0)
topk_case("topk_full", f32(rng.normal(0, 3, (5, 10))), f32(rng.normal(0, 3, (5, 10))), 10, 4.0, 0.9)


# ---- projector loss ------------------------------------------------------------------
EPS = 1e-4


def bn(x):
    """Batch-statistics BN without affine, as nn.BatchNorm1d(affine=False) in train mode."""
    y = F.batch_norm(x, None, None, training=True, eps=EPS)
    m = x.mean(0, keepdim=True)
    v = x.var(0, unbiased=False, keepdim=True)
    manual = (x - m) / torch.sqrt(v + EPS)
    assert torch.allclose(y, manual, rtol=1e-10, atol=1e-10)
    return y


def proj_ref(f, t, alpha, w):
    return w * torch.log((bn(f) - bn(t)).abs().pow(alpha).sum())


def teacher_features(B, Dt):
    t = np.maximum(rng.normal(0, 1, (B, Dt)), 0.0)  # pooled post-ReLU features
    t[:, 3] = 0.0  # a dead channel: variance 0, BN gives 0
    return f32(t)


def proj_case(name, f, t, alpha, w):
    B, Dt = f.shape
    fv = torch.tensor(f, dtype=torch.float64, requires_grad=True)
    loss = proj_ref(fv, torch.tensor(t, dtype=torch.float64), alpha, w)
    loss.backward()
    save(D, f"{name}_meta", np.array([B, Dt, alpha, w], dtype=np.float64))
    save(D, f"{name}_f", f)
    save(D, f"{name}_t", t)
    save(D, f"{name}_loss", np.array([loss.item()]))
    save(D, f"{name}_grad", fv.grad)


proj_case("proj_a4", f32(rng.normal(0.5, 2, (16, 32))), teacher_features(16, 32), 4.0, 2.0)
proj_case("proj_a2", f32(rng.normal(0, 1, (16, 32))), teacher_features(16, 32), 2.0, 1.0)
proj_case("proj_a3", f32(rng.normal(0, 1, (9, 20))), teacher_features(9, 20), 3.0, 1.5)
proj_case("proj_a1_5", f32(rng.normal(0, 1, (12, 16))), teacher_features(12, 16), 1.5, 1.0)
# Large mean, small spread: BN statistics must not lose the spread.
proj_case("proj_big_mean", f32(100.0 + rng.normal(0, 0.1, (16, 24))), teacher_features(16, 24), 4.0, 2.0)
proj_case("proj_b2", f32(rng.normal(0, 1, (2, 8))), teacher_features(2, 8), 4.0, 2.0)

# The composition with the projector's Linear layer: f = z_s W^T + b, gradients w.r.t.
# W and b (the test writes the linear backward itself).
B, Ds, Dt = 16, 24, 32
zs = f32(rng.normal(0, 1, (B, Ds)))
W = f32(rng.normal(0, 1 / math.sqrt(Ds), (Dt, Ds)))
bias = f32(rng.normal(0, 0.1, Dt))
t = teacher_features(B, Dt)
Wv = torch.tensor(W, dtype=torch.float64, requires_grad=True)
bv = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
f = torch.tensor(zs, dtype=torch.float64) @ Wv.t() + bv
loss = proj_ref(f, torch.tensor(t, dtype=torch.float64), 4.0, 2.0)
loss.backward()
save(D, "proj_linear_meta", np.array([B, Ds, Dt, 4.0, 2.0], dtype=np.float64))
save(D, "proj_linear_zs", zs)
save(D, "proj_linear_W", W)
save(D, "proj_linear_b", bias)
save(D, "proj_linear_t", t)
save(D, "proj_linear_loss", np.array([loss.item()]))
save(D, "proj_linear_gradW", Wv.grad)
save(D, "proj_linear_gradb", bv.grad)
