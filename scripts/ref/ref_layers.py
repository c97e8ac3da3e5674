"""Reference fixtures for tests/nn/test_layers.c: every CPU layer op computed by
PyTorch in float64 from float32 inputs (so the C float32 results are compared to
the exact answer, not to another float32 rounding).

Writes build/fixtures/layers/:
  conv_cases.i64   rows of [n, c_in, h, w, c_out, k, stride, pad, groups, has_bias]
  conv<i>_{x,w,b,dy}.f32 inputs, conv<i>_{y,dx,dw,db}.f64 outputs
  bn_cases.i64     rows of [n, c, h, w, affine, track]; bn<i>_* likewise
  pool_cases.i64   rows of [n, c, h, w, k, stride, pad]; pool<i>_* likewise
  gap_*, lin<i>_*, relu_*, f16_* (see below)
Usage: /usr/bin/python3 scripts/ref/ref_layers.py OUTDIR"""
import numpy as np
import torch
import torch.nn.functional as F

import refutil

torch.manual_seed(1234)
d = refutil.out_dir()


def f32(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape) * scale + shift).float()


def grad64(t):
    return t.double().requires_grad_(True)


# ---- conv2d: stride 2, padding, depthwise, groups=2, 1x1, 7x7/2 pad 3, odd
# sizes, batch 1 and > 1, a multi-chunk batch and a large 1x1 map (direct GEMM).
conv_cases = [
    # n, c_in, h, w, c_out, k, s, p, g, bias
    (2, 4, 9, 11, 6, 3, 1, 1, 1, 1),
    (3, 4, 10, 7, 6, 3, 2, 1, 2, 0),
    (2, 6, 8, 8, 6, 3, 1, 1, 6, 0),
    (2, 6, 9, 9, 6, 3, 2, 1, 6, 1),
    (2, 8, 7, 7, 12, 1, 1, 0, 1, 0),
    (1, 16, 40, 40, 8, 1, 1, 0, 1, 1),
    (2, 3, 23, 23, 8, 7, 2, 3, 1, 0),
    (3, 8, 9, 9, 16, 1, 2, 0, 1, 0),
    (1, 5, 6, 5, 7, 3, 1, 0, 1, 1),
    (5, 8, 30, 30, 8, 3, 1, 1, 1, 0),
    (4, 4, 6, 6, 8, 3, 1, 1, 4, 0),  # groups == c_in but c_out = 2 c_in: GEMM path
    (6, 24, 1, 1, 20, 3, 1, 1, 1, 1),  # 1x1 map (resnet18 layer4 at 32 px): centre tap only
    (3, 16, 1, 1, 8, 3, 2, 1, 1, 0),   # 1x1 map, stride 2
    # resnet8x4's own shapes (its stem of 3 channels, the stage convolutions and
    # downsamples at batch 8 and 4), where oneDNN takes its AVX-512 kernels
    (8, 3, 32, 32, 32, 3, 1, 1, 1, 0),
    (4, 3, 32, 32, 64, 3, 1, 1, 1, 0),
    (4, 3, 32, 32, 32, 3, 1, 1, 1, 0),
    (8, 32, 32, 32, 64, 3, 1, 1, 1, 0),
    (8, 64, 32, 32, 128, 3, 2, 1, 1, 0),
    (8, 64, 32, 32, 128, 1, 2, 0, 1, 0),
    (8, 256, 8, 8, 256, 3, 1, 1, 1, 0),
    (2, 256, 8, 8, 256, 3, 1, 1, 1, 0),
    (4, 256, 8, 8, 256, 3, 1, 1, 1, 0),
    (2, 128, 16, 16, 256, 3, 2, 1, 1, 0),
]
refutil.save(d, "conv_cases", np.array(conv_cases, dtype=np.int64))
for i, (n, ci, h, w, co, k, s, p, g, hb) in enumerate(conv_cases):
    x, wt = f32(n, ci, h, w), f32(co, ci // g, k, k, scale=0.5)
    b = f32(co)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    dy = f32(n, co, ho, wo)
    x64, w64, b64 = grad64(x), grad64(wt), grad64(b)
    y = F.conv2d(x64, w64, b64 if hb else None, stride=s, padding=p, groups=g)
    y.backward(dy.double())
    for name, t in (("x", x), ("w", wt), ("b", b), ("dy", dy)):
        refutil.save(d, f"conv{i}_{name}", t)
    refutil.save(d, f"conv{i}_y", y.detach())
    refutil.save(d, f"conv{i}_dx", x64.grad)
    refutil.save(d, f"conv{i}_dw", w64.grad)
    # dbias = sum of dy over n, h, w whether or not the forward had a bias
    refutil.save(d, f"conv{i}_db", dy.double().sum(dim=(0, 2, 3)))

# ---- batch norm: train (batch stats, running update with momentum 0.1),
# eval (running stats), backward; with/without affine and tracking; HW = 1.
bn_cases = [
    # n, c, h, w, affine, track
    (4, 3, 5, 5, 1, 1),
    (6, 5, 1, 1, 1, 1),
    (3, 4, 7, 3, 0, 1),
    (2, 3, 4, 4, 1, 0),
    (1, 2, 9, 9, 1, 1),
]
EPS, MOM = 1e-5, 0.1
refutil.save(d, "bn_cases", np.array(bn_cases, dtype=np.int64))
for i, (n, c, h, w, aff, trk) in enumerate(bn_cases):
    # a large mean next to a small spread checks that the variance does not cancel
    x = f32(n, c, h, w, scale=2.0, shift=3.0)
    gamma, beta = f32(c, scale=0.5, shift=1.0), f32(c)
    rm, rv = f32(c), (torch.rand(c) + 0.5).float()
    dy = f32(n, c, h, w)
    x64, g64, b64 = grad64(x), grad64(gamma), grad64(beta)
    rm64, rv64 = rm.double().clone(), rv.double().clone()
    y = F.batch_norm(x64, rm64 if trk else None, rv64 if trk else None,
                     g64 if aff else None, b64 if aff else None,
                     training=True, momentum=MOM, eps=EPS)
    y.backward(dy.double())
    xd = x.double()
    mean = xd.mean(dim=(0, 2, 3))
    var = xd.var(dim=(0, 2, 3), unbiased=False)
    y_eval = F.batch_norm(xd, rm.double(), rv.double(), gamma.double() if aff else None,
                          beta.double() if aff else None, training=False, eps=EPS)
    for name, t in (("x", x), ("gamma", gamma), ("beta", beta), ("rm", rm), ("rv", rv),
                    ("dy", dy)):
        refutil.save(d, f"bn{i}_{name}", t)
    refutil.save(d, f"bn{i}_y", y.detach())
    refutil.save(d, f"bn{i}_dx", x64.grad)
    zeros = torch.zeros(c, dtype=torch.float64)
    refutil.save(d, f"bn{i}_dgamma", g64.grad if aff else zeros)
    refutil.save(d, f"bn{i}_dbeta", b64.grad if aff else zeros)
    refutil.save(d, f"bn{i}_rm_after", rm64)
    refutil.save(d, f"bn{i}_rv_after", rv64)
    refutil.save(d, f"bn{i}_mean", mean)
    refutil.save(d, f"bn{i}_invstd", 1.0 / torch.sqrt(var + EPS))
    refutil.save(d, f"bn{i}_y_eval", y_eval)

# ---- max pool: ResNet's 3/2/1, 2/2/0, odd sizes. Inputs are coarse multiples
# of 0.5 so windows hold ties (the gradient must go to the first maximum), and
# mostly negative so a zero padding would win where -inf must not.
pool_cases = [
    (2, 3, 9, 9, 3, 2, 1),
    (1, 2, 8, 7, 3, 2, 1),
    (2, 2, 6, 6, 2, 2, 0),
    (1, 3, 7, 5, 3, 1, 1),
]
refutil.save(d, "pool_cases", np.array(pool_cases, dtype=np.int64))
for i, (n, c, h, w, k, s, p) in enumerate(pool_cases):
    x = (torch.randint(-6, 2, (n, c, h, w)).float() * 0.5)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    dy = f32(n, c, ho, wo)
    x64 = grad64(x)
    y = F.max_pool2d(x64, k, s, p)
    y.backward(dy.double())
    refutil.save(d, f"pool{i}_x", x)
    refutil.save(d, f"pool{i}_dy", dy)
    refutil.save(d, f"pool{i}_y", y.detach())
    refutil.save(d, f"pool{i}_dx", x64.grad)

# ---- global average pool
for i, (n, c, h, w) in enumerate([(2, 3, 5, 5), (3, 4, 1, 1), (1, 6, 7, 7)]):
    x, dy = f32(n, c, h, w), f32(n, c)
    x64 = grad64(x)
    y = x64.mean(dim=(2, 3))
    y.backward(dy.double())
    refutil.save(d, f"gap{i}_x", x)
    refutil.save(d, f"gap{i}_dy", dy)
    refutil.save(d, f"gap{i}_y", y.detach())
    refutil.save(d, f"gap{i}_dx", x64.grad)
refutil.save(d, "gap_cases", np.array([(2, 3, 25), (3, 4, 1), (1, 6, 49)], dtype=np.int64))

# ---- linear
lin_cases = [(3, 7, 5, 1), (1, 16, 10, 0), (8, 64, 10, 1)]
refutil.save(d, "lin_cases", np.array(lin_cases, dtype=np.int64))
for i, (n, fin, fout, hb) in enumerate(lin_cases):
    x, w, b, dy = f32(n, fin), f32(fout, fin), f32(fout), f32(n, fout)
    x64, w64, b64 = grad64(x), grad64(w), grad64(b)
    y = F.linear(x64, w64, b64 if hb else None)
    y.backward(dy.double())
    for name, t in (("x", x), ("w", w), ("b", b), ("dy", dy)):
        refutil.save(d, f"lin{i}_{name}", t)
    refutil.save(d, f"lin{i}_y", y.detach())
    refutil.save(d, f"lin{i}_dx", x64.grad)
    refutil.save(d, f"lin{i}_dw", w64.grad)
    refutil.save(d, f"lin{i}_db", b64.grad if hb else torch.zeros(fout, dtype=torch.float64))

# ---- relu (with exact zeros: the gradient there is 0, as torch's threshold_backward)
x = f32(100003)
x[::7] = 0.0
dy = f32(100003)
x64 = grad64(x)
y = torch.relu(x64)
y.backward(dy.double())
refutil.save(d, "relu_x", x)
refutil.save(d, "relu_dy", dy)
refutil.save(d, "relu_y", y.detach())
refutil.save(d, "relu_dx", x64.grad)

# ---- float32 -> float16 bits, including rounding ties, overflow, subnormals
special = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e6, -1e6,
                        6.1e-5, 6e-8, 3e-8, 2.9e-8, 1e-10, 1.0 + 2.0 ** -11,
                        1.0 + 3 * 2.0 ** -11, float("inf"), float("-inf")], dtype=torch.float32)
x = torch.cat([special, f32(70000, scale=100.0)])
refutil.save(d, "f16_x", x)
refutil.save(d, "f16_bits", x.half().view(torch.int16).numpy().astype(np.int64) & 0xFFFF)
