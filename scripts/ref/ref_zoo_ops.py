#!/usr/bin/python3
"""Reference fixtures for tests/nn/test_zoo_ops.c: the ops MobileNetV2,
ShuffleNet V1/V2 and RegNetY add to the op table (ReLU6, sigmoid, the
squeeze-excitation channel scale, channel concatenation / split / shuffle,
windowed average pooling, a grouped convolution with bias), forward and
backward, computed by PyTorch autograd in float64 from float32 inputs.

Files in OUTDIR (NAME_x.f32 inputs, NAME_dy.f32 upstream gradients, .f64 references):
  relu6_{x,dy,y,dx}, sigmoid_{x,dy,y,dx}
  scale_{x,s,dy,y,dx,ds}                     x 2x5x7x3, s 2x5
  cat_{a,b,dy,y,da,db}                       a 2x3x4x5, b 2x5x4x5 -> cat on channels
  split_{x}                                  x 2x8x3x3 (the test slices, checks by copy)
  shuffle{G}_{x,dy,y,dx}                     x 2x12x3x3, G = 2, 3
  avgpool{I}_{x,dy,y,dx}, avgpool_cases.i64  rows [n, c, h, w, k, stride, pad]
  gconv_{x,w,b,dy,y,dx,dw,db}                2x16x6x6 -> 24, 3x3 stride 2 pad 1, groups 4
Usage: ref_zoo_ops.py OUTDIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refutil  # noqa: E402

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(1717)


def rnd(*shape, lo=-1.0, hi=1.0):
    return torch.rand(*shape, generator=gen) * (hi - lo) + lo


def grads(fn, inputs, dy):
    """float64 forward of fn on the float32 inputs, and the input gradients for dy."""
    xs = [t.double().requires_grad_(True) for t in inputs]
    y = fn(*xs)
    y.backward(dy.double())
    return y.detach(), [x.grad for x in xs]


def shuffle(x, g):
    n, c, h, w = x.shape
    return x.reshape(n, g, c // g, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


def main():
    d = refutil.out_dir()
    # ReLU6 over [-3, 9]: both clamps and the linear part; no value sits on 0 or 6
    x = rnd(1000, lo=-3.0, hi=9.0)
    x[(x.abs() < 1e-3) | ((x - 6).abs() < 1e-3)] = 1.0
    dy = rnd(1000)
    y, (dx,) = grads(F.relu6, [x], dy)
    for k, v in dict(x=x, dy=dy, y=y, dx=dx).items():
        refutil.save(d, f"relu6_{k}", v)
    x = rnd(1000, lo=-12.0, hi=12.0)
    dy = rnd(1000)
    y, (dx,) = grads(torch.sigmoid, [x], dy)
    for k, v in dict(x=x, dy=dy, y=y, dx=dx).items():
        refutil.save(d, f"sigmoid_{k}", v)
    # squeeze-excitation scale: x * s[:, :, None, None]
    x, s, dy = rnd(2, 5, 7, 3), rnd(2, 5, lo=0.0, hi=1.0), rnd(2, 5, 7, 3)
    y, (dx, ds) = grads(lambda a, b: a * b[:, :, None, None], [x, s], dy)
    for k, v in dict(x=x, s=s, dy=dy, y=y, dx=dx, ds=ds).items():
        refutil.save(d, f"scale_{k}", v)
    a, b, dy = rnd(2, 3, 4, 5), rnd(2, 5, 4, 5), rnd(2, 8, 4, 5)
    y, (da, db) = grads(lambda p, q: torch.cat([p, q], 1), [a, b], dy)
    for k, v in dict(a=a, b=b, dy=dy, y=y, da=da, db=db).items():
        refutil.save(d, f"cat_{k}", v)
    refutil.save(d, "split_x", rnd(2, 8, 3, 3))
    for g in (2, 3):
        x, dy = rnd(2, 12, 3, 3), rnd(2, 12, 3, 3)
        y, (dx,) = grads(lambda t: shuffle(t, g), [x], dy)
        for k, v in dict(x=x, dy=dy, y=y, dx=dx).items():
            refutil.save(d, f"shuffle{g}_{k}", v)
    cases = [(2, 3, 7, 7, 3, 2, 1), (2, 3, 8, 8, 2, 2, 0), (1, 4, 5, 6, 3, 1, 1),
             (2, 2, 16, 16, 3, 2, 1)]
    for i, (n, c, h, w, k, st, p) in enumerate(cases):
        x = rnd(n, c, h, w)
        ho, wo = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
        dy = rnd(n, c, ho, wo)
        y, (dx,) = grads(lambda t: F.avg_pool2d(t, k, st, p), [x], dy)
        for kk, v in dict(x=x, dy=dy, y=y, dx=dx).items():
            refutil.save(d, f"avgpool{i}_{kk}", v)
    refutil.save(d, "avgpool_cases", np.array(cases, dtype=np.int64))
    x, w, b = rnd(2, 16, 6, 6), rnd(24, 4, 3, 3) * 0.5, rnd(24)
    dy = rnd(2, 24, 3, 3)
    y, (dx, dw, db) = grads(lambda p, q, r: F.conv2d(p, q, r, stride=2, padding=1, groups=4),
                            [x, w, b], dy)
    for k, v in dict(x=x, w=w, b=b, dy=dy, y=y, dx=dx, dw=dw, db=db).items():
        refutil.save(d, f"gconv_{k}", v)
    print("ref_zoo_ops: done")


if __name__ == "__main__":
    main()
