"""python/examples/train_dot.py takes kd-train's steps: the same student after
two epochs of DOT on the same cache (kd-train --no-shuffle, constant lr), to
float rounding (kd-train float32 lands at 1-5x PyTorch float32's own error, 1e-4..1e-2
of the update over these 6 steps). As tests/train/test_train.c, the difference is measured
relative to the update (max|a - b| / max|b - init|), and the tolerance is the
larger of 2e-3 and 4x PyTorch's own float32 error against float64."""

import argparse
import os
import sys

import numpy as np
import torch

from conftest import REPO, run_tool

sys.path.insert(0, os.path.join(REPO, "python", "examples"))
import train_dot  # noqa: E402
from export_weights import load_file, save_file  # noqa: E402

UPDATE_TOL, TORCH32_FACTOR = 2e-3, 4.0
HP = dict(lr=0.02, wd=5e-4, momentum=0.9, dot_delta=0.075, ce_weight=0.1, kd_weight=0.9,
          temperature=4.0, batch=6, epochs=2, seed=5)


def test_dot_example_equals_kd_train(env, tmp_path):
    torch.manual_seed(11)
    init = train_dot.ResNet8x4(3)
    with torch.no_grad():
        for m in init.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    sd = {k: v.clone() for k, v in init.state_dict().items()}
    # A 24 px cache (float64 convolutions on the CPU are slow; the math is the same).
    cache = str(tmp_path / "c24.h5")
    run_tool("kd-precompute", "--data", env.data, "--teacher", "resnet18", "--weights",
             env.weights, "--view-policy", "rrc", "--views", "2", "--image-size", "24",
             "--chunk-images", "8", "--out", cache, "--quiet")
    torch.save(sd, tmp_path / "init.pt")
    save_file(sd, str(tmp_path / "init.safetensors"))
    run_tool("kd-train", "--data", env.data, "--cache", cache, "--student", "resnet8x4",
             "--init", tmp_path / "init.safetensors", "--optimizer", "dot", "--no-shuffle",
             "--schedule", "constant", "--lr", HP["lr"], "--wd", HP["wd"],
             "--momentum", HP["momentum"], "--dot-delta", HP["dot_delta"],
             "--ce-weight", HP["ce_weight"], "--kd-weight", HP["kd_weight"],
             "--temperature", HP["temperature"], "--batch", HP["batch"],
             "--epochs", HP["epochs"], "--seed", HP["seed"], "--threads", "2",
             "--out", tmp_path / "run", "--quiet")
    c = load_file(str(tmp_path / "run" / "student.safetensors"))
    res = {}
    for dt in ("float64", "float32"):
        args = argparse.Namespace(cache=cache, data=env.data, init=str(tmp_path / "init.pt"),
                                  no_shuffle=True, workers=0, dtype=dt, **HP)
        res[dt] = {k: v.double() for k, v in train_dot.train(args, log=lambda m: None)
                   .state_dict().items() if v.is_floating_point()}
    worst, bad = 0.0, []
    for k, ref in res["float64"].items():
        assert k in c, f"kd-train's student lacks {k}"
        upd = (ref - sd[k].double()).abs().max().item()
        assert upd > 0, f"{k} did not move"
        got = torch.as_tensor(np.asarray(c[k])).double()
        rel = (got - ref).abs().max().item() / upd
        t32 = (res["float32"][k] - ref).abs().max().item() / upd
        tol = max(UPDATE_TOL, TORCH32_FACTOR * t32)
        print(f"{k}: {rel:.3g} (torch float32 {t32:.3g})")
        if rel > tol:
            bad.append(f"{k}: kd-train vs the example {rel:.3g} of the update (tol {tol:.3g})")
        worst = max(worst, rel / tol)
    print(f"worst tensor at {worst:.2f} of its tolerance")
    assert not bad, "; ".join(bad)
