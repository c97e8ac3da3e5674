"""Reference fixtures for kd-precompute (tests/precompute/test_precompute.c), written to OUTDIR
(build/fixtures/precompute/) with PIL and Debian's torchvision 0.14:

  photos/<class>/*.jpg   224x224 JPEG crops of real photographs (mate-backgrounds), so
                         that with --resize-size 224 --image-size 224 --view-policy center
                         no resampling happens and the teacher sees exactly PIL's pixels
  bad/<class>/*.jpg      four of those photos, a zero-byte .jpg and a truncated .jpg
  small/<class>/*.jpg    192 JPEG crops of 32x32 (the kill -9 / --resume / shard tests)
  resnet18.safetensors, resnet50.safetensors
                         torchvision models with random weights AND random batch-norm
                         statistics and affines (so that folding BN into the convolutions
                         is exercised), 1000 classes
  resnet18_c10.safetensors  the same with 10 classes (small images)
  logits_<arch>.f64, features_<arch>.f64
                         eval-mode outputs on photos/ in ImageFolder order, computed in
                         float64 from torchvision's ToTensor + Normalize of PIL's decode
  photos_paths.txt       the ImageFolder order, one relative path per line
"""
import glob
import os
import shutil
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import refutil  # noqa: E402
from export_weights import save_file  # noqa: E402

PHOTO_DIR = "/usr/share/backgrounds/mate/nature"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def crops(size, count, rng):
    """count JPEG-ready RGB crops of size x size from the photos (downscaled first so
    that small crops still show structure)."""
    photos = sorted(glob.glob(os.path.join(PHOTO_DIR, "*.jpg")))
    if not photos:
        sys.exit(f"no photos in {PHOTO_DIR}: run scripts/setup.sh (mate-backgrounds)")
    out = []
    for k in range(count):
        im = Image.open(photos[k % len(photos)]).convert("RGB")
        shrink = max(1, min(im.size) // (size * (2 + k % 3)))
        im = im.reduce(shrink)
        x = int(rng.integers(0, im.size[0] - size + 1))
        y = int(rng.integers(0, im.size[1] - size + 1))
        out.append(im.crop((x, y, x + size, y + size)))
    return out


def write_folder(root, images, classes, quality=90):
    for k, im in enumerate(images):
        d = os.path.join(root, classes[k % len(classes)])
        os.makedirs(d, exist_ok=True)
        im.save(os.path.join(d, f"img{k:03d}.jpg"), quality=quality)


def randomise(model, gen):
    """Random weights plus random BN statistics and affines (torchvision's init
    leaves mean 0 / var 1 / weight 1 / bias 0, which would hide BN-folding bugs)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) * 0.6 + 0.7)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 0.8 + 0.6)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def main():
    d = refutil.out_dir()
    rng = np.random.default_rng(5)
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)

    photos = os.path.join(d, "photos")
    shutil.rmtree(photos, ignore_errors=True)
    write_folder(photos, crops(224, 6, rng), ["cat", "dog"])

    bad = os.path.join(d, "bad")
    shutil.rmtree(bad, ignore_errors=True)
    write_folder(bad, crops(224, 4, rng), ["a", "b"])
    os.makedirs(os.path.join(bad, "c"), exist_ok=True)
    open(os.path.join(bad, "c", "empty.jpg"), "wb").close()
    good = sorted(glob.glob(os.path.join(bad, "a", "*.jpg")))[0]
    raw = open(good, "rb").read()
    with open(os.path.join(bad, "c", "truncated.jpg"), "wb") as f:
        f.write(raw[: len(raw) // 3])

    small = os.path.join(d, "small")
    shutil.rmtree(small, ignore_errors=True)
    write_folder(small, crops(32, 192, rng), ["c0", "c1", "c2"])

    # ImageFolder order = what kd-precompute must produce.
    ds = datasets.ImageFolder(photos)
    rel = [os.path.relpath(p, photos) for p, _ in ds.samples]
    with open(os.path.join(d, "photos_paths.txt"), "w") as f:
        f.write("".join(r + "\n" for r in rel))
    tf = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in ds.samples]).double()

    for arch in ["resnet18", "resnet50"]:
        m = randomise(getattr(torchvision.models, arch)(num_classes=1000), gen)
        save_file(m.state_dict(), os.path.join(d, f"{arch}.safetensors"))
        md = m.double()
        feats = {}
        md.avgpool.register_forward_hook(lambda mod, i, o: feats.__setitem__("f", o.flatten(1)))
        with torch.no_grad():
            logits = md(x)
        refutil.save(d, f"logits_{arch}", logits)
        refutil.save(d, f"features_{arch}", feats["f"])
        print(f"{arch}: logits std {logits.std():.3g}, features mean {feats['f'].mean():.3g}")

    m = randomise(torchvision.models.resnet18(num_classes=10), gen)
    save_file(m.state_dict(), os.path.join(d, "resnet18_c10.safetensors"))


if __name__ == "__main__":
    main()
