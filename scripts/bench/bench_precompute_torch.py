#!/usr/bin/python3
"""The PyTorch baseline of scripts/bench/bench_precompute.sh: the job kd-precompute does,
written the way a PyTorch user would (Debian's torch 1.13 / torchvision 0.14):
ImageFolder + PIL decoding in DataLoader workers, torchvision's eval transform
(Resize(256), CenterCrop(224), ToTensor, Normalize), the teacher in eval mode, and
float16 logits plus float16 pooled features saved to one .npy-style file.

  bench_precompute_torch.py --data DIR --arch resnet18 --weights W.safetensors
                            --out OUT.npz [--batch 16] [--threads 2] [--workers 2]

Prints one line: "torch ARCH: N images in S s: R img/s end to end (forward F img/s)".
The time counts everything from the start of the script (imports excluded) to the
file written, as kd-precompute's wall time does."""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torchvision
from torchvision import datasets, transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from export_weights import load_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(a.threads)
    sd = load_file(a.weights)
    model = getattr(torchvision.models, a.arch)(num_classes=sd["fc.weight"].shape[0])
    model.load_state_dict(sd)
    model.eval()
    feats = {}
    model.avgpool.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o.flatten(1)))
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                             transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = datasets.ImageFolder(a.data, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=False,
                                     num_workers=a.workers)
    logits, features, t_fwd = [], [], 0.0
    with torch.inference_mode():
        for x, _ in dl:
            t1 = time.time()
            y = model(x)
            t_fwd += time.time() - t1
            logits.append(y.half().numpy())
            features.append(feats["f"].half().numpy())
    np.savez(a.out, logits=np.concatenate(logits), features=np.concatenate(features))
    dt = time.time() - t0
    n = len(ds)
    print(f"torch {a.arch}: {n} images in {dt:.1f} s: {n / dt:.1f} img/s end to end "
          f"(forward {n / t_fwd:.1f} img/s)")


if __name__ == "__main__":
    main()
