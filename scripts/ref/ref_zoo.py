#!/usr/bin/python3
"""Reference fixtures for tests/models/test_zoo.c: the architectures of
common/models/model_mobilenet_v2.c, model_shufflenet.c, model_regnet.c,
model_vgg.c, model_resnetv2.c and the new CIFAR rows of model_cifar.c, built in PyTorch
(torchvision 0.14 for mobilenet_v2 / shufflenet_v2_* / regnet_y_*;
zoo_defs.py's rewrites with mdistiller's names for the CIFAR students).

For every architecture A (KEYS):
  A_keys.txt   one line per state_dict entry: name, then the shape
  A_count.i64  [trainable scalars, state_dict entries, fc input width D] (num_classes 10)
For the architectures of EVAL (random weights, randomised BN as ref_models.py):
  A.safetensors, A_x.f32, A_logits.f64, A_features.f64   eval, float64
For TRAIN additionally (mean CE, float64; f32err as in ref_models.py):
  A_train.safetensors (the weights of the step), A_tx.f32, A_ty.i64, A_tlogits.f64, A_dx.f64, A_grad_<param>.f64,
  A_after_<buffer>.f64 / .i64, A_f32err_<param>.f64, A_f32err_dx.f64
Usage: ref_zoo.py OUTDIR
"""
import copy
import os
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import refutil  # noqa: E402
from export_weights import save_file  # noqa: E402
from ref_models import randomise  # noqa: E402
from zoo_defs import CIFAR, TORCHVISION, fc_of, zoo_model  # noqa: E402

torch.set_num_threads(2)
CLASSES = 10
KEYS = TORCHVISION + list(CIFAR)
# name -> (image size, eval batch); must match EVAL in tests/models/test_zoo.c
EVAL = {"mobilenet_v2": (64, 2), "shufflenet_v2_x0_5": (64, 2), "shufflenet_v2_x1_0": (64, 2),
        "regnet_y_400mf": (64, 2), "regnet_y_800mf": (64, 2),
        "resnet20": (32, 2), "resnet32": (32, 2), "resnet56": (32, 2), "resnet110": (32, 2),
        "wrn_16_1": (32, 2), "wrn_40_1": (32, 2), "vgg8": (32, 2), "vgg13": (32, 2),
        "MobileNetV2": (32, 2), "ShuffleV1": (32, 2), "ShuffleV2": (32, 2),
        "ResNet18": (32, 2), "ResNet50": (32, 2), "mobilenetv2_tinyimagenet": (64, 2)}
# name -> (batch, image size); must match TRAIN in tests/models/test_zoo.c
TRAIN = {"mobilenet_v2": (4, 64), "shufflenet_v2_x0_5": (4, 64), "regnet_y_400mf": (4, 64),
         "resnet20": (4, 32), "vgg8": (4, 32), "MobileNetV2": (4, 32), "ShuffleV1": (8, 32),
         "ShuffleV2": (4, 32), "ResNet18": (4, 32), "wrn_40_1": (4, 32),
         "mobilenetv2_tinyimagenet": (4, 64)}
# Train steps from the freshly initialised model (BN weight 1, bias 0) instead of the
# randomised one: with random BN affines and statistics these two are so ill-conditioned
# in train mode that float32 implementations differ from float64 (and from each other)
# by 3-20% on some tensors; fresh they are within 0.6% (regnet) / 2.5% (ShuffleV1).
FRESH_TRAIN = {"regnet_y_400mf", "ShuffleV1"}
# train cases added after the others, drawing from their own generator (main)
OWN_STREAM = {"wrn_40_1"}


def with_features(model):
    box = {}
    fc_of(model).register_forward_hook(lambda mod, inp, out: box.__setitem__("f", inp[0]))
    return lambda x: (model(x), box["f"])


def keys(d, name, model):
    sd = model.state_dict()
    with open(os.path.join(d, f"{name}_keys.txt"), "w") as f:
        for k, v in sd.items():
            f.write(" ".join([k] + [str(s) for s in v.shape]) + "\n")
    count = sum(p.numel() for p in model.parameters())
    refutil.save(d, f"{name}_count",
                 np.array([count, len(sd), fc_of(model).in_features], dtype=np.int64))


def train_fixtures(d, name, model, batch, size, gen):
    if name in FRESH_TRAIN:
        torch.manual_seed(zlib.crc32(name.encode()) + 1)
        model = zoo_model(name, CLASSES)
    # Dropout (torchvision mobilenet_v2's classifier.0) would draw a different mask per
    # run; ours is the identity in training too (docs/MODELS.md), so the reference has p = 0.
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    save_file({k: v.clone() for k, v in model.state_dict().items()},
              os.path.join(d, f"{name}_train.safetensors"), {"format": "pt", "arch": name})
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, CLASSES, (batch,), generator=gen)
    refutil.save(d, f"{name}_tx", x)
    refutil.save(d, f"{name}_ty", y)
    m = copy.deepcopy(model).double().train()
    run = with_features(m)
    xd = x.double().requires_grad_(True)
    logits, _ = run(xd)
    F.cross_entropy(logits, y).backward()
    refutil.save(d, f"{name}_tlogits", logits.detach())
    for k, v in m.state_dict().items():
        if "running" in k or "num_batches" in k:
            refutil.save(d, f"{name}_after_{k}", v)
    refutil.save(d, f"{name}_dx", xd.grad)
    for k, p in m.named_parameters():
        refutil.save(d, f"{name}_grad_{k}", p.grad)
    # PyTorch's own float32 error on the same step (the C test's tolerance floor)
    m32 = copy.deepcopy(model).float().train()
    x32 = x.clone().requires_grad_(True)
    F.cross_entropy(m32(x32), y).backward()
    # Gradients that are zero in exact arithmetic (the bias of a BN whose output
    # reaches the next train-mode BN through linear layers only; VGG's conv bias
    # before its BN) are rounding noise in float64 too: their f32err is written as
    # -1, and the C test checks that ours are small against the model's largest
    # gradient instead (test_zoo.c, ZERO_ABS).
    gmax = max(float(p.grad.abs().max()) for p in m.parameters())
    worst = 0.0
    for (k, p32), (_, p64) in zip(m32.named_parameters(), m.named_parameters()):
        r = float(p64.grad.abs().max())
        if r < 1e-10 * gmax:
            refutil.save(d, f"{name}_f32err_{k}", np.array([-1.0], dtype=np.float64))
            continue
        e = float((p32.grad.double() - p64.grad).abs().max() / r)
        refutil.save(d, f"{name}_f32err_{k}", np.array([e], dtype=np.float64))
        worst = max(worst, e)
    ex = float((x32.grad.double() - xd.grad).abs().max() / xd.grad.abs().max())
    refutil.save(d, f"{name}_f32err_dx", np.array([ex], dtype=np.float64))
    print(f"ref_zoo: {name} torch float32 vs float64 gradients: worst param {worst:.2e}, "
          f"input {ex:.2e}", flush=True)


def main():
    d = refutil.out_dir()
    gen = torch.Generator().manual_seed(20261204)
    for name in KEYS:
        t0 = time.time()
        torch.manual_seed(zlib.crc32(name.encode()))
        model = zoo_model(name, CLASSES)
        keys(d, name, model)
        if name in EVAL:
            size, batch = EVAL[name]
            randomise(model, size, gen)
            save_file({k: v.clone() for k, v in model.state_dict().items()},
                      os.path.join(d, f"{name}.safetensors"), {"format": "pt", "arch": name})
            x = torch.randn(batch, 3, size, size, generator=gen)
            ref = copy.deepcopy(model).double().eval()
            with torch.no_grad():
                logits, feats = with_features(ref)(x.double())
            refutil.save(d, f"{name}_x", x)
            refutil.save(d, f"{name}_logits", logits)
            refutil.save(d, f"{name}_features", feats)
            if name in TRAIN:
                # A train case added later draws from its own stream, so that the
                # inputs (and the conditioning) of the cases after it stay as they were.
                own = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                train_fixtures(d, name, model, *TRAIN[name], own if name in OWN_STREAM else gen)
        print(f"ref_zoo: {name} {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
