#!/usr/bin/python3
"""Checks scripts/ref's PyTorch rewrites of mdistiller's CIFAR models (zoo_defs.py,
ref_models.py: the definitions tests/models/test_zoo.c and test_models.c hold our
C models to) against mdistiller's own files, from a local checkout of
https://github.com/megvii-research/mdistiller (not shipped here; nothing is
downloaded). For each architecture of mdistiller's cifar_model_dict that we have:
state_dict names, order and shapes equal, and, with mdistiller's random weights
loaded into ours, eval logits in float64 at 32 px (the Tiny-ImageNet MobileNetV2 at
64 px) equal (max abs difference over
max abs logit; mdistiller's fixed AvgPool2d(4 / 8) is a global pool at 32 px).

  check_mdistiller_defs.py MDISTILLER_DIR      (prints one line per arch; exit 1 on a miss)

mdistiller's model files import only torch, so each is loaded by path without
installing the package."""
import importlib.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_models import CifarResNet, WideResNet  # noqa: E402
from zoo_defs import zoo_model  # noqa: E402

# our name -> (mdistiller file under mdistiller/models/cifar/, its constructor)
PAIRS = {
    "resnet8x4": ("resnet", "resnet8x4"), "resnet32x4": ("resnet", "resnet32x4"),
    "resnet20": ("resnet", "resnet20"), "resnet32": ("resnet", "resnet32"),
    "resnet56": ("resnet", "resnet56"), "resnet110": ("resnet", "resnet110"),
    "wrn_16_1": ("wrn", "wrn_16_1"), "wrn_16_2": ("wrn", "wrn_16_2"),
    "wrn_40_1": ("wrn", "wrn_40_1"), "wrn_40_2": ("wrn", "wrn_40_2"),
    "vgg8": ("vgg", "vgg8_bn"), "vgg13": ("vgg", "vgg13_bn"),
    "MobileNetV2": ("mobilenetv2", "mobile_half"), "ShuffleV1": ("ShuffleNetv1", "ShuffleV1"),
    "ShuffleV2": ("ShuffleNetv2", "ShuffleV2"), "ResNet18": ("resnetv2", "ResNet18"),
    "ResNet50": ("resnetv2", "ResNet50"),
    "mobilenetv2_tinyimagenet": ("mv2_tinyimagenet", "mobilenetv2_tinyimagenet"),
}


def ours(name, classes):
    if name == "resnet8x4":
        return CifarResNet(8, [32, 64, 128, 256], classes)
    if name == "resnet32x4":
        return CifarResNet(32, [32, 64, 128, 256], classes)
    if name == "wrn_16_2":
        return WideResNet(16, 2, classes)
    if name == "wrn_40_2":
        return WideResNet(40, 2, classes)
    return zoo_model(name, classes)


def load(root, stem):
    path = os.path.join(root, "mdistiller", "models", "cifar", stem + ".py")
    spec = importlib.util.spec_from_file_location("md_" + stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    if len(sys.argv) != 2 or not os.path.isdir(os.path.join(sys.argv[1], "mdistiller")):
        raise SystemExit("usage: check_mdistiller_defs.py MDISTILLER_DIR (a checkout of "
                         "megvii-research/mdistiller)")
    torch.manual_seed(0)
    bad = 0
    for name, (stem, ctor) in PAIRS.items():
        theirs = getattr(load(sys.argv[1], stem), ctor)(num_classes=100)
        mine = ours(name, 100)
        ka = [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
        kb = [(k, tuple(v.shape)) for k, v in mine.state_dict().items()]
        if ka != kb:
            print(f"{name}: state_dict differs: {sorted(set(ka) ^ set(kb))[:4]}")
            bad += 1
            continue
        mine.load_state_dict(theirs.state_dict())
        theirs, mine = theirs.double().eval(), mine.double().eval()
        px = 64 if name == "mobilenetv2_tinyimagenet" else 32  # Tiny-ImageNet's size
        x = torch.randn(2, 3, px, px, dtype=torch.float64)
        with torch.no_grad():
            a, b = theirs(x)[0], mine(x)
        rel = float((a - b).abs().max() / a.abs().max())
        ok = rel < 1e-12
        bad += not ok
        print(f"{name}: {len(ka)} state_dict entries equal, float64 logits rel. diff "
              f"{rel:.1e} {'ok' if ok else 'MISMATCH'}", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
