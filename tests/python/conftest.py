"""Shared fixtures of the kdcache Python tests (tests/python/README.md).

Everything is made once per session in a temporary folder: a small ImageFolder
of real photographs (Debian's mate-backgrounds) cut to varied sizes, so every
view is resampled; a torchvision resnet18 with random weights (and random
batch-norm statistics) saved as safetensors for kd-precompute; and caches
written by the C tools. The C programs come from KDC_BIN (default: build/bin
of this checkout, built by `make`)."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.join(REPO, "scripts", "tools"))
from export_weights import save_file  # noqa: E402

PHOTO_DIR = "/usr/share/backgrounds/mate/nature"
CLASSES = 3
IMAGES = 18
torch.set_num_threads(2)

# The views of the test caches: rrc at 48 px, 3 views, 8 images per chunk.
VIEW_ARGS = ["--view-policy", "rrc", "--views", "3", "--image-size", "48", "--chunk-images", "8",
             "--seed", "3"]


def kdc_bin(name):
    d = os.environ.get("KDC_BIN", os.path.join(REPO, "build", "bin"))
    p = os.path.join(d, name)
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} not found: run make first (or set KDC_BIN)")
    return p


def run_tool(name, *args, check=True, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([kdc_bin(name), *map(str, args)], capture_output=True, text=True,
                       env=e, timeout=300)
    if check and r.returncode != 0:
        pytest.fail(f"{name} {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr}")
    return r


def make_folder(root, count, rng, size=None):
    photos = sorted(glob.glob(os.path.join(PHOTO_DIR, "*.jpg")))
    if not photos:
        pytest.fail(f"no photos in {PHOTO_DIR}: run scripts/setup.sh (mate-backgrounds)")
    for k in range(count):
        im = Image.open(photos[k % len(photos)]).convert("RGB")
        im = im.reduce(max(1, min(im.size) // (150 + 7 * k)))
        w, h = size or (60 + int(rng.integers(0, 60)), 60 + int(rng.integers(0, 60)))
        x = int(rng.integers(0, im.size[0] - w))
        y = int(rng.integers(0, im.size[1] - h))
        d = os.path.join(root, f"class{k % CLASSES}")
        os.makedirs(d, exist_ok=True)
        im.crop((x, y, x + w, y + h)).save(os.path.join(d, f"img{k:02d}.jpg"), quality=90)


def random_resnet18(seed):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(num_classes=CLASSES)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


class Env:
    pass


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("kdcache")
    e = Env()
    e.dir = str(d)
    e.data = os.path.join(e.dir, "data")
    make_folder(e.data, IMAGES, np.random.default_rng(0))
    e.teacher = random_resnet18(1)
    e.weights = os.path.join(e.dir, "resnet18.safetensors")
    save_file({k: v for k, v in e.teacher.state_dict().items()
               if not k.endswith("num_batches_tracked")}, e.weights)
    # kd-precompute's own caches of that teacher, and a plan with the same views.
    e.ref32 = os.path.join(e.dir, "ref32.h5")
    run_tool("kd-precompute", "--data", e.data, "--teacher", "resnet18", "--weights", e.weights,
             "--logits", "float32", "--out", e.ref32, "--quiet", *VIEW_ARGS)
    e.ref16 = os.path.join(e.dir, "ref16.h5")
    run_tool("kd-precompute", "--data", e.data, "--teacher", "resnet18", "--weights", e.weights,
             "--logits", "float16", "--out", e.ref16, "--quiet", *VIEW_ARGS)
    e.plan32 = os.path.join(e.dir, "plan32.h5")
    run_tool("kd-precompute", "--data", e.data, "--plan-only", "--feature-dim", "512",
             "--logits", "float32", "--out", e.plan32, "--quiet", *VIEW_ARGS)
    return e
