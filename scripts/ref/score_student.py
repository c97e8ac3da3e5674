#!/usr/bin/python3
"""Scores a student that kd-train saved (RUN/student.safetensors) in its PyTorch
definition: mdistiller's CIFAR nets from zoo_defs.py / ref_models.py (same names),
torchvision's from torchvision. load_state_dict(strict=True), eval mode, the center
view kd-train's --val uses (Resize(R) + CenterCrop(S), ToTensor, Normalize with
ImageNet's mean / std unless given), top-1 over an ImageFolder. Prints one line
as kd-train --eval-only does: "images N top1 T".

  score_student.py --arch ShuffleV2 --weights RUN/student.safetensors --val DIR \
      [--image-size 32] [--resize-size 32] [--mean 0.485,0.456,0.406] [--std 0.229,0.224,0.225]
"""
import argparse
import os
import sys

import torch
from PIL import Image
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from export_weights import load_file  # noqa: E402
from zoo_defs import fc_of, zoo_model  # noqa: E402
from ref_models import ARCHS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--resize-size", type=int, default=None)
    ap.add_argument("--mean", default="0.485,0.456,0.406")
    ap.add_argument("--std", default="0.229,0.224,0.225")
    a = ap.parse_args()
    sd = load_file(a.weights)

    def build(classes):
        try:
            return zoo_model(a.arch, classes)
        except KeyError:
            return ARCHS[a.arch][0](classes)

    # the number of classes: the rows of the classifier's weight, found by name in a
    # one-class instance (a Linear, or mobilenetv2_tinyimagenet's 1x1-conv conv2)
    probe = build(1)
    head = next(n for n, mod in probe.named_modules() if mod is fc_of(probe))
    model = build(sd[head + ".weight"].shape[0])
    model.load_state_dict(sd, strict=True)
    model = model.double().eval()
    tf = transforms.Compose([
        transforms.Resize(a.resize_size or a.image_size), transforms.CenterCrop(a.image_size),
        transforms.ToTensor(),
        transforms.Normalize([float(v) for v in a.mean.split(",")],
                             [float(v) for v in a.std.split(",")])])
    ds = datasets.ImageFolder(a.val)
    correct, loss = 0, 0.0
    with torch.no_grad():
        for path, label in ds.samples:
            x = tf(Image.open(path).convert("RGB")).unsqueeze(0).double()
            z = model(x)
            correct += int(z.argmax(1).item() == label)
            loss += torch.nn.functional.cross_entropy(z, torch.tensor([label])).item()
    n = len(ds.samples)
    print(f"images {n} top1 {100.0 * correct / n:.4f} loss {loss / n:.9f}")


if __name__ == "__main__":
    main()
