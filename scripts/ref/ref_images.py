"""Reference fixtures for the image pipeline (tests/image/test_images.c, test_views.c,
test_dataset.c, test_loader.c), written to OUTDIR (build/fixtures/images/).

Everything is made here from real photographs that Debian ships (mate-backgrounds,
installed by scripts/setup.sh), with PIL and Debian's torchvision 0.14:
  photos/*.jpg          ImageNet-like JPEGs (resized crops of the photos, several
                        sizes, chroma subsamplings, one progressive) + one original
  bad/*                 grayscale and CMYK JPEGs, a truncated JPEG, a zero-byte file,
                        a JPEG header declaring 60000x60000 pixels, a text file
  photos.txt            name W H per photo
  center_<name>.u8      torchvision Resize(256)+CenterCrop(224) pixels (HWC uint8)
  center_norm_<name>.f32  the same after ToTensor+Normalize (CHW): the hook for a
                        teacher-logit comparison
  decoded_<name>.u8     PIL's full decode (HWC), to tell decoding from resampling
  views.txt, view_<policy>_<name>_<v>.u8
                        rrc and pad-crop views: boxes from an independent Python
                        Philox + get_params, pixels from torchvision's functional ops
  rrc_cases.txt         get_params fed fixed uniform draws (exact comparison)
  rrc_stats.txt         statistics of torchvision's own get_params (torch RNG)
  folder/, list.txt, folder_expected.txt, list_expected.txt
                        an ImageFolder tree with awkward names; order and labels from
                        torchvision's ImageFolder, sizes/CRC-32 from zlib, fingerprint
                        from hashlib
"""
import glob
import hashlib
import io
import math
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms
import torchvision.transforms.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refutil  # noqa: E402

PHOTO_DIR = "/usr/share/backgrounds/mate/nature"
SEED = 1234
NVIEWS = 3
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

# ---------------------------------------------------------------- Philox-4x32-10
M32 = 0xFFFFFFFF


def philox(ctr, key):
    c = list(ctr)
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c[3] ^ k1) & M32, p0 & M32]
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c


class Stream:
    """Draws of (seed, a, b): counter = (block, b, a_lo, a_hi), key = seed."""

    def __init__(self, seed, a, b):
        self.key = (seed & M32, seed >> 32)
        self.ctr = [0, b, a & M32, a >> 32]
        self.buf = []

    def u32(self):
        if not self.buf:
            self.buf = philox(self.ctr, self.key)
            self.ctr[0] += 1
        return self.buf.pop(0)

    def uniform(self):
        a = self.u32() >> 5
        b = self.u32() >> 6
        return (a * 67108864.0 + b) / 9007199254740992.0


def below(u, n):
    return min(int(math.floor(u * n)), n - 1)


def rrc_from_draws(width, height, scale, ratio, next_u):
    """torchvision 0.14 RandomResizedCrop.get_params with its torch draws replaced
    by next_u(): uniform_(a, b) -> a + (b - a) u, randint(0, n) -> floor(u n)."""
    area = height * width
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * next_u())
        aspect_ratio = math.exp(lr[0] + (lr[1] - lr[0]) * next_u())
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = below(next_u(), height - h + 1)
            j = below(next_u(), width - w + 1)
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


def u8(d, name, img):
    np.asarray(img, dtype=np.uint8).tofile(os.path.join(d, name + ".u8"))


# ---------------------------------------------------------------- photos
def make_photos(d):
    pd = os.path.join(d, "photos")
    os.makedirs(pd, exist_ok=True)
    src = {os.path.basename(p): p for p in glob.glob(os.path.join(PHOTO_DIR, "*.jpg"))}

    def crop_resize(name, w, h):
        im = Image.open(src[name]).convert("RGB")
        # the largest centred region with the target aspect, then PIL's resize
        W, H = im.size
        if W * h > H * w:
            cw, ch = H * w // h, H
        else:
            cw, ch = W, W * h // w
        x0, y0 = (W - cw) // 2, (H - ch) // 2
        return im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)

    specs = [  # name, source, size, save options
        ("flower_500x375", "FreshFlower.jpg", (500, 375), dict(quality=90)),
        ("ladybird_375x500", "LadyBird.jpg", (375, 500), dict(quality=85)),
        ("storm_500x333_prog", "Storm.jpg", (500, 333), dict(quality=90, progressive=True)),
        ("wood_400x300_444", "Wood.jpg", (400, 300), dict(quality=95, subsampling=0)),
        ("dune_640x480_422", "Dune.jpg", (640, 480), dict(quality=80, subsampling=1)),
        ("meadow_257x181", "GreenMeadow.jpg", (257, 181), dict(quality=90)),
    ]
    names = []
    for name, s, size, opts in specs:
        crop_resize(s, *size).save(os.path.join(pd, name + ".jpg"), "JPEG", **opts)
        names.append(name)
    # one original Debian file, untouched (1280x1024, progressive)
    shutil.copyfile(src["GreenMeadow.jpg"], os.path.join(pd, "meadow_original.jpg"))
    names.append("meadow_original")
    # grayscale and CMYK versions of real photos: valid inputs, converted to RGB
    Image.open(os.path.join(pd, "flower_500x375.jpg")).convert("L").save(
        os.path.join(pd, "flower_gray.jpg"), "JPEG", quality=90)
    Image.open(os.path.join(pd, "ladybird_375x500.jpg")).convert("CMYK").save(
        os.path.join(pd, "ladybird_cmyk.jpg"), "JPEG", quality=90)
    names += ["flower_gray", "ladybird_cmyk"]
    return pd, names


def make_bad(d, pd):
    bd = os.path.join(d, "bad")
    os.makedirs(bd, exist_ok=True)
    good = open(os.path.join(pd, "flower_500x375.jpg"), "rb").read()
    open(os.path.join(bd, "truncated.jpg"), "wb").write(good[: len(good) * 6 // 10])
    open(os.path.join(bd, "empty.jpg"), "wb").close()
    # patch the SOF0 marker's height and width to 60000 x 60000
    b = bytearray(good)
    pos = b.find(b"\xff\xc0")
    assert pos > 0
    struct.pack_into(">HH", b, pos + 5, 60000, 60000)
    open(os.path.join(bd, "huge.jpg"), "wb").write(bytes(b))
    open(os.path.join(bd, "notimage.jpg"), "w").write("this is a text file, not a JPEG\n")


def center_refs(d, pd, names):
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    norm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    lines = []
    for n in names:
        im = Image.open(os.path.join(pd, n + ".jpg"))
        im = im.convert("RGB")
        lines.append(f"{n} {im.size[0]} {im.size[1]}")
        u8(d, "decoded_" + n, im)
        c = tf(im)
        u8(d, "center_" + n, c)
        refutil.save(d, "center_norm_" + n, norm(c))
    open(os.path.join(d, "photos.txt"), "w").write("\n".join(lines) + "\n")


def view_refs(d, pd, names):
    """rrc and pad-crop views: Python Philox boxes, torchvision pixels."""
    lines = []
    scale, ratio = (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0)
    for idx, n in enumerate(names):
        im = Image.open(os.path.join(pd, n + ".jpg")).convert("RGB")
        W, H = im.size
        for v in range(NVIEWS):
            st = Stream(SEED, idx, v)
            i, j, h, w = rrc_from_draws(W, H, scale, ratio, st.uniform)
            flip = int(st.uniform() < 0.5)
            out = F.resized_crop(im, i, j, h, w, [224, 224], transforms.InterpolationMode.BILINEAR)
            if flip:
                out = F.hflip(out)
            u8(d, f"view_rrc_{n}_{v}", out)
            lines.append(f"rrc {n} {idx} {v} {i} {j} {h} {w} {flip}")
    # pad-crop with S = 32, P = 4 on small images (one exactly 32x32, one not)
    small = Image.open(os.path.join(pd, "flower_500x375.jpg")).convert("RGB").resize((32, 32), Image.BILINEAR)
    small.save(os.path.join(pd, "tiny_32x32.jpg"), "JPEG", quality=95)
    Image.open(os.path.join(pd, "wood_400x300_444.jpg")).convert("RGB").resize((40, 30), Image.BILINEAR).save(
        os.path.join(pd, "tiny_40x30.jpg"), "JPEG", quality=95)
    S, P = 32, 4
    for idx, n in enumerate(["tiny_32x32", "tiny_40x30"]):
        im = Image.open(os.path.join(pd, n + ".jpg")).convert("RGB")
        framed = F.pad(F.resize(im, [S, S]), P, fill=0)
        for v in range(4):
            st = Stream(SEED, idx, v)
            i = below(st.uniform(), 2 * P + 1)
            j = below(st.uniform(), 2 * P + 1)
            flip = int(st.uniform() < 0.5)
            out = F.crop(framed, i, j, S, S)
            if flip:
                out = F.hflip(out)
            u8(d, f"view_pad_{n}_{v}", out)
            lines.append(f"pad {n} {idx} {v} {i - P} {j - P} {S} {S} {flip}")
    open(os.path.join(d, "views.txt"), "w").write("\n".join(lines) + "\n")


def rrc_cases(d):
    rng = np.random.default_rng(7)
    lines = []
    sizes = [(500, 375), (375, 500), (1000, 100), (100, 1000), (64, 64), (3, 700), (1, 1), (2048, 1536)]
    scales = [(0.08, 1.0), (0.35, 1.0), (0.9, 1.0)]
    ratios = [(3 / 4, 4 / 3), (0.5, 2.0)]
    for k in range(300):
        W, H = sizes[k % len(sizes)]
        sc, ra = scales[k % 3], ratios[(k // 3) % 2]
        u = rng.random(40)
        if k % 10 == 9:  # force the fallback: every area draw too large for the ratio
            u[0:20:2] = 0.999999
        it = iter(u.tolist())
        i, j, h, w = rrc_from_draws(W, H, sc, ra, lambda: next(it))
        lines.append(" ".join([str(W), str(H), repr(sc[0]), repr(sc[1]), repr(ra[0]), repr(ra[1]),
                               str(i), str(j), str(h), str(w)] + [repr(x) for x in u.tolist()]))
    open(os.path.join(d, "rrc_cases.txt"), "w").write("\n".join(lines) + "\n")


def rrc_stats(d):
    """torchvision's own get_params (its torch RNG): statistics to compare with."""
    torch.manual_seed(0)
    lines = []
    for W, H in [(500, 375), (1000, 120)]:
        img = torch.empty(3, H, W)
        n = 20000
        a = np.zeros(n)
        lr = np.zeros(n)
        cx = np.zeros(n)
        for k in range(n):
            i, j, h, w = transforms.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
            a[k] = h * w / (H * W)
            lr[k] = math.log(w / h)
            cx[k] = (j + w / 2) / W
        lines.append(f"{W} {H} {n} {a.mean()!r} {a.std()!r} {lr.mean()!r} {lr.std()!r} {cx.mean()!r} {cx.std()!r}")
    open(os.path.join(d, "rrc_stats.txt"), "w").write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- datasets
def fingerprint(entries):
    h = hashlib.sha256()
    for path, size, crc in entries:
        h.update(path.encode("utf-8") + b"\0" + struct.pack("<QI", size, crc))
    return h.hexdigest()


def make_folder(d, pd):
    root = os.path.join(d, "folder")
    if os.path.exists(root):
        shutil.rmtree(root)
    photo = Image.open(os.path.join(pd, "flower_500x375.jpg")).convert("RGB").resize((64, 48))
    # class names whose byte order differs from locale order; files likewise
    layout = {
        "B": ["b.jpg", "A.jpg", "a.JPEG", "_x.jpeg"],
        "a": ["z.jpg", "Z.jpg", "sub/deep.jpg", "sub-x.jpg", "sub/a.jpg", "sub/deep/x.jpg", "sub-x/y.jpg"],
        "a b": ["1.jpg", "10.jpg", "2.jpg"],
        "\u00e9t\u00e9": ["\u00e9.jpg", "e.jpg"],
        "Z_": ["only.jpg"],
    }
    q = 50
    for cls, files in layout.items():
        for f in files:
            p = os.path.join(root, cls, f)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            photo.save(p, "JPEG", quality=q)  # different qualities: distinct bytes and CRCs
            q += 2
    # ignored: not JPEG by extension, and a file at the root
    open(os.path.join(root, "B", "readme.txt"), "w").write("not an image\n")
    open(os.path.join(root, "stray.jpg"), "wb").write(b"")
    ds = datasets.ImageFolder(root, is_valid_file=lambda p: p.lower().endswith((".jpg", ".jpeg")))
    entries = []
    lines = []
    for path, label in ds.samples:
        rel = os.path.relpath(path, root)
        data = open(path, "rb").read()
        entries.append((rel, len(data), zlib.crc32(data)))
        lines.append(f"{rel}\t{label}\t{len(data)}\t{zlib.crc32(data)}")
    lines.append("fingerprint\t" + fingerprint(entries))
    lines.append("classes\t" + "\t".join(ds.classes))
    open(os.path.join(d, "folder_expected.txt"), "w", encoding="utf-8").write("\n".join(lines) + "\n")
    # a list file: a subset in a chosen order, one unknown label
    pick = [(entries[5][0], 7), (entries[0][0], 3), (entries[9][0], -1)]
    open(os.path.join(d, "list.txt"), "w", encoding="utf-8").write("".join(f"{p}\t{l}\n" for p, l in pick))
    sub = [e for p, _ in pick for e in entries if e[0] == p]
    open(os.path.join(d, "list_expected.txt"), "w", encoding="utf-8").write(fingerprint(sub) + "\n")


def main():
    d = refutil.out_dir()
    pd, names = make_photos(d)
    make_bad(d, pd)
    center_refs(d, pd, names)
    view_refs(d, pd, names)
    rrc_cases(d)
    rrc_stats(d)
    make_folder(d, pd)


if __name__ == "__main__":
    main()
