#!/usr/bin/python3
"""Reference fixtures for tests/models/test_zoo_teachers.c: kd-precompute with the
torchvision teachers of the zoo (mobilenet_v2, shufflenet_v2_x0_5, regnet_y_400mf)
and two of mdistiller's CIFAR teachers (ResNet50, resnet110; zoo_defs.py) against
PyTorch, on a few small photographs.

OUTDIR/photos/<a|b>/*.jpg   4 JPEG crops of 64x64 (ref_precompute.crops), so that
                            --resize-size 64 --image-size 64 --view-policy center
                            feeds the teacher PIL's pixels unchanged
OUTDIR/photos_paths.txt     the ImageFolder order
OUTDIR/<arch>.safetensors   random weights, random BN affines and statistics, 1000 classes
OUTDIR/logits_<arch>.f64, features_<arch>.f64   eval outputs in float64 (ToTensor +
                            Normalize of PIL's decode; features = the fc input)
Usage: ref_zoo_teachers.py OUTDIR
"""
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import refutil  # noqa: E402
from export_weights import save_file  # noqa: E402
from ref_precompute import MEAN, STD, crops, randomise, write_folder  # noqa: E402
from zoo_defs import fc_of, zoo_model  # noqa: E402

torch.set_num_threads(2)
# torchvision's, then two mdistiller CIFAR teachers (names "linear" / "fc") at 64 px
TEACHERS = ["mobilenet_v2", "shufflenet_v2_x0_5", "regnet_y_400mf", "ResNet50", "resnet110"]


def main():
    d = refutil.out_dir()
    rng = np.random.default_rng(17)
    torch.manual_seed(17)
    gen = torch.Generator().manual_seed(17)
    photos = os.path.join(d, "photos")
    shutil.rmtree(photos, ignore_errors=True)
    write_folder(photos, crops(64, 4, rng), ["a", "b"])
    ds = datasets.ImageFolder(photos)
    with open(os.path.join(d, "photos_paths.txt"), "w") as f:
        f.write("".join(os.path.relpath(p, photos) + "\n" for p, _ in ds.samples))
    tf = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in ds.samples]).double()
    for arch in TEACHERS:
        m = randomise(zoo_model(arch, 1000), gen)
        save_file(m.state_dict(), os.path.join(d, f"{arch}.safetensors"))
        md = m.double().eval()
        box = {}
        fc_of(md).register_forward_hook(lambda mod, i, o: box.__setitem__("f", i[0]))
        with torch.no_grad():
            logits = md(x)
        refutil.save(d, f"logits_{arch}", logits)
        refutil.save(d, f"features_{arch}", box["f"])
        print(f"ref_zoo_teachers: {arch}: logits std {logits.std():.3g}", flush=True)


if __name__ == "__main__":
    main()
